"""evaluate() and its distances: zero for identical inputs, positive for perturbed ones."""

import numpy as np
import pytest
import torch

from meanflow_sci.errors import InputError
from meanflow_sci.tasks.ode import NearestNeighbour, evaluate, fit_neural_ode, relative_l2, simulate
from meanflow_sci.tasks.ode.metrics import mmd, sliced_wasserstein

KW = dict(t=np.linspace(0.0, 4.0, 16), rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def lv():
    return simulate("lotka_volterra", 24, seed=0, **KW)


def test_identical_samples_score_zero(lv):
    out = evaluate(lv["x"].values, lv)
    assert out["rel_l2_median"] == 0.0 and out["rel_l2_p90"] == 0.0
    assert out["sw_mean"] == 0.0 and out["mmd_mean"] == 0.0
    assert max(out["error_vs_time"]) == 0.0
    assert out["reintegration_rel_l2_median"] < 1e-5
    assert out["conserved_drift_median"] < 1e-5
    assert out["nonfinite_fraction"] == 0.0
    assert len(out["sw_per_time"]) == 16 and len(out["time"]) == 16
    assert "sample_time_s" not in out  # arrays have no sampling time


def test_perturbed_samples_score_positive(lv):
    x = lv["x"].values
    rng = np.random.default_rng(0)
    bad = x * 1.02 + 0.05 * rng.standard_normal(x.shape)
    out = evaluate(bad, lv)
    assert 0.01 < out["rel_l2_median"] < 0.2
    assert out["rel_l2_p90"] >= out["rel_l2_median"]
    assert out["sw_mean"] > 0 and out["mmd_mean"] > 0
    assert out["reintegration_rel_l2_median"] > 1e-3
    assert out["conserved_drift_median"] > 1e-3
    # Flattened (N, T * S) samples are accepted and give the same numbers.
    flat = evaluate(bad.reshape(len(bad), -1), lv)
    assert flat["rel_l2_median"] == pytest.approx(out["rel_l2_median"])


def test_relative_l2_closed_form():
    true = torch.ones(2, 3, 2)
    pred = true.clone()
    pred[1] *= 1.5
    np.testing.assert_allclose(relative_l2(pred, true).numpy(), [0.0, 0.5])


def test_sliced_wasserstein_of_shifted_gaussians():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 2, generator=gen, dtype=torch.float64)
    shift = torch.tensor([3.0, 0.0], dtype=torch.float64)
    # The projection of a shift s on a random unit direction theta is s . theta; in 2-D the mean of
    # (s . theta)^2 is |s|^2 / 2, so SW2 = |s| / sqrt(2).
    sw = float(sliced_wasserstein(a, a + shift, n_projections=500))
    assert sw == pytest.approx(3.0 / np.sqrt(2), rel=0.05)
    assert float(sliced_wasserstein(a, a.clone())) == 0.0
    # Ensembles of different sizes are compared through their quantiles.
    assert float(sliced_wasserstein(a[:1000], a)) < 0.15
    assert float(mmd(a[:500], a[:500].clone())) == 0.0
    assert float(mmd(a[:500], a[:500] + shift)) > 0.3


def test_unconditional_ensemble_scoring():
    lorenz = dict(t=np.linspace(0.0, 0.5, 8), rtol=1e-4, atol=1e-6)
    a = simulate("lorenz63", 32, x0="attractor", params="default", seed=0, **lorenz)
    b = simulate("lorenz63", 24, x0="attractor", params="default", seed=1, **lorenz)
    same = evaluate(a["x"].values, a, setting="unconditional")
    other = evaluate(b["x"].values, a, setting="unconditional")
    assert "rel_l2_median" not in same
    assert same["sw_mean"] == 0.0 and other["sw_mean"] > 0.0
    assert other["n"] == 24
    assert other["reintegration_rel_l2_median"] < 1e-2  # solver output is self-consistent


def test_model_protocol_and_timing(lv):
    train = simulate("lotka_volterra", 64, seed=5, **KW)
    out = evaluate(NearestNeighbour(train), lv, timing_repeats=2)
    assert out["rel_l2_median"] > 0 and out["sample_time_s"] > 0
    assert out["sample_time_per_traj_ms"] == pytest.approx(1e3 * out["sample_time_s"] / 24)
    # With the training set as the test set the nearest neighbour is the trajectory itself.
    assert evaluate(NearestNeighbour(train), train)["rel_l2_median"] < 1e-6


def test_neural_ode_baseline_learns_something():
    train = simulate("van_der_pol", 64, seed=0, t=np.linspace(0, 2, 8), rtol=1e-6, atol=1e-8)
    kw = dict(hidden=32, depth=2, window=4, full_horizon_fraction=0.5, batch_size=64, lr=1e-2)
    untrained = evaluate(fit_neural_ode(train, max_steps=1, **kw), train)
    model = fit_neural_ode(train, max_steps=60, **kw)
    out = evaluate(model, train, steps=2)
    assert out["rel_l2_median"] < 0.5 * untrained["rel_l2_median"]
    assert out["sample_time_s"] > 0 and model.train_time_s > 0
    # The neural ODE starts exactly at the given initial state.
    pred = model.sample(
        cond=torch.cat([torch.tensor(train["x0"].values), torch.tensor(train["params"].values)], 1)
    )
    np.testing.assert_allclose(pred[:, 0].numpy(), train["x0"].values, rtol=1e-5, atol=1e-5)


def test_evaluate_bad_input(lv):
    with pytest.raises(InputError, match="shape"):
        evaluate(np.zeros((24, 5, 2)), lv)
    with pytest.raises(InputError, match="one trajectory per test sample"):
        evaluate(lv["x"].values[:10], lv)
    with pytest.raises(InputError, match="setting"):
        evaluate(lv["x"].values, lv, setting="both")
    with pytest.raises(InputError, match="xarray.Dataset"):
        evaluate(lv["x"].values, lv["x"])
    with pytest.raises(InputError, match="cond"):
        NearestNeighbour(lv).sample(cond=np.zeros((3, 2)))
