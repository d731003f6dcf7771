"""Control trajectory synthesis: one-step MMF policies against baselines on MuJoCo.

With no arguments: collects LQR demonstrations on InvertedPendulum-v5 (computed from the simulator,
nothing downloaded), fits an MMF action-chunk policy, behaviour cloning, flow matching (sampled
with 10 and 100 steps) and a Diffuser-style state-action generator on the same UNet1D backbone,
evaluates each closed loop on the same seeds, prints a table (return, normalised score, latency per
decision) and saves ``returns.png``, ``trajectories.png`` and ``results.json`` under ``--out``.

    python examples/control_synthesis.py                      # InvertedPendulum-v5, a few minutes
    python examples/control_synthesis.py --env Reacher-v5     # multimodal (elbow branches)
    python examples/control_synthesis.py --env HalfCheetah-v5 --episodes 4 --max-steps 200
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
from benchmarks.policies import DEFAULT_METHODS, METHODS, compare, format_table  # noqa: E402

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
    p.add_argument("--env", default="InvertedPendulum-v5", help="gymnasium MuJoCo id")
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


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    n_eps, n_steps, eval_limit = DEFAULTS.get(args.env, FALLBACK)
    episodes = args.episodes or n_eps
    steps = args.steps or n_steps
    max_steps = args.max_steps if args.max_steps is not None else eval_limit
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
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
