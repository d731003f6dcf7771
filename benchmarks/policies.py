"""The control benchmark's driver: one-step MMF policies against baselines, same data and backbone.

:data:`METHODS` names what is compared; methods sharing an objective and a policy kind share one
fitted network (flow matching is fitted once and sampled with 1, 10 and 100 Euler steps, the
100-step sampler standing in for diffusion policy's DDPM sampler).

Example:
    >>> ds = collect("Reacher-v5", 200)
    >>> out = compare(ds, methods=("mmf-1", "bc", "fm-100"), train_steps=1500)
    >>> print(format_table(out))
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from meanflow_sci.errors import InputError, check_choice
from meanflow_sci.tasks.control import (
    ChunkPolicy,
    branch_statistics,
    evaluate,
    make_env,
    reference_returns,
    train_policy,
)
from meanflow_sci.tasks.control.collect import check_dataset
from meanflow_sci.tasks.control.experts import ReacherExpert

__all__ = ["MethodSpec", "METHODS", "compare", "format_table"]


@dataclass(frozen=True)
class MethodSpec:
    """One row of the comparison: how the network is fitted and how it is sampled."""

    objective: str
    kind: str
    steps: int
    description: str


METHODS: dict[str, MethodSpec] = {
    "mmf-1": MethodSpec("mmf", "chunk", 1, "Modular MeanFlow action chunks, 1 step"),
    "bc": MethodSpec("regression", "chunk", 1, "behaviour cloning (regression), same backbone"),
    "fm-1": MethodSpec("fm", "chunk", 1, "flow matching, 1 Euler step"),
    "fm-10": MethodSpec("fm", "chunk", 10, "flow matching, 10 Euler steps"),
    "fm-100": MethodSpec("fm", "chunk", 100, "flow matching, 100 steps (diffusion-policy-like)"),
    "mmf-traj-1": MethodSpec("mmf", "trajectory", 1, "Diffuser-style state-action, 1 step"),
}

DEFAULT_METHODS = ("mmf-1", "bc", "fm-10", "fm-100", "mmf-traj-1")


def _reacher_like(env_id: str, env_kwargs: dict) -> bool:
    env = make_env(env_id, **env_kwargs)
    try:
        ReacherExpert().check(env)
        return True
    except InputError:
        return False
    finally:
        env.close()


def compare(
    dataset: xr.Dataset,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    train: dict | None = None,
    backbone: Any = None,
    horizon: int = 8,
    n_obs_steps: int = 2,
    n_action_steps: int = 4,
    eval_episodes: int = 10,
    eval_seed: int = 1000,
    max_steps: int | None = None,
    expert_episodes: int | None = None,
    latency_probes: int = 20,
    record_episodes: int = 1,
    device: str = "auto",
    seed: int = 0,
    progress: bool = False,
    log: Any = None,
) -> dict:
    """Fit each method of :data:`METHODS` on ``dataset`` (from ``collect``) and evaluate it
    closed loop on the same seeds (``eval_seed + i``).

    ``train``, ``backbone``, ``device`` and ``seed`` go to ``train_policy`` (changes to the
    ``"policy"`` recipe); ``horizon``, ``n_obs_steps``, ``n_action_steps`` lay out the chunks
    (trajectories condition on one observation); ``max_steps`` limits evaluation episodes;
    ``expert_episodes`` (default ``eval_episodes``) are the expert's own (with an MPPI expert the
    normalisation uses the dataset's returns); ``latency_probes`` batch-1 decisions are timed and
    ``record_episodes`` observation sequences kept per method; ``log`` is a ``print``-like
    callable for progress lines.

    Returns a JSON-able dict with ``env_id``, ``config``, ``reference``, ``expert`` (its
    evaluation) and ``methods`` ({name: evaluation + ``nfe``, ``train_time_s``, ``final_mse``,
    ``branches`` on Reacher-like environments}).
    """
    check_dataset(dataset)
    for m in methods:
        check_choice("methods", m, METHODS)
    env_id = str(dataset.attrs.get("env_id", ""))
    env_kwargs = json.loads(dataset.attrs.get("env_kwargs", "{}"))
    say = log or (lambda *a, **k: None)
    n_exp = expert_episodes or eval_episodes
    expert_name = str(dataset.attrs.get("expert", "auto"))
    episode_kw = {"seed": eval_seed, "max_steps": max_steps, **env_kwargs}
    if expert_name == "mppi":
        # MPPI costs ~0.1 s per step: normalise by the dataset, time the expert on one episode.
        reference: Any = dataset
        expert_eval = evaluate("mppi", env_id, n_episodes=1, reference=dataset, **episode_kw)
    else:
        reference = reference_returns(
            env_id, n_episodes=eval_episodes, expert=expert_name, **episode_kw
        )
        expert_eval = evaluate(
            expert_name,
            env_id,
            n_episodes=n_exp,
            reference=reference,
            record_episodes=record_episodes,
            **episode_kw,
        )
    say(
        f"expert {expert_name}: return {expert_eval['mean_return']:.2f}, "
        f"random {expert_eval['reference']['random']:.2f}"
    )
    branches = _reacher_like(env_id, env_kwargs)
    fitted: dict[tuple[str, str], tuple[ChunkPolicy, float]] = {}
    rows: dict[str, dict] = {}
    for name in methods:
        spec = METHODS[name]
        key = (spec.objective, spec.kind)
        if key not in fitted:
            say(f"fit {spec.objective} {spec.kind}")
            t0 = time.perf_counter()
            pol = train_policy(
                dataset,
                kind=spec.kind,
                objective=spec.objective,
                horizon=horizon,
                n_obs_steps=1 if spec.kind == "trajectory" else n_obs_steps,
                n_action_steps=n_action_steps,
                backbone=backbone,
                train=train,
                seed=seed,
                device=device,
                progress=progress,
            )
            fitted[key] = (pol, time.perf_counter() - t0)
        pol, train_time = fitted[key]
        policy = pol.with_steps(spec.steps, name=name)
        t_eval = time.perf_counter()
        res = evaluate(
            policy,
            env_id,
            n_episodes=eval_episodes,
            reference=reference,
            latency_probes=latency_probes,
            record_episodes=record_episodes,
            progress=progress,
            **episode_kw,
        )
        hist = pol.model.history
        res.update(
            nfe=spec.steps if spec.objective != "regression" else 1,
            train_time_s=train_time,
            eval_time_s=time.perf_counter() - t_eval,
            final_mse=float(np.mean([h["mse"] for h in hist[-5:] if "mse" in h])) if hist else None,
            description=spec.description,
        )
        if branches and spec.kind == "chunk":
            res["branches"] = branch_statistics(policy, env_id, **env_kwargs)
        rows[name] = res
        say(
            f"{name}: return {res['mean_return']:.2f} score {res['normalised_score']:.3f} "
            f"latency {res['latency_ms_median']:.2f} ms"
        )
    first = next(iter(fitted.values()))[0] if fitted else None
    return {
        "env_id": env_id,
        "config": {
            "n_demo_episodes": int(dataset.sizes["episode"]),
            "expert": expert_name,
            "recipe": first.model.recipe.to_dict() if first else None,
            "train_steps": first.model.recipe.train.max_steps if first else None,
            "horizon": horizon,
            "n_obs_steps": n_obs_steps,
            "n_action_steps": n_action_steps,
            "eval_episodes": eval_episodes,
            "eval_seed": eval_seed,
            "max_steps": max_steps,
            "seed": seed,
        },
        "reference": expert_eval["reference"],
        "expert": expert_eval,
        "methods": rows,
    }


def format_table(result: dict) -> str:
    """A Markdown table of a :func:`compare` result."""
    head = (
        "| method | NFE | return (mean ± std) | normalised score | success | "
        "latency median / p95 (ms) | train (s) |"
    )
    lines = [head, "|" + "---|" * 7]

    def row(name: str, r: dict, nfe: Any, train: Any) -> str:
        succ = "-" if r.get("success_rate") is None else f"{r['success_rate']:.2f}"
        score = r.get("normalised_score")
        score_s = "-" if score is None else f"{score:.3f}"
        train_s = "-" if train is None else f"{train:.0f}"
        return (
            f"| {name} | {nfe} | {r['mean_return']:.2f} ± {r['std_return']:.2f} | {score_s} | "
            f"{succ} | {r['latency_ms_median']:.2f} / {r['latency_ms_p95']:.2f} | {train_s} |"
        )

    ex = result["expert"]
    lines.append(row(f"expert ({ex['name']})", ex, "-", None))
    for name, r in result["methods"].items():
        lines.append(row(name, r, r["nfe"], r["train_time_s"]))
    branch_rows = {k: r["branches"] for k, r in result["methods"].items() if "branches" in r}
    if branch_rows:
        lines += [
            "",
            "| method | both branches (states) | minority share | averaged chunks | "
            "mean abs elbow action (expert) |",
            "|---|---|---|---|---|",
        ]
        for name, b in branch_rows.items():
            lines.append(
                f"| {name} | {b['both_branches_rate']:.2f} | {b['minority_share']:.2f} | "
                f"{b['averaged_fraction']:.2f} | {b['mean_abs_elbow']:.3f} "
                f"({b['expert_abs_elbow']:.3f}) |"
            )
    return "\n".join(lines)
