"""The forecasting setting: from a noisy, possibly partial observed window, an ensemble of the next
``H`` steps, one network evaluation per member.

A :class:`ForecastSetting` fixes the window length ``W``, the horizon ``H``, the observed state
components and the observation noise (a standard deviation per observed component, in the data's
units). :meth:`ForecastSetting.inputs` turns a Dataset from :func:`simulate` into the pair that
``meanflow_sci.fit`` takes: the condition is the noisy observed window flattened to ``W * k``
numbers, the data the true full state over the next ``H`` grid points; fit it with
``recipe=setting.recipe`` (a distribution of futures, not the deterministic-map recipe that the
automatic rule picks for float conditions). :func:`forecast` samples an
ensemble per observation, with the spread factors of :func:`calibrate_spread` (measured on windows
held out of the fit) when given; :func:`reference_ensemble` is the solver's calibrated answer.

The solver reference: for each test trajectory, ``K`` candidate initial states are drawn around the
true state at the window's first point (Gaussian, standard deviation the noise level times each
state's spread); each is integrated through window and horizon with torchdiffeq; candidates are
weighted by the likelihood of the observed window under the noise model divided by their proposal
density (a prior that is flat near the truth), and ``M`` members are drawn by systematic
resampling. Candidates outside the box the trajectories of the Dataset cover (each state's range)
get weight zero and are not integrated: the prior is truncated to the attractor's extent, so that a
start near a boundary of the state space (a population near zero) does not propose states the
system never visits, which can make the equations stiff or blow up. The candidates are integrated
in batches of at most ``_REFERENCE_BATCH`` rows, so that one stiff member sets the adaptive step of
its batch only. The effective sample size of the weights is returned with it, so a reference with
too few distinct candidates shows.

Example:
    >>> from meanflow_sci.tasks import ode
    >>> ds = ode.simulate("lorenz63", 8, x0="attractor", params="default")
    >>> setting = ode.forecast_setting(ds, window=16, horizon=32, noise=0.05)
    >>> cond, target = setting.inputs(ds)
    >>> tuple(cond.shape), tuple(target.shape)
    ((8, 48), (8, 32, 3))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from meanflow_sci.errors import InputError, check_positive_int, describe

from .scores import check_finite, ensemble_array, spread_and_error
from .settings import check_dataset
from .simulate import integrate
from .systems import ODESystem, get_system

__all__ = [
    "ForecastSetting",
    "forecast_setting",
    "forecast",
    "calibrate_spread",
    "reference_ensemble",
    "forecast_ensemble_array",
]


@dataclass(frozen=True)
class ForecastSetting:
    """A forecasting task on trajectories sampled on a fixed grid.

    Attributes:
        window: observed points ``W`` (the first ``W`` of each trajectory).
        horizon: forecast points ``H`` (the ``H`` after the window).
        observed: indices of the observed state components.
        noise: observation-noise standard deviation as a fraction of each component's spread.
        scale: spread of every state component in the data the setting was made from (the
            noise of component ``j`` is ``noise * scale[j]`` in data units, and so is the
            proposal width of :func:`reference_ensemble`).
        dt: grid spacing (lead times are ``dt, 2 dt, ..., H dt``).
        state_names: names of all state components.
    """

    window: int
    horizon: int
    observed: tuple[int, ...]
    noise: float
    scale: tuple[float, ...]
    dt: float
    state_names: tuple[str, ...]

    @property
    def recipe(self) -> str:
        """The recipe to fit forecasts with: ``"trajectory_forecast"``.

        ``fit``'s automatic rule picks ``"trajectory_map"`` for float conditions, whose
        data-estimate output collapses the ensemble: on dysts Rossler (2048 windows, 1500 steps)
        its one-step members had spread-skill 0.09 and 90 % coverage 0.30, against 1.85 and
        0.98 for this recipe and 1.01 and 0.92 for the solver (benchmarks/NOTES.md, "Chaos").
        Its one-step ensembles are over-dispersed on slow flows: fit on 7/8 of the windows and
        pass :func:`calibrate_spread` of the other 1/8 to :func:`forecast`.
        """
        return "trajectory_forecast"

    @property
    def lead_time(self) -> np.ndarray:
        """Time since the last observation of each forecast point, ``(H,)``."""
        return self.dt * np.arange(1, self.horizon + 1, dtype=np.float64)

    @property
    def sigma(self) -> tuple[float, ...]:
        """Observation-noise standard deviation of each observed component, in data units."""
        return tuple(self.noise * self.scale[j] for j in self.observed)

    def _check(self, ds: xr.Dataset, name: str = "ds") -> np.ndarray:
        check_dataset(ds, name)
        x = ds["x"].values
        need = self.window + self.horizon
        if x.shape[1] < need:
            raise InputError(
                f"{name}: the forecast setting needs {need} time points (window {self.window} + "
                f"horizon {self.horizon}), got trajectories of {x.shape[1]}"
            )
        if x.shape[2] != len(self.state_names):
            raise InputError(f"{name}: expected {len(self.state_names)} states, got {x.shape[2]}")
        return x

    def observe(self, x: np.ndarray, seed: int = 0) -> np.ndarray:
        """Noisy observed windows ``(N, W, k)`` of true trajectories ``x (N, >= W, S)``."""
        rng = np.random.default_rng(seed)
        win = x[:, : self.window][..., list(self.observed)]
        return win + np.asarray(self.sigma) * rng.standard_normal(win.shape)

    def inputs(
        self, ds: xr.Dataset, *, seed: int = 0, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """``(cond, target)`` for ``meanflow_sci.fit``: noisy observed windows flattened to
        ``(N, W * k)`` and the true future ``(N, H, S)``; ``seed`` draws the noise."""
        x = self._check(ds)
        obs = self.observe(x, seed)
        target = x[:, self.window : self.window + self.horizon]
        return (
            torch.as_tensor(obs.reshape(len(x), -1), dtype=dtype),
            torch.as_tensor(target, dtype=dtype),
        )

    def truth(self, ds: xr.Dataset) -> np.ndarray:
        """The verifying future ``(N, H, S)`` of each trajectory."""
        x = self._check(ds)
        return x[:, self.window : self.window + self.horizon]


def forecast_setting(
    ds: xr.Dataset,
    *,
    window: int,
    horizon: int,
    observed: Any = None,
    noise: float = 0.05,
) -> ForecastSetting:
    """A :class:`ForecastSetting` on the grid of ``ds`` (a Dataset from :func:`simulate`).

    Args:
        ds: trajectories that fix the grid and the spread of each state (use the training set).
        window: observed points ``W >= 1``.
        horizon: forecast points ``H >= 1``; ``W + H`` must fit in the trajectories.
        observed: indices (or names) of the observed components; all when ``None``.
        noise: observation-noise standard deviation as a fraction of each observed component's
            spread in ``ds`` (``>= 0``).

    Raises:
        InputError: a window and horizon longer than the trajectories, an observed component out
            of range, a negative noise level.
    """
    check_dataset(ds)
    check_positive_int("window", window)
    check_positive_int("horizon", horizon)
    x = ds["x"].values
    names = tuple(str(s) for s in ds["state"].values)
    if window + horizon > x.shape[1]:
        raise InputError(
            f"window: window + horizon ({window} + {horizon}) must fit in the trajectories' "
            f"{x.shape[1]} time points, got {window + horizon}"
        )
    if observed is None:
        obs = tuple(range(len(names)))
    else:
        items = [observed] if isinstance(observed, (int, str)) else list(observed)
        if not items:
            raise InputError("observed: expected at least one state component, got none")
        obs = []
        for item in items:
            if isinstance(item, str):
                if item not in names:
                    raise InputError(f"observed: unknown state {item!r}, expected one of {names}")
                obs.append(names.index(item))
            elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                if not 0 <= int(item) < len(names):
                    raise InputError(
                        f"observed: state index must lie in [0, {len(names) - 1}] "
                        f"({len(names)} states), got {int(item)}"
                    )
                obs.append(int(item))
            else:
                raise InputError(f"observed: expected state indices or names, got {item!r}")
        obs = tuple(obs)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise InputError(f"noise: expected a number >= 0, got {noise!r}")
    scale = x.reshape(-1, x.shape[2]).std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    t = ds["time"].values
    return ForecastSetting(
        window=int(window),
        horizon=int(horizon),
        observed=obs,
        noise=float(noise),
        scale=tuple(float(v) for v in scale),
        dt=float(t[1] - t[0]),
        state_names=names,
    )


def forecast_ensemble_array(
    values: np.ndarray, setting: ForecastSetting, single: bool = False, name: str = "x"
) -> xr.DataArray:
    """Ensembles ``(N, M, H, S)`` as ``x (forecast, member, lead_time, state)`` with the
    setting's coords (``(member, lead_time, state)`` for one when ``single``)."""
    coords = {
        "member": np.arange(values.shape[1]),
        "lead_time": setting.lead_time,
        "state": list(setting.state_names),
    }
    da = xr.DataArray(values, dims=("forecast", "member", "lead_time", "state"), coords=coords)
    da.name = name
    return da.isel(forecast=0) if single else da.assign_coords(forecast=np.arange(len(values)))


def forecast(
    model: Any,
    setting: ForecastSetting,
    observation: Any,
    *,
    members: int = 32,
    steps: int = 1,
    seed: int = 0,
    spread: xr.DataArray | None = None,
) -> xr.DataArray:
    """Sample an ensemble of ``members`` futures per observed window.

    Args:
        model: a fitted model of :meth:`ForecastSetting.inputs` (anything with
            ``sample(cond=..., steps=..., seed=...)``).
        setting: the setting it was fitted on.
        observation: observed windows ``(N, W, k)`` (or ``(W, k)`` for one, or the flattened
            ``(N, W * k)`` condition rows).
        members: ensemble size (``>= 1``; scores need ``>= 2``).
        steps: network evaluations per member.
        seed: seed of the sampling noise.
        spread: factors from :func:`calibrate_spread` for the same ``steps``: each member's
            deviation from its ensemble mean is scaled by the factor of its lead time and state.

    Returns:
        ``x (forecast, member, lead_time, state)``, or ``(member, lead_time, state)`` for one
        window; ``lead_time`` is the time since the last observation.

    Raises:
        InputError: an observation whose shape does not match the setting; ``spread`` of another
            shape or calibrated for another number of steps.
    """
    check_positive_int("members", members)
    factor = None if spread is None else _spread_factor(spread, setting, steps)
    obs = ensemble_array(observation, "observation")
    k, w = len(setting.observed), setting.window
    single = obs.ndim == 2 and obs.shape == (w, k)
    if single:
        obs = obs[None]
    if obs.ndim == 3 and obs.shape[1:] == (w, k):
        obs = obs.reshape(len(obs), w * k)
    if obs.ndim != 2 or obs.shape[1] != w * k:
        raise InputError(
            f"observation: expected windows (N, {w}, {k}) (window {w}, {k} observed states), "
            f"got {describe(observation)}"
        )
    n = len(obs)
    cond = torch.as_tensor(np.repeat(obs, members, axis=0), dtype=torch.float32)
    out = model.sample(cond=cond, steps=steps, seed=seed)
    out = ensemble_array(out, "samples")
    out = out.reshape(n, members, setting.horizon, len(setting.state_names))
    if factor is not None:
        mean = out.mean(axis=1, keepdims=True)
        out = mean + factor * (out - mean)
    return forecast_ensemble_array(out, setting, single)


def _spread_factor(spread: Any, setting: ForecastSetting, steps: int) -> np.ndarray:
    shape = (setting.horizon, len(setting.state_names))
    if not isinstance(spread, xr.DataArray) or spread.shape != shape:
        raise InputError(
            f"spread: expected the (lead_time, state) factors {shape} of calibrate_spread, got "
            f"{describe(spread)}"
        )
    calibrated = spread.attrs.get("steps")
    if calibrated != steps:
        raise InputError(
            f"spread: factors calibrated for steps={calibrated}, got steps={steps}; calibrate "
            "each step count on its own"
        )
    return spread.values.astype(np.float64)


def calibrate_spread(
    model: Any,
    setting: ForecastSetting,
    observation: Any,
    truth: Any,
    *,
    members: int = 32,
    steps: int = 1,
    seed: int = 0,
) -> xr.DataArray:
    """Spread factors that make a model's ensembles as wide as their errors, per lead time and
    state, measured on windows the model was not fitted on.

    The factor of lead time ``h`` and state ``j`` is the RMS error of the ensemble mean over the
    ensemble spread (with the ``(M + 1) / M`` finite-ensemble factor) on these windows, so that
    :func:`forecast` with ``spread=`` has a spread-skill ratio of 1 on them. Hold out about an
    eighth of the training windows for it: on the training windows themselves the model's error
    is optimistic. A one-step MMF ensemble is over-dispersed on slow flows (spread-skill 2-3 on
    dysts Aizawa, DequanLi, GuckenheimerHolmes); these factors (0.4-0.5 there, 1.0-1.15 on
    calibrated flows) bring its CRPS 19-25 % down (benchmarks/NOTES.md, "Chaos").

    Args:
        model: a fitted model of :meth:`ForecastSetting.inputs`.
        setting: the setting it was fitted on.
        observation: held-out observed windows ``(N, W, k)`` (or their flattened rows), ``N >= 2``.
        truth: their true futures ``(N, H, S)``.
        members: ensemble size (``>= 2``).
        steps: network evaluations per member (the factors hold for this count only).
        seed: seed of the sampling noise.

    Returns:
        ``spread_factor (lead_time, state)`` with ``attrs["steps"]``.

    Raises:
        InputError: fewer than 2 windows or members, a truth that does not match the setting,
            non-finite truth or samples (the factors would be NaN).
    """
    check_positive_int("members", members, minimum=2)
    ens = forecast(model, setting, observation, members=members, steps=steps, seed=seed)
    if "forecast" not in ens.dims or ens.sizes["forecast"] < 2:
        raise InputError(f"observation: expected at least 2 windows, got {describe(observation)}")
    obs = ensemble_array(truth, "truth")
    shape = (ens.sizes["forecast"], setting.horizon, len(setting.state_names))
    if obs.shape != shape:
        raise InputError(f"truth: expected the true futures {shape}, got {describe(truth)}")
    check_finite("truth", obs)
    check_finite("model", ens.values, "samples")
    var, err2, tiny = spread_and_error(ens.values, obs, axis=0)
    factor = np.sqrt(np.maximum(err2, tiny) / np.maximum(var, tiny))
    out = xr.DataArray(
        factor,
        dims=("lead_time", "state"),
        coords={"lead_time": setting.lead_time, "state": list(setting.state_names)},
        name="spread_factor",
    )
    out.attrs["steps"] = int(steps)
    out.attrs["members"] = int(members)
    return out


_REFERENCE_BATCH = 8192


def reference_ensemble(
    system: str | ODESystem,
    ds: xr.Dataset,
    setting: ForecastSetting,
    observation: np.ndarray,
    *,
    members: int = 32,
    candidates: int = 512,
    seed: int = 0,
) -> tuple[xr.DataArray, np.ndarray]:
    """The solver's calibrated forecast ensemble for each observed window.

    Args:
        system: the system that made ``ds``.
        ds: the true trajectories (their first state and parameters seed the candidates).
        setting: the forecast setting.
        observation: the noisy observed windows ``(N, W, k)`` (from :meth:`ForecastSetting.observe`
            with the same trajectories).
        members: ensemble size.
        candidates: candidate initial states per forecast before resampling.
        seed: seed of the candidates and the resampling.

    Returns:
        ``(ensemble, ess)``: ``x (forecast, member, lead_time, state)`` and the effective sample
        size of each forecast's weights ``(N,)``.
    """
    system = get_system(system)
    x = setting._check(ds)
    check_positive_int("members", members)
    check_positive_int("candidates", candidates, minimum=2)
    n, w, k = len(x), setting.window, len(setting.observed)
    obs = np.asarray(observation, dtype=np.float64)
    if obs.shape != (n, w, k):
        raise InputError(f"observation: expected shape {(n, w, k)}, got {describe(obs)}")
    lead = x[:, : w + setting.horizon]
    if setting.noise == 0:
        ens = np.repeat(lead[:, None, w:], members, axis=1)
        return forecast_ensemble_array(ens, setting, False), np.full(n, float(members))
    gen = torch.Generator().manual_seed(int(seed))
    rng = np.random.default_rng(seed)
    width = setting.noise * torch.as_tensor(setting.scale, dtype=torch.float64)
    start = torch.as_tensor(x[:, 0], dtype=torch.float64)
    eps = torch.randn(n, candidates, start.shape[1], generator=gen, dtype=torch.float64)
    x0 = (start[:, None] + width * eps).reshape(n * candidates, -1)
    flat = x.reshape(-1, x.shape[-1])
    lo, hi = torch.as_tensor(flat.min(axis=0)), torch.as_tensor(flat.max(axis=0))
    inside = ((x0 >= lo) & (x0 <= hi)).all(dim=1)
    params = torch.as_tensor(ds["params"].values, dtype=torch.float64).reshape(n, -1)
    params = params.repeat_interleave(candidates, dim=0)
    t = torch.as_tensor(ds["time"].values[: w + setting.horizon], dtype=torch.float64)
    traj = torch.full((n * candidates, len(t), x0.shape[1]), float("nan"), dtype=torch.float64)
    rows = torch.nonzero(inside).squeeze(1)
    for part in rows.split(_REFERENCE_BATCH):
        traj[part] = integrate(system, x0[part], params[part], t)
    traj = traj.numpy().reshape(n, candidates, len(t), -1)
    sigma = np.asarray(setting.sigma)
    resid = (traj[:, :, :w][..., list(setting.observed)] - obs[:, None]) / sigma
    logw = -0.5 * (resid**2).sum(axis=(2, 3)) + 0.5 * (eps.numpy() ** 2).sum(axis=2)
    logw[~np.all(np.isfinite(traj), axis=(2, 3))] = -np.inf
    lost = np.flatnonzero(np.isneginf(logw).all(axis=1))
    if len(lost):
        raise InputError(
            "reference_ensemble: no finite candidate trajectory for forecast(s) "
            f"{lost[:5].tolist()}; raise candidates (got {candidates}) or check the parameters"
        )
    logw -= logw.max(axis=1, keepdims=True)
    wts = np.exp(logw)
    wts /= wts.sum(axis=1, keepdims=True)
    ess = 1.0 / (wts**2).sum(axis=1)
    ens = np.empty((n, members, setting.horizon, traj.shape[-1]))
    for i in range(n):
        u = (rng.random() + np.arange(members)) / members
        idx = np.minimum(np.searchsorted(np.cumsum(wts[i]), u), candidates - 1)
        ens[i] = traj[i, idx, w:]
    return forecast_ensemble_array(ens, setting, False), ess
