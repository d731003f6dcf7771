"""The one trainer: :class:`Trainer`, its :class:`TrainConfig`, checkpoints, EMA and DDP helpers.

Beside the loop (``trainer.py``): its options, LR schedule and input checks (``config.py``),
device and precision (``device.py``), checkpoints, EMA and the ``torchrun`` helpers.
"""

from meanflow_sci.train.checkpoint import latest_checkpoint
from meanflow_sci.train.config import TrainConfig, get_lr
from meanflow_sci.train.device import resolve_device
from meanflow_sci.train.ema import EMA
from meanflow_sci.train.trainer import Trainer, TrainResult

__all__ = [
    "EMA",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "get_lr",
    "latest_checkpoint",
    "resolve_device",
]
