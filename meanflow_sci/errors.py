"""Errors and input checks shared by every public entry point.

Every check names the argument, what was expected and what was given, so a failed call tells the
user what to change. The error classes subclass the builtin ones, so ``except ValueError`` keeps
working for callers that do not know this package.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = [
    "MeanFlowError",
    "InputError",
    "CheckpointError",
    "TrainingDivergedError",
    "check_choice",
    "check_finite",
    "check_positive_int",
    "check_range",
    "check_batch_match",
    "describe",
]


class MeanFlowError(Exception):
    """Base class of the errors this package raises on its own account."""


class InputError(MeanFlowError, ValueError):
    """Bad input at a public boundary."""


class CheckpointError(MeanFlowError, ValueError):
    """A checkpoint or saved model that cannot be read (truncated, foreign, or unsafe)."""


class TrainingDivergedError(MeanFlowError, RuntimeError):
    """Training produced non-finite values and could not recover."""


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages (type and shape, not the data)."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtype = getattr(value, "dtype", None)
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_choice(name: str, value: Any, choices: Iterable[str] | Mapping[str, Any]) -> str:
    """Check that ``value`` is one of ``choices`` (a registry's keys); return it.

    Raises:
        InputError: listing the valid names.
    """
    valid = sorted(choices)
    if not isinstance(value, str) or value not in valid:
        raise InputError(f"{name}: expected one of {valid}, got {value!r}")
    return value


def check_label_cond(option: str, value: str, fallback: str, why: str, cond: Any) -> None:
    """Check that ``cond`` is ``None`` or integer class labels ``(B,)`` for an option needing it.

    The arguments before ``cond`` are the option's ``LABEL_NEED`` tuple
    (``meanflow_sci.core.coupling``, ``meanflow_sci.core.target_field``), so the check at a
    training step and the one ``fit`` makes before training give the same message.

    Raises:
        InputError: naming ``option='value'``, why it needs labels, the condition given and the
            ``fallback`` to use.
    """
    if cond is not None and (cond.ndim != 1 or cond.dtype.is_floating_point):
        raise InputError(
            f"{option}: {value!r} needs no condition or integer class labels of shape (B,) "
            f"({why}), got a {tuple(cond.shape)} {cond.dtype} condition; use "
            f"{option}={fallback!r}"
        )


def check_finite(name: str, value: Any) -> None:
    """Raise if a tensor or array holds NaN or Inf."""
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if t.is_floating_point() or t.is_complex():
        bad = ~torch.isfinite(t)
        n_bad = int(bad.sum())
        if n_bad:
            raise InputError(
                f"{name}: expected finite values, got {n_bad} NaN/Inf entries "
                f"out of {t.numel()} ({describe(value)})"
            )


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Check that ``value`` is an integer ``>= minimum``; return it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def check_range(
    name: str, value: float, low: float | None = None, high: float | None = None
) -> float:
    """Check ``low <= value <= high`` for a Python number; return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name}: expected a number, got {describe(value)}")
    if value != value:  # NaN
        raise InputError(f"{name}: expected a number in [{low}, {high}], got NaN")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise InputError(f"{name}: expected a value in [{lo}, {hi}], got {value!r}")
    return float(value)


def check_batch_match(name: str, tensor: Any, batch: int, other: str = "x") -> None:
    """Check that ``tensor`` has ``batch`` rows (the batch size of ``other``)."""
    if tensor is None:
        return
    n = tensor.shape[0] if getattr(tensor, "ndim", 0) > 0 else None
    if n != batch:
        raise InputError(
            f"{name}: expected a leading batch dimension of {batch} to match {other}, "
            f"got {describe(tensor)}"
        )
