"""Training on a Gaussian problem whose velocities and transport maps are known in closed form.

Data ``x ~ N(M, S²)`` in one dimension. On the path ``z_t = (1 - t) x + t eps`` the marginals are
``N(mu_t, sigma_t²)`` with ``mu_t = (1 - t) M`` and ``sigma_t² = (1 - t)² S² + t²``, and the flow
between them is affine: ``z_r = mu_r + sigma_r / sigma_t · (z_t - mu_t)``. So the instantaneous
velocity, the average velocity ``u(z, r, t) = (z - z_r) / (t - r)`` and the one-step map
``eps -> M + S eps`` are all exact. The test network is affine in ``z`` with coefficients from a
small MLP of the times, so the tests probe the objective's fixed point, not network capacity.
"""

import torch
from torch import nn

from meanflow_sci.core import FlowMatching, ModularMeanFlow, sample

M, S = 2.0, 0.5


class AffineInZ(nn.Module):
    """u(z, r, t) = a(t, t - r) z + b(t, t - r)."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x, r, t, cond=None):
        a, b = self.net(torch.stack([t, t - r], dim=1)).unbind(1)
        return a[:, None] * x + b[:, None]


def _train(objective, steps: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = AffineInZ()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-4)
    for step in range(steps):
        x = M + S * torch.randn(512, 1)
        loss = objective(model, x, step=step).loss.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


def _mu_sigma(t):
    return (1 - t) * M, torch.sqrt((1 - t) ** 2 * S**2 + t**2)


def _true_velocity(z, t):
    mu, sig = _mu_sigma(t)
    dmu = -M
    dsig = (t - (1 - t) * S**2) / sig
    return dmu + dsig / sig * (z - mu)


def _true_average_velocity(z, r, t):
    mu_t, sig_t = _mu_sigma(t)
    mu_r, sig_r = _mu_sigma(r)
    z_r = mu_r + sig_r / sig_t * (z - mu_t)
    return (z - z_r) / (t - r)


def _grid():
    t = torch.tensor([0.3, 0.6, 0.9]).repeat_interleave(5)
    _, sig = _mu_sigma(t)
    z = (1 - t) * M + torch.linspace(-1.5, 1.5, 5).repeat(3) * sig
    return z, t


def test_flow_matching_recovers_instantaneous_velocity():
    torch.set_num_threads(1)
    model = _train(FlowMatching(), 1500)
    z, t = _grid()
    with torch.no_grad():
        u = model(z[:, None], t, t)[:, 0]
    err = (u - _true_velocity(z, t)).abs().max().item()
    assert err < 0.2, f"u(z, t, t) is off the instantaneous velocity by {err:.3f}"


def test_meanflow_diagonal_and_average_velocity_and_one_step_map():
    torch.set_num_threads(1)
    model = _train(
        ModularMeanFlow(lam=0.0, time_sampler="uniform", ratio_r_neq_t=0.75, adaptive_p=0.0), 2000
    )
    z, t = _grid()
    with torch.no_grad():
        u_diag = model(z[:, None], t, t)[:, 0]
        r = 0.25 * t
        u_avg = model(z[:, None], r, t)[:, 0]
    err_diag = (u_diag - _true_velocity(z, t)).abs().max().item()
    assert err_diag < 0.3, f"u(z, t, t) off the instantaneous velocity by {err_diag:.3f}"
    err_avg = (u_avg - _true_average_velocity(z, r, t)).abs().max().item()
    assert err_avg < 0.5, f"u(z, r, t) off the average velocity by {err_avg:.3f}"

    eps = torch.linspace(-2.0, 2.0, 41)[:, None]
    err = (sample(model, eps, steps=1) - (M + S * eps)).abs()
    assert err.max().item() < 0.2, f"one-step map max error {err.max().item():.3f}"
    gen = sample(model, torch.randn(4000, 1, generator=torch.Generator().manual_seed(3)))
    assert abs(gen.mean().item() - M) < 0.06
    assert abs(gen.std().item() - S) < 0.06
    two = sample(model, eps, steps=2)
    assert (two - (M + S * eps)).abs().max().item() < 0.2
