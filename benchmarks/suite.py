"""The benchmark suite driver: runs the task benchmarks, records the machine, writes the report.

Tasks (the registry :data:`TASKS`):

- ``images``, ``ode``, ``control``: the task benchmarks in ``benchmarks/images.py``,
  ``benchmarks/ode.py`` and ``benchmarks/control.py``, each ``run(suite, device, out, seed)``.
- ``speed``: training-step cost of MMF (λ = 0, 1) against flow matching per backbone
  (``benchmarks/speed_step.py``) and sampling latency against NFE for MMF and FM.
- ``claims``: the paper's claims with verdicts (``benchmarks/claims.py``).

A task that is missing or raises is recorded as failed, with its error, and the run goes on.

Example:
    >>> from benchmarks.suite import run_suite
    >>> results = run_suite("smoke", ["speed"], out="runs/bench_smoke")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import importlib
import inspect
import math
import os
import platform
import statistics
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from meanflow_sci.errors import InputError, check_choice

__all__ = [
    "SUITES",
    "TASKS",
    "DEFAULT_TASKS",
    "ESTIMATED_S",
    "SPEED_CASES",
    "SCHEMA",
    "machine_info",
    "git_commit",
    "run_speed",
    "speed_rows",
    "run_suite",
    "parse_tasks",
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

REPO_ROOT = Path(__file__).resolve().parent.parent

# -- speed -----------------------------------------------------------------------------------------

# (backbone, size, backbone kwargs, sample shape, batch), as in benchmarks/speed_step.py.
_TINY = [
    ("mlp", "tiny", {"dim": 8, "hidden": 32, "depth": 1}, (8,), 16),
    ("unet1d", "tiny", {"channels": 2, "down_dims": (8, 16)}, (8, 2), 8),
]


def _speed_cases() -> dict[str, list[tuple]]:
    from benchmarks import speed_step

    small = [c for c in speed_step.CASES if c[1] == "small"]
    return {"tiny": _TINY, "small": small, "all": list(speed_step.CASES)}


class _LazyCases(dict):
    """``SPEED_CASES[name]``, built on first use (importing speed_step pulls in the library)."""

    def __missing__(self, key: str) -> list[tuple]:
        cases = _speed_cases()
        check_choice("speed cases", key, cases)
        self.update(cases)
        return cases[key]


SPEED_CASES: dict[str, list[tuple]] = _LazyCases()


@dataclass(frozen=True)
class SpeedConfig:
    """Sizes of the speed task for one suite."""

    cases: str  # key of SPEED_CASES
    repeats: int  # timed repetitions of each training step
    nfe: tuple[int, ...]  # sampling steps to time
    latency_repeats: int
    ratio_r_neq_t: float = 0.25


SPEED_CONFIGS = {
    "smoke": SpeedConfig(cases="tiny", repeats=2, nfe=(1, 2, 4), latency_repeats=2),
    "quick": SpeedConfig(cases="small", repeats=7, nfe=(1, 2, 4, 10, 50), latency_repeats=5),
    "standard": SpeedConfig(cases="small", repeats=7, nfe=(1, 2, 4, 10, 50), latency_repeats=5),
    "full": SpeedConfig(cases="all", repeats=15, nfe=(1, 2, 4, 10, 50), latency_repeats=15),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _latency(case: tuple, nfes: Sequence[int], repeats: int, device: torch.device) -> list[dict]:
    """Median sampling latency of one batch against NFE, MMF ("mean") and FM ("flow") samplers.

    Calls are interleaved over (mode, NFE) so that machine drift hits all alike.
    """
    from meanflow_sci.core import sample
    from meanflow_sci.nn import build_backbone

    name, size, kwargs, shape, batch = case
    torch.manual_seed(0)
    model = build_backbone(name, **kwargs).to(device).eval()
    noise = torch.randn(batch, *shape, device=device)
    fns: dict[tuple[str, int], Callable[[], None]] = {}
    for mode, label in (("mean", "MMF"), ("flow", "FM")):
        for k in nfes:

            def fn(mode=mode, k=k) -> None:
                with torch.no_grad():
                    sample(model, noise, steps=k, mode=mode)
                _sync(device)

            fns[(label, k)] = fn
    for fn in fns.values():
        fn()  # warm-up
    times: dict[tuple[str, int], list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for (label, k), t in med.items():
        rows.append(
            {
                "backbone": f"{name} ({size})",
                "method": label,
                "nfe": k,
                "batch": batch,
                "ms": round(1e3 * t, 4),
                "per_sample_us": round(1e6 * t / batch, 3),
                "over_1nfe": round(t / med[(label, 1)], 2) if (label, 1) in med else None,
            }
        )
    return rows


def speed_rows(
    speed_step: Any, repeats: int, ratio: float, cases: Sequence[tuple]
) -> tuple[list[dict], dict[str, str]]:
    """``speed_step.run`` one case at a time, so one failing backbone does not lose the others.

    Returns:
        The rows of the cases that ran, and ``{"<backbone> (<size>)": error}`` of those that
        raised.
    """
    rows, errors = [], {}
    for case in cases:
        try:
            rows.extend(speed_step.run(repeats, ratio, [case]))
        except Exception as exc:  # noqa: BLE001 - recorded in the table
            errors[f"{case[0]} ({case[1]})"] = f"{type(exc).__name__}: {exc}"
    return rows, errors


def run_speed(
    suite: str = "quick", device: str = "auto", out: str | Path | None = None, seed: int = 0
) -> dict:
    """Training-step cost and sampling latency (the ``speed`` task).

    Args:
        suite: "smoke", "quick", "standard" or "full".
        device: sampling latency runs here; the step-cost table always runs on the CPU
            (``benchmarks/speed_step.py``).
        out: unused (the suite writes the files).
        seed: unused (fixed initialisation); kept for the common task signature.

    Returns:
        ``{"benchmark": "speed", "step_cost": [...], "latency": [...], "tables": [...]}``.
    """
    from benchmarks import speed_step
    from meanflow_sci.train import resolve_device

    check_choice("suite", suite, SPEED_CONFIGS)
    cfg = SPEED_CONFIGS[suite]
    dev = resolve_device(device)
    cases = SPEED_CASES[cfg.cases]
    t0 = time.perf_counter()
    step_rows, errors = speed_rows(speed_step, cfg.repeats, cfg.ratio_r_neq_t, cases)
    if not step_rows:
        raise RuntimeError(f"every training-step case failed: {errors}")
    latency_rows = []
    for case in cases:
        latency_rows.extend(_latency(case, cfg.nfe, cfg.latency_repeats, dev))
    step_table = [
        {
            "backbone": r["backbone"],
            "size": r["size"],
            "params": r["params"],
            "batch": r["batch"],
            "FM ms": round(r["fm_ms"], 3),
            "MMF λ=0 ms": round(r["mmf_lam0_ms"], 3),
            "MMF λ=0.5 ms": round(r["mmf_lam0.5_ms"], 3),
            "MMF λ=1 ms": round(r["mmf_lam1_ms"], 3),
            "λ=0/FM": round(r["mmf0_over_fm"], 2),
            "λ=0.5/FM": round(r["mmf05_over_fm"], 2),
            "λ=1/FM": round(r["mmf1_over_fm"], 2),
            "1-step/forward": round(r["sample1_over_forward"], 2),
            **(
                {"λ=0/FM (torch.func.jvp)": round(r["mmf0_func_over_fm"], 2)}
                if "mmf0_func_over_fm" in r
                else {}
            ),
            **({"λ=0/FM (fd)": round(r["mmf0_fd_over_fm"], 2)} if "mmf0_fd_over_fm" in r else {}),
        }
        for r in step_rows
    ] + [{"backbone": k, "error": v} for k, v in errors.items()]
    pivot: dict[tuple[str, str], dict] = {}
    for r in latency_rows:
        row = pivot.setdefault(
            (r["backbone"], r["method"]),
            {"backbone": r["backbone"], "method": r["method"], "batch": r["batch"]},
        )
        row[f"NFE {r['nfe']} ms"] = r["ms"]
    for row in pivot.values():
        last = f"NFE {cfg.nfe[-1]} ms"
        first = f"NFE {cfg.nfe[0]} ms"
        row[f"NFE {cfg.nfe[-1]} / NFE {cfg.nfe[0]}"] = round(row[last] / max(row[first], 1e-12), 1)
    tables = [
        {
            "name": "speed_step_cost",
            "task": "speed",
            "title": f"Training-step cost, MMF against flow matching (CPU, "
            f"{torch.get_num_threads()} threads, median of {cfg.repeats}, ratios from one run)",
            "columns": list(dict.fromkeys(k for r in step_table for k in r)),
            "rows": step_table,
        },
        {
            "name": "speed_sampling_latency",
            "task": "speed",
            "title": f"Sampling latency of one batch against NFE ({dev}, untrained networks: "
            f"latency does not depend on the weights; median of {cfg.latency_repeats})",
            "columns": list(next(iter(pivot.values())).keys()),
            "rows": list(pivot.values()),
        },
    ]
    return {
        "benchmark": "speed",
        "suite": suite,
        "config": {
            "cases": cfg.cases,
            "repeats": cfg.repeats,
            "nfe": list(cfg.nfe),
            "latency_repeats": cfg.latency_repeats,
            "ratio_r_neq_t": cfg.ratio_r_neq_t,
        },
        "device": {"step_cost": "cpu", "latency": str(dev)},
        "step_cost": step_rows,
        "errors": errors,
        "latency": latency_rows,
        "tables": tables,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


# -- task registry ---------------------------------------------------------------------------------


def _module_task(module: str) -> Callable[..., dict]:
    """A runner that imports ``benchmarks.<module>`` only when the task runs.

    Keyword arguments the module's ``run`` does not take are left out, so a task module that
    lacks e.g. ``seed`` still runs.
    """

    def runner(suite: str, device: str, out: Path, seed: int) -> dict:
        mod = importlib.import_module(f"benchmarks.{module}")
        fn = getattr(mod, "run", None)
        if not callable(fn):
            raise AttributeError(f"benchmarks/{module}.py has no run() function")
        params = inspect.signature(fn).parameters
        kwargs = {"suite": suite, "device": device, "out": out, "seed": seed}
        has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
        if not has_var_kw:
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        result = fn(**kwargs)
        if not isinstance(result, dict):
            raise TypeError(
                f"benchmarks/{module}.py run() returned {type(result).__name__}, expected a dict"
            )
        return result

    runner.__name__ = f"run_{module}"
    return runner


def _claims(suite: str, device: str, out: Path, seed: int) -> dict:
    from benchmarks import claims

    return claims.run(suite, device=device, out=out, seed=seed, progress=True)


TASKS: dict[str, Callable[[str, str, Path, int], dict]] = {
    "images": _module_task("images"),
    "ode": _module_task("ode"),
    "control": _module_task("control"),
    "speed": run_speed,
    "claims": _claims,
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


# -- provenance ------------------------------------------------------------------------------------


def git_commit(root: Path = REPO_ROOT) -> dict[str, Any]:
    """The checked-out commit (``git rev-parse HEAD``) and whether the tree has local changes."""
    info: dict[str, Any] = {"commit": "unknown", "dirty": None}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if head.returncode == 0 and head.stdout.strip():
            info["commit"] = head.stdout.strip()
        status = subprocess.run(
            # --no-optional-locks: a read-only look that never refreshes the index file.
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if status.returncode == 0:
            info["dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def machine_info(device: str = "auto") -> dict[str, Any]:
    """Platform, CPU, threads, torch version and the resolved device."""
    from benchmarks.budget import cpus_available
    from meanflow_sci.train import resolve_device

    affinity = cpus_available()
    try:
        resolved = str(resolve_device(device))
    except Exception as exc:  # noqa: BLE001 - recorded, the tasks will raise properly
        resolved = f"unresolved ({type(exc).__name__}: {exc})"
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device_requested": device,
        "device": resolved,
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        info["load_average"] = None
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


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
    from benchmarks import report

    done = dict(record)
    done["wall_s"] = round(time.perf_counter() - started, 1)
    done["timings_s"] = {n: e["wall_s"] for n, e in record["results"].items()}
    done["complete"] = len(record["results"]) == len(record["tasks_requested"])
    done = _sanitize(done)
    done["tables"] = report.collect_tables(done)
    done["plots"] = report.write_plots(done, out) if plots else []
    report.write_results(out, "results", done, report.markdown(done), allow_nan=False)
    return done
