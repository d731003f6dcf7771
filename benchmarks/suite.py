"""The benchmark suite driver (``python -m benchmarks``): runs the task benchmarks of :data:`TASKS`,
records the machine and writes ``results.json``, ``results.md`` and the plots.

A task that is missing or raises is recorded as failed, with its error, and the run goes on.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import inspect
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from meanflow_sci.errors import InputError, check_choice

try:
    from benchmarks.common import git_commit, jsonable, machine_info
except ModuleNotFoundError:  # run as a script: python benchmarks/suite.py
    from common import git_commit, jsonable, machine_info

__all__ = ["SUITES", "TASKS", "DEFAULT_TASKS", "ESTIMATED_S", "SCHEMA", "run_suite", "parse_tasks"]
__all__ += ["main"]

SCHEMA = "meanflow_sci.benchmarks/1"
SUITES = ("smoke", "quick", "standard", "full")
DEFAULT_TASKS = (
    "images",
    "ode",
    "chaos",
    "chaos_lambda",
    "control",
    "metaworld",
    "metaworld_lambda",
    "speed",
    "stream",
    "claims",
)

# Rough wall time of each task on 2 idle CPU cores, for the progress display only.
ESTIMATED_S: dict[str, dict[str, float]] = {
    "smoke": {
        "images": 25,
        "ode": 10,
        "chaos": 20,
        "chaos_lambda": 15,
        "control": 10,
        "metaworld": 30,
        "metaworld_lambda": 20,
        "speed": 3,
        "stream": 20,
        "claims": 15,
    },
    "quick": {
        "images": 160,
        "ode": 140,
        "chaos": 900,
        "chaos_lambda": 1500,
        "control": 185,
        "metaworld": 900,
        "metaworld_lambda": 1800,
        "speed": 40,
        "stream": 600,
        "claims": 320,
    },
    "standard": {
        "images": 700,
        "ode": 480,
        "chaos": 6000,
        "chaos_lambda": 9000,
        "control": 1500,
        "metaworld": 7200,
        "metaworld_lambda": 9000,
        "speed": 60,
        "stream": 1500,
        "claims": 420,
    },
    "full": {
        "images": 3700,
        "ode": 1800,
        "chaos": 12000,
        "chaos_lambda": 40000,
        "control": 1800,
        "metaworld": 20000,
        "metaworld_lambda": 40000,
        "speed": 600,
        "stream": 4000,
        "claims": 7200,
    },
}

# -- task registry ---------------------------------------------------------------------------------


def _import(module: str) -> Any:
    """``benchmarks.<module>``, or ``<module>`` when this file runs as a script."""
    try:
        return importlib.import_module(f"benchmarks.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks":
            raise
        return importlib.import_module(module)


def _module_task(module: str, **extra: Any) -> Callable[..., dict]:
    """A runner that imports ``benchmarks.<module>`` when the task runs and calls its ``run``
    with the arguments it takes of ``suite``, ``device``, ``out``, ``seed`` and ``extra``."""

    def runner(suite: str, device: str, out: Path, seed: int) -> dict:
        fn = getattr(_import(module), "run", None)
        if not callable(fn):
            raise AttributeError(f"benchmarks/{module}.py has no run() function")
        params = inspect.signature(fn).parameters
        kwargs = {"suite": suite, "device": device, "out": out, "seed": seed, **extra}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        result = fn(**kwargs)
        if not isinstance(result, dict):
            raise TypeError(
                f"benchmarks/{module}.py run() returned {type(result).__name__}, expected a dict"
            )
        return result

    runner.__name__ = f"run_{module}"
    return runner


TASKS: dict[str, Callable[[str, str, Path, int], dict]] = {
    "images": _module_task("images"),
    "ode": _module_task("ode"),
    "chaos": _module_task("chaos"),
    "chaos_lambda": _module_task("chaos_lambda"),
    "control": _module_task("control"),
    "metaworld": _module_task("meta_world"),
    "metaworld_lambda": _module_task("metaworld_lambda"),
    "speed": _module_task("speed_step"),
    "stream": _module_task("streaming"),
    "claims": _module_task("claims", progress=True),
}


def parse_tasks(spec: str | Sequence[str]) -> list[str]:
    """``"images,ode"`` or a list -> validated task names (order kept, duplicates dropped)."""
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if not names:
        raise InputError(
            f"tasks: expected a comma-separated list from {sorted(TASKS)}, got {spec!r}"
        )
    for n in names:
        check_choice("tasks", n, TASKS)
    return list(dict.fromkeys(names))


# -- the run ---------------------------------------------------------------------------------------


def run_suite(
    suite: str = "quick",
    tasks: str | Sequence[str] = DEFAULT_TASKS,
    *,
    device: str = "auto",
    out: str | Path = "runs/bench",
    seed: int = 0,
    progress: bool = True,
    plots: bool = True,
) -> dict:
    """Run ``tasks`` (names from :data:`TASKS`, a list or comma-separated) at the ``suite`` sizes.

    Each task writes its own files in ``out/<task>/``; ``results.json``, ``results.md`` and the
    plots (unless ``plots=False``) go to ``out`` after every task. ``progress`` shows a bar over
    the tasks with an estimate of the time left. Returns the dict written to ``results.json``.
    """
    check_choice("suite", suite, SUITES)
    names = parse_tasks(tasks)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "suite": suite,
        "tasks_requested": names,
        "device": device,
        "seed": seed,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "git": git_commit(),
        "results": {},
        "errors": [],
    }
    record["git_commit"] = record["git"]["commit"]
    estimates = {n: ESTIMATED_S[suite].get(n, 60.0) for n in names}
    # The bar counts estimated seconds, so tqdm's "remaining" is the estimate of the tasks left,
    # rescaled by how fast the finished ones went against their estimates.
    bar = tqdm(
        total=sum(estimates.values()),
        bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed} elapsed, ~{remaining} left]",
        dynamic_ncols=True,
        disable=not progress,
    )
    for i, name in enumerate(names):
        bar.set_description_str(f"[{i + 1}/{len(names)}] {name}")
        task_out = out / name
        task_out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"status": "ok", "error": None, "traceback": None, "result": None}
        try:
            entry["result"] = TASKS[name](suite, device, task_out, seed)
        except BaseException as exc:  # noqa: BLE001 - one broken task must not end the run
            if isinstance(exc, KeyboardInterrupt):
                raise
            entry["status"] = "failed"
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc(limit=20)
            record["errors"].append({"task": name, "error": entry["error"]})
        entry["wall_s"] = round(time.perf_counter() - t0, 2)
        record["results"][name] = entry
        bar.update(estimates[name])
        if progress:
            error = f" ({entry['error']})" if entry["error"] else ""
            bar.write(f"{name}: {entry['status']} in {entry['wall_s']:.1f} s{error}")
        # Written after every task, so a long run that is stopped keeps what it finished.
        final = _write(record, out, started, plots=plots)
    bar.close()
    return final


def _write(record: dict, out: Path, started: float, *, plots: bool) -> dict:
    """Write results.json and results.md (and the plots) of the tasks done so far."""
    report = _import("report")
    done = dict(record)
    done["wall_s"] = round(time.perf_counter() - started, 1)
    done["timings_s"] = {n: e["wall_s"] for n, e in record["results"].items()}
    done["complete"] = len(record["results"]) == len(record["tasks_requested"])
    done = jsonable(done)
    done["tables"] = report.collect_tables(done)
    done["plots"] = report.write_plots(done, out) if plots else []
    report.write_results(out, "results", done, report.markdown(done), allow_nan=False)
    return done


# -- command line (python -m benchmarks) ------------------------------------------------------

_USAGE = """Run the benchmark suite and write results.json, results.md and plots.

Examples:
    python -m benchmarks --suite quick --out runs/bench_quick
    python -m benchmarks --suite smoke --tasks speed,claims --out /tmp/bench_smoke
    python -m benchmarks --suite full --device cuda --out runs/bench_full
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=_USAGE,
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
    try:
        tasks = parse_tasks(args.tasks)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print(f"error: --threads: expected a positive integer, got {args.threads}", file=sys.stderr)
        return 2
    if args.threads is not None:
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
