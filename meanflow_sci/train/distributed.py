"""Data-parallel helpers for running the one Trainer under ``torchrun``.

The Trainer does not wrap the network in ``DistributedDataParallel``: ``torch.func.jvp`` (used by
the MeanFlow objectives) cannot pass through DDP's wrapper. Instead every rank calls the plain
module on its shard of the global batch and the gradients are averaged here with one
``all_reduce`` on a flat buffer. Since every rank holds an equal-sized shard, the average of the
per-rank mean losses equals the mean loss over the global batch, so the update matches a
single-process run on the same global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "dist_info",
    "init_distributed",
    "broadcast_module",
    "all_reduce_grads",
    "all_reduce_max",
    "cleanup_distributed",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a data-parallel job.

    Attributes:
        rank: global rank (0 in a single process).
        world_size: number of processes (1 in a single process).
        local_rank: rank on this machine (picks the CUDA device).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, logs and progress."""
        return self.rank == 0


def dist_info() -> DistInfo:
    """Read rank and world size from the environment ``torchrun`` sets (defaults: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group ``torchrun`` describes, once per process; return this rank's info.

    Uses NCCL for CUDA devices and Gloo otherwise. Does nothing in a single process.
    """
    info = dist_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    if info.enabled:
        info = DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)
    return info


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers of rank ``src`` to every rank (no-op without a group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)


def all_reduce_grads(
    params: list[nn.Parameter], world_size: int, extra: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Average the gradients of ``params`` (and the 1-D tensor ``extra``) over all ranks.

    One flat buffer means one collective per step. A parameter without a gradient contributes
    zeros, so ranks never disagree on the buffer layout.

    Returns:
        The averaged ``extra`` (e.g. loss statistics), or None.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    parts = [g.reshape(-1) for g in grads]
    if extra is not None:
        parts.append(extra.to(grads[0].dtype).reshape(-1) if grads else extra.reshape(-1))
    flat = torch.cat(parts)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        if p.grad is None:
            p.grad = flat[offset : offset + n].view_as(p).clone()
        else:
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n
    return flat[offset:] if extra is not None else None


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` (same shape on each), concatenated along dim 0 in rank order.

    Without a process group the tensor itself. Used to share the stable target field's reference
    bank across ranks, so each rank's bank holds the recent global batches.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def all_reduce_max(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any rank (no-op without a group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a ``torchrun`` script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
