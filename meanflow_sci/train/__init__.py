"""The one trainer: :class:`Trainer`, its :class:`TrainConfig`, checkpoints, EMA and DDP helpers."""

from meanflow_sci.train.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    list_checkpoints,
    read_checkpoint,
    write_checkpoint,
)
from meanflow_sci.train.distributed import DistInfo, cleanup_distributed, dist_info
from meanflow_sci.train.ema import EMA
from meanflow_sci.train.trainer import (
    PRECISIONS,
    TrainConfig,
    Trainer,
    TrainResult,
    get_lr,
    resolve_autocast_dtype,
    resolve_device,
)

__all__ = [
    "Checkpoint",
    "DistInfo",
    "EMA",
    "PRECISIONS",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "cleanup_distributed",
    "dist_info",
    "get_lr",
    "latest_checkpoint",
    "list_checkpoints",
    "read_checkpoint",
    "resolve_autocast_dtype",
    "resolve_device",
    "write_checkpoint",
]
