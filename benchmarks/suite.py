"""The benchmark suite driver: runs the task benchmarks, records the machine, writes the report.

Tasks (the registry :data:`TASKS`; each a module with ``run(suite, device, out, seed)``):

- ``images``, ``ode``, ``control``: the task benchmarks in ``benchmarks/images.py``,
  ``benchmarks/ode.py`` and ``benchmarks/control.py``.
- ``speed``: training-step cost of MMF (λ = 0, 0.5, 1) against flow matching per backbone and
  sampling latency against NFE for MMF and FM (``benchmarks/speed_step.py``).
- ``claims``: the paper's claims with verdicts (``benchmarks/claims.py``).

A task that is missing or raises is recorded as failed, with its error, and the run goes on.

Example:
    >>> from benchmarks.suite import run_suite
    >>> results = run_suite("smoke", ["speed"], out="runs/bench_smoke")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import inspect
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from meanflow_sci.errors import InputError, check_choice

try:
    from benchmarks.common import git_commit, machine_info
except ModuleNotFoundError:  # run as a script: python benchmarks/suite.py
    from common import git_commit, machine_info

__all__ = [
    "SUITES",
    "TASKS",
    "DEFAULT_TASKS",
    "ESTIMATED_S",
    "SCHEMA",
    "run_suite",
    "parse_tasks",
    "main",
]

SCHEMA = "meanflow_sci.benchmarks/1"
SUITES = ("smoke", "quick", "standard", "full")
DEFAULT_TASKS = ("images", "ode", "control", "speed", "claims")

# Rough wall time of each task on 2 idle CPU cores, for the progress display only.
ESTIMATED_S: dict[str, dict[str, float]] = {
    "smoke": {"images": 25, "ode": 10, "control": 10, "speed": 3, "claims": 15},
    "quick": {"images": 160, "ode": 140, "control": 185, "speed": 40, "claims": 320},
    "standard": {"images": 700, "ode": 480, "control": 1500, "speed": 60, "claims": 420},
    "full": {"images": 3700, "ode": 1800, "control": 1800, "speed": 600, "claims": 7200},
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
    """A runner that imports ``benchmarks.<module>`` only when the task runs and calls its
    ``run(suite, device=..., out=..., seed=..., **extra)``, leaving out the arguments it does not
    take."""

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
    "control": _module_task("control"),
    "speed": _module_task("speed_step"),
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


def _sanitize(obj: Any) -> Any:
    """Make ``obj`` strict JSON: NaN/inf become None, tensors and arrays become lists."""
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return _sanitize(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return _sanitize(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


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
    """Run the requested tasks and write ``results.json``, ``results.md`` and PNG plots.

    Args:
        suite: "smoke" (seconds, plumbing), "quick" (about 15 minutes on 2 CPU cores; see the
            README for measured times), "standard" (the sizes behind the issue targets, about an
            hour on CPU) or "full" (GPU scale).
        tasks: names from :data:`TASKS`, as a list or a comma-separated string.
        device: passed to every task ("auto", "cpu", "cuda", ...).
        out: output folder (created); task modules write their own files in ``out/<task>/``.
        seed: base seed passed to every task.
        progress: show a tqdm bar over the tasks with an elapsed/remaining estimate.
        plots: write the PNG plots.

    Returns:
        The dict written to ``results.json``.
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
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "git": git_commit(),
        "results": {},
        "errors": [],
    }
    record["git_commit"] = record["git"]["commit"]
    estimates = {n: ESTIMATED_S[suite].get(n, 60.0) for n in names}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # The bar counts estimated seconds, so tqdm's "remaining" is the estimate of the tasks
        # left, rescaled by how fast the finished ones went against their estimates.
        bar = tqdm(
            total=sum(estimates.values()),
            bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed} elapsed, ~{remaining} left]",
            dynamic_ncols=True,
        )
    for i, name in enumerate(names):
        if bar is not None:
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
        if bar is not None:
            bar.update(estimates[name])
            bar.write(
                f"{name}: {entry['status']} in {entry['wall_s']:.1f} s"
                + (f" ({entry['error']})" if entry["error"] else "")
            )
        # Written after every task, so a long run that is stopped keeps what it finished.
        final = _write(record, out, started, plots=plots)
    if bar is not None:
        bar.close()
    return final


def _write(record: dict, out: Path, started: float, *, plots: bool) -> dict:
    """Write results.json and results.md (and the plots) of the tasks done so far."""
    report = _import("report")
    done = dict(record)
    done["wall_s"] = round(time.perf_counter() - started, 1)
    done["timings_s"] = {n: e["wall_s"] for n, e in record["results"].items()}
    done["complete"] = len(record["results"]) == len(record["tasks_requested"])
    done = _sanitize(done)
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
