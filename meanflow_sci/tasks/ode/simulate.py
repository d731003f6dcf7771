"""Ground-truth trajectories with ``torchdiffeq.odeint``, batched over samples and parameters.

Example:
    >>> from meanflow_sci.tasks.ode import simulate
    >>> ds = simulate("van_der_pol", 8, seed=0)
    >>> ds["x"].dims
    ('sample', 'time', 'state')
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor
from torchdiffeq import odeint

from meanflow_sci.errors import InputError, check_finite, check_positive_int, describe

from .systems import ODESystem, get_system

__all__ = ["simulate", "integrate", "sample_params", "sample_x0"]


def _max_norm(x: Tensor) -> Tensor:
    # torchdiffeq's default error norm is an RMS over the whole batch, so one hard trajectory
    # among many would be averaged away; the max norm holds every sample to the tolerances.
    return x.abs().max()


def integrate(
    system: str | ODESystem,
    x0: Tensor,
    params: Tensor,
    t: Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> Tensor:
    """Integrate a batch of initial states in one ``odeint`` call (no input checks).

    Args:
        system: name or instance.
        x0: initial states ``(B, S)``.
        params: parameters ``(B, P)``.
        t: increasing time grid ``(T,)``; ``x0`` is the state at ``t[0]``.
        method, rtol, atol: passed to ``torchdiffeq.odeint``.

    Returns:
        Trajectories ``(B, T, S)`` (sample first, unlike ``odeint``).
    """
    system = get_system(system)
    t = t.to(dtype=x0.dtype, device=x0.device)
    params = params.to(dtype=x0.dtype, device=x0.device)

    def func(time: Tensor, x: Tensor) -> Tensor:
        return system.vector_field(time, x, params)

    options = {"norm": _max_norm} if method in _ADAPTIVE else None
    with torch.no_grad():
        out = odeint(func, x0, t, rtol=rtol, atol=atol, method=method, options=options)
    return out.transpose(0, 1)


_ADAPTIVE = {"dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun"}


def sample_params(system: ODESystem, n: int, generator: torch.Generator) -> Tensor:
    """Parameters drawn uniformly from the declared ranges, ``(n, P)`` float64."""
    if system.param_dim == 0:
        return torch.zeros(n, 0, dtype=torch.float64)
    lo = torch.tensor([r[0] for r in system.param_ranges], dtype=torch.float64)
    hi = torch.tensor([r[1] for r in system.param_ranges], dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(
        n, system.param_dim, generator=generator, dtype=torch.float64
    )


def sample_x0(system: ODESystem, n: int, generator: torch.Generator) -> Tensor:
    """Initial states drawn uniformly from the declared box, ``(n, S)`` float64."""
    lo = torch.tensor([r[0] for r in system.x0_ranges], dtype=torch.float64)
    hi = torch.tensor([r[1] for r in system.x0_ranges], dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(
        n, system.state_dim, generator=generator, dtype=torch.float64
    )


def _as_rows(name: str, value: Any, n: int, width: int, what: str) -> Tensor:
    """Turn ``value`` ((width,) or (n, width)) into a float64 tensor ``(n, width)``."""
    if isinstance(value, (xr.DataArray, xr.Dataset)):
        raise InputError(
            f"{name}: expected an array of shape ({n}, {width}) or ({width},), "
            f"got an xarray object; pass .values"
        )
    try:
        tensor = torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise InputError(f"{name}: expected numbers, got {describe(value)}") from err
    if tensor.ndim == 1:
        tensor = tensor.unsqueeze(0).expand(n, -1)
    if tensor.ndim != 2 or tensor.shape[1] != width:
        raise InputError(
            f"{name}: expected shape ({n}, {width}) or ({width},) ({width} = number of {what}), "
            f"got {describe(value)}"
        )
    if tensor.shape[0] != n:
        raise InputError(f"{name}: expected {n} rows (n={n}), got {describe(value)}")
    check_finite(name, tensor)
    return tensor.clone()


def _check_time(t: Any) -> Tensor:
    try:
        grid = torch.as_tensor(np.asarray(t, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise InputError(f"t: expected a 1-D array of times, got {describe(t)}") from err
    if grid.ndim != 1 or grid.numel() < 2:
        raise InputError(f"t: expected a 1-D time grid with at least 2 points, got {describe(t)}")
    check_finite("t", grid)
    steps = grid[1:] - grid[:-1]
    if not bool((steps > 0).all()):
        k = int(torch.nonzero(steps <= 0)[0])
        raise InputError(
            f"t: expected a strictly increasing time grid, got t[{k}]={float(grid[k])!r} "
            f">= t[{k + 1}]={float(grid[k + 1])!r}"
        )
    return grid


def simulate(
    system: str | ODESystem,
    n: int,
    *,
    t: Any = None,
    params: Any = None,
    x0: Any = None,
    seed: int = 0,
    method: str = "dopri5",
    rtol: float = 1e-7,
    atol: float = 1e-9,
    allow_extrapolation: bool = False,
) -> xr.Dataset:
    """Simulate ``n`` trajectories of ``system`` in one batched ``torchdiffeq.odeint`` call.

    Args:
        system: a registered name (see ``SYSTEMS``) or an :class:`ODESystem`.
        n: number of trajectories.
        t: time grid ``(T,)``, strictly increasing; the system's default grid when ``None``.
        params: ``None`` draws each sample's parameters uniformly from the declared ranges;
            ``"default"`` uses the system's default parameters for every sample; an array
            ``(P,)`` (shared) or ``(n, P)`` (per sample) gives them explicitly.
        x0: ``None`` draws initial states uniformly from the declared box; ``"attractor"`` draws
            them from the box and then integrates for ``system.burn_in`` time units first (e.g.
            Lorenz-63 on its attractor); an array ``(S,)`` or ``(n, S)`` gives them explicitly.
        seed: seed of the random draws (the solver itself is deterministic).
        method, rtol, atol: ``torchdiffeq.odeint`` solver and tolerances (in float64).
        allow_extrapolation: accept parameters outside their declared ranges.

    Returns:
        ``xarray.Dataset`` with ``x (sample, time, state)``, ``x0 (sample, state)`` and
        ``params (sample, param)``; coords ``sample``, ``time``, ``state``, ``param``; attrs
        naming the system, solver, tolerances, seed and how initial states were drawn.

    Raises:
        InputError: unknown system, bad ``n``, wrong state or parameter dimension, parameters out
            of range, a non-increasing time grid or non-finite initial states.
    """
    system = get_system(system)
    check_positive_int("n", n)
    if method not in _SOLVERS:
        raise InputError(f"method: expected one of {sorted(_SOLVERS)}, got {method!r}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InputError(f"{name}: expected a positive number, got {value!r}")
    grid = system.time_grid() if t is None else _check_time(t)
    gen = torch.Generator().manual_seed(int(seed))

    # Parameters first, so that the random stream for x0 does not depend on how they were given.
    p_draw = sample_params(system, n, gen)
    if params is None:
        p = p_draw
        params_mode = "uniform"
    elif isinstance(params, str):
        if params != "default":
            raise InputError(f"params: expected None, 'default' or an array, got {params!r}")
        p = system.default_param_tensor().unsqueeze(0).expand(n, -1).clone()
        params_mode = "default"
    else:
        p = _as_rows("params", params, n, system.param_dim, f"{system.name} parameters")
        params_mode = "given"
    if not allow_extrapolation:
        _check_param_range(system, p)

    x_draw = sample_x0(system, n, gen)
    if x0 is None or (isinstance(x0, str) and x0 == "attractor"):
        start = x_draw
        x0_mode = "uniform"
        if isinstance(x0, str):
            x0_mode = "attractor"
            if system.burn_in > 0:
                span = torch.tensor([0.0, system.burn_in], dtype=torch.float64)
                start = integrate(system, start, p, span, method=method, rtol=rtol, atol=atol)[
                    :, -1
                ]
    elif isinstance(x0, str):
        raise InputError(f"x0: expected None, 'attractor' or an array, got {x0!r}")
    else:
        start = _as_rows("x0", x0, n, system.state_dim, f"{system.name} states")
        x0_mode = "given"

    traj = integrate(system, start, p, grid, method=method, rtol=rtol, atol=atol)
    if not bool(torch.isfinite(traj).all()):
        bad = int((~torch.isfinite(traj)).any(dim=(1, 2)).sum())
        raise InputError(
            f"simulate: {bad} of {n} trajectories of {system.name!r} became non-finite; "
            "check the parameters, initial states and time grid"
        )

    return xr.Dataset(
        data_vars={
            "x": (("sample", "time", "state"), traj.numpy()),
            "x0": (("sample", "state"), start.numpy()),
            "params": (("sample", "param"), p.numpy()),
        },
        coords={
            "sample": np.arange(n),
            "time": grid.numpy(),
            "state": list(system.state_names),
            "param": list(system.param_names),
        },
        attrs={
            "system": system.name,
            "solver": "torchdiffeq.odeint",
            "method": method,
            "rtol": float(rtol),
            "atol": float(atol),
            "seed": int(seed),
            "x0_mode": x0_mode,
            "params_mode": params_mode,
            "burn_in": float(system.burn_in) if x0_mode == "attractor" else 0.0,
        },
    )


_SOLVERS = {
    "dopri5",
    "dopri8",
    "bosh3",
    "fehlberg2",
    "adaptive_heun",
    "euler",
    "midpoint",
    "heun3",
    "rk4",
    "explicit_adams",
    "implicit_adams",
}


def _check_param_range(system: ODESystem, p: Tensor) -> None:
    for j, (name, (lo, hi)) in enumerate(zip(system.param_names, system.param_ranges, strict=True)):
        col = p[:, j]
        outside = (col < lo) | (col > hi)
        if bool(outside.any()):
            worst = float(col[outside][0])
            raise InputError(
                f"params: {system.name} parameter {name!r} must lie in [{lo}, {hi}] (its "
                f"declared range), got {worst!r}; pass allow_extrapolation=True to simulate "
                "outside the range"
            )
