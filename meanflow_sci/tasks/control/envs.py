"""Environment registry for the control tasks.

Any gymnasium MuJoCo id works with :func:`make_env` (and any ``gym.make`` keyword, such as a
custom ``xml_file``), and so do Meta-World's tasks as ``make_env("Meta-World/MT1",
env_name="push-v3")`` with the ``metaworld`` extra (see :mod:`.meta_world`). The registry
:data:`ENVS` only adds what gymnasium does not know: the default expert and how success is judged
where the environment does not report it in its step ``info`` (``info["success"]`` or
``info["is_success"]``, which take precedence). Ids outside the registry get ``expert="auto"``
resolution and no success rule.

Example:
    >>> env = make_env("InvertedPendulum-v5")
    >>> env.observation_space.shape, env.action_space.shape
    ((4,), (1,))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from meanflow_sci.errors import InputError
from meanflow_sci.tasks.control import meta_world

__all__ = ["EnvInfo", "ENVS", "make_env", "env_info", "env_dims", "known_env_ids"]


def _survived(obs: np.ndarray, length: int, terminated: bool, max_steps: int) -> bool:
    """Pendulum family: success means the episode ran to its time limit without falling."""
    return (not terminated) and length >= max_steps


def _reached(obs: np.ndarray, length: int, terminated: bool, max_steps: int) -> bool:
    """Reacher: the last two observation entries are fingertip minus target (x, y)."""
    return bool(np.linalg.norm(obs[-2:]) < REACHER_SUCCESS_RADIUS)


# Fingertip-to-target distance (m) that counts as reached at the end of a Reacher episode. The
# target sphere has radius 0.009 and the fingertip 0.01, so 0.02 means the spheres touch.
REACHER_SUCCESS_RADIUS = 0.02

SuccessFn = Callable[[np.ndarray, int, bool, int], bool]


@dataclass(frozen=True)
class EnvInfo:
    """What the control tasks know about one environment id.

    Attributes:
        env_id: The gymnasium id.
        expert: Name of the default expert (a key of ``experts.EXPERTS``).
        success: ``success(last_obs, length, terminated, max_steps) -> bool`` or None where the
            task has no notion of success.
        description: One line for listings.
        expert_kwargs: Knobs ``collect(expert="auto")`` gives the default expert: the diversity
            that makes demonstrations cover more than one trajectory (gain jitter, noise).
    """

    env_id: str
    expert: str
    success: SuccessFn | None = None
    description: str = ""
    expert_kwargs: dict = field(default_factory=dict)


ENVS: dict[str, EnvInfo] = {
    "InvertedPendulum-v5": EnvInfo(
        "InvertedPendulum-v5",
        "lqr",
        _survived,
        "cart-pole balance; obs 4, act 1, 1000 steps",
        {"gain_jitter": 0.3, "action_noise": 0.1},
    ),
    "InvertedDoublePendulum-v5": EnvInfo(
        "InvertedDoublePendulum-v5",
        "lqr",
        _survived,
        "double pendulum; obs 9, act 1, 1000 steps",
        {"gain_jitter": 0.3, "action_noise": 0.05},
    ),
    "Reacher-v5": EnvInfo(
        "Reacher-v5",
        "reacher",
        _reached,
        "two-link arm to a random target; obs 10, act 2, 50 steps",
    ),
    "HalfCheetah-v5": EnvInfo(
        "HalfCheetah-v5", "mppi", None, "planar runner; obs 17, act 6, 1000 steps"
    ),
    "Hopper-v5": EnvInfo("Hopper-v5", "mppi", None, "one-legged hopper; obs 11, act 3"),
    "Walker2d-v5": EnvInfo("Walker2d-v5", "mppi", None, "planar biped; obs 17, act 6"),
    "Swimmer-v5": EnvInfo("Swimmer-v5", "mppi", None, "three-link swimmer; obs 8, act 2"),
    meta_world.ENV_ID: EnvInfo(
        meta_world.ENV_ID,
        "scripted",
        None,
        "Meta-World manipulation task (env_name=...); obs 39, act 4, 500 steps, info['success']",
    ),
}


def known_env_ids() -> list[str]:
    """The registry's ids first, then every other gymnasium MuJoCo id."""
    others = sorted(
        k
        for k, spec in gym.registry.items()
        if k not in ENVS and "mujoco" in str(spec.entry_point) and k.endswith("-v5")
    )
    return list(ENVS) + others


def _check_env_id(env_id: str) -> None:
    if isinstance(env_id, str) and env_id.startswith("Meta-World/"):
        meta_world.require()
        if env_id != meta_world.ENV_ID:
            raise InputError(
                f"env_id: Meta-World tasks run one at a time as {meta_world.ENV_ID!r} with "
                f"env_name=..., got {env_id!r}"
            )
        return
    if not isinstance(env_id, str) or env_id not in gym.registry:
        raise InputError(
            f"env_id: expected a registered gymnasium id such as one of {list(ENVS)} "
            f"(any gymnasium MuJoCo id works, e.g. {known_env_ids()[len(ENVS) :][:6]}), "
            f"got {env_id!r}"
        )


def env_info(env_id: str) -> EnvInfo:
    """The registry entry for ``env_id``, or a default one (expert "auto", no success rule)."""
    _check_env_id(env_id)
    return ENVS.get(env_id, EnvInfo(env_id, "auto", None, "unregistered gymnasium id"))


def make_env(env_id: str, **env_kwargs) -> gym.Env:
    """``gym.make(env_id, **env_kwargs)`` with a clear error for unknown ids.

    Args:
        env_id: A gymnasium id, e.g. ``"InvertedPendulum-v5"``.
        **env_kwargs: Passed to ``gym.make`` (``xml_file=``, ``max_episode_steps=``, ...).

    Returns:
        The environment (time-limit wrapper included).

    Raises:
        InputError: If ``env_id`` is not registered, listing the known ids (for Meta-World:
            a missing or unknown ``env_name``, listing the task names).
        ImportError: A Meta-World id without the ``metaworld`` extra or with mujoco 4.
    """
    _check_env_id(env_id)
    if env_id == meta_world.ENV_ID:
        return meta_world.make(**env_kwargs)
    return gym.make(env_id, **env_kwargs)


def env_dims(env: gym.Env) -> tuple[int, int]:
    """``(obs_dim, act_dim)`` of a flat-box environment."""
    obs_shape = env.observation_space.shape
    act_shape = env.action_space.shape
    if obs_shape is None or len(obs_shape) != 1 or act_shape is None or len(act_shape) != 1:
        raise InputError(
            f"env: expected flat Box observation and action spaces, got "
            f"{env.observation_space} and {env.action_space}"
        )
    return int(obs_shape[0]), int(act_shape[0])
