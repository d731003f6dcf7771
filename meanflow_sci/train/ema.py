"""Exponential moving average of a network's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import InputError

__all__ = ["EMA", "ema_decay_at"]


def ema_decay_at(decay: float, updates: int) -> float:
    """Decay used at the ``updates``-th update: ``min(decay, (1 + n) / (10 + n))``.

    The warm-up keeps the average from being dominated by the random initial weights in short
    runs (with decay 0.999 a plain EMA still weighs the init by 13 % after 2000 steps).
    """
    return min(decay, (1.0 + updates) / (10.0 + updates))


class EMA:
    """An EMA copy of ``model``: ``ema <- d * ema + (1 - d) * model`` after each optimizer step.

    Floating buffers are averaged like parameters; other buffers (counters) are copied.

    Args:
        model: the network being trained (not modified).
        decay: target decay in [0, 1); 0 makes the copy track the model exactly.

    Example:
        >>> ema = EMA(net, decay=0.999)
        >>> opt.step(); ema.update(net)
        >>> ema.module(x, r, t)
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        d = ema_decay_at(self.decay, self.updates)
        mine, theirs = list(self.module.parameters()), list(model.parameters())
        if len(mine) != len(theirs):
            raise InputError(
                f"model: expected the averaged network's {len(mine)} parameter tensors, "
                f"got {len(theirs)}"
            )
        # One fused kernel launch per device and dtype instead of one per tensor.
        torch._foreach_lerp_(mine, [p.detach() for p in theirs], 1.0 - d)
        for target, value in zip(self.module.buffers(), model.buffers(), strict=True):
            if value.is_floating_point():
                target.lerp_(value, 1.0 - d)
            else:
                target.copy_(value)
        self.updates += 1
