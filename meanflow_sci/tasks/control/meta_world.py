"""Meta-World manipulation tasks (the ``metaworld`` extra: ``pip install -e ".[metaworld]"``).

One id, ``"Meta-World/MT1"``, with the task named by ``env_name`` as gymnasium does it::

    env = make_env("Meta-World/MT1", env_name="push-v3")

Observations are Meta-World's 39-dim state vector with the goal visible (hand, gripper, two object
poses, the previous frame of those, the goal), actions are 4-dim (hand xyz motion, gripper).

Task variations. Meta-World draws a task's object and goal positions (its ``rand_vec``) when the
benchmark is built, 50 per seed, and ignores ``env.reset(seed=...)``. Here the episode seed picks
the variation: seed ``s`` is variation ``s % 50`` of ``metaworld.MT1(env_name, seed=s // 50)``.
Seeds in one block of 50 are 50 different variations; a block never used in training gives
held-out goal positions (the benchmarks evaluate from seed 10 000). ``reset`` reports the variation
vector as ``info["variation"]``, and :func:`~meanflow_sci.tasks.control.collect` stores it per
episode.

Meta-World 3.x pins ``mujoco==3.3.0``: with mujoco 4 its reset writes weld data of the old size
and fails, so :func:`require` refuses other versions with that explanation. The rest of the
control adapter works with either mujoco.
"""

from __future__ import annotations

import difflib
import functools
import pickle
from typing import Any

import gymnasium as gym
import numpy as np

from meanflow_sci.errors import InputError

__all__ = [
    "ENV_ID",
    "VARIATIONS_PER_SEED",
    "GoalVariations",
    "available",
    "make",
    "require",
    "scripted_policy",
    "task_names",
    "task_of",
]

ENV_ID = "Meta-World/MT1"
VARIATIONS_PER_SEED = 50
_INSTALL = (
    'pip install -e ".[metaworld]" in an environment of its own (installed over mujoco 4, the '
    "mujoco 3.3.0 it pins leaves mujoco-core 4 behind and no longer imports)"
)


def require() -> Any:
    """Import ``metaworld`` (registering its gymnasium ids) after checking mujoco's version.

    Raises:
        ImportError: Meta-World is not installed, or mujoco is not the 3.3 series it needs.
    """
    try:
        import metaworld
        import mujoco
    except ImportError as err:
        raise ImportError(f"Meta-World tasks need the metaworld extra: {_INSTALL} ({err})") from err
    if not mujoco.__version__.startswith("3.3."):
        raise ImportError(
            f"Meta-World 3.x needs mujoco 3.3 (it pins mujoco==3.3.0; with mujoco "
            f"{mujoco.__version__} its reset fails on the weld data), got mujoco "
            f"{mujoco.__version__}: {_INSTALL}"
        )
    return metaworld


def available() -> bool:
    """Whether :func:`require` would succeed."""
    try:
        require()
    except ImportError:
        return False
    return True


def task_names() -> list[str]:
    """The Meta-World task names, sorted (``"assembly-v3"``, ..., ``"window-open-v3"``)."""
    return sorted(require().MT1.ENV_NAMES)


def _check_task(env_name: Any) -> str:
    names = task_names()
    if not isinstance(env_name, str) or env_name not in names:
        close = difflib.get_close_matches(str(env_name), names, n=3)
        hint = f"close matches {close}; " if close else ""
        raise InputError(
            f"env_name: expected a Meta-World task name ({hint}all {len(names)}: {names}), "
            f"got {env_name!r}"
        )
    return env_name


@functools.lru_cache(maxsize=32)
def _variations(env_name: str, block: int) -> tuple:
    return tuple(require().MT1(env_name, seed=block).train_tasks)


class GoalVariations(gym.Wrapper):
    """Episode seed -> task variation (see the module docstring); reports it in ``info``."""

    def __init__(self, env: gym.Env, env_name: str) -> None:
        super().__init__(env)
        self.env_name = env_name
        self.variation: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None or self.variation is None:
            s = 0 if seed is None else int(seed)
            task = _variations(self.env_name, s // VARIATIONS_PER_SEED)[s % VARIATIONS_PER_SEED]
            self.env.unwrapped.set_task(task)
            self.variation = np.asarray(pickle.loads(task.data)["rand_vec"], dtype=np.float32)
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "variation": self.variation.copy()}


def make(env_name: str | None = None, **env_kwargs: Any) -> gym.Env:
    """The ``Meta-World/MT1`` environment for one task, wrapped in :class:`GoalVariations`.

    ``env_kwargs`` go to the task's class (``render_mode=``, ``camera_name=``, ...).

    Raises:
        InputError: ``env_name`` missing or not a Meta-World task (the message lists them).
        ImportError: See :func:`require`.
    """
    require()
    if env_name is None:
        raise InputError(
            f"env_name: {ENV_ID} needs a task name, e.g. make_env({ENV_ID!r}, "
            f"env_name='reach-v3'); valid names: {task_names()}"
        )
    name = _check_task(env_name)
    # The task class itself, as Meta-World's MT1 builds it, without the 50 variations that
    # gym.make draws for its own task sampler (1.4 s against 0.3 s per environment).
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    base = ALL_V3_ENVIRONMENTS[name](**env_kwargs)
    return GoalVariations(gym.wrappers.TimeLimit(base, base.max_path_length), name)


def task_of(env: gym.Env) -> str | None:
    """The Meta-World task name of an environment made by :func:`make`, else None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, GoalVariations):
            return env.env_name
        env = env.env
    return None


def scripted_policy(env_name: str) -> Any:
    """Meta-World's own scripted policy for a task (``metaworld.policies.ENV_POLICY_MAP``)."""
    require()
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[_check_task(env_name)]()
