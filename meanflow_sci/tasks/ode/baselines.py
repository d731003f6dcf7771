"""Baselines that answer the same question as a fitted generative model.

Both expose ``sample(n=None, *, cond=None, steps=1, seed=None)`` like ``FittedModel``, so
:func:`evaluate` scores them the same way. (Multi-step flow matching and the deterministic
regressor are ``meanflow_sci.fit`` with ``objective="fm"`` / ``"regression"`` on the same
backbone, so they are not here.)

- :class:`NearestNeighbour`: the training trajectory whose condition ``[x0, params]`` is nearest
  (after standardising each condition column); unconditionally, random training trajectories.
- :class:`NeuralODE` via :func:`fit_neural_ode`: an MLP vector field ``g(x, params)`` trained
  through ``torchdiffeq.odeint`` on windows of the training trajectories.

Example:
    >>> from meanflow_sci.tasks.ode import simulate, NearestNeighbour, evaluate
    >>> train, test = simulate("van_der_pol", 64, seed=0), simulate("van_der_pol", 8, seed=1)
    >>> nn_baseline = NearestNeighbour(train)
    >>> evaluate(nn_baseline, test)["rel_l2_median"] > 0
    True
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from torchdiffeq import odeint

from meanflow_sci.errors import InputError, check_choice, check_positive_int, describe

from .settings import SETTINGS, check_dataset, condition_of

__all__ = ["NearestNeighbour", "NeuralODE", "fit_neural_ode"]


def _cond_tensor(cond: Any, width: int) -> Tensor:
    if cond is None:
        raise InputError(
            f"cond: the conditional setting needs cond of shape (M, {width}), got None"
        )
    if isinstance(cond, xr.DataArray):
        cond = cond.values
    tensor = torch.as_tensor(
        np.asarray(cond.detach().cpu() if isinstance(cond, Tensor) else cond, dtype=np.float64)
    )
    if tensor.ndim != 2 or tensor.shape[1] != width:
        raise InputError(f"cond: expected shape (M, {width}) ([x0, params]), got {describe(cond)}")
    return tensor


class NearestNeighbour:
    """Look up the training trajectory with the nearest condition.

    Args:
        train_ds: training Dataset from :func:`simulate`.
        setting: ``"conditional"`` or ``"unconditional"``.
        k: average the ``k`` nearest trajectories (1: plain nearest neighbour).
    """

    def __init__(self, train_ds: xr.Dataset, *, setting: str = "conditional", k: int = 1) -> None:
        check_dataset(train_ds, "train_ds")
        self.setting = check_choice("setting", setting, SETTINGS)
        self.k = check_positive_int("k", k)
        self.traj = torch.as_tensor(train_ds["x"].values, dtype=torch.float64)
        cond = condition_of(train_ds, torch.float64)
        self.mean = cond.mean(dim=0)
        # Constant columns (e.g. fixed parameters) must not divide by zero.
        self.std = cond.std(dim=0).where(cond.std(dim=0) > 0, torch.ones(()).double())
        self.keys = (cond - self.mean) / self.std

    def sample(
        self, n: int | None = None, *, cond: Any = None, steps: int = 1, seed: int | None = None
    ) -> Tensor:
        """Trajectories ``(M, T, S)`` (float32); ``steps`` is ignored (a lookup has none)."""
        if self.setting == "unconditional":
            n = check_positive_int("n", n if n is not None else 1)
            gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
            idx = torch.randint(self.traj.shape[0], (n,), generator=gen)
            return self.traj[idx].float()
        query = (_cond_tensor(cond, self.keys.shape[1]) - self.mean) / self.std
        out = []
        # Chunks bound the (M, N) distance matrix for large queries.
        for chunk in query.split(1024):
            nearest = torch.cdist(chunk, self.keys).topk(self.k, largest=False).indices
            out.append(self.traj[nearest].mean(dim=1))
        return torch.cat(out).float()


class _VectorField(nn.Module):
    def __init__(self, state_dim: int, param_dim: int, hidden: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = state_dim + param_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, state_dim))
        self.net = nn.Sequential(*layers)
        self.params: Tensor | None = None

    def forward(self, tau: Tensor, z: Tensor) -> Tensor:
        # Parameters are held constant along a solve, so they ride along as an attribute.
        return self.net(torch.cat((z, self.params), dim=-1))


class NeuralODE:
    """A learned vector field on standardised states, integrated with ``torchdiffeq``.

    Time is rescaled to ``tau in [0, 1]`` over the training grid so that the network's outputs
    stay of order one for every system. Build it with :func:`fit_neural_ode`.
    """

    def __init__(
        self,
        field: _VectorField,
        time: Tensor,
        stats: dict[str, Tensor],
        *,
        history: list[dict[str, float]],
        train_time_s: float,
    ) -> None:
        self.field = field.eval()
        self.time = time
        self.stats = stats
        self.history = history
        self.train_time_s = train_time_s

    @property
    def state_dim(self) -> int:
        return int(self.stats["x_mean"].numel())

    def _tau(self) -> Tensor:
        return (self.time - self.time[0]) / (self.time[-1] - self.time[0])

    def sample(
        self, n: int | None = None, *, cond: Any = None, steps: int = 1, seed: int | None = None
    ) -> Tensor:
        """Integrate from ``cond = [x0, params]`` over the training grid.

        Args:
            cond: ``(M, S + P)``.
            steps: RK4 sub-steps per grid interval.

        Returns:
            ``(M, T, S)`` float32.
        """
        check_positive_int("steps", steps)
        s = self.state_dim
        width = s + int(self.stats["p_mean"].numel())
        c = _cond_tensor(cond, width).float()
        z0 = (c[:, :s] - self.stats["x_mean"]) / self.stats["x_std"]
        p = (c[:, s:] - self.stats["p_mean"]) / self.stats["p_std"]
        tau = self._tau()
        self.field.params = p
        step = float(tau[1] - tau[0]) / steps
        with torch.no_grad():
            z = odeint(self.field, z0, tau, method="rk4", options={"step_size": step})
        self.field.params = None
        return (z.transpose(0, 1) * self.stats["x_std"] + self.stats["x_mean"]).float()


def fit_neural_ode(
    train_ds: xr.Dataset,
    *,
    hidden: int = 128,
    depth: int = 3,
    window: int = 16,
    full_horizon_fraction: float = 0.3,
    batch_size: int = 128,
    max_steps: int = 2000,
    lr: float = 3e-3,
    time_budget_s: float | None = None,
    seed: int = 0,
) -> NeuralODE:
    """Fit a neural ODE ``dz/dtau = g(z, params)`` to the trajectories of ``train_ds``.

    Training integrates (RK4 on the data grid) from a true state over a window of ``window`` grid
    points and regresses the solution on the data; the last ``full_horizon_fraction`` of the
    steps use the whole horizon, which is what evaluation asks for. Short windows first keep
    early gradients tame.

    Args:
        train_ds: Dataset from :func:`simulate` (conditional setting).
        hidden, depth: width and number of hidden layers of the MLP.
        window: window length (grid points) of the first phase.
        full_horizon_fraction: fraction of the steps trained on the full horizon.
        batch_size, max_steps, lr: optimisation (Adam, cosine decay).
        time_budget_s: stop after this many seconds of training (the same wall-clock budget as
            the models it is compared with), whatever ``max_steps`` says.
        seed: initialisation and batch order.

    Returns:
        A :class:`NeuralODE` with ``history`` and ``train_time_s``.
    """
    check_dataset(train_ds, "train_ds")
    check_positive_int("max_steps", max_steps)
    check_positive_int("batch_size", batch_size)
    check_positive_int("window", window, minimum=2)
    if not 0.0 <= full_horizon_fraction <= 1.0:
        raise InputError(
            f"full_horizon_fraction: expected a value in [0, 1], got {full_horizon_fraction!r}"
        )
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(train_ds["x"].values, dtype=torch.float32)
    p = torch.as_tensor(train_ds["params"].values, dtype=torch.float32).reshape(x.shape[0], -1)
    n, n_t, n_s = x.shape
    stats = {
        "x_mean": x.mean(dim=(0, 1)),
        "x_std": x.std(dim=(0, 1)).clamp_min(1e-6),
        "p_mean": p.mean(dim=0),
        "p_std": p.std(dim=0).where(p.std(dim=0) > 0, torch.ones(())),
    }
    z = (x - stats["x_mean"]) / stats["x_std"]
    pn = (p - stats["p_mean"]) / stats["p_std"]
    time_grid = torch.tensor(train_ds["time"].values, dtype=torch.float32)
    tau = (time_grid - time_grid[0]) / (time_grid[-1] - time_grid[0])

    field = _VectorField(n_s, p.shape[1], hidden, depth)
    opt = torch.optim.Adam(field.parameters(), lr=lr)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    switch = int(max_steps * (1 - full_horizon_fraction))
    for step in range(max_steps):
        elapsed = time.perf_counter() - start
        if time_budget_s is not None and elapsed >= time_budget_s:
            break
        frac = (
            step / max_steps
            if time_budget_s is None
            else max(step / max_steps, elapsed / time_budget_s)
        )
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        full = step >= switch if time_budget_s is None else frac >= 1 - full_horizon_fraction
        w = n_t if full else min(window, n_t)
        k0 = int(torch.randint(n_t - w + 1, (1,), generator=gen))
        idx = torch.randint(n, (min(batch_size, n),), generator=gen)
        field.params = pn[idx]
        pred = odeint(field, z[idx, k0], tau[k0 : k0 + w], method="rk4")
        loss = (pred.transpose(0, 1) - z[idx, k0 : k0 + w]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(field.parameters(), 1.0)
        opt.step()
        if step % 10 == 0:
            history.append({"step": step, "loss": float(loss.detach()), "window": w})
    field.params = None
    return NeuralODE(
        field, time_grid, stats, history=history, train_time_s=time.perf_counter() - start
    )
