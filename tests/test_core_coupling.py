"""Minibatch optimal-transport coupling of data and noise."""

import itertools

import pytest
import torch

from meanflow_sci.core import FlowMatching, ModularMeanFlow, objective_from_config
from meanflow_sci.core.coupling import ot_pair_noise
from meanflow_sci.errors import InputError


def _cost(x, n):
    return (x - n).flatten(1).square().sum(1).sum().item()


def test_ot_pairing_is_a_permutation_with_the_least_total_cost():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g)
    noise = torch.randn(6, 3, generator=g)
    out = ot_pair_noise(x, noise)
    # Same rows, reordered.
    assert sorted(map(tuple, out.tolist())) == sorted(map(tuple, noise.tolist()))
    best = min(_cost(x, noise[list(p)]) for p in itertools.permutations(range(6)))
    assert _cost(x, out) == pytest.approx(best, rel=1e-6)
    assert _cost(x, out) < _cost(x, noise)


def test_ot_pairing_stays_within_classes():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 1, 4, 4, generator=g)
    noise = torch.randn(40, 1, 4, 4, generator=g)
    labels = torch.randint(0, 4, (40,), generator=g)
    out = ot_pair_noise(x, noise, labels)
    for c in labels.unique():
        m = labels == c
        # Each class gets exactly the noise rows of its random group (the positions of its label),
        # matched among themselves at least cost.
        got = sorted(map(tuple, out[m].flatten(1).tolist()))
        assert got == sorted(map(tuple, noise[m].flatten(1).tolist()))
        assert _cost(x[m], out[m]) <= _cost(x[m], noise[m]) + 1e-5


def test_ot_pairing_refuses_float_conditions():
    x, noise = torch.randn(4, 2), torch.randn(4, 2)
    with pytest.raises(InputError, match="coupling"):
        ot_pair_noise(x, noise, torch.randn(4, 3))


def test_fit_refuses_ot_with_float_conditions_before_training(monkeypatch):
    import meanflow_sci as mfs
    from meanflow_sci.train import Trainer

    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(Trainer, "train", never)
    # the message a training step gives, with why and what to use instead
    msg = r"coupling: 'ot' needs no condition or integer class labels .*\(pairs.*'independent'"
    with pytest.raises(InputError, match=msg):
        mfs.fit(
            torch.randn(32, 2),
            cond=torch.randn(32, 3),
            objective=FlowMatching(coupling="ot"),
            max_steps=2,
            progress=False,
        )


@pytest.mark.parametrize("cls", [ModularMeanFlow, FlowMatching])
def test_objectives_accept_the_coupling_and_keep_it_in_their_config(cls):
    obj = cls(coupling="ot")
    again = objective_from_config(obj.config())
    assert again.coupling == "ot" and again.config() == obj.config()
    net = torch.nn.Linear(4, 2)

    def model(z, r, t, cond=None):
        return net(torch.cat([z, r[:, None], t[:, None]], dim=1))

    torch.manual_seed(0)
    out = obj(model, torch.randn(16, 2), torch.randint(0, 3, (16,)))
    assert out.loss.shape == (16,) and torch.isfinite(out.loss).all()
    with pytest.raises(InputError, match="coupling"):
        cls(coupling="sinkhorn")


def test_ot_coupling_shortens_the_pairs_the_objective_trains_on():
    # Fixed t = 1 makes z the noise itself; with data far from the noise's mean, the paired
    # noise sits closer to its data point under OT than under independent draws.
    x = torch.randn(64, 2) + torch.tensor([3.0, 0.0])
    seen = {}
    for coupling in ("independent", "ot"):
        obj = FlowMatching(coupling=coupling)

        def model(z, r, t, cond=None, key=coupling):
            seen[key] = z.detach().clone()
            return torch.zeros_like(z)

        torch.manual_seed(0)
        obj(model, x, t=torch.ones(64))
    assert _cost(x, seen["ot"]) < 0.9 * _cost(x, seen["independent"])
