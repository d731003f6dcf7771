"""Backbones and their wrappers: shapes, forward-mode differentiability, conditioning, errors,
the registry and the spec that rebuilds a (wrapped) network."""

from __future__ import annotations

import json

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import jvp

from meanflow_sci.errors import InputError
from meanflow_sci.nn import (
    BACKBONES,
    DataEstimate,
    Flattened,
    backbone_spec,
    build_backbone,
    build_backbone_from_spec,
    wrap_backbone,
)

torch.set_num_threads(1)

# Small configs: name -> (kwargs without conditioning, per-sample shape builder).
SMALL = {
    "mlp": dict(dim=3, hidden=32, depth=2, emb_dim=16),
    "unet1d": dict(channels=3, down_dims=(8, 16, 16), n_groups=4, emb_dim=16),
    "transformer": dict(channels=3, width=16, depth=2, heads=2),
    "unet2d": dict(in_channels=2, base=8, channel_mults=(1, 2), attn_resolutions=(16,)),
}

SHAPES = {
    "mlp": [(1, 3), (5, 3)],
    "unet1d": [(2, 1, 3), (3, 7, 3), (1, 16, 3), (2, 5, 3)],
    "transformer": [(2, 1, 3), (3, 7, 3), (1, 16, 3)],
    "unet2d": [(2, 2, 8, 8), (1, 2, 7, 9), (2, 2, 1, 1), (1, 2, 5, 6)],
}

NAMES = sorted(BACKBONES)


def make(name: str, seed: int = 0, **extra) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone(name, **SMALL[name], **extra)


def perturb(model: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
    """Add noise to every parameter so zero-initialised layers stop hiding the inputs' effect."""
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def times(b: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    r = 0.5 * torch.rand(b, generator=gen, dtype=dtype)
    return r, r + 0.3 * torch.rand(b, generator=gen, dtype=dtype)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_matches_input(name):
    model = make(name)
    for shape in SHAPES[name]:
        x = torch.randn(shape)
        r, t = times(shape[0])
        out = model(x, r, t)
        assert out.shape == x.shape
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_output_starts_at_zero(name):
    # Zero-initialised output layers: u = 0 before training, so the first steps are stable.
    model = make(name)
    x = torch.randn(SHAPES[name][1])
    r, t = times(x.shape[0])
    assert model(x, r, t).abs().max() == 0


@pytest.mark.parametrize("name", NAMES)
def test_jvp_matches_finite_difference(name):
    model = perturb(make(name)).double()
    x = torch.randn(SHAPES[name][1], dtype=torch.float64)
    r, t = times(x.shape[0], torch.float64)
    v = torch.randn_like(x)

    def f(z, r_, t_):
        return model(z, r_, t_)

    out, tangent = jvp(f, (x, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    h = 1e-5
    with torch.no_grad():
        fd = (f(x + h * v, r, t + h) - f(x - h * v, r, t - h)) / (2 * h)
        assert torch.allclose(out, f(x, r, t))
    tangent = tangent.detach()
    assert tangent.abs().max() > 1e-3  # the check is not vacuous
    assert torch.allclose(tangent, fd, rtol=1e-4, atol=1e-6 * float(fd.abs().max()) + 1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_jvp_in_float32_with_grad(name):
    # The trainer's λ > 0 path: the JVP output is differentiated in reverse mode.
    model = perturb(make(name, cond_dim=2))
    x = torch.randn(SHAPES[name][1])
    r, t = times(x.shape[0])
    cond = torch.randn(x.shape[0], 2)

    def f(z, r_, t_):
        return model(z, r_, t_, cond)

    _, tangent = jvp(f, (x, r, t), (torch.randn_like(x), torch.zeros_like(r), torch.ones_like(t)))
    tangent.square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_float_condition_and_null(name):
    model = perturb(make(name, cond_dim=2))
    x = torch.randn(SHAPES[name][1])
    b = x.shape[0]
    r, t = times(b)
    c1, c2 = torch.randn(b, 2), torch.randn(b, 2)
    out1, out2 = model(x, r, t, c1), model(x, r, t, c2)
    assert not torch.allclose(out1, out2)
    null = torch.full((b, 2), float("nan"))
    out_null = model(x, r, t, null)
    assert torch.isfinite(out_null).all()
    assert not torch.allclose(out_null, out1)
    # No cond means null for every row.
    assert torch.allclose(model(x, r, t), out_null)
    # Mixed batch: each row follows its own condition (row 0 null, others real).
    if b > 1:
        mixed = c1.clone()
        mixed[0] = float("nan")
        out_mixed = model(x, r, t, mixed)
        assert torch.allclose(out_mixed[0], out_null[0], atol=1e-5)
        assert torch.allclose(out_mixed[1:], out1[1:], atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_class_labels_and_null(name):
    model = perturb(make(name, num_classes=4))
    x = torch.randn(SHAPES[name][1])
    b = x.shape[0]
    r, t = times(b)
    out0 = model(x, r, t, torch.zeros(b, dtype=torch.long))
    out3 = model(x, r, t, torch.full((b,), 3))
    out_null = model(x, r, t, torch.full((b,), -1))
    assert not torch.allclose(out0, out3)
    assert not torch.allclose(out_null, out0)
    assert torch.allclose(model(x, r, t), out_null)


def test_null_float_condition_keeps_gradients_finite():
    model = perturb(make("mlp", cond_dim=2))
    x = torch.randn(4, 3)
    r, t = times(4)
    cond = torch.randn(4, 2)
    cond[1] = float("nan")
    model(x, r, t, cond).square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.embed.cond.null.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise(name):
    model = make(name)
    shape = SHAPES[name][1]
    x = torch.randn(shape)
    b = shape[0]
    r, t = times(b)
    with pytest.raises(InputError, match="x: expected"):
        model(x[0], r[:1], t[:1])  # wrong rank
    with pytest.raises(InputError, match="x: expected"):
        model(torch.randn(*shape[:-1], shape[-1] + 1) if name != "unet2d" else x[:, :1], r, t)
    with pytest.raises(InputError, match="^r: "):
        model(x, r[:-1] if b > 1 else torch.zeros(2), t)
    with pytest.raises(InputError, match="^t: "):
        model(x, r, t[:, None])
    with pytest.raises(InputError, match="cond: this model is unconditional"):
        model(x, r, t, torch.randn(b, 2))


def test_bad_conditions_raise():
    x = torch.randn(3, 3)
    r, t = times(3)
    model = make("mlp", cond_dim=2)
    with pytest.raises(InputError, match="cond: expected a leading batch"):
        model(x, r, t, torch.randn(2, 2))
    with pytest.raises(InputError, match=r"cond: expected a float tensor of shape \(3, 2\)"):
        model(x, r, t, torch.randn(3, 5))
    with pytest.raises(InputError, match="cond: expected a float"):
        model(x, r, t, torch.zeros(3, 2, dtype=torch.long))
    partial = torch.randn(3, 2)
    partial[0, 0] = float("nan")
    with pytest.raises(InputError, match="only some NaN"):
        model(x, r, t, partial)
    labelled = make("mlp", num_classes=4)
    with pytest.raises(InputError, match=r"labels in \[0, 3\] or -1"):
        labelled(x, r, t, torch.tensor([0, 4, 1]))
    with pytest.raises(InputError, match=r"labels in \[0, 3\] or -1"):
        labelled(x, r, t, torch.tensor([0, -2, 1]))
    with pytest.raises(InputError, match="integer class labels"):
        labelled(x, r, t, torch.zeros(3))
    with pytest.raises(InputError, match="integer class labels"):
        labelled(x, r, t, torch.zeros(3, 1, dtype=torch.long))


def test_single_level_unets():
    # One level: no down/up-sampling, any length passes through unpadded.
    u1 = perturb(build_backbone("unet1d", channels=2, down_dims=(8,), n_groups=4, emb_dim=8))
    u2 = perturb(build_backbone("unet2d", in_channels=1, base=8, channel_mults=(1,)))
    for net, x in ((u1, torch.randn(2, 3, 2)), (u2, torch.randn(2, 1, 3, 5))):
        out = net(x, torch.zeros(2), torch.ones(2))
        assert out.shape == x.shape and out.abs().max() > 0


def test_transformer_rejects_too_long_sequences():
    model = build_backbone("transformer", channels=2, width=8, depth=1, heads=2, max_len=4)
    with pytest.raises(InputError, match="max_len=4"):
        model(torch.randn(1, 5, 2), torch.zeros(1), torch.ones(1))


@pytest.mark.parametrize("name", NAMES)
def test_spec_round_trip(name):
    model = make(name, num_classes=3)
    spec = backbone_spec(model)
    spec = json.loads(json.dumps(spec))  # must survive JSON
    assert spec["name"] == name and spec["prediction"] == "u" and spec["flatten"] is None
    twin = build_backbone_from_spec(spec)
    assert type(twin) is type(model)
    assert twin.config == model.config
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    twin.load_state_dict(perturb(model).state_dict(), strict=True)
    x = torch.randn(SHAPES[name][1])
    r, t = times(x.shape[0])
    labels = torch.arange(x.shape[0]) % 3
    assert torch.equal(twin(x, r, t, labels), model(x, r, t, labels))


def test_build_backbone_errors_and_passthrough():
    with pytest.raises(InputError, match="mlp.*transformer.*unet1d.*unet2d"):
        build_backbone("resnet", dim=3)
    with pytest.raises(InputError, match=r"\['widthh'\]"):
        build_backbone("mlp", dim=3, widthh=4)
    with pytest.raises(InputError, match=r"requires \['dim'\]"):
        build_backbone("mlp")
    with pytest.raises(InputError, match="hidden"):
        build_backbone("mlp", dim=3, hidden=0)
    with pytest.raises(InputError, match="n_groups"):
        build_backbone("unet1d", channels=2, down_dims=(12, 16), n_groups=8)
    with pytest.raises(InputError, match="heads"):
        build_backbone("transformer", channels=2, width=10, heads=4)
    with pytest.raises(InputError, match="attn_resolutions"):
        build_backbone("unet2d", in_channels=1, attn_resolutions=(3,))
    with pytest.raises(InputError, match="at most one"):
        build_backbone("mlp", dim=3, cond_dim=2, num_classes=3)
    model = make("mlp")
    assert build_backbone(model) is model
    with pytest.raises(InputError):
        build_backbone(model, dim=4)
    with pytest.raises(InputError, match="model: expected an instance"):
        backbone_spec(torch.nn.Linear(2, 2))


def test_all_names_import():
    import meanflow_sci.nn as nn_pkg

    for name in nn_pkg.__all__:
        assert getattr(nn_pkg, name) is not None


# ---- wrappers: the data-estimate output and flattening for flat networks

FLAT = (5, 3)  # one flattened sample: an MLP with dim 15


def flat_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone("mlp", dim=15, hidden=32, depth=2, emb_dim=16, cond_dim=2)


class FixedData(torch.nn.Module):
    """An inner network whose data estimate is a fixed ``x0``, whatever its inputs."""

    def __init__(self, x0: torch.Tensor) -> None:
        super().__init__()
        self.x0 = torch.nn.Parameter(x0.clone())

    def forward(self, x, r, t, cond=None):
        return self.x0.expand_as(x)


# (model builder, sample shape) for every wrapped combination
COMBOS = {
    "mlp-x": (lambda: wrap_backbone(perturb(make("mlp")), prediction="x"), (3,)),
    "mlp-flat-u": (lambda: wrap_backbone(perturb(flat_mlp()), sample_shape=FLAT), FLAT),
    "mlp-flat-x": (
        lambda: wrap_backbone(perturb(flat_mlp()), prediction="x", sample_shape=FLAT),
        FLAT,
    ),
    "unet1d-x": (lambda: wrap_backbone(perturb(make("unet1d")), prediction="x"), (5, 3)),
    "transformer-x": (
        lambda: wrap_backbone(perturb(make("transformer")), prediction="x"),
        (5, 3),
    ),
    "unet2d-x": (lambda: wrap_backbone(perturb(make("unet2d")), prediction="x"), (2, 5, 6)),
}


def _cond(model: torch.nn.Module, b: int) -> torch.Tensor | None:
    return torch.randn(b, 2) if backbone_spec(model)["config"]["cond_dim"] else None


def test_data_estimate_of_a_fixed_x0_is_the_velocity_to_it():
    x0 = torch.randn(3, 4)
    net = DataEstimate(FixedData(x0))
    z = torch.randn(3, 4)
    t = torch.tensor([1.0, 0.3, 0.01])  # the last one below the floor 0.05
    u = net(z, torch.zeros(3), t)
    torch.testing.assert_close(u[:2], (z[:2] - x0[:2]) / t[:2, None])
    torch.testing.assert_close(u[2], (z[2] - x0[2]) / 0.05)
    # one Euler step of the average velocity from t to 0 lands on x0
    torch.testing.assert_close(z[:2] - t[:2, None] * u[:2], x0[:2])


@pytest.mark.parametrize("name", NAMES)
def test_data_estimate_reads_the_backbone_output_as_data(name):
    inner = perturb(make(name))
    net = DataEstimate(inner)
    x = torch.randn(SHAPES[name][1])
    r, t = times(x.shape[0])
    t = torch.cat([t[:-1], torch.tensor([0.01])])
    tt = t.clamp_min(0.05).reshape(-1, *([1] * (x.ndim - 1)))
    torch.testing.assert_close(net(x, r, t), (x - inner(x, r, t)) / tt)
    # a fresh backbone outputs F = 0: the one-step sample from noise is zero
    fresh = DataEstimate(make(name))
    one = torch.ones(x.shape[0])
    torch.testing.assert_close(x - fresh(x, 0 * one, one), torch.zeros_like(x))


def test_flattened_reshapes_around_the_flat_network():
    inner = perturb(flat_mlp())
    net = Flattened(inner, FLAT)
    x = torch.randn(4, *FLAT)
    r, t = times(4)
    cond = torch.randn(4, 2)
    out = net(x, r, t, cond)
    assert out.shape == x.shape
    torch.testing.assert_close(out, inner(x.reshape(4, 15), r, t, cond).reshape(4, *FLAT))
    # reshaping is a bijection: the flat and the structured views hold the same numbers
    torch.testing.assert_close(out.reshape(4, 15).reshape(4, *FLAT), out)
    with pytest.raises(InputError, match=r"x: expected a tensor of shape \(B, 5, 3\)"):
        net(torch.randn(4, 3, 5), r, t, cond)


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_wrapped_jvp_matches_finite_difference_and_dual_tensors(combo):
    make, shape = COMBOS[combo]
    model = make().double()
    x = torch.randn(3, *shape, dtype=torch.float64)
    r, t = times(3, torch.float64)
    t = t + 0.05  # away from the floor's kink, where a finite difference is not the derivative
    cond = _cond(model, 3)
    cond = None if cond is None else cond.double()
    v = torch.randn_like(x)

    def f(z, r_, t_):
        return model(z, r_, t_, cond)

    out, tangent = jvp(f, (x, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    eps = 1e-6
    with torch.no_grad():
        fd = (f(x + eps * v, r, t + eps) - f(x - eps * v, r, t - eps)) / (2 * eps)
        torch.testing.assert_close(out, f(x, r, t))
    assert tangent.abs().max() > 1e-3  # not vacuous
    torch.testing.assert_close(tangent, fd, rtol=1e-5, atol=1e-6)
    # the objectives also call models on forward-mode dual tensors
    with fwAD.dual_level():
        dual = f(fwAD.make_dual(x, v), r, fwAD.make_dual(t, torch.ones_like(t)))
        primal, dual_tangent = fwAD.unpack_dual(dual)
        torch.testing.assert_close(primal, out)
        torch.testing.assert_close(dual_tangent, tangent)


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_spec_round_trip_rebuilds_the_wrapped_network(combo):
    make, shape = COMBOS[combo]
    model = make()
    spec = json.loads(json.dumps(backbone_spec(model)))  # must survive JSON
    assert spec["prediction"] == ("x" if combo.endswith("x") else "u")
    assert spec["flatten"] == (list(FLAT) if "flat" in combo else None)
    twin = build_backbone_from_spec(spec)
    assert backbone_spec(twin) == spec
    twin.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, *shape)
    r, t = times(2)
    cond = _cond(model, 2)
    assert torch.equal(twin(x, r, t, cond), model(x, r, t, cond))


def test_old_specs_without_wrapper_keys_still_build():
    model = perturb(make("mlp"))
    spec = backbone_spec(model)
    old = {"name": spec["name"], "config": spec["config"]}
    assert backbone_spec(build_backbone_from_spec(old)) == {
        **old,
        "prediction": "u",
        "flatten": None,
    }
    # a model saved when prediction was a config field: its bare weights load strictly
    legacy = {"name": "mlp", "config": {**spec["config"], "prediction": "x"}}
    net = build_backbone_from_spec(legacy)
    assert isinstance(net, DataEstimate) and backbone_spec(net)["prediction"] == "x"
    net.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(4, 3)
    r, t = times(4)
    torch.testing.assert_close(net(x, r, t), DataEstimate(model)(x, r, t))
    with pytest.raises(InputError, match="'prediction' given twice"):
        build_backbone_from_spec({**legacy, "prediction": "u"})
    with pytest.raises(InputError, match=r"unknown keys \['wrapper'\]"):
        build_backbone_from_spec({**old, "wrapper": "x"})
    with pytest.raises(InputError, match="spec: expected a dict"):
        build_backbone_from_spec({"name": "mlp"})


@pytest.mark.parametrize("name", NAMES)
def test_the_old_prediction_config_field_is_refused(name):
    with pytest.raises(InputError, match="'prediction' is no longer a field.*wrap_backbone"):
        build_backbone(name, **SMALL[name], prediction="x")


def test_wrap_backbone_refuses_what_it_cannot_wrap():
    mlp = make("mlp")
    with pytest.raises(InputError, match="prediction: expected one of"):
        wrap_backbone(mlp, prediction="eps")
    with pytest.raises(InputError, match="dim=15"):
        wrap_backbone(mlp, sample_shape=FLAT)
    with pytest.raises(InputError, match="flat backbone"):
        wrap_backbone(make("unet1d"), sample_shape=(5, 3))
    with pytest.raises(InputError, match="sample_shape"):
        wrap_backbone(flat_mlp(), sample_shape=(15, 0))
    with pytest.raises(InputError, match="sample_shape"):
        Flattened(flat_mlp(), 15)
    with pytest.raises(InputError, match="net: expected a bare backbone"):
        wrap_backbone(wrap_backbone(mlp, prediction="x"), prediction="x")
    with pytest.raises(InputError, match="model: expected an instance"):
        backbone_spec(Flattened(DataEstimate(flat_mlp()), FLAT))  # not wrap_backbone's order
    assert wrap_backbone(mlp) is mlp
