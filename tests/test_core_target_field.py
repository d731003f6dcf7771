"""The stable target field: a lower-variance estimate of the marginal velocity."""

import pytest
import torch

from meanflow_sci.core import FlowMatching, Guidance, ModularMeanFlow, objective_from_config
from meanflow_sci.core.target_field import ReferenceBank, stable_target
from meanflow_sci.errors import InputError


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(5, 3)

    def forward(self, z, r, t, cond=None):
        return self.lin(torch.cat([z, r[:, None], t[:, None]], dim=1))


def _pairs(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).repeat(n // 2, 1)
    eps = torch.randn(x.shape, generator=g)
    return x, eps


@pytest.mark.parametrize("t", [0.0, 1e-3])
def test_at_small_t_the_target_is_the_conditional_velocity(t):
    x, eps = _pairs()
    tt = torch.full((x.shape[0],), t)
    z = (1 - t) * x + t * eps
    v = eps - x
    assert torch.allclose(stable_target(z, tt, x, v), v, atol=2e-3)


@pytest.mark.parametrize("t", [0.5, 0.9])
def test_the_target_keeps_the_mean_and_cuts_the_variance(t):
    x, eps = _pairs(n=4000)
    tt = torch.full((x.shape[0],), t)
    z = (1 - t) * x + t * eps
    v = eps - x
    vh = stable_target(z, tt, x, v)
    assert vh.var(0).sum() < 0.7 * v.var(0).sum()
    assert torch.allclose(vh.mean(0), v.mean(0), atol=0.08)


def test_it_is_the_posterior_mean_velocity_over_the_reference():
    # One noisy point, three reference points: the closed form by hand.
    x = torch.tensor([[0.0, 1.0]])
    ref = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    t = torch.tensor([0.6])
    z = torch.tensor([[0.3, 0.2]])
    v = (z - (1 - t) * x) / t - x  # eps - x for this z
    pts = torch.cat([x, ref])
    logw = -((z - (1 - t) * pts) ** 2).sum(1) / (2 * t**2)
    xbar = (torch.softmax(logw, 0)[:, None] * pts).sum(0)
    want = (z - xbar) / t
    got = stable_target(z, t, x, v, ref_x=ref)
    assert torch.allclose(got, want, atol=1e-5)


def test_classes_restrict_the_reference_unless_the_label_was_dropped():
    x = torch.tensor([[0.0, 1.0], [5.0, 5.0]])
    labels = torch.tensor([0, 1])
    ref = torch.tensor([[0.0, -1.0], [9.0, 9.0]])
    ref_labels = torch.tensor([0, 1])
    t = torch.tensor([0.9, 0.9])
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(x.shape, generator=g)
    z = (1 - t[:, None]) * x + t[:, None] * eps
    v = eps - x
    both = stable_target(z, t, x, v, labels, ref_x=ref, ref_cond=ref_labels)
    # Class 0's row only sees class 0's points: moving a class-1 point changes nothing there.
    moved = stable_target(
        z, t, x, v, labels, ref_x=ref + torch.tensor([[0.0, 0.0], [3.0, 0.0]]), ref_cond=ref_labels
    )
    assert torch.allclose(both[0], moved[0]) and not torch.allclose(both[1], moved[1])
    # A dropped label (use_cond False) averages over every class.
    dropped = stable_target(
        z, t, x, v, labels, ref_x=ref, ref_cond=ref_labels, use_cond=torch.tensor([False, True])
    )
    assert not torch.allclose(dropped[0], both[0]) and torch.allclose(dropped[1], both[1])


def test_float_conditions_are_refused():
    x = torch.randn(4, 2)
    with pytest.raises(InputError, match="target_field"):
        stable_target(x, torch.full((4,), 0.5), x, x, torch.randn(4, 3))


def test_the_bank_keeps_the_newest_samples_up_to_its_size():
    bank = ReferenceBank(5)
    assert len(bank) == 0
    for i in range(3):
        bank.push(torch.full((2, 1), float(i)), torch.tensor([i, i]))
    assert len(bank) == 5
    assert bank.x[:, 0].tolist() == [2.0, 2.0, 1.0, 1.0, 0.0]
    assert bank.cond.tolist() == [2, 2, 1, 1, 0]
    bank.push(torch.zeros(3, 4), None)  # another shape: starts again
    assert bank.x.shape == (3, 4) and bank.cond is None
    with pytest.raises(InputError, match="reference_size"):
        ReferenceBank(0)


@pytest.mark.parametrize("cls", [ModularMeanFlow, FlowMatching])
def test_objectives_train_on_it_and_keep_it_in_their_config(cls):
    obj = cls(target_field="stf", reference_size=64)
    again = objective_from_config(obj.config())
    assert again.target_field == "stf" and again.bank.size == 64
    assert again.config() == obj.config()
    model = _Net()

    torch.manual_seed(0)
    x = torch.randn(16, 3)
    for _ in range(6):
        out = obj(model, x)
        assert torch.isfinite(out.loss).all()
    assert len(obj.bank) == 64  # the bank filled up from the batches
    with pytest.raises(InputError, match="target_field"):
        cls(target_field="marginal")


def test_it_lowers_the_spread_of_the_flow_matching_loss_at_a_fixed_model():
    # The same model, batches and times: the per-sample loss against the stable target has a
    # smaller mean at large t, since its target no longer carries the choice of data point.
    torch.manual_seed(1)
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).repeat(64, 1)

    def model(z, r, t, cond=None):
        return z  # any fixed model

    plain, stf = FlowMatching(), FlowMatching(target_field="stf")
    t = torch.full((x.shape[0],), 0.8)
    noise = torch.randn_like(x)
    a = plain(model, x, t=t, noise=noise).loss.mean()
    b = stf(model, x, t=t, noise=noise).loss.mean()
    assert b < a


def test_guidance_dropped_rows_train_on_the_unconditional_field():
    obj = ModularMeanFlow(
        target_field="stf", guidance=Guidance(omega=1.0, kappa=0.0, drop_prob=0.5), jvp_backend="fd"
    )
    model = _Net()

    out = obj(model, torch.randn(32, 3), torch.randint(0, 3, (32,)))
    assert torch.isfinite(out.loss).all() and out.loss.shape == (32,)


def test_fit_takes_the_target_field_and_checks_it_up_front():
    import meanflow_sci as mfs

    x = torch.randn(64, 3)
    fitted = mfs.fit(
        x,
        cond=torch.randint(0, 2, (64,)),
        objective={"target_field": "stf"},
        train={"max_steps": 3, "batch_size": 16},
        backbone={"hidden": 16},
        progress=False,
    )
    assert fitted.objective_config["target_field"] == "stf"
    stf = {"target_field": "stf"}
    for kwargs, match in (
        ({"objective": {"target_field": "marginal"}}, "target_field"),
        ({"objective": {**stf, "name": "regression"}}, "regression"),
        ({"objective": stf, "cond": torch.randn(64, 2)}, r"class labels .*\(the reference"),
        # An instance is checked the same way, before any training step.
        (
            {"objective": FlowMatching(**stf), "cond": torch.randn(64, 2)},
            r"target_field: 'stf' needs no condition or integer class labels",
        ),
    ):
        with pytest.raises(InputError, match=match):
            mfs.fit(x, train={"max_steps": 2}, progress=False, **kwargs)


def test_validation_scores_the_conditional_target_and_keeps_the_bank():
    from meanflow_sci.train import TrainConfig, Trainer

    torch.manual_seed(0)
    obj = FlowMatching(target_field="stf", reference_size=32)
    data, val = torch.randn(64, 3), torch.full((16, 3), 7.0)
    config = TrainConfig(max_steps=2, batch_size=16, progress=False)
    trainer = Trainer(_Net(), obj, data, config=config, val_data=val)
    trainer.train()
    before = obj.bank.x.clone()
    assert len(obj.bank) == 32
    first = trainer.evaluate()
    assert torch.equal(obj.bank.x, before)  # validation data never enter the bank
    assert trainer.evaluate() == first
    # Inside evaluating() the loss is the conditional-target one.
    model, noise, t = trainer.model, torch.randn(16, 3), torch.full((16,), 0.7)
    with obj.evaluating():
        a = obj(model, val, noise=noise, t=t).loss
    assert torch.equal(a, FlowMatching()(model, val, noise=noise, t=t).loss)
    assert not torch.equal(obj(model, val, noise=noise, t=t).loss, a)


def test_it_is_computed_in_float32_under_autocast():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 1, 8, 8, generator=g)
    eps = torch.randn(x.shape, generator=g)
    t = torch.rand(64, generator=g) * 0.9 + 0.05
    z = (1 - t[:, None, None, None]) * x + t[:, None, None, None] * eps
    plain = stable_target(z, t, x, eps - x)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        auto = stable_target(z, t, x, eps - x)
    assert auto.dtype == torch.float32 and torch.allclose(auto, plain, atol=1e-5)


def test_a_reference_of_another_kind_is_not_used_and_the_bank_starts_again():
    obj = FlowMatching(target_field="stf", reference_size=64)
    model = _Net()
    x = torch.randn(16, 3)
    obj(model, x)  # unconditional batches fill the bank
    assert obj.bank.cond is None
    out = obj(model, x, torch.randint(0, 2, (16,)))  # then labelled ones
    assert torch.isfinite(out.loss).all() and obj.bank.cond is not None and len(obj.bank) == 16
    with pytest.raises(InputError, match="ref_cond"):
        stable_target(x, torch.full((16,), 0.5), x, x, torch.zeros(16, dtype=torch.long), ref_x=x)


def test_objectives_list_the_options_that_need_class_labels():
    from meanflow_sci.core import Regression
    from meanflow_sci.core.target_field import LABEL_NEED as STF

    assert FlowMatching().label_needs() == [] and Regression().label_needs() == []
    assert ModularMeanFlow(target_field="stf").label_needs() == [STF]
    assert FlowMatching(target_field="stf").label_needs() == [STF]
    with pytest.raises(InputError, match=r"target_field: 'stf' .*\(the reference .*'conditional'"):
        z, x, v = torch.randn(3, 4, 2)
        stable_target(z, torch.rand(4), x, v, torch.randn(4, 3))


def test_shared_across_ranks_the_bank_holds_the_gathered_batches():
    # A stand-in for the all-gather of two ranks: every batch arrives twice (rank 1 = rank 0 + 1).
    def gather(a):
        return torch.cat([a, a + 1]) if a.is_floating_point() else torch.cat([a, a])

    obj = ModularMeanFlow(target_field="stf", reference_size=64, jvp_backend="fd", adaptive_p=0.0)
    obj.share_across_ranks(gather)
    x, labels = torch.randn(8, 3), torch.randint(0, 2, (8,))
    obj(_Net(), x, labels)
    assert len(obj.bank) == 16
    torch.testing.assert_close(obj.bank.x, torch.cat([x, x + 1]))
    assert torch.equal(obj.bank.cond, torch.cat([labels, labels]))
    obj.share_across_ranks(None)  # back to one process
    obj(_Net(), x, labels)
    assert len(obj.bank) == 24
