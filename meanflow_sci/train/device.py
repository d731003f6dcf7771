"""Where and in which precision the trainer runs: device choice and the autocast context."""

from __future__ import annotations

import contextlib

import torch

from meanflow_sci.errors import InputError, check_choice
from meanflow_sci.train.config import PRECISIONS
from meanflow_sci.train.distributed import DistInfo, dist_info, init_distributed

__all__ = ["resolve_device", "resolve_autocast_dtype", "join_devices", "autocast", "to_device"]


def resolve_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    """Turn a device string into a torch.device; "auto" picks cuda > mps > cpu.

    Under ``torchrun`` (``local_rank`` given) a bare "cuda" becomes ``cuda:<local_rank>``.

    Raises:
        InputError: if the device is not available here.
    """
    if spec == "auto":
        if torch.cuda.is_available():
            spec = "cuda"
        elif torch.backends.mps.is_available():
            spec = "mps"
        else:
            spec = "cpu"
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"device: expected 'auto' or a torch device string, got {spec!r}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device: {spec!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank or 0)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device: {spec!r} requested but MPS is not available")
    return device


def resolve_autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` on ``device``; None means plain fp32.

    "auto" is bf16 on CUDA and fp32 elsewhere; "bf16" also works on CPU (CPU autocast).
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    dtype = PRECISIONS[precision]
    return None if dtype == torch.float32 else dtype


def join_devices(spec: str) -> tuple[torch.device, DistInfo]:
    """This process's device for ``spec`` and, under ``torchrun``, its place in the job.

    Each rank takes ``cuda:<local_rank>`` for a bare "cuda" and joins the process group
    (NCCL on CUDA, Gloo otherwise); a single process just resolves the device.
    """
    env = dist_info()
    device = resolve_device(spec, env.local_rank if env.enabled else None)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device, init_distributed(device)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type, or plain fp32 when ``dtype`` is None.

    The objectives run their JVP in fp32 inside it themselves (see ``meanflow_sci.core``).
    """
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(
    tensor: torch.Tensor | None, device: torch.device, dtype: torch.dtype
) -> torch.Tensor | None:
    """``tensor`` on ``device``, floating ones cast to ``dtype`` (labels keep theirs)."""
    if tensor is None:
        return None
    return tensor.to(device, dtype) if tensor.is_floating_point() else tensor.to(device)
