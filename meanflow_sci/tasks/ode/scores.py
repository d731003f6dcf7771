"""Probabilistic scores of trajectory ensembles against the truth, as an ``xarray.Dataset``.

The proper scores come from `scoringrules <https://github.com/frazane/scoringrules>`_ (it has
both the ensemble CRPS and the multivariate energy score on plain arrays, with the "fair"
estimator that does not penalise small ensembles; xskillscore has no energy score and
properscoring is unmaintained). The rest are counts and ratios that need no library:

- ``crps (lead_time, state)``: ensemble CRPS (fair estimator), mean over forecasts;
- ``energy (lead_time)``: energy score of the state vector at each lead time;
- ``energy_trajectory``: energy score of whole trajectories (lead time x state flattened), which
  sees whether members are trajectories, not only marginals;
- ``spread_skill (lead_time)``: ensemble spread (RMS over forecasts of the member standard
  deviation, with the ``(M + 1) / M`` finite-ensemble factor) over the RMS error of the ensemble
  mean; 1 for a calibrated ensemble, < 1 under-dispersed, > 1 over-dispersed;
- ``rank_histogram (rank)``: frequency of the truth's rank among the members, over forecasts, lead
  times and states (flat at ``1 / (M + 1)`` when calibrated);
- ``coverage_50``, ``coverage_90 (lead_time)``: fraction of truths inside the ensemble's central
  50 % and 90 % intervals (quantiles at Weibull plotting positions, so that a calibrated ensemble
  covers the nominal fraction whatever its size);
- ``smape (lead_time)`` of the ensemble mean (dysts's symmetric MAPE, in percent) and
  ``valid_time``: the mean time until the ensemble mean's normalised error first exceeds
  ``vpt_threshold`` (dysts's valid prediction time), in Lyapunov times when a Lyapunov exponent is
  given.

Example:
    >>> import numpy as np
    >>> from meanflow_sci.tasks.ode.scores import score_ensemble
    >>> truth = np.random.default_rng(0).normal(size=(8, 5, 3))
    >>> ens = truth[:, None] + np.random.default_rng(1).normal(size=(8, 16, 5, 3))
    >>> float(score_ensemble(ens, truth)["spread_skill"].mean()) > 0.5
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from meanflow_sci.errors import InputError, describe

__all__ = ["score_ensemble", "ensemble_array", "plot_forecast"]


def _require() -> Any:
    try:
        import scoringrules
    except ImportError as err:  # pragma: no cover - a base dependency
        raise ImportError(
            f"proper scores need scoringrules: pip install scoringrules ({err})"
        ) from err
    return scoringrules


def ensemble_array(value: Any, name: str) -> np.ndarray:
    """``value`` (numpy, torch or xarray) as a float64 array."""
    if isinstance(value, xr.DataArray):
        value = value.values
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name}: expected an array of numbers, got {describe(value)}") from err


def check_finite(name: str, arr: np.ndarray, what: str = "values") -> None:
    """Raise an ``InputError`` naming ``name`` when ``arr`` holds NaN or inf."""
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name}: expected finite {what}, got NaN or inf")


def spread_and_error(ens: np.ndarray, obs: np.ndarray, axis: Any) -> tuple:
    """The two sides of the spread-skill ratio of ensembles ``(N, M, H, S)`` against truths
    ``(N, H, S)``, averaged over ``axis`` of ``(N, H, S)``: the member variance with the
    ``(M + 1) / M`` finite-ensemble factor, the squared error of the ensemble mean, and a floor
    below which both count as zero (relative to the truths' size)."""
    m = ens.shape[1]
    err2 = ((ens.mean(axis=1) - obs) ** 2).mean(axis=axis)
    var = ens.var(axis=1, ddof=1).mean(axis=axis) * (m + 1) / m
    tiny = 1e-24 * max(float((obs**2).mean()), 1e-300)
    return var, err2, tiny


def score_ensemble(
    ensemble: Any,
    truth: Any,
    *,
    lead_time: Any = None,
    state: Any = None,
    lyapunov: float | None = None,
    vpt_threshold: float = 0.5,
) -> xr.Dataset:
    """Score ``ensemble (N, M, H, S)`` against ``truth (N, H, S)`` (``N`` forecasts of ``M``
    members over ``H`` lead times and ``S`` states).

    Args:
        ensemble: the forecast ensembles; an ``xarray.DataArray`` with dims
            ``(forecast, member, lead_time, state)`` passes its coords on.
        truth: the verifying trajectories.
        lead_time: coordinate of the lead-time axis (``H`` numbers, e.g. time since the last
            observation); ``0 .. H - 1`` when ``None``.
        state: names of the states; ``0 .. S - 1`` when ``None``.
        lyapunov: largest Lyapunov exponent (1 / time unit): ``valid_time`` is then in Lyapunov
            times (``lead_time * lyapunov``) rather than in units of ``lead_time``.
        vpt_threshold: normalised RMS error at which a forecast stops being valid.

    Returns:
        ``xarray.Dataset`` of the scores listed in the module docstring; attrs ``members``,
        ``forecasts``, ``crps_estimator``.

    Raises:
        InputError: shapes that do not match, fewer than 2 members, non-finite values.
    """
    sr = _require()
    if isinstance(ensemble, xr.DataArray):
        if lead_time is None and "lead_time" in ensemble.coords:
            lead_time = ensemble["lead_time"].values
        if state is None and "state" in ensemble.coords:
            state = ensemble["state"].values
    ens = ensemble_array(ensemble, "ensemble")
    obs = ensemble_array(truth, "truth")
    if ens.ndim != 4:
        raise InputError(
            f"ensemble: expected shape (forecast, member, lead_time, state), got {describe(ens)}"
        )
    n, m, h, s = ens.shape
    if m < 2:
        raise InputError(f"ensemble: CRPS and spread need at least 2 members, got {m}")
    if obs.shape != (n, h, s):
        raise InputError(
            f"truth: expected shape {(n, h, s)} to match ensemble {ens.shape}, got {obs.shape}"
        )
    check_finite("ensemble", ens)
    check_finite("truth", obs)
    lead = np.arange(h, dtype=np.float64)
    if lead_time is not None:
        lead = ensemble_array(lead_time, "lead_time")
    if lead.shape != (h,):
        raise InputError(f"lead_time: expected {h} values, got {describe(lead)}")
    states = list(range(s)) if state is None else list(state)
    if len(states) != s:
        raise InputError(f"state: expected {s} names, got {len(states)}")

    crps = sr.crps_ensemble(obs, np.moveaxis(ens, 1, -1), m_axis=-1, estimator="fair")
    energy = sr.energy_score(
        np.moveaxis(obs, 1, 0), np.moveaxis(ens, 2, 0), m_axis=-2, v_axis=-1, estimator="fair"
    )  # (H, N)
    energy_traj = sr.energy_score(
        obs.reshape(n, h * s), ens.reshape(n, m, h * s), m_axis=-2, v_axis=-1, estimator="fair"
    )

    mean = ens.mean(axis=1)  # (N, H, S)
    var, err2, tiny = spread_and_error(ens, obs, axis=(0, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        # undefined (NaN) where the ensemble mean is exact: an ensemble equal to the truth
        spread_skill = np.where(err2 > tiny, np.sqrt(var / np.maximum(err2, tiny)), np.nan)

    rank = (ens < obs[:, None]).sum(axis=1)  # (N, H, S) in 0..M
    hist = np.bincount(rank.ravel(), minlength=m + 1) / rank.size

    cover = {}
    for level in (50, 90):
        # Weibull plotting positions (p (M + 1)): a calibrated ensemble of any size then covers
        # the nominal fraction on average; the default positions under-cover small ensembles.
        probs = [(1 - level / 100) / 2, (1 + level / 100) / 2]
        lo, hi = np.quantile(ens, probs, axis=1, method="weibull")
        cover[level] = ((obs >= lo) & (obs <= hi)).mean(axis=(0, 2))

    smape = 200.0 * (np.abs(mean - obs) / np.maximum(np.abs(mean) + np.abs(obs), 1e-12)).mean(
        axis=(0, 2)
    )
    scale = obs.reshape(-1, s).std(axis=0).clip(min=1e-12)
    norm_err = np.sqrt((((mean - obs) / scale) ** 2).mean(axis=2))  # (N, H)
    valid = _valid_time(norm_err, lead - lead[0], vpt_threshold)
    units = "lead_time"
    if lyapunov is not None:
        valid = valid * float(lyapunov)
        units = "Lyapunov times"

    coords = {"lead_time": lead, "state": states, "rank": np.arange(m + 1)}
    return xr.Dataset(
        {
            "crps": (("lead_time", "state"), crps.mean(axis=0)),
            "energy": (("lead_time",), energy.mean(axis=1)),
            "energy_trajectory": ((), float(energy_traj.mean())),
            "spread_skill": (("lead_time",), spread_skill),
            "rank_histogram": (("rank",), hist),
            "coverage_50": (("lead_time",), cover[50]),
            "coverage_90": (("lead_time",), cover[90]),
            "smape": (("lead_time",), smape),
            "valid_time": ((), float(valid.mean())),
        },
        coords=coords,
        attrs={
            "members": m,
            "forecasts": n,
            "crps_estimator": "fair (scoringrules)",
            "valid_time_units": units,
            "vpt_threshold": float(vpt_threshold),
        },
    )


def _valid_time(norm_err: np.ndarray, elapsed: np.ndarray, threshold: float) -> np.ndarray:
    """Per forecast, the elapsed time of the first lead whose error exceeds ``threshold`` (the
    whole horizon when none does)."""
    over = norm_err > threshold
    first = np.where(over.any(axis=1), over.argmax(axis=1), len(elapsed) - 1)
    return elapsed[first]


def plot_forecast(
    scores: xr.Dataset,
    ensembles: dict[str, Any],
    truth: Any,
    path: Any,
    *,
    title: str = "",
    component: int = 0,
) -> Any:
    """Save a three-panel figure: CRPS against lead time and the rank histogram per model, and
    the ensemble fan of the first forecast against the truth.

    Args:
        scores: :func:`score_ensemble` results concatenated along a ``model`` dimension.
        ensembles: model name -> ensemble ``(forecast, member, lead_time, state)`` (the fan shows
            the first forecast of ``"solver"`` and of the first other model given).
        truth: the verifying futures ``(forecast, lead_time, state)``.
        path: the image file to write.
        title: prefix of the panel titles (e.g. the system's name).
        component: the state component the fan shows.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    lead = scores["lead_time"].values
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for model in scores["model"].values:
        one = scores.sel(model=model)
        axes[0].plot(lead, one["crps"].mean("state"), label=str(model))
        axes[1].plot(one["rank"], one["rank_histogram"], drawstyle="steps-mid", label=str(model))
    axes[0].set(title=f"{title} CRPS against lead time", xlabel="lead time", ylabel="CRPS")
    axes[1].set(title="rank histogram of the truth", xlabel="rank", ylabel="frequency")
    axes[0].legend(fontsize=7)
    first = ensemble_array(truth, "truth")[0]
    shown = ["solver"] if "solver" in ensembles else []
    shown += [k for k in ensembles if k != "solver"][:1]
    for name, colour in zip(shown, ("grey", "tab:blue")):
        members = ensemble_array(ensembles[name], name)[0]
        for k, member in enumerate(members):
            label = name if k == 0 else None
            axes[2].plot(lead, member[:, component], color=colour, lw=0.5, alpha=0.5, label=label)
    axes[2].plot(lead, first[:, component], "k", lw=1.5, label="truth")
    axes[2].set(title=f"{title} ensemble fan (state {component})", xlabel="lead time")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
