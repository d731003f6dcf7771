"""Control trajectory synthesis: one-step MMF policies against baselines, closed loop.

With no arguments (needs the ``metaworld`` extra): a small Meta-World comparison. On three tasks
of different difficulty (reach, hammer, push) it collects 10 demonstrations from Meta-World's
scripted policies, fits a one-step MMF action-chunk policy, behaviour cloning and flow matching
(sampled with 10 and 100 steps) on the same UNet1D backbone and budget, evaluates each on 10
held-out goal variations, prints the success table and saves ``success.png`` (success per task and
method, 95 % intervals), ``latency.png`` (success against decision latency) and ``results.json``
under ``--out``. About 10 minutes on 2 CPU cores.

With ``--env`` a gymnasium MuJoCo task instead (experts computed from the simulator): returns,
normalised score, latency, ``returns.png`` and ``trajectories.png``.

    python examples/control_synthesis.py                              # Meta-World
    python examples/control_synthesis.py --tasks reach-v3,door-open-v3 --demos 50
    python examples/control_synthesis.py --env InvertedPendulum-v5    # a few minutes
    python examples/control_synthesis.py --env Reacher-v5             # multimodal (elbow branches)
    python examples/control_synthesis.py --env HalfCheetah-v5 --episodes 4 --max-steps 200

The Diffuser-style state-action generator (``mmf-traj-1``) is not in the default comparison: it
scores 0.05 on InvertedPendulum where the action-chunk methods score 0.84-1.0. Add it with
``--methods``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from meanflow_sci.tasks import control

# The comparison driver is the control benchmark's (benchmarks/policies.py): this script runs it
# on one environment, so the repository root must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import meta_world as mw_bench  # noqa: E402
from benchmarks.policies import METHODS, compare, format_table  # noqa: E402

DEFAULT_METHODS = mw_bench.METHODS  # Meta-World's and the --env comparison's

# Per-environment defaults: (demonstration episodes, training steps, evaluation step limit).
DEFAULTS = {
    "InvertedPendulum-v5": (20, 600, None),
    "InvertedDoublePendulum-v5": (20, 1000, None),
    "Reacher-v5": (200, 1500, None),
    "HalfCheetah-v5": (4, 1000, 200),
}
FALLBACK = (20, 1000, None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(
            "Collect expert demonstrations on a gymnasium MuJoCo task, fit a one-step Modular "
            "MeanFlow action-chunk policy and baselines (behaviour cloning, flow matching with "
            "10 and 100 steps, a Diffuser-style trajectory generator) on the same backbone, and "
            "compare them closed loop."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--env",
        default=None,
        help="a gymnasium MuJoCo id instead of the Meta-World comparison",
    )
    p.add_argument(
        "--tasks",
        default=",".join(mw_bench.SUITES["quick"]["tasks"]),
        help=f"Meta-World tasks (any of {sorted(mw_bench.TASKS)} or other Meta-World names)",
    )
    p.add_argument("--demos", type=int, default=10, help="Meta-World demonstrations per task")
    p.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="expert demonstration episodes (default per env: 20 pendulum, 200 Reacher, "
        "4 HalfCheetah)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimizer steps per fitted network (default per env: 600-1500)",
    )
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    p.add_argument("--out", default="runs/control_synthesis", help="output folder")
    p.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per method")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="cut demonstration and evaluation episodes at this many steps (HalfCheetah: 200)",
    )
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated subset of {sorted(METHODS)}",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of data, training and evaluation")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p.parse_args(argv)


def plot(result: dict, out: Path) -> list[Path]:
    """Bar chart of returns and the first evaluation episode's observations per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {"expert": result["expert"], **result["methods"]}
    names = list(rows)
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.6))
    means = [rows[n]["mean_return"] for n in names]
    stds = [rows[n]["std_return"] for n in names]
    ax.bar(names, means, yerr=stds, color=["gray"] + ["C0"] * (len(names) - 1), capsize=4)
    for i, n in enumerate(names):
        ax.scatter(np.full(len(rows[n]["returns"]), i), rows[n]["returns"], s=8, c="k", zorder=3)
    ax.set_ylabel("episode return")
    ax.set_title(f"{result['env_id']}: closed-loop returns ({len(rows['expert']['returns'])} eps)")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    p1 = out / "returns.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)

    traj = {n: np.asarray(r["trajectories"][0]) for n, r in rows.items() if r.get("trajectories")}
    dims = min(4, next(iter(traj.values())).shape[1]) if traj else 0
    fig, axes = plt.subplots(1, max(dims, 1), figsize=(3.2 * max(dims, 1), 3.0), squeeze=False)
    for d in range(dims):
        ax = axes[0, d]
        for n, tr in traj.items():
            ax.plot(tr[:, d], label=n, lw=1.2 if n == "expert" else 0.9)
        ax.set_title(f"obs[{d}]")
        ax.set_xlabel("step")
    if dims:
        axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{result['env_id']}: first evaluation episode (same seed for every method)")
    fig.tight_layout()
    p2 = out / "trajectories.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return [p1, p2]


def main_meta_world(args: argparse.Namespace, methods: tuple[str, ...]) -> dict:
    """The default run: the Meta-World comparison of :mod:`benchmarks.meta_world`."""
    from meanflow_sci.tasks.control import meta_world

    try:
        meta_world.require()
    except ImportError as err:
        hint = "(or pass --env InvertedPendulum-v5 for a gymnasium task)"
        raise SystemExit(f"{err}\n{hint}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    cfg = {
        "tasks": tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        "demos": args.demos,
        "seeds": 1,
        "episodes": args.eval_episodes,
        "steps": args.steps,
        "max_steps": args.max_steps,
    }
    say(f"Meta-World: {len(cfg['tasks'])} tasks, {args.demos} scripted demos each, {methods}")
    report = mw_bench.run_tasks(cfg, methods=methods, device=args.device, seed=args.seed, log=say)
    report["suite"] = "example"
    report["torch_threads"] = torch.get_num_threads()
    table = mw_bench.to_markdown(report)
    print(table)
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "results.md").write_text(table)
    for p in mw_bench.plot(report, out):
        say(f"saved {p}")
    say(f"total {report['time_s']:.0f} s; results in {out}")
    return report


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.env is None:
        return main_meta_world(args, methods)
    n_eps, n_steps, eval_limit = DEFAULTS.get(args.env, FALLBACK)
    episodes = args.episodes or n_eps
    steps = args.steps or n_steps
    max_steps = args.max_steps if args.max_steps is not None else eval_limit
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))

    t0 = time.perf_counter()
    ds = control.collect(
        args.env, episodes, seed=args.seed, max_steps=max_steps, progress=not args.quiet
    )
    ret = control.episode_returns(ds)
    say(
        f"collected {episodes} {ds.attrs['expert']} episodes on {args.env}: "
        f"return {ret.mean():.2f} ± {ret.std():.2f} ({time.perf_counter() - t0:.0f} s)"
    )
    ds.to_netcdf(out / "demonstrations.nc")
    result = compare(
        ds,
        methods=methods,
        train={"max_steps": steps},
        eval_episodes=args.eval_episodes,
        max_steps=max_steps,
        device=args.device,
        seed=args.seed,
        log=say,
    )
    result["total_time_s"] = time.perf_counter() - t0
    result["torch_threads"] = torch.get_num_threads()
    table = format_table(result)
    print(table)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "results.md").write_text(table + "\n")
    for p in plot(result, out):
        say(f"saved {p}")
    say(f"total {result['total_time_s']:.0f} s; results in {out}")
    return result


if __name__ == "__main__":
    main()
