"""The forecasting setting, the solver reference and the proper scores (tasks.ode)."""

import numpy as np
import pytest
import torch

import meanflow_sci
from meanflow_sci.errors import InputError
from meanflow_sci.tasks import ode
from meanflow_sci.tasks.ode.forecasting import (
    calibrate_spread,
    forecast,
    forecast_setting,
    reference_ensemble,
)
from meanflow_sci.tasks.ode.metrics import dynamics_residual
from meanflow_sci.tasks.ode.scores import score_ensemble
from meanflow_sci.tasks.ode.systems import get_system


def _gaussian_case(bias=0.0, spread=1.0, n=300, m=32, h=6, s=3, seed=0):
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(n, h, s))
    truth = centre + rng.normal(size=(n, h, s))
    ens = centre[:, None] + bias + spread * rng.normal(size=(n, m, h, s))
    return ens, truth


def _mean(ds, key):
    return float(np.nanmean(ds[key].values))


def test_an_ensemble_equal_to_the_truth_scores_perfectly():
    _, truth = _gaussian_case()
    res = score_ensemble(np.repeat(truth[:, None], 4, axis=1), truth)
    assert _mean(res, "crps") == pytest.approx(0.0, abs=1e-12)
    assert _mean(res, "energy") == pytest.approx(0.0, abs=1e-12)
    assert float(res["energy_trajectory"]) == pytest.approx(0.0, abs=1e-12)
    assert _mean(res, "coverage_90") == 1.0 and _mean(res, "smape") == 0.0
    assert np.isnan(res["spread_skill"].values).all()  # no error, no spread: undefined


def test_each_score_moves_the_right_way():
    calibrated = score_ensemble(*_gaussian_case())
    biased = score_ensemble(*_gaussian_case(bias=1.0))
    under = score_ensemble(*_gaussian_case(spread=0.3))
    over = score_ensemble(*_gaussian_case(spread=3.0))
    for worse in (biased, under, over):
        for key in ("crps", "energy", "energy_trajectory"):
            assert _mean(worse, key) > _mean(calibrated, key), key
    assert 0.9 < _mean(calibrated, "spread_skill") < 1.1
    assert _mean(under, "spread_skill") < 0.5 and _mean(over, "spread_skill") > 2.0
    assert 0.86 < _mean(calibrated, "coverage_90") < 0.94
    assert 0.45 < _mean(calibrated, "coverage_50") < 0.55
    assert _mean(under, "coverage_90") < 0.5 and _mean(over, "coverage_90") > 0.99
    hist = {k: v["rank_histogram"].values for k, v in [("cal", calibrated), ("under", under)]}
    assert hist["under"][0] + hist["under"][-1] > 5 * (hist["cal"][0] + hist["cal"][-1])
    assert _mean(biased, "smape") > _mean(calibrated, "smape")


def test_scores_refuse_bad_ensembles():
    ens, truth = _gaussian_case(n=4, m=1)
    with pytest.raises(InputError, match="at least 2 members"):
        score_ensemble(ens, truth)
    ens, truth = _gaussian_case(n=4)
    with pytest.raises(InputError, match="truth: expected shape"):
        score_ensemble(ens, truth[:, :-1])
    with pytest.raises(InputError, match="forecast, member, lead_time, state"):
        score_ensemble(ens[0], truth)


def test_scores_round_trip_through_netcdf(tmp_path):
    res = score_ensemble(*_gaussian_case(n=8), lyapunov=0.9)
    res = res.expand_dims(system=["toy"])
    res.to_netcdf(tmp_path / "scores.nc")
    import xarray as xr

    back = xr.open_dataset(tmp_path / "scores.nc")
    xr.testing.assert_allclose(back.load(), res)
    assert back.attrs["valid_time_units"] == "Lyapunov times"


@pytest.fixture(scope="module")
def lorenz():
    return ode.simulate("lorenz63", 48, x0="attractor", params="default", seed=3)


def test_forecast_setting_checks_its_arguments(lorenz):
    with pytest.raises(InputError, match="must fit in the trajectories' 64"):
        forecast_setting(lorenz, window=40, horizon=40)
    with pytest.raises(InputError, match=r"state index must lie in \[0, 2\]"):
        forecast_setting(lorenz, window=8, horizon=8, observed=[0, 3])
    with pytest.raises(InputError, match="unknown state 'w'"):
        forecast_setting(lorenz, window=8, horizon=8, observed="w")
    with pytest.raises(InputError, match="noise: expected a number >= 0"):
        forecast_setting(lorenz, window=8, horizon=8, noise=-0.1)


class _WideModel:
    """Members: the true future (fixed per window) plus noise of twice its error's width."""

    def __init__(self, truth, cond):
        self.lookup = {tuple(c.tolist()): t for c, t in zip(cond, truth)}

    def sample(self, cond, steps=1, seed=0):
        gen = torch.Generator().manual_seed(seed + 7 * steps)
        centre = torch.stack([self.lookup[tuple(c.tolist())] for c in cond])
        # ensemble mean off the truth by N(0, 1) per window, members spread N(0, 2^2)
        rows = {}
        for i, c in enumerate(cond):
            rows.setdefault(tuple(c.tolist()), []).append(i)
        offset = torch.zeros_like(centre)
        for idx in rows.values():
            offset[idx] = torch.randn(centre.shape[1:], generator=gen)
        return centre + offset + 2.0 * torch.randn(centre.shape, generator=gen)


def test_calibrate_spread_shrinks_an_over_dispersed_ensemble(lorenz):
    setting = forecast_setting(lorenz, window=8, horizon=16, noise=0.05)
    cond, target = setting.inputs(lorenz, seed=0)
    model = _WideModel(target, cond)
    spread = calibrate_spread(model, setting, cond, target, members=16, steps=1)
    assert spread.dims == ("lead_time", "state") and spread.attrs["steps"] == 1
    # the members' spread is 2x the error of the mean: factors near 1/2
    assert 0.35 < float(np.median(spread.values)) < 0.7
    raw = forecast(model, setting, cond, members=16, seed=3)
    cal = forecast(model, setting, cond, members=16, seed=3, spread=spread)
    np.testing.assert_allclose(cal.mean("member"), raw.mean("member"), rtol=1e-5, atol=1e-5)
    ss_raw = _mean(score_ensemble(raw, target.numpy()), "spread_skill")
    ss_cal = _mean(score_ensemble(cal, target.numpy()), "spread_skill")
    assert ss_raw > 1.5 and 0.75 < ss_cal < 1.3
    with pytest.raises(InputError, match="calibrated for steps=1, got steps=2"):
        forecast(model, setting, cond, members=4, steps=2, spread=spread)
    with pytest.raises(InputError, match="spread: expected the"):
        forecast(model, setting, cond, members=4, spread=spread.isel(lead_time=slice(0, 3)))
    with pytest.raises(InputError, match="at least 2 windows"):
        calibrate_spread(model, setting, cond[:1], target[:1])
    with pytest.raises(InputError, match="truth: expected"):
        calibrate_spread(model, setting, cond[:4], target[:3])
    with pytest.raises(InputError, match="members: expected an integer >= 2"):
        calibrate_spread(model, setting, cond, target, members=1)
    bad = target.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="truth: expected finite values"):
        calibrate_spread(model, setting, cond, bad)
    model.lookup[tuple(cond[0].tolist())] = bad[0]  # the model now returns NaN for one window
    with pytest.raises(InputError, match="model: expected finite samples"):
        calibrate_spread(model, setting, cond, target)


def test_forecast_inputs_and_sampler_shapes(lorenz):
    setting = forecast_setting(lorenz, window=8, horizon=16, observed=["x"], noise=0.05)
    cond, target = setting.inputs(lorenz, seed=0)
    assert tuple(cond.shape) == (48, 8) and tuple(target.shape) == (48, 16, 3)
    # the condition is the noisy observed component: close to x, not equal to it
    err = cond.numpy() - lorenz["x"].values[:, :8, 0]
    assert 0.2 < err.std() / setting.sigma[0] < 2.0
    model = meanflow_sci.fit(target, cond, train={"max_steps": 3}, progress=False)
    obs = setting.observe(lorenz["x"].values, seed=1)
    one = forecast(model, setting, obs[0], members=5)
    assert one.dims == ("member", "lead_time", "state") and one.shape == (5, 16, 3)
    assert list(one["state"].values) == ["x", "y", "z"]
    np.testing.assert_allclose(one["lead_time"].values, setting.dt * np.arange(1, 17))
    many = forecast(model, setting, obs[:3], members=4, steps=2)
    assert many.dims == ("forecast", "member", "lead_time", "state") and many.shape[:2] == (3, 4)
    with pytest.raises(InputError, match=r"expected windows \(N, 8, 1\)"):
        forecast(model, setting, obs[:, :5], members=2)


def test_solver_reference_is_calibrated_and_beats_a_blind_ensemble(lorenz):
    setting = forecast_setting(lorenz, window=8, horizon=16, noise=0.05)
    obs = setting.observe(lorenz["x"].values, seed=1)
    ref, ess = reference_ensemble("lorenz63", lorenz, setting, obs, members=16, candidates=128)
    assert ref.shape == (48, 16, 16, 3) and (ess >= 1).all()
    truth = setting.truth(lorenz)
    good = score_ensemble(ref, truth)
    rng = np.random.default_rng(0)
    blind = truth[rng.integers(0, 48, size=(48, 16))]  # members from other trajectories
    assert _mean(good, "crps") < 0.5 * _mean(score_ensemble(blind, truth), "crps")
    assert 0.5 < _mean(good, "spread_skill") < 2.0


def test_solver_reference_integrates_only_candidates_inside_the_attractor_box(lorenz, monkeypatch):
    from meanflow_sci.tasks.ode import forecasting

    seen, integrate = [], forecasting.integrate

    def recording(system, x0, params, t):
        seen.append(x0.clone())
        return integrate(system, x0, params, t)

    monkeypatch.setattr(forecasting, "integrate", recording)
    monkeypatch.setattr(forecasting, "_REFERENCE_BATCH", 500)
    setting = forecast_setting(lorenz, window=8, horizon=16, noise=0.2)
    obs = setting.observe(lorenz["x"].values, seed=1)
    reference_ensemble("lorenz63", lorenz, setting, obs, members=8, candidates=64)
    flat = lorenz["x"].values.reshape(-1, 3)
    starts = torch.cat(seen).numpy()
    assert max(len(x) for x in seen) <= 500 and len(seen) >= 2  # batches of at most 500 rows
    assert (starts >= flat.min(0)).all() and (starts <= flat.max(0)).all()
    assert len(starts) < 48 * 64  # at a noise of 20 % of the spread some fall outside


def test_dynamics_residual_tells_trajectories_from_jagged_curves(lorenz):
    system = get_system("lorenz63")
    x = torch.as_tensor(lorenz["x"].values)
    p = torch.as_tensor(lorenz["params"].values)
    t = torch.as_tensor(lorenz["time"].values)
    own = dynamics_residual(system, x, p, t)
    jagged = x.clone()
    jagged[:, 1::2] = x[torch.randperm(len(x)), 1::2]
    assert float(own.median()) < 0.05
    assert float(dynamics_residual(system, jagged, p, t).median()) > 20 * float(own.median())
    res = ode.evaluate(lorenz["x"].values, lorenz, reintegrate=False)
    assert res["dynamics_residual_median"] == pytest.approx(res["dynamics_residual_solver"])
