"""The objective protocol: what every objective provides and the trainer and ``fit`` call.

An objective is a plain class (not an ``nn.Module``) subclassing :class:`Objective`:
``obj(model, x, cond, step=k) -> LossOutput`` returns unreduced per-sample values and the
trainer reduces them. Its inputs are validated here, once, at that public boundary
(:func:`check_batch`, :func:`check_times`; an objective's ``check_inputs=False`` skips them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError, check_batch_match, check_finite

__all__ = ["Gather", "LossOutput", "Objective", "check_batch", "check_times"]

# Maps a local batch to the concatenated batches of every rank (under torchrun).
Gather = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LossOutput:
    """Unreduced result of an objective call.

    Attributes:
        loss: per-sample loss to minimise, shape ``(B,)`` (adaptively weighted where enabled).
        mse: per-sample unweighted mean squared residual ``mean(Δ²)``, shape ``(B,)``.
        lam: the λ used for this call.
    """

    loss: torch.Tensor
    mse: torch.Tensor
    lam: float


class Objective(ABC):
    """What every objective provides; the trainer and ``fit`` call nothing else.

    Attributes:
        name: its key in ``meanflow_sci.core.OBJECTIVES`` (``config()["name"]``).
        sampling_mode: how a model trained with it is sampled (a ``SAMPLING_MODES`` name).

    Example:
        >>> obj = ModularMeanFlow()
        >>> with obj.evaluating():
        ...     val = obj(model, x_val).mse.mean()
    """

    name: str
    sampling_mode: str

    @abstractmethod
    def __call__(
        self,
        model: Callable[..., torch.Tensor],
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        step: int = 0,
        t: torch.Tensor | float | None = None,
        r: torch.Tensor | float | None = None,
        noise: torch.Tensor | None = None,
    ) -> LossOutput:
        """Per-sample loss for a data batch ``x`` of shape ``(B, ...)`` at optimizer ``step``;
        ``t``, ``r`` and ``noise`` given make the call deterministic."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """A JSON-able dict that ``objective_from_config`` turns back into this objective."""

    def label_needs(self) -> list[tuple[str, str, str, str]]:
        """The options set that need class labels or no condition, each ``(option, value,
        fallback, why)``: the arguments of :func:`meanflow_sci.errors.check_label_cond`."""
        return []

    @contextmanager
    def evaluating(self) -> Iterator[Objective]:
        """Within it the loss depends on the model alone (validation) and no state changes."""
        yield self

    def share_across_ranks(self, all_gather: Gather | None) -> None:
        """Under ``torchrun`` the trainer passes an all-gather over the ranks (``None``: one
        process). Objectives without state across batches ignore it."""
        return None


def check_batch(x: Any, cond: Any = None, noise: Any = None) -> None:
    """Check a data batch ``x`` ``(B, ...)`` and the ``cond`` and ``noise`` that go with it."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise InputError(f"x: expected a floating tensor of shape (B, ...), got {x!r:.80}")
    check_finite("x", x)
    check_batch_match("cond", cond, x.shape[0])
    if noise is not None and tuple(noise.shape) != tuple(x.shape):
        raise InputError(f"noise: expected shape {tuple(x.shape)} like x, got {tuple(noise.shape)}")


def check_times(x: torch.Tensor, t: Any, r: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``t`` and ``r`` (default ``t``) as ``(B,)`` tensors like ``x``, with ``0 <= r <= t <= 1``."""
    b = x.shape[0]
    out = []
    for name, val in (("t", t), ("r", t if r is None else r)):
        val = torch.as_tensor(val, dtype=x.dtype, device=x.device)
        val = val.expand(b) if val.ndim == 0 else val
        if val.shape != (b,):
            raise InputError(f"{name}: expected shape ({b},) to match x, got {tuple(val.shape)}")
        check_finite(name, val)
        if bool(((val < 0) | (val > 1)).any()):
            raise InputError(
                f"{name}: expected values in [0, 1], got min {val.min().item():.4g} and "
                f"max {val.max().item():.4g}"
            )
        out.append(val)
    if bool((out[1] > out[0]).any()):
        raise InputError("r: expected r <= t for every sample, got r > t for some")
    return out[0], out[1]
