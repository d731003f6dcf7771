"""Experts computed offline from the simulator itself (no downloaded demonstrations).

Three families and a random reference:

- ``"lqr"``: LQR about an upright equilibrium, linearised with ``mujoco.mjd_transitionFD`` on a copy
  of the model switched to the Euler integrator (the finite-difference routine refuses RK4), lifted
  to the environment's frame skip and solved with ``scipy.linalg.solve_discrete_are``. Works for any
  MuJoCo model whose initial pose is an equilibrium that actuators can stabilise (the pendulum
  family, custom ``xml_file`` variants included).
- ``"reacher"``: analytic two-link inverse kinematics plus joint PD. Each episode picks the
  elbow-up or elbow-down solution, so the demonstrations are honestly multimodal.
- ``"mppi"``: sampling-based MPC (MPPI) over ``mujoco.rollout`` from the true simulator state, for
  tasks with no analytic expert (HalfCheetah and other locomotion tasks).
- ``"scripted"``: Meta-World's own hand-written policy for the task (``metaworld.policies``),
  the expert every Meta-World imitation benchmark (DP3, MP1) learns from; it reads the observation.
- ``"random"``: uniform actions, the lower reference of the normalised score.

The simulator experts read the true simulator state (``env.unwrapped.data``), not the
observation. Diversity knobs: ``action_noise`` (Gaussian, as a fraction of the half action range)
on all experts, gain jitter on LQR and Reacher, the branch choice on Reacher.

Example:
    >>> env = make_env("InvertedPendulum-v5")
    >>> expert = make_expert("lqr", env)
    >>> obs, _ = env.reset(seed=0)
    >>> expert.reset(env, np.random.default_rng(0))
    >>> action = expert.act(env, obs)
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import mujoco
import mujoco.rollout
import numpy as np
import scipy.linalg

from meanflow_sci.errors import InputError, check_choice, check_positive_int, check_range
from meanflow_sci.tasks.control import meta_world
from meanflow_sci.tasks.control.envs import env_info

__all__ = [
    "Expert",
    "LQRExpert",
    "ReacherExpert",
    "MPPIExpert",
    "RandomExpert",
    "ScriptedExpert",
    "EXPERTS",
    "REWARD_MODELS",
    "make_expert",
]


def _mujoco_env(env: gym.Env, expert: str) -> Any:
    base = env.unwrapped
    if not hasattr(base, "model") or not isinstance(base.model, mujoco.MjModel):
        raise InputError(
            f"expert: {expert!r} needs a MuJoCo environment, got {type(base).__name__}"
        )
    return base


# Largest |qacc| (rad/s^2 or m/s^2) at the initial pose for LQR to treat it as an equilibrium.
EQUILIBRIUM_TOL = 1.0


class Expert(abc.ABC):
    """Base class: ``check(env)`` once, ``reset(env, rng)`` per episode, ``act(env)`` per step.

    Attributes:
        name: Registry name.
        mode: The discrete mode of the current episode (Reacher: +1 elbow-up, -1 elbow-down;
            0 for experts without modes). Stored per episode by ``collect``.
    """

    name = "expert"

    def __init__(self, action_noise: float = 0.0) -> None:
        self.action_noise = check_range("action_noise", action_noise, 0.0)
        self.mode = 0
        self._rng = np.random.default_rng(0)

    def check(self, env: gym.Env) -> None:
        """Raise ``InputError`` if this expert does not apply to ``env``."""
        _mujoco_env(env, self.name)

    def reset(self, env: gym.Env, rng: np.random.Generator) -> None:
        """Start an episode (draw per-episode knobs from ``rng``)."""
        self._rng = rng

    @abc.abstractmethod
    def act(self, env: gym.Env, obs: np.ndarray) -> np.ndarray:
        """The action for the current state, shape ``(act_dim,)``; ``obs`` is the observation."""

    def config(self) -> dict:
        """JSON-able knobs (stored in dataset attributes)."""
        return {"name": self.name, "action_noise": self.action_noise}

    def _finish(self, env: gym.Env, action: np.ndarray) -> np.ndarray:
        """Add exploration noise and clip to the action box."""
        low, high = env.action_space.low, env.action_space.high
        if self.action_noise > 0:
            half = 0.5 * (high - low)
            action = action + self.action_noise * half * self._rng.standard_normal(action.shape)
        return np.clip(action, low, high).astype(env.action_space.dtype)


class RandomExpert(Expert):
    """Uniform random actions (the normalised score's zero)."""

    name = "random"

    def check(self, env: gym.Env) -> None:
        if not isinstance(env.action_space, gym.spaces.Box):
            raise InputError(f"expert: 'random' needs a Box action space, got {env.action_space}")

    def act(self, env: gym.Env, obs: np.ndarray) -> np.ndarray:
        low, high = env.action_space.low, env.action_space.high
        return self._rng.uniform(low, high).astype(env.action_space.dtype)


class ScriptedExpert(Expert):
    """Meta-World's scripted policy for the environment's task (plus optional action noise)."""

    name = "scripted"

    def check(self, env: gym.Env) -> None:
        if meta_world.task_of(env) is None:
            env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            raise InputError(
                f"expert: 'scripted' is Meta-World's own policy and needs a Meta-World task "
                f"(make_env({meta_world.ENV_ID!r}, env_name=...)), got {env_id}"
            )

    def reset(self, env: gym.Env, rng: np.random.Generator) -> None:
        super().reset(env, rng)
        self._policy = meta_world.scripted_policy(meta_world.task_of(env))

    def act(self, env: gym.Env, obs: np.ndarray) -> np.ndarray:
        return self._finish(env, np.asarray(self._policy.get_action(obs), dtype=np.float64))


class LQRExpert(Expert):
    """Discrete-time LQR about the model's initial pose (an upright equilibrium).

    Args:
        q: State cost, a scalar (times identity) or a vector of length ``2 * nv`` over
            ``[qpos - qpos_eq, qvel]``.
        r: Control cost, a scalar times identity.
        gain_jitter: Per episode, the diagonal of ``Q`` is scaled by ``exp(gain_jitter * N(0, 1))``
            and the Riccati equation is re-solved: a family of different stabilising experts.
        action_noise: Gaussian action noise, as a fraction of the half action range.
        fd_eps: Finite-difference step of ``mjd_transitionFD``.
    """

    name = "lqr"

    def __init__(
        self,
        q: float | np.ndarray = 1.0,
        r: float = 0.1,
        gain_jitter: float = 0.0,
        action_noise: float = 0.0,
        fd_eps: float = 1e-6,
    ) -> None:
        super().__init__(action_noise)
        self.q = q
        self.r = check_range("r", r, 0.0)
        if self.r == 0.0:
            raise InputError("r: expected a positive control cost, got 0.0")
        self.gain_jitter = check_range("gain_jitter", gain_jitter, 0.0)
        self.fd_eps = fd_eps
        self._key: tuple | None = None
        self._ab: tuple[np.ndarray, np.ndarray] | None = None
        self._k: np.ndarray | None = None

    def config(self) -> dict:
        q = self.q.tolist() if isinstance(self.q, np.ndarray) else self.q
        return {**super().config(), "q": q, "r": self.r, "gain_jitter": self.gain_jitter}

    def _linearise(self, env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
        base = _mujoco_env(env, self.name)
        key = (id(base.model), base.frame_skip)
        if self._key == key and self._ab is not None:
            return self._ab
        model = base.model
        if model.nq != model.nv:
            raise InputError(
                f"expert: 'lqr' needs hinge/slide joints only (nq == nv), got nq={model.nq}, "
                f"nv={model.nv} for {env.spec.id if env.spec else type(base).__name__}"
            )
        if model.nu == 0:
            raise InputError("expert: 'lqr' needs at least one actuator, got a model with nu=0")
        # mjd_transitionFD refuses the RK4 integrator, so linearise a copy switched to Euler
        # (same dynamics to first order at the small timesteps these models use).
        m = copy.deepcopy(model)
        m.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER
        d = mujoco.MjData(m)
        d.qpos[:] = base.init_qpos
        d.qvel[:] = 0.0
        d.ctrl[:] = 0.0
        mujoco.mj_forward(m, d)
        # An LQR about a non-equilibrium is meaningless (HalfCheetah falls at qpos0 with
        # |qacc| = g). The tolerance admits near-equilibria such as InvertedPendulum's pole, which
        # is modelled 1 mm off vertical (|qacc| = 0.05).
        if np.max(np.abs(d.qacc)) > EQUILIBRIUM_TOL:
            raise InputError(
                f"expert: 'lqr' needs the initial pose to be an equilibrium, but "
                f"|qacc| = {np.max(np.abs(d.qacc)):.3g} there for "
                f"{env.spec.id if env.spec else type(base).__name__}; use 'mppi'"
            )
        nx = 2 * m.nv + m.na
        a = np.zeros((nx, nx))
        b = np.zeros((nx, m.nu))
        mujoco.mjd_transitionFD(m, d, self.fd_eps, True, a, b, None, None)
        # The env holds each action for frame_skip physics steps: lift to one env step.
        n = base.frame_skip
        ad = np.linalg.matrix_power(a, n)
        bd = sum(np.linalg.matrix_power(a, k) @ b for k in range(n))
        self._key, self._ab = key, (ad, bd)
        return ad, bd

    def _gain(self, ad: np.ndarray, bd: np.ndarray, scale: np.ndarray) -> np.ndarray:
        nx = ad.shape[0]
        q = np.broadcast_to(np.asarray(self.q, dtype=float), (nx,)) * scale
        qm = np.diag(q)
        rm = self.r * np.eye(bd.shape[1])
        try:
            p = scipy.linalg.solve_discrete_are(ad, bd, qm, rm)
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise InputError(f"expert: 'lqr' found no stabilising solution ({exc})") from exc
        k = np.linalg.solve(rm + bd.T @ p @ bd, bd.T @ p @ ad)
        rho = np.max(np.abs(np.linalg.eigvals(ad - bd @ k)))
        if not rho < 1.0:
            raise InputError(
                f"expert: 'lqr' closed loop is not stable (spectral radius {rho:.3f}); the "
                "equilibrium is not stabilisable by these actuators"
            )
        return k

    def check(self, env: gym.Env) -> None:
        ad, bd = self._linearise(env)
        self._k = self._gain(ad, bd, np.ones(ad.shape[0]))

    def reset(self, env: gym.Env, rng: np.random.Generator) -> None:
        super().reset(env, rng)
        ad, bd = self._linearise(env)
        scale = np.ones(ad.shape[0])
        if self.gain_jitter > 0:
            scale = np.exp(self.gain_jitter * rng.standard_normal(ad.shape[0]))
        self._k = self._gain(ad, bd, scale)

    def act(self, env: gym.Env, obs: np.ndarray) -> np.ndarray:
        if self._k is None:
            self.check(env)
        base = env.unwrapped
        d = base.data
        x = np.concatenate([d.qpos - base.init_qpos, d.qvel, d.act])
        return self._finish(env, -self._k @ x)


class ReacherExpert(Expert):
    """Two-link inverse kinematics plus joint PD, with an elbow branch per episode.

    Link lengths come from the body positions of ``body1`` and ``fingertip``, so scaled custom
    models work. The branch decides the sign of the elbow angle at the IK solution.

    Args:
        branch: ``"random"`` (each episode draws one with probability 1/2), ``"up"`` (elbow angle
            > 0) or ``"down"`` (< 0).
        kp: Proportional gain (action units per radian).
        kd: Derivative gain (action units per rad/s).
        gain_jitter: Per episode, ``kp`` and ``kd`` are scaled by ``exp(gain_jitter * N(0, 1))``.
        action_noise: Gaussian action noise, as a fraction of the half action range.
    """

    name = "reacher"
    BRANCHES = ("random", "up", "down")

    def __init__(
        self,
        branch: str = "random",
        kp: float = 0.3,
        kd: float = 0.05,
        gain_jitter: float = 0.0,
        action_noise: float = 0.0,
    ) -> None:
        super().__init__(action_noise)
        self.branch = check_choice("branch", branch, self.BRANCHES)
        self.kp = check_range("kp", kp, 0.0)
        self.kd = check_range("kd", kd, 0.0)
        self.gain_jitter = check_range("gain_jitter", gain_jitter, 0.0)
        self._gains = (self.kp, self.kd)
        self.mode = 1

    def config(self) -> dict:
        return {
            **super().config(),
            "branch": self.branch,
            "kp": self.kp,
            "kd": self.kd,
            "gain_jitter": self.gain_jitter,
        }

    def check(self, env: gym.Env) -> None:
        base = _mujoco_env(env, self.name)
        m = base.model
        names = {m.body(i).name for i in range(m.nbody)}
        need = {"body0", "body1", "fingertip", "target"}
        if not need <= names or m.nu != 2:
            raise InputError(
                f"expert: 'reacher' needs a two-link arm with bodies {sorted(need)} and 2 "
                f"actuators, got bodies {sorted(names)} and nu={m.nu} for "
                f"{env.spec.id if env.spec else type(base).__name__}"
            )

    def reset(self, env: gym.Env, rng: np.random.Generator) -> None:
        super().reset(env, rng)
        if self.branch == "random":
            self.mode = 1 if rng.random() < 0.5 else -1
        else:
            self.mode = 1 if self.branch == "up" else -1
        s = np.exp(self.gain_jitter * rng.standard_normal(2)) if self.gain_jitter > 0 else (1, 1)
        self._gains = (self.kp * s[0], self.kd * s[1])

    def target_angles(self, env: gym.Env) -> np.ndarray:
        """IK joint angles ``(shoulder, elbow)`` reaching the target on this episode's branch."""
        base = env.unwrapped
        m, d = base.model, base.data
        l1 = float(np.linalg.norm(m.body("body1").pos[:2]))
        l2 = float(np.linalg.norm(m.body("fingertip").pos[:2]))
        p = d.body("target").xpos[:2] - d.body("body0").xpos[:2]
        dist = float(np.linalg.norm(p))
        c2 = np.clip((dist**2 - l1**2 - l2**2) / (2 * l1 * l2), -1.0, 1.0)
        q2 = self.mode * np.arccos(c2)
        # Respect the elbow joint's range (targets near the base would need |q2| close to pi).
        jr = m.jnt_range[m.joint("joint1").id]
        if m.jnt_limited[m.joint("joint1").id]:
            q2 = np.clip(q2, jr[0] + 0.05, jr[1] - 0.05)
        q1 = np.arctan2(p[1], p[0]) - np.arctan2(l2 * np.sin(q2), l1 + l2 * np.cos(q2))
        return np.array([q1, q2])

    def act(self, env: gym.Env, obs: np.ndarray) -> np.ndarray:
        d = env.unwrapped.data
        q = d.qpos[:2]
        err = self.target_angles(env) - q
        err[0] = (err[0] + np.pi) % (2 * np.pi) - np.pi  # the shoulder joint wraps around
        kp, kd = self._gains
        return self._finish(env, kp * err - kd * d.qvel[:2])


RewardModel = Callable[[Any, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _locomotion_reward(
    base: Any, qpos: np.ndarray, qvel: np.ndarray, ctrl: np.ndarray
) -> np.ndarray:
    """Batched return of gymnasium's locomotion reward over planned rollouts.

    Args:
        base: The unwrapped env (reward weights and health ranges are read from it).
        qpos: ``(N, H + 1, nq)`` positions at env-step boundaries (index 0 is now).
        qvel: ``(N, H + 1, nv)``.
        ctrl: ``(N, H, nu)`` actions.

    Returns:
        ``(N,)`` summed reward over the horizon.
    """
    dt = base.dt
    fwd = getattr(base, "_forward_reward_weight", 1.0)
    ctrl_w = getattr(base, "_ctrl_cost_weight", 0.1)
    vel = (qpos[:, 1:, 0] - qpos[:, :-1, 0]) / dt
    r = fwd * vel - ctrl_w * np.sum(ctrl**2, axis=-1)
    z_range = getattr(base, "_healthy_z_range", None)
    if z_range is not None and hasattr(base, "_healthy_reward"):
        z, ang = qpos[:, 1:, 1], qpos[:, 1:, 2]
        healthy = (z > z_range[0]) & (z < z_range[1])
        a_range = getattr(base, "_healthy_angle_range", None)
        if a_range is not None:
            healthy &= (ang > a_range[0]) & (ang < a_range[1])
        # Once unhealthy the real episode ends: count nothing after the first fall.
        alive = np.cumprod(healthy, axis=1)
        r = (r + base._healthy_reward) * alive
    return r.sum(axis=1)


# Batched reward models for MPPI, keyed by the env class name.
REWARD_MODELS: dict[str, RewardModel] = {
    "HalfCheetahEnv": _locomotion_reward,
    "SwimmerEnv": _locomotion_reward,
    "HopperEnv": _locomotion_reward,
    "Walker2dEnv": _locomotion_reward,
}


class MPPIExpert(Expert):
    """Model-predictive path integral control over ``mujoco.rollout`` from the true state.

    Each decision samples ``n_samples`` perturbations of the warm-started nominal plan, rolls them
    out open-loop in the simulator from the exact current state (full physics state, so contacts
    and warm starts match), weighs them by ``exp(return / temperature)`` with the returns rescaled
    to [0, 1], and executes the first action of the weighted plan.

    Args:
        horizon: Planning horizon in env steps.
        n_samples: Rollouts per decision.
        noise_std: Std of the plan perturbations (action units).
        temperature: Softmax temperature on returns rescaled to [0, 1].
        reward_fn: ``fn(base_env, qpos, qvel, ctrl) -> (N,)`` returns; default from
            :data:`REWARD_MODELS` by env class.
        n_threads: Rollout threads.
        action_noise: Gaussian noise on the executed action (fraction of half range).
    """

    name = "mppi"

    def __init__(
        self,
        horizon: int = 12,
        n_samples: int = 64,
        noise_std: float = 0.4,
        temperature: float = 0.1,
        reward_fn: RewardModel | None = None,
        n_threads: int = 1,
        action_noise: float = 0.0,
    ) -> None:
        super().__init__(action_noise)
        self.horizon = check_positive_int("horizon", horizon)
        self.n_samples = check_positive_int("n_samples", n_samples, minimum=2)
        self.noise_std = check_range("noise_std", noise_std, 0.0)
        self.temperature = check_range("temperature", temperature, 1e-6)
        self.reward_fn = reward_fn
        self.n_threads = check_positive_int("n_threads", n_threads)
        self._plan: np.ndarray | None = None
        self._datas: list[mujoco.MjData] = []
        self._model_id: int | None = None

    def config(self) -> dict:
        return {
            **super().config(),
            "horizon": self.horizon,
            "n_samples": self.n_samples,
            "noise_std": self.noise_std,
            "temperature": self.temperature,
        }

    def _reward(self, env: gym.Env) -> RewardModel:
        if self.reward_fn is not None:
            return self.reward_fn
        base = _mujoco_env(env, self.name)
        fn = REWARD_MODELS.get(type(base).__name__)
        if fn is None:
            raise InputError(
                f"expert: 'mppi' has no reward model for {type(base).__name__} (known: "
                f"{sorted(REWARD_MODELS)}); pass MPPIExpert(reward_fn=...)"
            )
        return fn

    def check(self, env: gym.Env) -> None:
        self._reward(env)

    def reset(self, env: gym.Env, rng: np.random.Generator) -> None:
        super().reset(env, rng)
        base = _mujoco_env(env, self.name)
        self._plan = np.zeros((self.horizon, base.model.nu))
        if self._model_id != id(base.model):
            self._datas = [mujoco.MjData(base.model) for _ in range(self.n_threads)]
            self._model_id = id(base.model)

    def act(self, env: gym.Env, obs: np.ndarray) -> np.ndarray:
        base = env.unwrapped
        m, d = base.model, base.data
        if self._plan is None or self._model_id != id(m):
            self.reset(env, self._rng)
        low, high = env.action_space.low, env.action_space.high
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        state0 = np.empty(mujoco.mj_stateSize(m, spec))
        mujoco.mj_getState(m, d, state0, spec)
        noise = self.noise_std * self._rng.standard_normal((self.n_samples, *self._plan.shape))
        noise[0] = 0.0  # keep the nominal plan itself among the candidates
        plans = np.clip(self._plan[None] + noise, low, high)
        fs = base.frame_skip
        ctrl = np.repeat(plans, fs, axis=1)
        states, _ = mujoco.rollout.rollout(m, self._datas, state0, ctrl)
        # FULLPHYSICS state = [time, qpos, qvel, ...]; keep env-step boundaries.
        ends = states[:, fs - 1 :: fs]
        qpos = np.concatenate(
            [np.broadcast_to(d.qpos, (self.n_samples, 1, m.nq)), ends[:, :, 1 : 1 + m.nq]], axis=1
        )
        qvel = np.concatenate(
            [
                np.broadcast_to(d.qvel, (self.n_samples, 1, m.nv)),
                ends[:, :, 1 + m.nq : 1 + m.nq + m.nv],
            ],
            axis=1,
        )
        returns = self._reward(env)(base, qpos, qvel, plans)
        spread = max(float(returns.max() - returns.min()), 1e-8)
        w = np.exp((returns - returns.max()) / (spread * self.temperature))
        w /= w.sum()
        plan = np.tensordot(w, plans, axes=1)
        action = plan[0].copy()
        # Warm start: shift the plan one step and repeat the last action.
        self._plan = np.concatenate([plan[1:], plan[-1:]], axis=0)
        return self._finish(env, action)


EXPERTS: dict[str, type[Expert]] = {
    "lqr": LQRExpert,
    "reacher": ReacherExpert,
    "mppi": MPPIExpert,
    "scripted": ScriptedExpert,
    "random": RandomExpert,
}


def make_expert(expert: str | Expert, env: gym.Env, **kwargs) -> Expert:
    """Build (or take) an expert and check that it applies to ``env``.

    Args:
        expert: A name in :data:`EXPERTS`, ``"auto"`` (the registry default for the env id; for
            unregistered ids the first of lqr, reacher, mppi that applies), or an instance.
        env: The environment it will act in.
        **kwargs: Knobs for the expert's constructor (names only).

    Raises:
        InputError: Unknown name, or an expert that does not apply to ``env``.
    """
    if isinstance(expert, Expert):
        if kwargs:
            raise InputError(f"expert kwargs: given an instance, got extra {sorted(kwargs)}")
        expert.check(env)
        return expert
    if expert == "auto":
        env_id = env.spec.id if env.spec is not None else None
        if meta_world.task_of(env) is not None:
            env_id = meta_world.ENV_ID
        name = env_info(env_id).expert if env_id is not None else "auto"
        if name != "auto":
            return make_expert(name, env, **kwargs)
        for name in ("lqr", "reacher", "mppi"):
            try:
                return make_expert(name, env, **kwargs)
            except InputError:
                continue
        raise InputError(
            f"expert: no expert in {sorted(EXPERTS)} applies to {env_id!r}; pass an Expert "
            "instance (e.g. MPPIExpert(reward_fn=...))"
        )
    check_choice("expert", expert, [*EXPERTS, "auto"])
    obj = EXPERTS[expert](**kwargs)
    obj.check(env)
    return obj
