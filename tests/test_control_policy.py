"""A tiny policy trains through fit, runs closed loop, saves, and refuses mismatched envs."""

import numpy as np
import pytest
import torch
import xarray as xr

from meanflow_sci.errors import InputError
from meanflow_sci.tasks.control import (
    PolicyConfig,
    branch_statistics,
    collect,
    evaluate,
    load_policy,
    train_policy,
)

TINY = {"down_dims": (8,), "emb_dim": 16, "n_groups": 4}


@pytest.fixture(scope="module")
def pendulum_ds():
    return collect("InvertedPendulum-v5", 2, max_steps=40, progress=False)


@pytest.fixture(scope="module")
def tiny_policy(pendulum_ds):
    torch.set_num_threads(1)
    return train_policy(
        pendulum_ds,
        horizon=4,
        n_action_steps=2,
        backbone=TINY,
        train={"max_steps": 3, "batch_size": 16},
        device="cpu",
        progress=False,
    )


def test_tiny_policy_trains_and_runs_an_evaluation_episode(tiny_policy):
    assert tiny_policy.model.steps_trained == 3 and tiny_policy.model.recipe.name == "policy"
    out = tiny_policy.plan(np.zeros((3, 2, 4), dtype=np.float32))
    assert out.shape == (3, 2, 1) and np.isfinite(out).all()
    res = evaluate(
        tiny_policy,
        "InvertedPendulum-v5",
        n_episodes=2,
        max_steps=12,
        reference={"expert": 12.0, "random": 4.0},
        latency_probes=3,
    )
    assert len(res["returns"]) == 2 and all(1 <= n <= 12 for n in res["lengths"])
    assert res["mean_return"] == pytest.approx(np.mean(res["returns"]))
    assert res["normalised_score"] == pytest.approx((res["mean_return"] - 4.0) / 8.0)
    assert res["latency_ms_median"] > 0 and res["latency_ms_p95"] >= res["latency_ms_median"]
    assert res["success_rate"] in (0.0, 0.5, 1.0)


def test_mmf_policy_uses_the_stop_gradient_loss_without_adaptive_weight(tiny_policy):
    # λ > 0 and the adaptive weight both merged Reacher's elbow branches (see train_policy).
    cfg = tiny_policy.model.objective_config
    assert cfg["name"] == "mmf" and cfg["adaptive_p"] == 0.0
    assert cfg["lam"] == {"name": "constant", "value": 0.0}


def test_sampling_is_seeded_and_steps_change_the_sampler(tiny_policy):
    hist = np.random.default_rng(0).normal(size=(2, 2, 4)).astype(np.float32)
    a = tiny_policy.generate(hist, seed=5)
    np.testing.assert_array_equal(a, tiny_policy.generate(hist, seed=5))
    assert not np.array_equal(a, tiny_policy.generate(hist, seed=6))
    assert tiny_policy.with_steps(3).steps == 3


def test_expert_evaluation_and_auto_reference():
    res = evaluate("lqr", "InvertedPendulum-v5", n_episodes=2, max_steps=50)
    assert res["mean_return"] == 50 and res["success_rate"] == 1.0
    assert res["normalised_score"] == pytest.approx(1.0)
    assert res["reference"]["random"] < 20


def test_trajectory_generator_and_save_load(pendulum_ds, tmp_path):
    pol = train_policy(
        pendulum_ds,
        kind="trajectory",
        objective="regression",
        horizon=4,
        n_action_steps=2,
        backbone=TINY,
        train={"max_steps": 2, "batch_size": 16},
        device="cpu",
        progress=False,
    )
    assert pol.config == PolicyConfig("trajectory", 4, 1, 2)
    hist = np.zeros((1, 1, 4), dtype=np.float32)
    assert pol.generate(hist, seed=0).shape == (1, 4, 5)  # actions (1) + observations (4)
    pol.save(tmp_path / "pol")
    back = load_policy(tmp_path / "pol")
    np.testing.assert_allclose(back.generate(hist, seed=0), pol.generate(hist, seed=0))


def test_policy_env_dimension_mismatch(tiny_policy, pendulum_ds):
    with pytest.raises(InputError, match="obs_dim=10"):
        evaluate(tiny_policy, "Reacher-v5", n_episodes=1, max_steps=2, reference=None)
    with pytest.raises(InputError, match="obs_dim=10"):
        branch_statistics(tiny_policy, "Reacher-v5", n_states=1, n_samples=1)
    with pytest.raises(InputError, match="reference"):
        evaluate("reacher", "Reacher-v5", n_episodes=1, max_steps=2, reference=pendulum_ds)


def test_evaluate_bad_input(tiny_policy):
    with pytest.raises(InputError, match="n_episodes"):
        evaluate(tiny_policy, "InvertedPendulum-v5", n_episodes=0)
    with pytest.raises(InputError, match="policy"):
        evaluate(object(), "InvertedPendulum-v5", n_episodes=1)
    with pytest.raises(InputError, match="n_action_steps"):
        PolicyConfig(horizon=4, n_action_steps=8)


def test_compare_runs_methods_on_the_same_seeds(pendulum_ds):
    from benchmarks.policies import compare, format_table

    out = compare(
        pendulum_ds,
        methods=("bc", "fm-1", "fm-10"),
        train={"max_steps": 2, "batch_size": 16},
        backbone=TINY,
        horizon=4,
        n_action_steps=2,
        eval_episodes=1,
        max_steps=8,
        latency_probes=2,
        device="cpu",
    )
    rows = out["methods"]
    assert set(rows) == {"bc", "fm-1", "fm-10"} and rows["fm-10"]["nfe"] == 10
    # fm-1 and fm-10 share one fitted network (same training time record).
    assert rows["fm-1"]["train_time_s"] == rows["fm-10"]["train_time_s"]
    assert out["expert"]["mean_return"] == 8 and out["reference"]["expert"] == 8
    table = format_table(out)
    assert "| fm-10 | 10 |" in table and "expert (lqr)" in table
    with pytest.raises(InputError, match="methods"):
        compare(pendulum_ds, methods=("ddpm",))


def test_example_script_help_lists_its_options():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "control_synthesis.py"
    out = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0
    for flag in ("--env", "--tasks", "--demos", "--episodes", "--steps", "--device", "--out"):
        assert flag in out.stdout


def test_many_demonstrations_train_three_times_the_recipe_steps(pendulum_ds):
    from meanflow_sci.tasks.control.policy import MANY_DEMOS, MANY_DEMOS_STEPS, recipe_train

    few = pendulum_ds.isel(episode=[0])
    many = xr.concat([few] * MANY_DEMOS, dim="episode")
    assert recipe_train(few, "policy", None) is None  # the recipe's 2000 steps
    assert recipe_train(many, "policy", None) == {"max_steps": MANY_DEMOS_STEPS}
    assert recipe_train(many, "policy", {"lr": 1e-3}) == {"lr": 1e-3, "max_steps": 6000}
    assert recipe_train(many, "policy", {"max_steps": 10}) == {"max_steps": 10}  # the caller's
    assert recipe_train(many, "vectors", None) is None  # only the policy recipe
