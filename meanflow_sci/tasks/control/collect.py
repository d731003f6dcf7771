"""Expert demonstrations as an ``xarray.Dataset`` with dims ``(episode, time)``.

Layout (``E`` episodes, ``T`` the longest episode, shorter ones padded):

- ``obs`` ``(episode, time, obs_dim)`` float32: the observation *before* ``action`` at that time.
- ``action`` ``(episode, time, act_dim)`` float32: the action executed (exploration noise included).
- ``reward`` ``(episode, time)`` float32: reward received after that action.
- ``done`` ``(episode, time)`` bool: the episode ended at that step (terminated or truncated);
  padding after the end is ``True``.
- ``terminated`` ``(episode, time)`` bool: the environment's own termination (a fall).
- ``length`` ``(episode,)`` int: valid steps; ``obs``/``action`` are NaN beyond it.
- ``mode`` ``(episode,)`` int: the expert's discrete mode (Reacher: +1 elbow-up, -1 elbow-down).
- ``seed`` ``(episode,)`` int: the ``env.reset`` seed of the episode.
- ``success`` ``(episode,)`` bool, where the environment reports a success flag in its step
  ``info`` (Meta-World, gymnasium-robotics): the episode succeeded. Such episodes end at their
  first success, as those benchmarks score them.
- ``variation`` ``(episode, variation_dim)`` float32, where ``env.reset`` reports
  ``info["variation"]`` (Meta-World: the task's object and goal positions, see
  :mod:`.meta_world`).

Attributes: ``env_id``, ``expert``, ``expert_config`` (JSON), ``env_kwargs`` (JSON), ``seed``,
``max_steps``, ``obs_dim``, ``act_dim``, ``dt``. Everything round-trips through NetCDF
(``ds.to_netcdf(path)`` / :func:`load_dataset`).

Example:
    >>> ds = collect("InvertedPendulum-v5", 4, progress=False)
    >>> ds.obs.shape
    (4, 1000, 4)
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from meanflow_sci.errors import InputError, check_positive_int
from meanflow_sci.tasks.control.envs import env_dims, env_info, make_env
from meanflow_sci.tasks.control.experts import Expert, make_expert

__all__ = [
    "collect",
    "load_dataset",
    "check_dataset",
    "episode_returns",
    "info_success",
    "update_success",
]

REQUIRED_VARS = ("obs", "action", "reward", "done", "length")


def info_success(info: dict) -> bool | None:
    """The success flag an environment reports in its step ``info``, or None if it has none.

    Meta-World reports ``info["success"]``, gymnasium-robotics ``info["is_success"]``.
    """
    for key in ("success", "is_success"):
        if key in info:
            return bool(np.asarray(info[key]).item())
    return None


def update_success(success: bool | None, info: dict) -> bool | None:
    """Success of an episode so far after a step with ``info``: None while the environment
    reports no flag, then True once it has succeeded."""
    now = info_success(info)
    return success if now is None else bool(success) or now


def _run_episode(
    env: gym.Env, expert: Expert, seed: int, rng: np.random.Generator, max_steps: int | None
) -> dict:
    obs, info = env.reset(seed=seed)
    variation = info.get("variation")
    expert.reset(env, rng)
    obs_l, act_l, rew_l, done_l, term_l = [], [], [], [], []
    success = None
    step = 0
    while True:
        action = expert.act(env, obs)
        nxt, reward, terminated, truncated, info = env.step(action)
        step += 1
        success = update_success(success, info)
        cut = max_steps is not None and step >= max_steps
        end = terminated or truncated or bool(success) or cut
        obs_l.append(obs)
        act_l.append(action)
        rew_l.append(reward)
        done_l.append(end)
        term_l.append(terminated)
        obs = nxt
        if end:
            break
    return {
        "obs": np.asarray(obs_l, dtype=np.float32),
        "action": np.asarray(act_l, dtype=np.float32),
        "reward": np.asarray(rew_l, dtype=np.float32),
        "done": np.asarray(done_l, dtype=bool),
        "terminated": np.asarray(term_l, dtype=bool),
        "mode": int(expert.mode),
        "success": success,
        "variation": None if variation is None else np.asarray(variation, dtype=np.float32),
    }


def collect(
    env_id: str,
    n_episodes: int,
    *,
    expert: str | Expert = "auto",
    seed: int = 0,
    max_steps: int | None = None,
    progress: bool = True,
    expert_kwargs: dict | None = None,
    **env_kwargs,
) -> xr.Dataset:
    """Roll out an expert and return the demonstrations.

    Episode ``i`` resets with seed ``seed + i``; the expert's per-episode knobs (branch, gain
    jitter, noise) draw from ``numpy.random.default_rng([seed, i])``, so a call is reproducible.

    Args:
        env_id: A gymnasium id (see ``envs.ENVS``; any MuJoCo id works where an expert applies).
        n_episodes: Number of episodes, >= 1.
        expert: A name in ``experts.EXPERTS``, ``"auto"`` or an ``Expert`` instance.
        seed: Base seed.
        max_steps: Cut episodes at this many steps (default: the env's time limit).
        progress: Show a progress bar over episodes.
        expert_kwargs: Knobs for a named expert (e.g. ``{"gain_jitter": 0.3}``); with
            ``expert="auto"`` and None, the registry's ``EnvInfo.expert_kwargs``.
        **env_kwargs: Passed to ``gym.make`` (e.g. ``xml_file=``).

    Returns:
        The dataset described in the module docstring.

    Raises:
        InputError: Unknown env id, an expert that does not apply, ``n_episodes < 1``.

    Example (Meta-World, with the ``metaworld`` extra):
        >>> ds = collect("Meta-World/MT1", 10, env_name="push-v3")  # scripted expert
        >>> float(ds.success.mean()), ds.variation.shape
        (1.0, (10, 6))
    """
    check_positive_int("n_episodes", n_episodes)
    if max_steps is not None:
        check_positive_int("max_steps", max_steps)
    env = make_env(env_id, **env_kwargs)
    try:
        if expert == "auto" and expert_kwargs is None:
            expert_kwargs = env_info(env_id).expert_kwargs
        ex = make_expert(expert, env, **(expert_kwargs or {}))
        obs_dim, act_dim = env_dims(env)
        episodes = []
        for i in tqdm(range(n_episodes), desc=f"collect {env_id}", disable=not progress):
            rng = np.random.default_rng([seed, i])
            episodes.append(_run_episode(env, ex, seed + i, rng, max_steps))
        dt = float(getattr(env.unwrapped, "dt", float("nan")))
    finally:
        env.close()

    lengths = np.array([len(e["reward"]) for e in episodes])
    t_max = int(lengths.max())
    n = len(episodes)
    obs = np.full((n, t_max, obs_dim), np.nan, dtype=np.float32)
    act = np.full((n, t_max, act_dim), np.nan, dtype=np.float32)
    rew = np.zeros((n, t_max), dtype=np.float32)
    done = np.ones((n, t_max), dtype=bool)
    term = np.zeros((n, t_max), dtype=bool)
    for i, e in enumerate(episodes):
        k = lengths[i]
        obs[i, :k], act[i, :k], rew[i, :k] = e["obs"], e["action"], e["reward"]
        done[i, :k], term[i, :k] = e["done"], e["terminated"]
    extra = {}
    if all(e["success"] is not None for e in episodes):
        extra["success"] = (("episode",), np.array([e["success"] for e in episodes], dtype=bool))
    if all(e["variation"] is not None for e in episodes):
        extra["variation"] = (
            ("episode", "variation_dim"),
            np.stack([e["variation"] for e in episodes]),
        )
    ds = xr.Dataset(
        {
            **extra,
            "obs": (("episode", "time", "obs_dim"), obs),
            "action": (("episode", "time", "act_dim"), act),
            "reward": (("episode", "time"), rew),
            "done": (("episode", "time"), done),
            "terminated": (("episode", "time"), term),
            "length": (("episode",), lengths.astype(np.int64)),
            "mode": (("episode",), np.array([e["mode"] for e in episodes], dtype=np.int64)),
            "seed": (("episode",), seed + np.arange(n, dtype=np.int64)),
        },
        coords={"episode": np.arange(n), "time": np.arange(t_max)},
        attrs={
            "env_id": env_id,
            "expert": ex.name,
            "expert_config": json.dumps(ex.config()),
            "env_kwargs": json.dumps(env_kwargs, default=str),
            "seed": int(seed),
            "max_steps": -1 if max_steps is None else int(max_steps),
            "obs_dim": obs_dim,
            "act_dim": act_dim,
            "dt": dt,
        },
    )
    return ds


def load_dataset(path: str | Path) -> xr.Dataset:
    """Read a dataset written with ``ds.to_netcdf(path)`` (loaded into memory) and check it."""
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    for name in ("done", "terminated", "success"):
        if name in ds and ds[name].dtype != bool:
            ds[name] = ds[name].astype(bool)
    check_dataset(ds)
    return ds


def check_dataset(ds: xr.Dataset, env: gym.Env | None = None, *, name: str = "dataset") -> None:
    """Check the documented layout, and if ``env`` is given that the dimensions match it.

    Raises:
        InputError: Missing variables, wrong dims, or obs/action sizes that differ from ``env``.
    """
    if not isinstance(ds, xr.Dataset):
        raise InputError(f"{name}: expected an xarray.Dataset from collect(), got {type(ds)}")
    missing = [v for v in REQUIRED_VARS if v not in ds]
    if missing:
        raise InputError(f"{name}: expected variables {list(REQUIRED_VARS)}, missing {missing}")
    if ds.obs.dims != ("episode", "time", "obs_dim") or ds.action.dims != (
        "episode",
        "time",
        "act_dim",
    ):
        raise InputError(
            f"{name}: expected obs dims (episode, time, obs_dim) and action dims "
            f"(episode, time, act_dim), got {ds.obs.dims} and {ds.action.dims}"
        )
    if env is not None:
        obs_dim, act_dim = env_dims(env)
        got = (ds.sizes["obs_dim"], ds.sizes["act_dim"])
        if got != (obs_dim, act_dim):
            env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            raise InputError(
                f"{name}: obs/action dims {got} (from {ds.attrs.get('env_id', '?')}) do not match "
                f"env {env_id} with obs_dim={obs_dim}, act_dim={act_dim}"
            )


def episode_returns(ds: xr.Dataset) -> np.ndarray:
    """Undiscounted return of each episode, shape ``(episode,)``."""
    return ds.reward.sum("time").values.astype(np.float64)
