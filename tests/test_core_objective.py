"""The MMF objective checked against independent computations."""

import math

import pytest
import torch
from torch import nn

from meanflow_sci.core import (
    FlowMatching,
    Guidance,
    ModularMeanFlow,
    Regression,
    make_objective,
    objective_from_config,
    sample,
)
from meanflow_sci.errors import InputError


class LinearNet(nn.Module):
    """u = W z + a t + b r: du/dt along tangents (v, 0, 1) is W v + a, known in closed form."""

    def __init__(self, d: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = nn.Parameter(torch.randn(d, d, generator=g, dtype=torch.float64) * 0.3)
        self.a = nn.Parameter(torch.randn(d, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(d, generator=g, dtype=torch.float64))

    def forward(self, x, r, t, cond=None):
        return x @ self.W.T + t[:, None] * self.a + r[:, None] * self.b


class SmallNet(nn.Module):
    """A small nonlinear network of the backbone contract (vectors)."""

    def __init__(self, d: int, hidden: int = 64, cond_dim: int = 0) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.net = nn.Sequential(
            nn.Linear(d + 2 + cond_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, d),
        )

    def forward(self, x, r, t, cond=None):
        parts = [x, t[:, None], (t - r)[:, None]]
        if self.cond_dim:
            c = torch.zeros(x.shape[0], self.cond_dim) if cond is None else cond
            parts.append(torch.nan_to_num(c, nan=0.0))
        return self.net(torch.cat(parts, dim=1))


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def _fixed_inputs(b=8, d=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, d, generator=g, dtype=dtype)
    noise = torch.randn(b, d, generator=g, dtype=dtype)
    t = torch.rand(b, generator=g, dtype=dtype)
    r = t * torch.rand(b, generator=g, dtype=dtype)
    r[:2] = t[:2]  # some samples on the diagonal r = t
    return x, noise, t, r


@pytest.mark.parametrize("backend", ["dual", "func"])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_sg_lambda_gradient_matches_hand_derivation(lam, backend):
    x, noise, t, r = _fixed_inputs()
    model = LinearNet(3)
    obj = ModularMeanFlow(lam=lam, adaptive_p=0.0, jvp_backend=backend)
    out = obj(model, x, t=t, r=r, noise=noise)
    got = _grads(model, out.loss.sum())

    # Hand derivation: z = (1-t)x + t eps, v = eps - x, du/dt = W v + a.
    with torch.no_grad():
        W, a, b = model.W, model.a, model.b
        tt, rr, h = t[:, None], r[:, None], (t - r)[:, None]
        z = (1 - tt) * x + tt * noise
        v = noise - x
        delta = z @ W.T + tt * a + rr * b + h * (v @ W.T + a) - v
        # d||Δ||²/dW = 2 Δ (z + λ h v)^T ; d/da = 2 Δ (t + λ h) ; d/db = 2 Δ r
        gW = 2 * (delta[:, :, None] * (z + lam * h * v)[:, None, :]).sum(0)
        ga = 2 * (delta * (tt + lam * h)).sum(0)
        gb = 2 * (delta * rr).sum(0)
    for g_got, g_ref in zip(got, [gW, ga, gb]):
        torch.testing.assert_close(g_got, g_ref)
    assert out.lam == lam
    torch.testing.assert_close(out.loss, delta.square().sum(1))


def test_gradient_is_affine_in_lambda_on_nonlinear_net():
    torch.manual_seed(0)
    x, noise, t, r = _fixed_inputs(dtype=torch.float32)
    model = SmallNet(3)

    def grads(lam):
        out = ModularMeanFlow(lam=lam, adaptive_p=1.0)(model, x, t=t, r=r, noise=noise)
        return _grads(model, out.loss.mean())

    g0, g1, g5 = grads(0.0), grads(1.0), grads(0.5)
    for a, b, c in zip(g0, g1, g5):
        torch.testing.assert_close(c, a + 0.5 * (b - a), rtol=1e-4, atol=1e-6)
    assert any((a - b).abs().max() > 1e-6 for a, b in zip(g0, g1)), "λ had no effect"


def test_lambda_zero_equals_meanflow_stop_gradient_loss():
    torch.manual_seed(0)
    x, noise, t, r = _fixed_inputs(dtype=torch.float32)
    model = SmallNet(3)
    out = ModularMeanFlow(lam=0.0, adaptive_p=0.0)(model, x, t=t, r=r, noise=noise)
    g_mmf = _grads(model, out.loss.sum())

    # MeanFlow: u_tgt = sg(v - (t - r) du/dt) with du/dt from torch.autograd.functional.jvp.
    z = (1 - t[:, None]) * x + t[:, None] * noise
    v = noise - x
    _, dudt = torch.autograd.functional.jvp(
        lambda z_, r_, t_: model(z_, r_, t_),
        (z, r, t),
        (v, torch.zeros_like(r), torch.ones_like(t)),
    )
    u_tgt = (v - (t - r)[:, None] * dudt).detach()
    ref = (model(z, r, t) - u_tgt).square().sum(1)
    torch.testing.assert_close(out.loss, ref, rtol=1e-5, atol=1e-6)
    g_ref = _grads(model, ref.sum())
    for a, b in zip(g_mmf, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adaptive_weight_and_unweighted_mse():
    x, noise, t, r = _fixed_inputs(dtype=torch.float32)
    model = SmallNet(3)
    plain = ModularMeanFlow(adaptive_p=0.0)(model, x, t=t, r=r, noise=noise)
    weighted = ModularMeanFlow(adaptive_p=1.0, adaptive_c=0.01)(model, x, t=t, r=r, noise=noise)
    torch.testing.assert_close(weighted.mse, plain.mse)
    torch.testing.assert_close(plain.mse, plain.loss / 3)
    torch.testing.assert_close(weighted.loss, plain.loss.detach() / (plain.loss.detach() + 0.01))


def test_diagonal_r_equals_t_is_flow_matching():
    x, noise, t, _ = _fixed_inputs(dtype=torch.float32)
    model = SmallNet(3)
    mmf = ModularMeanFlow(lam=1.0, adaptive_p=0.0)(model, x, t=t, r=t, noise=noise)
    fm = FlowMatching()(model, x, t=t, noise=noise)
    torch.testing.assert_close(mmf.loss, fm.loss)


def test_deterministic_given_t_r_noise_and_random_otherwise():
    x, noise, t, r = _fixed_inputs(dtype=torch.float32)
    model = SmallNet(3)
    obj = ModularMeanFlow()
    a = obj(model, x, t=t, r=r, noise=noise).loss
    b = obj(model, x, t=t, r=r, noise=noise).loss
    assert torch.equal(a, b)
    assert not torch.equal(obj(model, x).loss, obj(model, x).loss)


def test_guidance_trained_into_target_changes_loss_only_with_cond():
    torch.manual_seed(0)
    x, noise, t, r = _fixed_inputs(dtype=torch.float32)
    cond = torch.randn(x.shape[0], 2)
    model = SmallNet(3, cond_dim=2)
    plain = ModularMeanFlow()(model, x, cond, t=t, r=r, noise=noise)
    torch.manual_seed(1)
    guided = ModularMeanFlow(guidance=Guidance(omega=2.0, drop_prob=0.0))(
        model, x, cond, t=t, r=r, noise=noise
    )
    assert not torch.allclose(plain.mse, guided.mse)
    # ω = 1, κ = 0 and no dropout is exactly the unguided objective.
    same = ModularMeanFlow(guidance=Guidance(omega=1.0, drop_prob=0.0))(
        model, x, cond, t=t, r=r, noise=noise
    )
    torch.testing.assert_close(same.loss, plain.loss)


def test_regression_objective_matches_zero_noise_sampler():
    x, *_ = _fixed_inputs(dtype=torch.float32)
    model = SmallNet(3)
    out = Regression()(model, x)
    pred = sample(model, torch.zeros_like(x), mode="regression")
    torch.testing.assert_close(out.loss, (pred - x).square().sum(1))


def test_config_round_trip():
    for obj in [
        ModularMeanFlow(lam="cosine", lam_warmup=7, time_sampler="uniform", ratio_r_neq_t=0.5),
        ModularMeanFlow(lam=0.3, guidance=Guidance(omega=1.5)),
        ModularMeanFlow(tangent="model"),
        ModularMeanFlow(lam="linear", jvp_backend="func", target_field="stf", reference_size=8),
        FlowMatching(time_sampler={"name": "logit_normal", "mu": 0.3}, adaptive_p=0.5),
        FlowMatching(),
        Regression(),
    ]:
        again = objective_from_config(obj.config())
        assert again.config() == obj.config()
        assert again.sampling_mode == obj.sampling_mode
    assert make_objective("fm").sampling_mode == "flow"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"t": 1.5}, "t: expected values in \\[0, 1\\]"),
        ({"t": -0.1}, "t: expected values in \\[0, 1\\]"),
        ({"t": 0.3, "r": 0.5}, "r: expected r <= t"),
        ({"r": 0.5}, "r: expected t to be given"),
    ],
)
def test_bad_times_raise(kwargs, match):
    x = torch.randn(4, 3)
    with pytest.raises(InputError, match=match):
        ModularMeanFlow()(SmallNet(3), x, **kwargs)


def test_bad_inputs_raise():
    model = SmallNet(3)
    x = torch.randn(4, 3)
    with pytest.raises(InputError, match="cond: expected a leading batch dimension of 4"):
        ModularMeanFlow()(model, x, torch.randn(5, 2))
    bad = x.clone()
    bad[0, 0] = math.nan
    with pytest.raises(InputError, match="x: expected finite values"):
        ModularMeanFlow()(model, bad)
    with pytest.raises(InputError, match="lam: expected a value in \\[0, 1\\]"):
        ModularMeanFlow(lam=1.5)
    with pytest.raises(InputError, match="lam: expected the schedule to give"):
        ModularMeanFlow(lam=lambda step: 2.0)(model, x)
    with pytest.raises(InputError, match="objective: expected one of"):
        make_objective("diffusion")
    with pytest.raises(InputError, match="noise: expected shape"):
        ModularMeanFlow()(model, x, noise=torch.randn(4, 2))


@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_jvp_backends_agree_on_a_backbone(lam):
    from meanflow_sci.nn import build_backbone

    torch.manual_seed(0)
    model = build_backbone("unet1d", channels=2, down_dims=(8, 16), cond_dim=3)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    x, noise = torch.randn(6, 5, 2), torch.randn(6, 5, 2)
    cond = torch.randn(6, 3)
    t = torch.rand(6) * 0.5 + 0.5
    r = t * torch.rand(6)
    outs = {}
    for backend in ("dual", "func"):
        obj = ModularMeanFlow(lam=lam, jvp_backend=backend)
        out = obj(model, x, cond, t=t, r=r, noise=noise)
        outs[backend] = (out.loss, _grads(model, out.loss.sum()))
    torch.testing.assert_close(outs["dual"][0], outs["func"][0], rtol=1e-4, atol=1e-6)
    for a, b in zip(outs["dual"][1], outs["func"][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


class ExactDataNet(nn.Module):
    """A data-estimate network whose estimate is the exact target x = A cond:
    u = (z_t - A cond) / max(t, 0.05), the exact average velocity for t >= 0.05."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = a

    def forward(self, z, r, t, cond=None):
        return (z - cond @ self.a.T) / t.clamp_min(0.05)[:, None]


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_x_prediction_of_a_deterministic_map_has_zero_loss(lam):
    """For x = A cond, u = (z_t - x) / t is the exact average velocity for every r <= t."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(5, 2, generator=g, dtype=torch.float64)
    cond = torch.randn(64, 2, generator=g, dtype=torch.float64)
    x = cond @ a.T
    t = 0.05 + 0.95 * torch.rand(64, generator=g, dtype=torch.float64)
    r = t * torch.rand(64, generator=g, dtype=torch.float64)
    out = ModularMeanFlow(lam=lam)(ExactDataNet(a), x, cond, t=t, r=r)
    assert float(out.mse.max()) < 1e-20
    # A wrong data estimate is not: the check can fail.
    bad = ModularMeanFlow(lam=lam)(ExactDataNet(a + 0.1), x, cond, t=t, r=r)
    assert float(bad.mse.mean()) > 1e-3
    # The one-step sample is the target itself, whatever the noise.
    noise = torch.randn(64, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(sample(ExactDataNet(a), noise, cond), x)


def _model_velocity_case():
    """float32 inputs, a third of them on the diagonal; a SmallNet, z_t and its u(z_t, t, t)."""
    torch.manual_seed(0)
    x, noise, t, r = _fixed_inputs(dtype=torch.float32)
    r = torch.where(torch.arange(len(t)) % 3 == 0, t, r)
    model = SmallNet(3)
    z = (1 - t[:, None]) * x + t[:, None] * noise
    with torch.no_grad():
        v_hat = model(z, t, t)
    return x, noise, t, r, model, z, v_hat


def _reference_loss(model, z, r, t, tangent, v_target):
    """||u + (t - r) du/dt - v||² with du/dt by autograd's JVP along (tangent, 0, 1)."""
    _, dudt = torch.autograd.functional.jvp(
        lambda z_, r_, t_: model(z_, r_, t_),
        (z, r, t),
        (tangent, torch.zeros_like(r), torch.ones_like(t)),
    )
    h = (t - r)[:, None]
    return (model(z, r, t) + h * dudt - v_target).square().sum(1).detach()


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_model_tangent_uses_the_models_own_velocity(lam):
    """tangent="model": du/dt along (u(z, t, t), 0, 1); the target is still v."""
    x, noise, t, r, model, z, v_hat = _model_velocity_case()
    out = ModularMeanFlow(lam=lam, adaptive_p=0.0, tangent="model")(model, x, t=t, r=r, noise=noise)
    ref = _reference_loss(model, z, r, t, v_hat, noise - x)
    torch.testing.assert_close(out.loss, ref, rtol=1e-5, atol=1e-6)
    # It differs from MeanFlow's conditional tangent wherever r < t.
    cond_out = ModularMeanFlow(lam=lam, adaptive_p=0.0)(model, x, t=t, r=r, noise=noise)
    moving = t > r
    assert not torch.allclose(out.loss[moving], cond_out.loss[moving])
    torch.testing.assert_close(out.loss[~moving], cond_out.loss[~moving])


def test_model_tangent_keeps_the_exact_solution_of_a_deterministic_map():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(5, 2, generator=g, dtype=torch.float64)
    cond = torch.randn(32, 2, generator=g, dtype=torch.float64)
    t = 0.05 + 0.95 * torch.rand(32, generator=g, dtype=torch.float64)
    r = t * torch.rand(32, generator=g, dtype=torch.float64)
    out = ModularMeanFlow(tangent="model")(ExactDataNet(a), cond @ a.T, cond, t=t, r=r)
    assert float(out.mse.max()) < 1e-20


def test_fd_backend_approximates_the_jvp_and_matches_the_loss():
    """jvp_backend="fd": a backward difference close to the exact JVP, reusing u when fp32."""
    x, noise, t, r, model, z, _ = _model_velocity_case()
    v = noise - x
    exact = ModularMeanFlow.time_derivative(model, z, r, t, v, backend="dual")
    with torch.no_grad():
        u = model(z, r, t)
    for given in (u, None):  # reusing the loss's forward or computing both points
        fd = ModularMeanFlow.time_derivative(model, z, r, t, v, backend="fd", u=given)
        assert float((fd - exact).norm() / exact.norm()) < 5e-3
        assert torch.equal(fd[t == r], torch.zeros_like(fd[t == r]))
    # A low-precision u (from a bf16 autocast forward) is not reused: both points in float32.
    lowp = ModularMeanFlow.time_derivative(model, z, r, t, v, backend="fd", u=u.bfloat16())
    torch.testing.assert_close(lowp, fd)
    # The loss with "fd" is close to the exact one (the error is O(h)).
    out = ModularMeanFlow(adaptive_p=0.0, jvp_backend="fd")(model, x, t=t, r=r, noise=noise)
    ref = ModularMeanFlow(adaptive_p=0.0)(model, x, t=t, r=r, noise=noise)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-2, atol=1e-4)


def test_fd_backend_needs_lam_zero():
    with pytest.raises(InputError, match="jvp_backend.*lam=0.5"):
        ModularMeanFlow(lam=0.5, jvp_backend="fd")
    with pytest.raises(InputError, match="jvp_backend.*lam='linear'"):
        ModularMeanFlow(lam="linear", lam_warmup=10, jvp_backend="fd")
    # time_derivative called directly with λ > 0 refuses too.
    x, noise, t, r = _fixed_inputs(dtype=torch.float32)
    with pytest.raises(InputError, match="jvp_backend.*λ = 0.5"):
        ModularMeanFlow.time_derivative(SmallNet(3), x, r, t, noise, lam=0.5, backend="fd")


def test_bad_tangent_raises():
    with pytest.raises(InputError, match="tangent"):
        ModularMeanFlow(tangent="marginal")


class _RecordTimes(nn.Module):
    """A linear map that records the (r, t) it is called with."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, z, r, t, cond=None):
        self.calls.append((r.detach().clone(), t.detach().clone()))
        return self.lin(z) * (1 + t - r).unsqueeze(1)


@pytest.mark.parametrize("backend", ["auto", "fd"])
def test_no_time_derivative_without_intervals_and_given_times_used_as_given(backend):
    # Every drawn r = t: one forward, no JVP (the batch is plain flow matching).
    obj = ModularMeanFlow(time_sampler="uniform", ratio_r_neq_t=0.0, jvp_backend=backend)
    model = _RecordTimes(3)
    obj(model, torch.randn(64, 3))
    assert len(model.calls) == 1 and torch.equal(*model.calls[0])
    # Times passed in are the loss's own; the time derivative runs on the r < t rows alone.
    model = _RecordTimes(3)
    t, r = torch.tensor([0.9, 0.9, 0.5, 0.4]), torch.tensor([0.2, 0.9, 0.1, 0.4])
    obj(model, torch.randn(4, 3), t=t, r=r)
    assert torch.equal(model.calls[0][0], r) and torch.equal(model.calls[0][1], t)
    assert all(len(c[0]) == 2 for c in model.calls[1:])  # rows 0 and 2


@pytest.mark.parametrize(
    "kwargs",
    [{"target": "model"}, {"coupling": "ot"}, {"interval_warmup": 100}],
)
def test_removed_options_are_refused(kwargs):
    """Options measured without a gain were removed (docs/ablations.md): passing one fails."""
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        ModularMeanFlow(**kwargs)
    if "coupling" in kwargs:
        with pytest.raises(TypeError, match="coupling"):
            FlowMatching(**kwargs)
    cfg = {**ModularMeanFlow().config(), **kwargs}
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        objective_from_config(cfg)


def test_every_objective_follows_the_protocol():
    from meanflow_sci.core import OBJECTIVES, Objective, time_derivative

    model, x = SmallNet(3), torch.randn(4, 3)
    for name, cls in OBJECTIVES.items():
        obj = cls()
        assert isinstance(obj, Objective) and obj.name == name == obj.config()["name"]
        assert obj.sampling_mode in ("mean", "flow", "regression")
        assert isinstance(obj.label_needs(), list)
        with obj.evaluating() as inside:
            assert inside is obj and obj(model, x).loss.shape == (4,)
        assert obj.share_across_ranks(None) is None
    assert ModularMeanFlow.time_derivative is time_derivative
    # Anything else is refused where an objective is expected, naming what was given.
    with pytest.raises(InputError, match="objective: expected one of .* an Objective instance"):
        make_objective(lambda model, x, cond=None, **kw: None)
    with pytest.raises(InputError, match=r"with \['lam'\]"):
        make_objective(ModularMeanFlow(), lam=0.5)
