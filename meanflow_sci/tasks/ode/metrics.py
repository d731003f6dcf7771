"""Metrics of generated trajectories against the torchdiffeq solver.

:func:`evaluate` scores a fitted model (anything with ``sample(n=None, *, cond=None, steps=1,
seed=None)``: a ``FittedModel`` or a baseline) or an array of already generated trajectories
against a test Dataset from :func:`simulate`:

- per-trajectory relative L2 over the horizon (conditional setting: median, 90th percentile, and
  error growth over time),
- per-time-marginal sliced Wasserstein distance and MMD between the generated and the solver
  ensembles,
- re-integration: integrate the true system from each generated initial state and compare,
- the dynamics residual: whether each generated trajectory is a trajectory of the system at all
  (its finite-difference derivative against the vector field evaluated on it), beside the solver
  trajectories' own (discretisation) residual,
- drift of the conserved quantity where the system has one,
- wall-clock sampling time.

Example:
    >>> from meanflow_sci.tasks.ode import simulate, evaluate
    >>> ds = simulate("lotka_volterra", 32)
    >>> evaluate(ds["x"].values, ds)["rel_l2_median"]
    0.0
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from meanflow_sci.errors import InputError, check_choice, check_positive_int, describe

from .settings import SETTINGS, check_dataset, condition_of
from .simulate import integrate
from .systems import ODESystem, get_system

__all__ = [
    "evaluate",
    "relative_l2",
    "error_vs_time",
    "sliced_wasserstein",
    "mmd",
    "marginal_distances",
    "conserved_drift",
    "dynamics_residual",
]


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, (xr.DataArray, xr.Dataset)):
        value = value.to_array().values if isinstance(value, xr.Dataset) else value.values
    if isinstance(value, Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def relative_l2(pred: Tensor, true: Tensor) -> Tensor:
    """Per-trajectory ``||pred - true|| / ||true||`` over time and state.

    Args:
        pred, true: ``(N, T, S)``.

    Returns:
        ``(N,)``.
    """
    num = (pred - true).flatten(1).norm(dim=1)
    den = true.flatten(1).norm(dim=1).clamp_min(1e-12)
    return num / den


def error_vs_time(pred: Tensor, true: Tensor) -> Tensor:
    """Error growth: median over trajectories of ``||pred(t) - true(t)|| / rms_t ||true(t)||``.

    Dividing by the trajectory's RMS state norm (not the norm at time ``t``) keeps the curve finite
    when a trajectory passes near the origin.

    Args:
        pred, true: ``(N, T, S)``.

    Returns:
        ``(T,)``.
    """
    scale = true.norm(dim=2).pow(2).mean(dim=1).sqrt().clamp_min(1e-12)  # (N,)
    err = (pred - true).norm(dim=2) / scale[:, None]
    return err.nanmedian(dim=0).values


def sliced_wasserstein(a: Tensor, b: Tensor, *, n_projections: int = 128, seed: int = 0) -> Tensor:
    """Sliced 2-Wasserstein distance between point clouds, batched over a leading axis.

    Args:
        a: ``(K, N, S)`` or ``(N, S)``.
        b: ``(K, M, S)`` or ``(M, S)``; ``M`` may differ from ``N`` (quantiles are compared).
        n_projections: number of random directions (fixed by ``seed``, shared by all ``K``).

    Returns:
        ``(K,)`` or a scalar: ``sqrt(mean over directions of W2^2 of the projections)``.
    """
    squeeze = a.ndim == 2
    if squeeze:
        a, b = a[None], b[None]
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[-1], n_projections, generator=gen, dtype=torch.float64)
    dirs = (dirs / dirs.norm(dim=0, keepdim=True)).to(a)
    pa = (a @ dirs).sort(dim=1).values  # (K, N, L)
    pb = (b @ dirs).sort(dim=1).values
    if pa.shape[1] != pb.shape[1]:
        levels = max(pa.shape[1], pb.shape[1])
        q = (torch.arange(levels, dtype=a.dtype) + 0.5) / levels
        pa = _quantiles(pa, q)
        pb = _quantiles(pb, q)
    out = (pa - pb).pow(2).mean(dim=(1, 2)).sqrt()
    return out[0] if squeeze else out


def _quantiles(sorted_x: Tensor, q: Tensor) -> Tensor:
    # Linear interpolation of sorted samples (K, N, L) at levels q (Q,), as numpy's default.
    n = sorted_x.shape[1]
    pos = q * (n - 1)
    lo = pos.floor().long().clamp(0, n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    w = (pos - lo).to(sorted_x)[None, :, None]
    return sorted_x[:, lo] * (1 - w) + sorted_x[:, hi] * w


def mmd(a: Tensor, b: Tensor, *, scales: tuple[float, ...] = (0.5, 1.0, 2.0)) -> Tensor:
    """Maximum mean discrepancy with a sum of RBF kernels, batched over a leading axis.

    The bandwidths are ``scales`` times the median pairwise distance within ``b`` (the reference
    ensemble), so the number does not depend on the units of the state. The biased (V-statistic)
    estimate is used: it is exactly zero for identical ensembles and never negative.

    Args:
        a: ``(K, N, S)`` or ``(N, S)``.
        b: ``(K, M, S)`` or ``(M, S)``.

    Returns:
        ``(K,)`` or a scalar: ``sqrt(MMD^2)``.
    """
    squeeze = a.ndim == 2
    if squeeze:
        a, b = a[None], b[None]
    d_aa = torch.cdist(a, a).pow(2)
    d_bb = torch.cdist(b, b).pow(2)
    d_ab = torch.cdist(a, b).pow(2)
    med = d_bb.flatten(1).sqrt().median(dim=1).values
    med = torch.where(med > 0, med, torch.ones_like(med))
    total = torch.zeros(a.shape[0], dtype=a.dtype)
    for s in scales:
        gamma = (1.0 / (2 * (s * med) ** 2))[:, None, None]
        total = total + (
            torch.exp(-gamma * d_aa).mean(dim=(1, 2))
            + torch.exp(-gamma * d_bb).mean(dim=(1, 2))
            - 2 * torch.exp(-gamma * d_ab).mean(dim=(1, 2))
        )
    out = total.clamp_min(0).sqrt()
    return out[0] if squeeze else out


def marginal_distances(
    pred: Any, true: Any, *, n_projections: int = 128, seed: int = 0, max_points: int = 1024
) -> dict[str, list[float]]:
    """Sliced Wasserstein and MMD between the ensembles at every time.

    Args:
        pred: generated trajectories ``(N, T, S)`` (array, tensor or DataArray).
        true: reference trajectories ``(M, T, S)``.
        max_points: at most this many trajectories of each ensemble enter the MMD (its cost is
            quadratic); the first ones are used.

    Returns:
        ``{"sw": [T floats], "mmd": [T floats]}``.
    """
    p = torch.as_tensor(_to_numpy(pred)).transpose(0, 1)  # (T, N, S)
    q = torch.as_tensor(_to_numpy(true)).transpose(0, 1)
    sw = sliced_wasserstein(p, q, n_projections=n_projections, seed=seed)
    dist = mmd(p[:, :max_points], q[:, :max_points])
    return {"sw": sw.tolist(), "mmd": dist.tolist()}


def conserved_drift(system: ODESystem, traj: Tensor, params: Tensor) -> Tensor:
    """Relative drift ``max_t |H(x_t) - H(x_0)| / |H(x_0)|`` per trajectory, ``(N,)``.

    Non-finite where ``H`` is undefined (e.g. a negative population in Lotka-Volterra).
    """
    if system.conserved is None:
        raise InputError(f"system: {system.name!r} declares no conserved quantity")
    n, t, s = traj.shape
    p = params[:, None, :].expand(n, t, params.shape[-1]).reshape(n * t, -1)
    h = system.conserved(traj.reshape(n * t, s), p).reshape(n, t)
    return (h - h[:, :1]).abs().amax(dim=1) / h[:, 0].abs().clamp_min(1e-12)


def dynamics_residual(system: ODESystem, traj: Tensor, params: Tensor, t: Tensor) -> Tensor:
    """Per-trajectory relative dynamics residual ``rms_t |dx/dt - f(t, x, p)| / rms_t |f|``.

    ``dx/dt`` is the second-order finite difference on the grid ``t`` (``torch.gradient``), so a
    trajectory of the solver has a small residual of its own (the discretisation error, which
    shrinks with the grid spacing); jagged or off-manifold samples have a large one.

    Args:
        system: the system.
        traj: trajectories ``(N, T, S)`` on the grid ``t (T,)``.
        params: parameters ``(N, P)``.

    Returns:
        ``(N,)`` (NaN for non-finite trajectories).
    """
    traj = traj.to(torch.float64)
    t = torch.as_tensor(t, dtype=torch.float64)
    n, n_t, n_s = traj.shape
    (deriv,) = torch.gradient(traj, spacing=(t,), dim=1, edge_order=2)
    p = params.to(torch.float64).reshape(n, -1)
    field = torch.stack(
        [system.vector_field(t[k], traj[:, k], p) for k in range(n_t)], dim=1
    ).reshape(n, n_t, n_s)
    num = (deriv - field).pow(2).sum(-1).mean(-1).sqrt()
    den = field.pow(2).sum(-1).mean(-1).sqrt().clamp_min(1e-12)
    return num / den


def _summary(values: Tensor, prefix: str) -> dict[str, float]:
    finite = values[torch.isfinite(values)]
    if finite.numel() == 0:
        nan = float("nan")
        return {f"{prefix}_median": nan, f"{prefix}_p90": nan, f"{prefix}_mean": nan}
    return {
        f"{prefix}_median": float(finite.median()),
        f"{prefix}_p90": float(torch.quantile(finite, 0.9)),
        f"{prefix}_mean": float(finite.mean()),
    }


def _generate(
    model: Any, ds: xr.Dataset, setting: str, n: int, steps: int, seed: int, repeats: int
) -> tuple[np.ndarray, float | None]:
    if not hasattr(model, "sample"):
        return _to_numpy(model), None
    kwargs: dict[str, Any] = {"steps": steps, "seed": seed}
    if setting == "conditional":
        kwargs["cond"] = condition_of(ds)
    else:
        kwargs["n"] = n
    times = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = model.sample(**kwargs)
        times.append(time.perf_counter() - start)
    return _to_numpy(out), float(np.median(times))


def evaluate(
    model_or_samples: Any,
    test_ds: xr.Dataset,
    *,
    steps: int = 1,
    setting: str = "conditional",
    n_samples: int | None = None,
    seed: int = 0,
    reintegrate: bool = True,
    max_reintegrate: int = 256,
    n_projections: int = 128,
    timing_repeats: int = 1,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    system: str | ODESystem | None = None,
) -> dict[str, Any]:
    """Score generated trajectories against the solver's.

    Args:
        model_or_samples: an object with ``sample(n=None, *, cond=None, steps=1, seed=None)``
            (a ``FittedModel`` or a baseline), or generated trajectories ``(N, T, S)`` or
            ``(N, T * S)`` (array, tensor or DataArray). In the conditional setting row ``i``
            must answer test sample ``i``.
        test_ds: Dataset from :func:`simulate` (the solver's answer).
        steps: sampling steps passed to ``model.sample``.
        setting: ``"conditional"`` (the model is asked for ``cond = [x0, params]`` of every test
            sample and compared trajectory by trajectory) or ``"unconditional"`` (the model draws
            ``n_samples`` trajectories, compared as an ensemble).
        n_samples: ensemble size in the unconditional setting (default: the test set size).
        seed: sampling seed.
        reintegrate: run the re-integration check (the true system from each generated initial
            state; at most ``max_reintegrate`` trajectories).
        n_projections: directions of the sliced Wasserstein distance.
        timing_repeats: sample this many times and report the median wall-clock time.
        rtol, atol: tolerances of the re-integration solve (dopri5).
        system: the system (name or instance); by default the one named in ``test_ds.attrs``
            (pass the instance for a system that was simulated without being registered).

    Returns:
        A JSON-able dict. Always: ``setting``, ``n``, ``steps``, ``nonfinite_fraction``,
        ``sw_mean``, ``sw_per_time``, ``mmd_mean``, ``mmd_per_time``, ``time``; conditional:
        ``rel_l2_median``, ``rel_l2_p90``, ``rel_l2_mean``, ``error_vs_time``; with a model:
        ``sample_time_s`` and ``sample_time_per_traj_ms``; with ``reintegrate``:
        ``reintegration_rel_l2_median`` / ``_p90``; ``dynamics_residual_median`` / ``_p90`` of
        the finite samples and the solver trajectories' own ``dynamics_residual_solver``
        (:func:`dynamics_residual`); for systems with a conserved quantity:
        ``conserved_drift_median`` / ``_p90`` (and the solver's own, ``conserved_drift_solver``).

    Raises:
        InputError: a malformed Dataset, unknown setting, or samples whose shape does not match.
    """
    check_dataset(test_ds, "test_ds")
    check_choice("setting", setting, SETTINGS)
    check_positive_int("steps", steps)
    check_positive_int("timing_repeats", timing_repeats)
    system = get_system(str(test_ds.attrs.get("system", "")) if system is None else system)
    true = torch.as_tensor(test_ds["x"].values, dtype=torch.float64)
    n_test, n_t, n_s = true.shape
    n = n_test if n_samples is None or setting == "conditional" else n_samples
    check_positive_int("n_samples", n)

    raw, sample_time = _generate(model_or_samples, test_ds, setting, n, steps, seed, timing_repeats)
    if raw.ndim == 2 and raw.shape[1] == n_t * n_s:
        raw = raw.reshape(raw.shape[0], n_t, n_s)
    if raw.ndim != 3 or raw.shape[1:] != (n_t, n_s):
        raise InputError(
            f"model_or_samples: expected trajectories of shape (N, {n_t}, {n_s}) or "
            f"(N, {n_t * n_s}), got {describe(raw)}"
        )
    if setting == "conditional" and raw.shape[0] != n_test:
        raise InputError(
            f"model_or_samples: the conditional setting needs one trajectory per test sample "
            f"({n_test}), got {raw.shape[0]}"
        )
    pred = torch.as_tensor(raw)
    finite = torch.isfinite(pred).flatten(1).all(dim=1)

    result: dict[str, Any] = {
        "setting": setting,
        "system": system.name,
        "n": int(pred.shape[0]),
        "steps": int(steps),
        "nonfinite_fraction": float(1 - finite.double().mean()),
        "time": test_ds["time"].values.tolist(),
    }
    if setting == "conditional":
        rel = relative_l2(pred, true)
        result.update(_summary(rel, "rel_l2"))
        result["error_vs_time"] = error_vs_time(pred, true).tolist()

    # Marginals of the finite trajectories only: one NaN row would poison every distance.
    good = pred[finite]
    if good.shape[0] >= 2:
        dist = marginal_distances(good, true, n_projections=n_projections, seed=seed)
        result["sw_per_time"] = dist["sw"]
        result["mmd_per_time"] = dist["mmd"]
        result["sw_mean"] = float(np.mean(dist["sw"]))
        result["mmd_mean"] = float(np.mean(dist["mmd"]))
    else:
        result.update(
            sw_per_time=None, mmd_per_time=None, sw_mean=float("nan"), mmd_mean=float("nan")
        )

    params = torch.as_tensor(test_ds["params"].values, dtype=torch.float64).reshape(n_test, -1)
    # Conditional rows answer their own test sample; unconditional ones borrow parameters
    # cyclically (the unconditional setting normally uses one fixed parameter set).
    p_rows = params[torch.arange(pred.shape[0]) % n_test]

    if reintegrate:
        idx = torch.nonzero(finite).flatten()[:max_reintegrate]
        if idx.numel():
            grid = torch.tensor(test_ds["time"].values, dtype=torch.float64)
            try:
                again = integrate(system, pred[idx, 0], p_rows[idx], grid, rtol=rtol, atol=atol)
                result.update(_summary(relative_l2(pred[idx], again), "reintegration_rel_l2"))
            except (AssertionError, RuntimeError):
                # dopri5 gives up (step size underflow) on blown-up generated initial states.
                result.update(_summary(torch.tensor([float("nan")]), "reintegration_rel_l2"))

    grid = torch.tensor(test_ds["time"].values, dtype=torch.float64)
    if finite.any():
        resid = dynamics_residual(system, pred[finite], p_rows[finite], grid)
        result.update(_summary(resid, "dynamics_residual"))
    result["dynamics_residual_solver"] = float(
        dynamics_residual(system, true, params, grid).median()
    )

    if system.conserved is not None:
        drift = conserved_drift(system, pred, p_rows)
        result.update(_summary(drift, "conserved_drift"))
        result["conserved_drift_finite_fraction"] = float(torch.isfinite(drift).double().mean())
        result["conserved_drift_solver"] = float(conserved_drift(system, true, params).median())

    if sample_time is not None:
        result["sample_time_s"] = sample_time
        result["sample_time_per_traj_ms"] = 1e3 * sample_time / max(1, pred.shape[0])
    return result
