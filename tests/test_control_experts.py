"""Experts and environments: LQR balances, the Reacher IK branches, clear errors."""

import numpy as np
import pytest

from meanflow_sci.errors import InputError
from meanflow_sci.tasks.control import ENVS, evaluate, make_env, make_expert
from meanflow_sci.tasks.control.experts import LQRExpert, MPPIExpert, ReacherExpert


def _episode(env_id, expert, seed=0, max_steps=None):
    env = make_env(env_id)
    ex = make_expert(expert, env)
    obs, _ = env.reset(seed=seed)
    ex.reset(env, np.random.default_rng(seed))
    total, steps = 0.0, 0
    while True:
        obs, r, term, trunc, _ = env.step(ex.act(env, obs))
        total += r
        steps += 1
        if term or trunc or (max_steps and steps >= max_steps):
            env.close()
            return total, steps, term, obs


def test_lqr_keeps_inverted_pendulum_up_for_the_whole_episode():
    total, steps, term, _ = _episode("InvertedPendulum-v5", "lqr")
    assert steps == 1000 and not term and total == 1000


def test_lqr_with_jitter_and_noise_still_balances():
    ex = LQRExpert(gain_jitter=0.5, action_noise=0.1)
    total, steps, term, _ = _episode("InvertedPendulum-v5", ex, seed=3)
    assert steps == 1000 and not term


def test_lqr_is_generic_over_the_pendulum_family():
    # Double pendulum: different model, frame skip and observation, no code change.
    total, steps, term, _ = _episode("InvertedDoublePendulum-v5", "lqr", max_steps=300)
    assert steps == 300 and not term and total > 300 * 9


def test_random_actions_fail_inverted_pendulum():
    # The reference the normalised score is measured against must be far below the expert.
    total, steps, term, _ = _episode("InvertedPendulum-v5", "random")
    assert term and steps < 50


@pytest.mark.parametrize("branch,sign", [("up", 1), ("down", -1)])
def test_reacher_expert_reaches_the_target_on_either_branch(branch, sign):
    _, _, _, obs = _episode("Reacher-v5", ReacherExpert(branch=branch), seed=5)
    assert np.linalg.norm(obs[-2:]) < 0.02
    assert np.sign(obs[3]) == sign  # sin(elbow angle)


def test_reacher_random_branch_gives_both_modes():
    env = make_env("Reacher-v5")
    ex = make_expert("reacher", env)
    modes = set()
    for i in range(12):
        env.reset(seed=i)
        ex.reset(env, np.random.default_rng(i))
        modes.add(ex.mode)
    assert modes == {1, -1}


def test_mppi_makes_half_cheetah_run_forward():
    env = make_env("HalfCheetah-v5")
    ex = make_expert(MPPIExpert(horizon=8, n_samples=16), env)
    obs, _ = env.reset(seed=0)
    ex.reset(env, np.random.default_rng(0))
    x0 = env.unwrapped.data.qpos[0]
    for _ in range(25):
        obs = env.step(ex.act(env, obs))[0]
    assert env.unwrapped.data.qpos[0] - x0 > 0.1


def test_unknown_env_id_lists_known_ones():
    with pytest.raises(InputError, match="InvertedPendulum-v5") as err:
        make_env("NoSuchEnv-v0")
    assert "env_id" in str(err.value)
    with pytest.raises(InputError, match="Reacher-v5"):
        evaluate("lqr", "NoSuchEnv-v0", n_episodes=1)


@pytest.mark.parametrize(
    "env_id,expert,match",
    [
        ("HalfCheetah-v5", "lqr", "equilibrium"),
        ("InvertedPendulum-v5", "reacher", "two-link"),
        ("Reacher-v5", "lqr", "stabilis"),
        ("InvertedPendulum-v5", "mppi", "reward model"),
        ("InvertedPendulum-v5", "pid", "expected one of"),
    ],
)
def test_expert_that_does_not_apply_raises(env_id, expert, match):
    env = make_env(env_id)
    with pytest.raises(InputError, match=match):
        make_expert(expert, env)


def test_registry_defaults_resolve():
    for env_id in ("InvertedPendulum-v5", "Reacher-v5", "HalfCheetah-v5"):
        env = make_env(env_id)
        assert make_expert("auto", env).name == ENVS[env_id].expert
