"""End to end: fit on simulated trajectories, sample, evaluate (tiny sizes, shapes and keys)."""

import numpy as np
import torch

import meanflow_sci
from meanflow_sci.tasks import ode


def test_fit_conditional_and_evaluate_end_to_end():
    torch.manual_seed(0)
    grid = np.linspace(0.0, 2.0, 8)
    train = ode.simulate("van_der_pol", 48, t=grid, seed=0, rtol=1e-5, atol=1e-7)
    test = ode.simulate("van_der_pol", 8, t=grid, seed=1, rtol=1e-5, atol=1e-7)
    data, cond = ode.fit_inputs(train, "conditional")
    model = meanflow_sci.fit(
        data,
        cond,
        backbone={"hidden": 16, "depth": 1},
        train={"max_steps": 3, "batch_size": 16},
        progress=False,
    )
    assert model.recipe.name == "trajectory_map"
    out = ode.evaluate(model, test, steps=2)
    for key in (
        "rel_l2_median",
        "rel_l2_p90",
        "error_vs_time",
        "sw_mean",
        "mmd_mean",
        "reintegration_rel_l2_median",
        "sample_time_s",
    ):
        assert key in out
    assert len(out["error_vs_time"]) == 8 and np.isfinite(out["rel_l2_median"])


def test_fit_unconditional_sequence_and_evaluate():
    grid = np.linspace(0.0, 0.2, 4)
    train = ode.simulate(
        "lotka_volterra", 32, t=grid, params="default", seed=0, rtol=1e-5, atol=1e-7
    )
    data, cond = ode.fit_inputs(train, "unconditional")
    assert cond is None and tuple(data.shape) == (32, 4, 2)
    model = meanflow_sci.fit(
        data,
        backbone={"hidden": 16, "depth": 1},
        train={"max_steps": 2, "batch_size": 16},
        progress=False,
    )
    assert model.recipe.name == "trajectory_ensemble"
    out = ode.evaluate(model, train, setting="unconditional", n_samples=20)
    assert out["n"] == 20 and len(out["sw_per_time"]) == 4
    assert "conserved_drift_median" in out and "rel_l2_median" not in out
