"""Closed-loop evaluation: returns, success, normalised score and decision latency.

Episode ``i`` resets with seed ``seed + i``. Policies (anything with ``plan(obs_history)``, e.g.
:class:`~meanflow_sci.tasks.control.policy.ChunkPolicy`) run all episodes in lockstep and are
called on the batch of live episodes, re-planning every ``n_action_steps`` steps. Experts (a name
or an ``Expert``) act step by step from the simulator state.

Success: where the environment reports a flag in its step ``info`` (``info["success"]`` in
Meta-World, ``info["is_success"]`` in gymnasium-robotics) an episode succeeds when the flag is set
and ends there, as those benchmarks count it; other tasks use the registry's rule
(``envs.ENVS``). The rate comes with a 95 % Wilson interval over episodes.

Normalised score: ``(R - R_random) / (R_expert - R_random)`` with the mean returns of the default
expert and of uniform random actions. With ``reference="auto"`` both run on the *same* seeds and
step limit (results cached per process); a ``collect`` dataset can stand in for the expert (its
episode returns cut to the same step limit), or a dict ``{"expert": float, "random": float}``.

Decision latency is measured apart from the batched rollout: ``latency_probes`` single-history
calls of ``plan`` (batch 1, the deployed case) on observation histories met during the episodes,
after one warm-up call. Median and 95th percentile are reported in milliseconds.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from meanflow_sci.errors import InputError, check_positive_int
from meanflow_sci.tasks.control.collect import check_dataset, update_success
from meanflow_sci.tasks.control.envs import env_dims, env_info, make_env
from meanflow_sci.tasks.control.experts import Expert, make_expert

__all__ = ["Policy", "evaluate", "reference_returns", "normalised_score", "success_interval"]


class Policy(Protocol):
    """What :func:`evaluate` needs from a policy."""

    obs_dim: int
    act_dim: int
    n_obs_steps: int
    n_action_steps: int

    def plan(self, obs_history: np.ndarray) -> np.ndarray:
        """``(B, To, obs_dim)`` -> ``(B, Ta, act_dim)``."""
        ...


_REFERENCE_CACHE: dict[str, dict[str, float]] = {}


def _time_limit(env: Any, max_steps: int | None) -> int:
    limit = env.spec.max_episode_steps if env.spec is not None else None
    if limit is None:
        limit = getattr(env.unwrapped, "max_path_length", None)  # Meta-World's own limit
    if limit is None:
        limit = max_steps if max_steps is not None else 10**9
    return min(limit, max_steps) if max_steps is not None else limit


def _success(
    env_id: str, last_obs: np.ndarray, length: int, terminated: bool, limit: int, flag: Any = None
) -> Any:
    """The environment's own flag where it reports one, else the registry's rule (or None)."""
    if flag is not None:
        return bool(flag)
    fn = env_info(env_id).success
    return None if fn is None else bool(fn(last_obs, length, terminated, limit))


def _run_expert(
    expert: str | Expert,
    env_id: str,
    n_episodes: int,
    seed: int,
    max_steps: int | None,
    progress: bool,
    env_kwargs: dict,
    record: int = 0,
) -> dict:
    env = make_env(env_id, **env_kwargs)
    try:
        ex = make_expert(expert, env)
        limit = _time_limit(env, max_steps)
        returns, lengths, success, finals, times, changes = [], [], [], [], [], []
        traj: list[list] = [[] for _ in range(min(record, n_episodes))]
        for i in tqdm(range(n_episodes), desc=f"eval {ex.name}", disable=not progress):
            obs, _ = env.reset(seed=seed + i)
            ex.reset(env, np.random.default_rng([seed, i, 1]))
            total, step, terminated, flag, jerk, prev = 0.0, 0, False, None, 0.0, None
            while True:
                if i < len(traj):
                    traj[i].append(obs.tolist())
                t0 = time.perf_counter()
                action = ex.act(env, obs)
                times.append(time.perf_counter() - t0)
                if prev is not None:
                    jerk += float(np.sum((np.asarray(action) - prev) ** 2))
                prev = np.asarray(action, dtype=np.float64)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                step += 1
                flag = update_success(flag, info)
                if terminated or truncated or flag or step >= limit:
                    break
            returns.append(total)
            lengths.append(step)
            changes.append(jerk / max(step - 1, 1))
            finals.append(obs.tolist())
            success.append(_success(env_id, obs, step, terminated, limit, flag))
    finally:
        env.close()
    return {
        "name": ex.name,
        "returns": returns,
        "lengths": lengths,
        "action_change": changes,
        "success": success,
        "final_obs": finals,
        "latency_s": times,
        "n_action_steps": 1,
        "trajectories": traj,
    }


def _run_policy(
    policy: Policy,
    env_id: str,
    n_episodes: int,
    seed: int,
    max_steps: int | None,
    progress: bool,
    latency_probes: int,
    env_kwargs: dict,
    record: int = 0,
) -> dict:
    envs = [make_env(env_id, **env_kwargs) for _ in range(n_episodes)]
    try:
        obs_dim, act_dim = env_dims(envs[0])
        if (policy.obs_dim, policy.act_dim) != (obs_dim, act_dim):
            src = getattr(policy, "env_id", "") or "its data"
            raise InputError(
                f"policy: obs/action dims ({policy.obs_dim}, {policy.act_dim}) (trained on {src}) "
                f"do not match env {env_id} with obs_dim={obs_dim}, act_dim={act_dim}"
            )
        if hasattr(policy, "reset"):
            policy.reset(seed)
        limit = _time_limit(envs[0], max_steps)
        low, high = envs[0].action_space.low, envs[0].action_space.high
        to, ta = policy.n_obs_steps, policy.n_action_steps
        first = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
        hist = np.stack([np.repeat(o[None], to, axis=0) for o in first]).astype(np.float32)
        returns = np.zeros(n_episodes)
        lengths = np.zeros(n_episodes, dtype=int)
        terminated = np.zeros(n_episodes, dtype=bool)
        live = np.ones(n_episodes, dtype=bool)
        flags: list[bool | None] = [None] * n_episodes
        jerk = np.zeros(n_episodes)  # sum of squared changes between consecutive actions
        prev = np.full((n_episodes, act_dim), np.nan)
        finals = [o.copy() for o in first]
        traj: list[list] = [[o.tolist()] for o in first[: min(record, n_episodes)]]
        probes: list[np.ndarray] = []
        queue = np.zeros((n_episodes, 0, act_dim))
        bar = tqdm(total=limit, desc="eval policy", disable=not progress)
        step = 0
        while live.any() and step < limit:
            if queue.shape[1] == 0:
                idx = np.flatnonzero(live)
                chunk = np.asarray(policy.plan(hist[idx]), dtype=np.float64)
                queue = np.zeros((n_episodes, chunk.shape[1], act_dim))
                queue[idx] = chunk
                if len(probes) < latency_probes:
                    probes.append(hist[idx[:1]].copy())
            action, queue = queue[:, 0], queue[:, 1:]
            for i in np.flatnonzero(live):
                a = np.clip(action[i], low, high)
                if lengths[i] > 0:
                    jerk[i] += float(np.sum((a - prev[i]) ** 2))
                prev[i] = a
                obs, reward, term, trunc, info = envs[i].step(a)
                returns[i] += float(reward)
                lengths[i] += 1
                finals[i] = obs
                flags[i] = update_success(flags[i], info)
                end = term or trunc or bool(flags[i]) or lengths[i] >= limit
                if i < len(traj) and not end:
                    traj[i].append(obs.tolist())
                hist[i] = np.concatenate([hist[i, 1:], obs[None].astype(np.float32)])
                if end:
                    live[i] = False
                    terminated[i] = term
            step += 1
            bar.update(1)
        bar.close()
    finally:
        for env in envs:
            env.close()
    # Latency at batch size 1, apart from the batched rollout; the first call warms up.
    times = []
    if probes:
        policy.plan(probes[0])
        reps = int(np.ceil(latency_probes / len(probes)))
        for h in (probes * reps)[:latency_probes]:
            t0 = time.perf_counter()
            policy.plan(h)
            times.append(time.perf_counter() - t0)
    success = [
        _success(env_id, finals[i], int(lengths[i]), bool(terminated[i]), limit, flags[i])
        for i in range(n_episodes)
    ]
    return {
        "name": getattr(policy, "name", type(policy).__name__),
        "returns": returns.tolist(),
        "lengths": lengths.tolist(),
        "action_change": (jerk / np.maximum(lengths - 1, 1)).tolist(),
        "success": success,
        "final_obs": [np.asarray(f).tolist() for f in finals],
        "latency_s": times,
        "n_action_steps": ta,
        "trajectories": traj,
    }


def reference_returns(
    env_id: str,
    *,
    n_episodes: int,
    seed: int = 0,
    max_steps: int | None = None,
    expert: str | Expert = "auto",
    **env_kwargs: Any,
) -> dict[str, float]:
    """Mean returns of the expert and of random actions on the given seeds (cached)."""
    key = json.dumps(
        [env_id, n_episodes, seed, max_steps, str(expert), env_kwargs], default=str, sort_keys=True
    )
    if key not in _REFERENCE_CACHE or isinstance(expert, Expert):
        ex = _run_expert(expert, env_id, n_episodes, seed, max_steps, False, env_kwargs)
        rnd = _run_expert("random", env_id, n_episodes, seed, max_steps, False, env_kwargs)
        _REFERENCE_CACHE[key] = {
            "expert": float(np.mean(ex["returns"])),
            "random": float(np.mean(rnd["returns"])),
        }
    return dict(_REFERENCE_CACHE[key])


def success_interval(success: Any, level: float = 0.95) -> list[float]:
    """Wilson score interval of a success rate from per-episode outcomes (``scipy.stats``)."""
    from scipy.stats import binomtest

    flags = np.asarray(success, dtype=bool)
    ci = binomtest(int(flags.sum()), int(flags.size)).proportion_ci(level, method="wilson")
    return [float(ci.low), float(ci.high)]


def normalised_score(ret: float, reference: dict[str, float]) -> float:
    """``(ret - random) / (expert - random)``: 0 is random, 1 is the expert."""
    span = reference["expert"] - reference["random"]
    if abs(span) < 1e-12:
        return float("nan")
    return float((ret - reference["random"]) / span)


def _dataset_reference(
    ds: xr.Dataset, env_id: str, n_episodes: int, seed: int, max_steps: int | None, kw: dict
) -> dict[str, float]:
    env = make_env(env_id, **kw)
    try:
        check_dataset(ds, env, name="reference")
        limit = _time_limit(env, max_steps)
    finally:
        env.close()
    expert = float(ds.reward.isel(time=slice(0, limit)).sum("time").mean())
    rnd = _run_expert("random", env_id, n_episodes, seed, max_steps, False, kw)
    return {"expert": expert, "random": float(np.mean(rnd["returns"]))}


def evaluate(
    policy: Policy | str | Expert,
    env_id: str,
    *,
    n_episodes: int = 10,
    seed: int = 0,
    max_steps: int | None = None,
    reference: str | dict | xr.Dataset | None = "auto",
    latency_probes: int = 30,
    record_episodes: int = 0,
    progress: bool = False,
    **env_kwargs: Any,
) -> dict:
    """Run ``policy`` closed loop and score it.

    Args:
        policy: A policy with ``plan`` (see :class:`Policy`), or an expert name/instance.
        env_id: The gymnasium id.
        n_episodes: Episodes, >= 1 (episode ``i`` resets with seed ``seed + i``).
        seed: Base seed.
        max_steps: Cut episodes at this many steps (default: the env's time limit).
        reference: ``"auto"`` (expert and random on the same seeds), a ``collect`` dataset, a dict
            ``{"expert": R, "random": R}``, or None (no normalised score).
        latency_probes: Batch-1 decisions timed for the latency figures.
        record_episodes: Return the observation sequences of this many first episodes.
        progress: Show progress bars.
        **env_kwargs: Passed to ``gym.make`` (default: a policy's own ``env_kwargs`` when it was
            trained on ``env_id``).

    Returns:
        JSON-able dict: ``name``, ``env_id``, ``n_episodes``, ``seed``, ``max_steps``, ``returns``,
        ``lengths``, ``mean_return``, ``std_return``, ``success_rate`` (None where undefined),
        ``successes`` (per episode), ``success_ci`` (95 % Wilson interval over episodes),
        ``action_change`` (mean squared change between consecutive executed actions, averaged
        over episodes: jitter),
        ``reference`` ({"expert", "random"} or None), ``normalised_score``,
        ``latency_ms_median``, ``latency_ms_p95`` (per decision), ``n_action_steps``,
        ``final_obs``, ``trajectories`` (observation lists of the recorded episodes).

    Raises:
        InputError: Unknown env id, ``n_episodes < 1``, or obs/action sizes that differ between
            the policy (or reference dataset) and the env.
    """
    check_positive_int("n_episodes", n_episodes)
    check_positive_int("seed", seed, minimum=0)
    if max_steps is not None:
        check_positive_int("max_steps", max_steps)
    if not env_kwargs and getattr(policy, "env_id", None) == env_id:
        env_kwargs = dict(getattr(policy, "env_kwargs", {}))  # e.g. the Meta-World task name
    env_info(env_id)  # unknown ids fail here, listing the known ones
    if isinstance(policy, (str, Expert)):
        run = _run_expert(
            policy, env_id, n_episodes, seed, max_steps, progress, env_kwargs, record_episodes
        )
    elif hasattr(policy, "plan"):
        run = _run_policy(
            policy,
            env_id,
            n_episodes,
            seed,
            max_steps,
            progress,
            latency_probes,
            env_kwargs,
            record_episodes,
        )
    else:
        raise InputError(
            f"policy: expected an object with plan(obs_history), an Expert or an expert name, "
            f"got {type(policy).__name__}"
        )
    if reference is None:
        ref = None
    elif isinstance(reference, xr.Dataset):
        ref = _dataset_reference(reference, env_id, n_episodes, seed, max_steps, env_kwargs)
    elif isinstance(reference, dict):
        if not {"expert", "random"} <= set(reference):
            raise InputError(
                f"reference: expected a dict with keys 'expert' and 'random', got {reference!r}"
            )
        ref = {"expert": float(reference["expert"]), "random": float(reference["random"])}
    elif reference == "auto":
        ref = reference_returns(
            env_id, n_episodes=n_episodes, seed=seed, max_steps=max_steps, **env_kwargs
        )
    else:
        raise InputError(
            f"reference: expected 'auto', a dataset, a dict or None, got {reference!r}"
        )
    returns = np.asarray(run["returns"], dtype=float)
    lat = np.asarray(run["latency_s"], dtype=float) * 1e3
    success = run["success"]
    mean_ret = float(returns.mean())
    return {
        "name": run["name"],
        "env_id": env_id,
        "n_episodes": n_episodes,
        "seed": seed,
        "max_steps": max_steps,
        "returns": returns.tolist(),
        "lengths": run["lengths"],
        "mean_return": mean_ret,
        "std_return": float(returns.std()),
        "success_rate": None if success[0] is None else float(np.mean(success)),
        "successes": None if success[0] is None else [bool(f) for f in success],
        "success_ci": None if success[0] is None else success_interval(success),
        "action_change": float(np.mean(run["action_change"])),
        "reference": ref,
        "normalised_score": None if ref is None else normalised_score(mean_ret, ref),
        "latency_ms_median": float(np.median(lat)) if lat.size else float("nan"),
        "latency_ms_p95": float(np.percentile(lat, 95)) if lat.size else float("nan"),
        "n_action_steps": run["n_action_steps"],
        "final_obs": run["final_obs"],
        "trajectories": run["trajectories"],
    }
