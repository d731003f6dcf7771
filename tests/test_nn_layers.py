"""Lean forward-mode layers: same values and tangents as PyTorch's own formulas."""

import pytest
import torch
from torch.func import jvp

from meanflow_sci.core import ModularMeanFlow
from meanflow_sci.nn import build_backbone
from meanflow_sci.nn import layers as L

CASES = [
    ("linear", lambda: L.Linear(6, 5), (7, 6)),
    ("conv1d", lambda: L.Conv1d(3, 4, 5, padding=2), (2, 3, 9)),
    ("conv1d-stride", lambda: L.Conv1d(3, 4, 3, stride=2, padding=1), (2, 3, 9)),
    ("convT1d", lambda: L.ConvTranspose1d(3, 3, 4, stride=2, padding=1), (2, 3, 5)),
    ("conv2d", lambda: L.Conv2d(2, 4, 3, padding=1), (2, 2, 5, 6)),
    ("groupnorm", lambda: L.GroupNorm(2, 4), (3, 4, 5, 2)),
    ("groupnorm-1d", lambda: L.GroupNorm(2, 4), (3, 4, 7)),
    ("layernorm", lambda: L.LayerNorm(6), (4, 3, 6)),
    ("layernorm-plain", lambda: L.LayerNorm(6, elementwise_affine=False), (4, 6)),
    ("silu", lambda: L.SiLU(), (4, 6)),
    ("gelu", lambda: L.GELU(), (4, 6)),
    ("mish", lambda: L.mish, (4, 6)),
]


@pytest.mark.parametrize("name, make, shape", CASES, ids=[c[0] for c in CASES])
def test_lean_tangent_equals_native(name, make, shape):
    torch.manual_seed(0)
    mod = make()
    if isinstance(mod, torch.nn.Module):
        for p in mod.parameters():
            p.data.normal_(0, 0.5)
    x = torch.randn(*shape, dtype=torch.float64)
    xt = torch.randn_like(x)
    if isinstance(mod, torch.nn.Module):
        mod.double()
    with torch.no_grad():
        y_lean, t_lean = jvp(mod, (x,), (xt,))
    with torch.enable_grad():  # gradients on: the native formulas
        y_ref, t_ref = jvp(mod, (x,), (xt,))
    torch.testing.assert_close(y_lean, y_ref)
    torch.testing.assert_close(t_lean, t_ref)
    # and against a central finite difference
    eps = 1e-6
    with torch.no_grad():
        fd = (mod(x + eps * xt) - mod(x - eps * xt)) / (2 * eps)
    torch.testing.assert_close(t_lean, fd, rtol=1e-5, atol=1e-6)


def test_lean_path_is_taken_only_without_gradients():
    seen = []
    x = torch.randn(3, 4)

    def probe(z):
        seen.append(L.use_lean_jvp(z))
        return z

    with torch.no_grad():
        jvp(probe, (x,), (x,))
        probe(x)  # not inside a transform
    jvp(probe, (x,), (x,))
    assert seen == [True, False, False]
    old = L.set_lean_jvp(False)
    with torch.no_grad():
        jvp(probe, (x,), (x,))
    L.set_lean_jvp(old)
    assert seen[-1] is False


@pytest.mark.parametrize(
    "name, kwargs, shape",
    [
        ("mlp", {"dim": 3, "hidden": 16, "depth": 2}, (5, 3)),
        ("unet1d", {"channels": 2, "down_dims": (8, 16)}, (3, 7, 2)),
        ("transformer", {"channels": 2, "width": 16, "depth": 1, "heads": 2}, (3, 5, 2)),
        (
            "unet2d",
            {"in_channels": 1, "base": 8, "channel_mults": (1, 2), "resolution": 8},
            (2, 1, 6, 6),
        ),
    ],
)
def test_objective_time_derivative_same_with_lean_layers(name, kwargs, shape):
    torch.manual_seed(0)
    model = build_backbone(name, **kwargs)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    z, v = torch.randn(*shape), torch.randn(*shape)
    t = torch.rand(shape[0]) * 0.5 + 0.5
    r = t * 0.3
    lean = ModularMeanFlow.time_derivative(model, z, r, t, v, lam=0.0)
    old = L.set_lean_jvp(False)
    try:
        native = ModularMeanFlow.time_derivative(model, z, r, t, v, lam=0.0)
    finally:
        L.set_lean_jvp(old)
    assert lean.abs().max() > 0
    torch.testing.assert_close(lean, native, rtol=1e-4, atol=1e-5)
