"""What every benchmark script shares: the machine record, the commit, timing, JSON and tables.

A leaf module (it imports no other benchmark module), so the task scripts and the suite driver
can all use it without import cycles.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from meanflow_sci.errors import check_choice

__all__ = ["REPO_ROOT", "check_suite", "columns_of", "cpus_available", "git_commit", "jsonable"]
__all__ += ["machine_info", "median_time", "median_times", "pyplot", "rows_md"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def cpus_available() -> int | None:
    """CPUs this process may run on (its affinity mask), or None where the OS cannot say."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def machine_info(device: str = "auto") -> dict[str, Any]:
    """The machine record of every benchmark: platform, CPUs, load, torch, threads, device."""
    from meanflow_sci.train import resolve_device

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
        "cpus_available": cpus_available(),
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


def check_suite(suite: str, table: Mapping[str, Any]) -> Any:
    """``table[suite]``, or an InputError naming the valid tiers."""
    return table[check_choice("suite", suite, table)]


def median_times(fns: Mapping[Any, Callable[[], Any]], repeats: int, warmup: int = 2) -> dict:
    """Median wall time of each function; calls interleaved so drift hits all alike."""
    for fn in fns.values():  # warm-up (the first JVP compiles helpers)
        for _ in range(warmup):
            fn()
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def median_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after one warm-up call."""
    return median_times({0: fn}, repeats, warmup=1)[0]


def jsonable(obj: Any) -> Any:
    """``obj`` as strict JSON: NaN/inf become None, tensors and arrays become lists."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def columns_of(rows: list[dict]) -> list[str]:
    """The keys of ``rows`` in order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r))


def rows_md(rows: list[dict]) -> str:
    """A list of row dicts as a Markdown grid (columns in order of first appearance)."""
    cols = columns_of(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def read_parts(parts: list[str | Path], stem: str, what: str) -> tuple[list[Path], list[dict]]:
    """The folders of finished runs to merge and the ``stem.json`` report each holds."""
    folders, reports = [Path(x) for x in parts], []
    for folder in folders:
        path = folder / f"{stem}.json"
        if not path.is_file():
            raise FileNotFoundError(f"parts: expected {path} from a {what} run, found none")
        reports.append(json.loads(path.read_text()))
    return folders, reports


def task_parser(doc: str, name: str, suites: Mapping[str, Any]) -> argparse.ArgumentParser:
    """The command line a task benchmark shares: ``--suite --device --out --seed --threads``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--suite", default="standard", choices=sorted(suites))
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help=f"folder for {name}.json and {name}.md")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p
