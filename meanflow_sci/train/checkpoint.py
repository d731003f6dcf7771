"""Checkpoints: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a folder ``ckpt_000100/`` holding ``weights.safetensors`` (model and EMA weights,
the optimizer state flattened into tensors, RNG states as ``uint8`` tensors) and ``state.json``
(config, step, history, metadata, and the non-tensor parts of the optimizer state). Nothing is
ever unpickled on load, so a checkpoint from an untrusted source cannot run code.

Writes go to a temporary folder beside the target, are flushed to disk, and are then renamed into
place with ``os.replace``: a process killed mid-write leaves the previous checkpoint intact and at
worst a stale ``.tmp-*`` folder, which the next write removes.

Example:
    >>> path = write_checkpoint("runs/a", 100, {"model.w": torch.ones(2)}, {"step": 100})
    >>> ckpt = read_checkpoint(latest_checkpoint("runs/a"))
    >>> ckpt.step, ckpt.tensors["model.w"]
    (100, tensor([1., 1.]))
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from meanflow_sci.errors import CheckpointError, InputError

__all__ = [
    "Checkpoint",
    "LOCK_FILE",
    "lock_checkpoint_dir",
    "WEIGHTS_FILE",
    "STATE_FILE",
    "check_parent_folders",
    "checkpoint_name",
    "check_checkpoint_dir",
    "prepare_checkpoint_dir",
    "list_checkpoints",
    "latest_checkpoint",
    "write_checkpoint",
    "read_checkpoint",
    "flatten_optimizer_state",
    "unflatten_optimizer_state",
]

WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = "state.json"
FORMAT = "meanflow_sci.checkpoint/1"
_CKPT_RE = re.compile(r"^ckpt_(\d+)$")
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back from disk.

    Attributes:
        path: the checkpoint folder.
        step: the optimizer step it was written at.
        tensors: name -> CPU tensor, as saved.
        state: the JSON part (config, history, metadata, ...).
    """

    path: Path
    step: int
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint at ``step`` (zero-padded so names sort by step)."""
    return f"ckpt_{step:06d}"


def check_parent_folders(path: str | os.PathLike, name: str) -> Path:
    """``path`` as a Path, checked not to lie under a plain file (so that mkdir can make it).

    Raises:
        InputError: naming the argument ``name`` and the file in the way.
    """
    target = Path(path)
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(
                    f"{name}: expected a path whose parents are folders, got {str(target)!r}, "
                    f"which lies under the file {str(parent)!r}"
                )
            break
    return target


def check_checkpoint_dir(directory: str | os.PathLike) -> Path:
    """Check ``directory`` can hold checkpoints (without creating it); return it as a Path.

    Raises:
        InputError: if the path exists and is not a folder, or lies under a plain file.
    """
    path = check_parent_folders(directory, "checkpoint_dir")
    if path.exists() and not path.is_dir():
        raise InputError(
            "checkpoint_dir: expected a folder (existing or new), "
            f"got an existing file {str(path)!r}"
        )
    return path


def prepare_checkpoint_dir(directory: str | os.PathLike) -> Path:
    """:func:`check_checkpoint_dir`, then create the folder; return it as a Path."""
    path = check_checkpoint_dir(directory)
    path.mkdir(parents=True, exist_ok=True)
    return path


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoint folders in ``directory``, oldest first (temporary folders are ignored)."""
    path = Path(directory)
    if not path.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in path.iterdir() if p.is_dir() and (m := _CKPT_RE.match(p.name))
    ]
    return [p for _, p in sorted(found)]


LOCK_FILE = "train.lock"


def lock_checkpoint_dir(directory: str | os.PathLike) -> Any:
    """Take the checkpoint folder's lock (an ``fcntl.flock`` on ``train.lock``); return its handle.

    The lock lives as long as the returned file is open and is released by the kernel when the
    process ends, however it ends. Where ``fcntl`` is missing (Windows) nothing is locked and
    None is returned.

    Raises:
        CheckpointError: if another process holds the lock (it is training into the folder).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    path = prepare_checkpoint_dir(directory) / LOCK_FILE
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        raise CheckpointError(
            f"checkpoint_dir: {str(directory)!r} is in use by a run that is still training "
            f"({holder} holds {str(path)!r}); give this run its own checkpoint_dir, or wait for "
            f"the other to end"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest checkpoint folder in ``directory``, or None if there is none."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def _fsync(path: Path) -> None:
    # Flushing the files and the folder makes the rename below durable across a power cut,
    # not only across a killed process.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_files(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    weights_name: str,
    config_name: str,
    fmt: str,
) -> None:
    """Write the two files into ``folder`` (a fresh temporary folder) and flush them."""
    # safetensors refuses shared or non-contiguous storage: save independent CPU copies.
    flat = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    save_file(flat, str(folder / weights_name), metadata={"format": fmt})
    (folder / config_name).write_text(json.dumps(config, indent=1, allow_nan=True))
    for name in (weights_name, config_name):
        _fsync(folder / name)


def write_folder(
    final: Path,
    tensors: dict[str, torch.Tensor],
    config: dict[str, Any],
    *,
    weights_name: str,
    config_name: str,
    fmt: str,
) -> Path:
    """Write ``tensors`` (safetensors) and ``config`` (JSON) as the folder ``final``, atomically.

    The files go to a temporary sibling folder that is renamed into place, so a crash at any
    moment leaves either the previous ``final`` or the new one, never a half-written folder.
    """
    final = Path(final)
    tmp = final.parent / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_files(tmp, tensors, config, weights_name, config_name, fmt)
        if final.exists():
            # os.replace cannot replace a non-empty folder: move the old one aside first.
            old = final.parent / f"{_TMP_PREFIX}old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_folder(
    folder: Path, *, weights_name: str, config_name: str, fmt: str, what: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a folder written by :func:`write_folder`; nothing is unpickled.

    Raises:
        CheckpointError: missing files, invalid JSON, another format, or unreadable tensors.
    """
    folder = Path(folder)
    weights, config_file = folder / weights_name, folder / config_name
    if not folder.is_dir() or not weights.is_file() or not config_file.is_file():
        raise CheckpointError(
            f"no {what} at {str(folder)!r}: expected a folder with {weights_name} and {config_name}"
        )
    try:
        config = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_file}: not valid JSON (truncated?): {exc}") from exc
    found = config.get("format") if isinstance(config, dict) else type(config).__name__
    if found != fmt:
        raise CheckpointError(f"{config_file}: expected format {fmt!r}, got {found!r}")
    try:
        # load_file parses a JSON header and reads raw tensors: it never unpickles.
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{weights}: not a readable safetensors file (truncated or foreign?): {exc}"
        ) from exc
    return tensors, config


def write_checkpoint(
    directory: str | os.PathLike,
    step: int,
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    *,
    keep_last: int = 0,
    check_finite: tuple[str, ...] = (),
) -> Path:
    """Atomically write the checkpoint of ``step`` into ``directory``; return its folder.

    Args:
        directory: the checkpoint folder (created if missing).
        step: optimizer step; the folder is named ``checkpoint_name(step)``.
        tensors: name -> tensor (any device); saved as CPU copies.
        state: JSON-able dict; ``"step"`` and ``"format"`` are added.
        keep_last: keep only this many newest checkpoints (0 keeps all).
        check_finite: name prefixes whose floating tensors must be finite.

    Raises:
        CheckpointError: if a tensor under ``check_finite`` holds NaN/Inf (nothing is written).
    """
    root = prepare_checkpoint_dir(directory)
    for name, value in tensors.items():
        if name.startswith(check_finite) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                raise CheckpointError(
                    f"refusing to save checkpoint at step {step}: tensor {name!r} holds NaN/Inf"
                )
    for stale in root.glob(_TMP_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    final = write_folder(
        root / checkpoint_name(step),
        tensors,
        {**state, "step": step, "format": FORMAT},
        weights_name=WEIGHTS_FILE,
        config_name=STATE_FILE,
        fmt=FORMAT,
    )
    if keep_last > 0:
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint folder (or the newest checkpoint inside a checkpoint directory).

    Raises:
        CheckpointError: if the folder holds no checkpoint, or its files are truncated, foreign
            (e.g. a pickle) or inconsistent.
    """
    path = Path(path)
    if path.is_dir() and not (path / STATE_FILE).exists():
        newest = latest_checkpoint(path)
        if newest is not None:
            path = newest
    tensors, state = read_folder(
        path, weights_name=WEIGHTS_FILE, config_name=STATE_FILE, fmt=FORMAT, what="checkpoint"
    )
    if not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path / STATE_FILE}: expected an integer 'step' in the state")
    return Checkpoint(path=path, step=int(state["step"]), tensors=tensors, state=state)


def flatten_optimizer_state(
    state_dict: dict[str, Any], prefix: str = "optim."
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and a JSON-able remainder.

    Returns:
        ``(tensors, meta)``: tensors named ``{prefix}{param_index}.{key}``; meta holds the param
        groups and the non-tensor per-parameter entries.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, meta


def unflatten_optimizer_state(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str = "optim."
) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            index, key = name[len(prefix) :].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for index, entry in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}
