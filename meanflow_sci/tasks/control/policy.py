"""Generative policies trained with :func:`meanflow_sci.fit` on expert demonstrations.

Two kinds share one class, :class:`ChunkPolicy`:

- ``"chunk"`` (diffusion-policy style): the last ``n_obs_steps`` observations condition a chunk of
  ``horizon`` future actions ``(horizon, act_dim)``; the first ``n_action_steps`` are executed,
  then the policy re-plans (receding horizon).
- ``"trajectory"`` (Diffuser style): the current observation conditions a state-action trajectory
  ``concat(action, obs)`` of shape ``(horizon, act_dim + obs_dim)``; its actions are replayed for
  ``n_action_steps`` steps, then it re-plans from the new state.

Training windows start at every step of every episode; histories before the first step repeat
the first observation and chunks past the last step repeat the last action/observation (the
padding diffusion policy uses). Training is one call to ``fit`` (no second training loop); the
objective decides the sampler: ``"mmf"`` is sampled in one step, ``"fm"`` with Euler steps (10 or
a diffusion-policy-like 100), ``"regression"`` is behaviour cloning on the same backbone.

Example:
    >>> ds = collect("InvertedPendulum-v5", 10, expert_kwargs={"gain_jitter": 0.3})
    >>> policy = train_policy(ds, train={"max_steps": 1000})
    >>> evaluate(policy, "InvertedPendulum-v5", n_episodes=5)["mean_return"]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from meanflow_sci.core import sample as core_sample
from meanflow_sci.errors import InputError, check_choice, check_positive_int
from meanflow_sci.tasks.control.collect import check_dataset

__all__ = ["PolicyConfig", "ChunkPolicy", "make_windows", "train_policy", "load_policy"]

POLICY_KINDS = ("chunk", "trajectory")
POLICY_FILE = "policy.json"


@dataclass(frozen=True)
class PolicyConfig:
    """Shape of the policy's inputs and outputs.

    Attributes:
        kind: ``"chunk"`` (actions only) or ``"trajectory"`` (actions and observations).
        horizon: Steps generated per decision (``H``).
        n_obs_steps: Observations conditioning a decision (``To``).
        n_action_steps: Actions executed per decision (``Ta <= H``).
    """

    kind: str = "chunk"
    horizon: int = 8
    n_obs_steps: int = 2
    n_action_steps: int = 4

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, POLICY_KINDS)
        check_positive_int("horizon", self.horizon)
        check_positive_int("n_obs_steps", self.n_obs_steps)
        check_positive_int("n_action_steps", self.n_action_steps)
        if self.n_action_steps > self.horizon:
            raise InputError(
                f"n_action_steps: expected at most horizon={self.horizon}, "
                f"got {self.n_action_steps}"
            )


def make_windows(ds: xr.Dataset, config: PolicyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cut every episode into training windows, one starting at each step.

    Args:
        ds: A dataset from ``collect``.
        config: Window sizes and kind.

    Returns:
        ``(x, cond)``: ``x`` of shape ``(N, H, act_dim)`` (chunk) or ``(N, H, act_dim + obs_dim)``
        (trajectory); ``cond`` of shape ``(N, To * obs_dim)`` (the flattened observation history,
        oldest first). ``N`` is the total number of valid steps.
    """
    check_dataset(ds)
    obs_all = ds.obs.values.astype(np.float32)
    act_all = ds.action.values.astype(np.float32)
    xs, cs = [], []
    h, to = config.horizon, config.n_obs_steps
    for e, length in enumerate(ds.length.values.astype(int)):
        if length < 1:
            continue
        t = np.arange(length)
        # Edge padding: histories repeat the first observation, chunks the last step.
        hist = np.clip(t[:, None] + np.arange(-to + 1, 1)[None], 0, length - 1)
        fut = np.clip(t[:, None] + np.arange(h)[None], 0, length - 1)
        obs, act = obs_all[e, :length], act_all[e, :length]
        x = act[fut]
        if config.kind == "trajectory":
            x = np.concatenate([x, obs[fut]], axis=-1)
        xs.append(x)
        cs.append(obs[hist].reshape(length, -1))
    if not xs:
        raise InputError("dataset: expected at least one episode with length >= 1, got none")
    return np.concatenate(xs), np.concatenate(cs)


class ChunkPolicy:
    """A fitted generator used as a receding-horizon policy.

    Args:
        model: A ``FittedModel`` of windows from :func:`make_windows`.
        config: The window layout it was fitted on.
        obs_dim: Observation size of the environment.
        act_dim: Action size of the environment.
        env_id: The environment the demonstrations came from.
        env_kwargs: Its ``gym.make`` keywords (Meta-World: ``{"env_name": ...}``); ``evaluate``
            uses them when it is given none.
        steps: Network evaluations per decision (1: the one-step sampler).
        seed: Base seed of the sampling noise (each decision uses the next seed).
        name: Label for tables.

    Attributes:
        n_obs_steps, n_action_steps, horizon: From ``config``.
    """

    def __init__(
        self,
        model: Any,
        config: PolicyConfig,
        *,
        obs_dim: int,
        act_dim: int,
        env_id: str = "",
        env_kwargs: dict | None = None,
        steps: int = 1,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.act_dim = check_positive_int("act_dim", act_dim)
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.steps = check_positive_int("steps", steps)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self._calls = 0
        if isinstance(getattr(model, "model", None), torch.nn.Module):
            model.model.eval()
        mode = getattr(model, "sampling_mode", "mean")
        self.name = name or f"{mode}-{self.steps}step"
        width = act_dim + (obs_dim if config.kind == "trajectory" else 0)
        expected = (config.horizon, width)
        if tuple(model.sample_shape) != expected:
            raise InputError(
                f"model: expected samples of shape {expected} for a {config.kind} policy, "
                f"got {tuple(model.sample_shape)}"
            )

    n_obs_steps = property(lambda self: self.config.n_obs_steps)
    n_action_steps = property(lambda self: self.config.n_action_steps)
    horizon = property(lambda self: self.config.horizon)

    def with_steps(self, steps: int, *, name: str | None = None) -> ChunkPolicy:
        """The same network sampled with another number of steps."""
        return ChunkPolicy(
            self.model,
            self.config,
            obs_dim=self.obs_dim,
            act_dim=self.act_dim,
            env_id=self.env_id,
            env_kwargs=self.env_kwargs,
            steps=steps,
            seed=self.seed,
            name=name,
        )

    def reset(self, seed: int | None = None) -> None:
        """Restart the noise sequence (evaluation calls this per run)."""
        if seed is not None:
            self.seed = check_positive_int("seed", seed, minimum=0)
        self._calls = 0

    def _cond(self, obs_history: np.ndarray) -> np.ndarray:
        h = np.asarray(obs_history, dtype=np.float32)
        expected = (self.n_obs_steps, self.obs_dim)
        if h.ndim != 3 or h.shape[1:] != expected:
            raise InputError(
                f"obs_history: expected shape (B, {expected[0]}, {expected[1]}), got {h.shape}"
            )
        return h.reshape(h.shape[0], -1)

    def generate(self, obs_history: np.ndarray, *, seed: int | None = None) -> np.ndarray:
        """Sample full windows ``(B, H, width)`` for a batch of observation histories."""
        cond = self._cond(obs_history)
        if seed is None:
            seed = self.seed + self._calls
            self._calls += 1
        seed = int(seed) % (2**63)
        m = self.model
        if not all(hasattr(m, a) for a in ("model", "normalizer", "cond_normalizer")):
            return np.asarray(m.sample(cond=cond, steps=self.steps, seed=seed), dtype=np.float32)
        # The decision hot path: the same computation as FittedModel.sample (CPU noise from the
        # seed, normalise cond, sample, denormalise) without its per-call input checks and
        # eval() walk, which at batch 1 cost a third of a one-step decision. Every sampler
        # (1, 10 or 100 steps) goes through this path, so latency ratios count network calls.
        net = m.model
        param = next(net.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn((cond.shape[0], *m.sample_shape), generator=gen)
        c = torch.from_numpy(cond)
        if m.cond_normalizer is not None:
            c = m.cond_normalizer.normalize(c)
        with torch.inference_mode():
            x = core_sample(
                net, noise.to(device), c.to(device), steps=self.steps, mode=m.sampling_mode
            )
            x = m.normalizer.denormalize(x.float().cpu())
        return x.numpy()

    def plan(self, obs_history: np.ndarray) -> np.ndarray:
        """Actions to execute next.

        Args:
            obs_history: ``(B, To, obs_dim)``, oldest first.

        Returns:
            ``(B, Ta, act_dim)`` actions (not yet clipped to the action box).
        """
        x = self.generate(obs_history)
        return x[:, : self.n_action_steps, : self.act_dim]

    def save(self, path: str | Path) -> Path:
        """Write the network (``FittedModel.save``) and ``policy.json`` to the folder ``path``."""
        folder = self.model.save(path)
        meta = {
            "config": asdict(self.config),
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "steps": self.steps,
            "seed": self.seed,
            "name": self.name,
        }
        (Path(folder) / POLICY_FILE).write_text(json.dumps(meta, indent=1))
        return Path(folder)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"ChunkPolicy({self.name!r}, kind={c.kind!r}, env={self.env_id!r}, H={c.horizon}, "
            f"To={c.n_obs_steps}, Ta={c.n_action_steps}, steps={self.steps})"
        )


def load_policy(path: str | Path, *, device: str = "cpu") -> ChunkPolicy:
    """Read a policy written by :meth:`ChunkPolicy.save` (nothing is unpickled)."""
    from meanflow_sci.api import load

    folder = Path(path)
    meta_file = folder / POLICY_FILE
    if not meta_file.is_file():
        raise InputError(f"path: expected a saved policy folder with {POLICY_FILE}, got {path!r}")
    meta = json.loads(meta_file.read_text())
    return ChunkPolicy(
        load(folder, device=device),
        PolicyConfig(**meta["config"]),
        obs_dim=meta["obs_dim"],
        act_dim=meta["act_dim"],
        env_id=meta["env_id"],
        env_kwargs=meta.get("env_kwargs"),
        steps=meta["steps"],
        seed=meta["seed"],
        name=meta["name"],
    )


# From this many demonstrations the "policy" recipe trains three times its steps. Meta-World,
# 50 scripted demos, seed 0, 20 held-out goals, 6000 steps against 2000: one-step MMF 0.55 ->
# 0.70 (shelf-place), 0.35 -> 0.90 (stick-pull), 0.75 -> 0.80 (basketball, held out); behaviour
# cloning 0.85 -> 0.85, 0.65 -> 0.70, 0.80 -> 0.85. With 10 demos 6000 steps were no better
# (MMF 0.30 -> 0.30 and 0.35 -> 0.20, BC 0.30 -> 0.15 and 0.25 -> 0.25; benchmarks/NOTES.md).
MANY_DEMOS, MANY_DEMOS_STEPS = 50, 6000


def recipe_train(dataset: xr.Dataset, recipe: Any, train: Any) -> Any:
    """``train`` for ``fit``: with the ``"policy"`` recipe, no ``max_steps`` of the caller's and
    at least :data:`MANY_DEMOS` episodes, ``max_steps`` becomes :data:`MANY_DEMOS_STEPS`."""
    episodes = int(dataset.sizes["episode"])
    if recipe != "policy" or episodes < MANY_DEMOS:
        return train
    if train is None:
        return {"max_steps": MANY_DEMOS_STEPS}
    if isinstance(train, dict) and "max_steps" not in train:
        return {**train, "max_steps": MANY_DEMOS_STEPS}
    return train


def train_policy(
    dataset: xr.Dataset,
    *,
    kind: str = "chunk",
    horizon: int = 8,
    n_obs_steps: int | None = None,
    n_action_steps: int = 4,
    recipe: Any = "policy",
    backbone: Any = None,
    objective: Any = None,
    train: Any = None,
    steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    name: str | None = None,
) -> ChunkPolicy:
    """Fit a chunk or trajectory policy on demonstrations with :func:`meanflow_sci.fit`.

    The setting is the ``"policy"`` recipe (:data:`meanflow_sci.RECIPES`): a small UNet1D with
    the data-estimate output (scripted and LQR demonstrations are nearly deterministic maps of
    the observation; on Meta-World reach the velocity output reached 0.1 success on its own
    training goals where this reaches 1.0), MMF
    at λ = 0 (λ > 0 pulls the one-step map towards the conditional mean, which merges
    multimodal demonstrations) with the plain squared error (``adaptive_p = 0``: on Reacher
    chunks MeanFlow's ``p = 1`` left the network far from the data, final mse 0.63 against
    0.045 after 1500 steps, and its one-step chunks averaged the two elbow branches). From
    50 demonstrations on it trains 6000 steps instead of the recipe's 2000 (:func:`recipe_train`).

    Args:
        dataset: From ``collect``.
        kind: ``"chunk"`` or ``"trajectory"``.
        horizon: Generated steps per decision.
        n_obs_steps: Conditioning observations (default 2 for chunks, 1 for trajectories, whose
            condition is the start state).
        n_action_steps: Executed actions per decision.
        recipe, backbone, objective, train, seed, device, progress: Passed to ``fit`` (e.g.
            ``objective="fm"``, ``train={"max_steps": 1500}``).
        steps: Sampling steps (default 1; pass 10 or 100 for flow matching).
        name: Label for tables.

    Returns:
        A :class:`ChunkPolicy`.
    """
    import meanflow_sci

    check_dataset(dataset)
    if n_obs_steps is None:
        n_obs_steps = 1 if kind == "trajectory" else 2
    config = PolicyConfig(kind, horizon, n_obs_steps, n_action_steps)
    x, cond = make_windows(dataset, config)
    fitted = meanflow_sci.fit(
        x,
        cond=cond,
        recipe=recipe,
        backbone=backbone,
        objective=objective,
        train=recipe_train(dataset, recipe, train),
        seed=seed,
        device=device,
        progress=progress,
    )
    return ChunkPolicy(
        fitted,
        config,
        obs_dim=int(dataset.sizes["obs_dim"]),
        act_dim=int(dataset.sizes["act_dim"]),
        env_id=str(dataset.attrs.get("env_id", "")),
        env_kwargs=json.loads(dataset.attrs.get("env_kwargs", "{}")),
        steps=1 if steps is None else steps,
        seed=seed,
        name=name,
    )
