"""Multimodality of generated action chunks (Reacher's elbow branches).

At the start of a Reacher episode the arm is nearly straight and the expert chooses elbow-up or
elbow-down at random, so the demonstrated first actions are bimodal: a strong positive or a strong
negative elbow torque. A generator that keeps both modes produces chunks of both signs from the
same observation; a regression (behaviour cloning) averages them into a small elbow torque.

:func:`branch_statistics` measures this on fresh start states: for each state it samples
``n_samples`` chunks, scores each by its mean elbow action over the executed steps, and labels it
``+1`` / ``-1`` when the score exceeds a quarter of the expert's typical magnitude, else ``0``
("averaged", neither branch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from meanflow_sci.errors import InputError, check_positive_int
from meanflow_sci.tasks.control.envs import env_dims, make_env
from meanflow_sci.tasks.control.experts import ReacherExpert

__all__ = ["elbow_branch", "branch_statistics"]

# Reacher observations: [cos q0, cos q1, sin q0, sin q1, target x, y, qvel0, qvel1, dx, dy].
_SIN_ELBOW = 3


def elbow_branch(obs: np.ndarray) -> np.ndarray:
    """Elbow branch of Reacher observations ``(..., 10)``: +1 (angle > 0), -1 (< 0), 0."""
    return np.sign(np.asarray(obs)[..., _SIN_ELBOW]).astype(int)


def _expert_scores(env: Any, seeds: list[int], n_steps: int, elbow: int) -> np.ndarray:
    """Mean elbow action over the first ``n_steps`` for both branches: ``(len(seeds), 2)``."""
    out = np.zeros((len(seeds), 2))
    for j, branch in enumerate(("up", "down")):
        ex = ReacherExpert(branch=branch)
        ex.check(env)
        for i, s in enumerate(seeds):
            obs, _ = env.reset(seed=s)
            ex.reset(env, np.random.default_rng(s))
            acts = []
            for _ in range(n_steps):
                a = ex.act(env, obs)
                acts.append(a[elbow])
                obs = env.step(a)[0]
            out[i, j] = np.mean(acts)
    return out


def branch_statistics(
    policy: Any,
    env_id: str = "Reacher-v5",
    *,
    n_states: int = 32,
    n_samples: int = 16,
    seed: int = 10_000,
    elbow_index: int = 1,
    **env_kwargs: Any,
) -> dict:
    """How often sampled chunks take each elbow branch from the same start state.

    Args:
        policy: A ``ChunkPolicy`` (uses ``generate`` with a fixed seed).
        env_id: A Reacher-like id (the IK expert must apply).
        n_states: Fresh start states (reset seeds ``seed .. seed + n_states - 1``).
        n_samples: Chunks sampled per state.
        seed: Base reset seed (away from training seeds) and sampling seed.
        elbow_index: Action index of the elbow actuator.

    Returns:
        JSON-able dict: ``up_fraction``, ``down_fraction``, ``averaged_fraction`` (over all
        chunks), ``both_branches_rate`` (states with chunks of both signs), ``minority_share``
        (mean over states of the smaller branch's share), ``mean_abs_elbow`` (policy) and
        ``expert_abs_elbow`` (both expert branches), ``threshold``.
    """
    check_positive_int("n_states", n_states)
    check_positive_int("n_samples", n_samples)
    env = make_env(env_id, **env_kwargs)
    try:
        obs_dim, act_dim = env_dims(env)
        if (policy.obs_dim, policy.act_dim) != (obs_dim, act_dim):
            raise InputError(
                f"policy: obs/action dims ({policy.obs_dim}, {policy.act_dim}) do not match env "
                f"{env_id} with obs_dim={obs_dim}, act_dim={act_dim}"
            )
        seeds = [seed + i for i in range(n_states)]
        starts = np.stack([env.reset(seed=s)[0] for s in seeds]).astype(np.float32)
        expert = _expert_scores(env, seeds, policy.n_action_steps, elbow_index)
    finally:
        env.close()
    hist = np.repeat(starts[:, None], policy.n_obs_steps, axis=1)  # padded like training
    hist = np.repeat(hist, n_samples, axis=0)
    windows = policy.generate(hist, seed=seed)
    score = windows[:, : policy.n_action_steps, elbow_index].mean(axis=1)
    score = score.reshape(n_states, n_samples)
    expert_abs = float(np.median(np.abs(expert)))
    thr = 0.25 * expert_abs
    label = np.where(score > thr, 1, np.where(score < -thr, -1, 0))
    n_up = (label == 1).sum(axis=1)
    n_down = (label == -1).sum(axis=1)
    return {
        "n_states": n_states,
        "n_samples": n_samples,
        "up_fraction": float((label == 1).mean()),
        "down_fraction": float((label == -1).mean()),
        "averaged_fraction": float((label == 0).mean()),
        "both_branches_rate": float(np.mean((n_up > 0) & (n_down > 0))),
        "minority_share": float(np.mean(np.minimum(n_up, n_down) / n_samples)),
        "mean_abs_elbow": float(np.mean(np.abs(score))),
        "expert_abs_elbow": expert_abs,
        "expert_sign_agreement": float(np.mean((expert[:, 0] > 0) & (expert[:, 1] < 0))),
        "threshold": thr,
    }
