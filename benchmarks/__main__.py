"""``python -m benchmarks``: run the benchmark suite and write results.json, results.md and plots.

Examples:
    python -m benchmarks --suite quick --out runs/bench_quick
    python -m benchmarks --suite smoke --tasks speed,claims --out /tmp/bench_smoke
    python -m benchmarks --suite full --device cuda --out runs/bench_full
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.suite import DEFAULT_TASKS, SUITES, TASKS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--suite",
        default="quick",
        choices=SUITES,
        help="smoke: seconds, plumbing only; quick: about 15 CPU minutes; standard: the sizes "
        "behind the issue targets (about an hour on CPU); full: GPU scale (default quick)",
    )
    p.add_argument(
        "--tasks",
        default=",".join(DEFAULT_TASKS),
        help=f"comma-separated subset of {','.join(TASKS)} (default: all)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default auto)")
    p.add_argument("--out", default="runs/bench", help="output folder (default runs/bench)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's own choice, recorded in results.json)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from benchmarks.suite import parse_tasks, run_suite
    from meanflow_sci.errors import InputError

    try:
        tasks = parse_tasks(args.tasks)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print(
                f"error: --threads: expected a positive integer, got {args.threads}",
                file=sys.stderr,
            )
            return 2
        torch.set_num_threads(args.threads)
    record = run_suite(
        args.suite,
        tasks,
        device=args.device,
        out=args.out,
        seed=args.seed,
        progress=not args.no_progress,
        plots=not args.no_plots,
    )
    failed = [e["task"] for e in record["errors"]]
    print(
        f"wrote {args.out}/results.json, results.md and {len(record['plots'])} plots "
        f"in {record['wall_s']:.0f} s"
    )
    for t in record["tables"]:
        if t.get("verdict"):
            print(f"- {t['title']}: {t['verdict']}")
    if failed:
        print(f"failed tasks: {', '.join(failed)} (see results.json 'errors')", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
