"""What every benchmark script shares: the machine record, the commit, Markdown rows, suite checks.

A leaf module (it imports no other benchmark module), so the task scripts and the suite driver
can all use it without import cycles.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from meanflow_sci.errors import check_choice

__all__ = ["REPO_ROOT", "check_suite", "cpus_available", "git_commit", "machine_info", "rows_md"]

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


def rows_md(rows: list[dict]) -> str:
    """A list of row dicts as a Markdown grid (columns in order of first appearance)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
