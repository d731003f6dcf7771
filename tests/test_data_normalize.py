import pytest
import torch

from meanflow_sci.data import Normalizer
from meanflow_sci.data.normalize import default_mode
from meanflow_sci.errors import InputError


def test_standard_vectors_zero_mean_unit_std():
    x = torch.randn(500, 3, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1]) + 5
    norm = Normalizer.fit(x.float())
    z = norm.normalize(x.float())
    assert norm.mode == "standard"
    assert norm.shift.shape == (3,)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.allclose(norm.denormalize(z), x.float(), atol=1e-4)


def test_sequences_pool_over_time():
    x = torch.randn(50, 20, 2) * torch.tensor([2.0, 3.0]) + torch.tensor([1.0, -1.0])
    norm = Normalizer.fit(x)
    assert norm.shift.shape == (2,)
    ref = x.reshape(-1, 2)
    assert torch.allclose(norm.shift, ref.mean(0), atol=1e-5)
    assert torch.allclose(norm.scale, ref.std(0, unbiased=False), atol=1e-5)


def test_images_minmax_per_channel():
    x = torch.rand(10, 3, 4, 4) * torch.tensor([1.0, 255.0, 2.0]).view(3, 1, 1)
    norm = Normalizer.fit(x)
    assert norm.mode == "minmax" == default_mode((3, 4, 4))
    z = norm.normalize(x)
    assert norm.shift.shape == (3, 1, 1)
    for c in range(3):
        assert z[:, c].min().item() == pytest.approx(-1.0, abs=1e-5)
        assert z[:, c].max().item() == pytest.approx(1.0, abs=1e-5)


def test_zero_std_guard():
    x = torch.ones(10, 2)
    x[:, 1] = torch.arange(10.0)
    norm = Normalizer.fit(x)
    z = norm.normalize(x)
    assert torch.isfinite(z).all()
    assert norm.scale[0] == 1.0
    assert torch.all(z[:, 0] == 0)
    assert Normalizer.fit(torch.zeros(5, 2, 3, 3)).scale.eq(1).all()


def test_state_round_trip_and_errors():
    norm = Normalizer.fit(torch.randn(30, 4) * 3)
    state = norm.state_dict()
    assert set(state) == {"shift", "scale"}
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    back = Normalizer.from_state(state, mode=norm.mode)
    x = torch.randn(5, 4)
    assert torch.equal(back.normalize(x), norm.normalize(x))
    with pytest.raises(InputError, match="missing"):
        Normalizer.from_state({"shift": state["shift"]})
    with pytest.raises(InputError, match="positive"):
        Normalizer(torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(InputError, match="mode"):
        Normalizer.fit(torch.randn(4, 2), mode="zscore")


def test_none_mode_is_identity():
    x = torch.randn(8, 3) * 7
    norm = Normalizer.fit(x, mode="none")
    assert torch.equal(norm.normalize(x), x)
