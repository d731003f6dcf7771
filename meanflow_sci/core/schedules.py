"""λ schedules: the curriculum that raises gradient flow through the JVP from 0 to 1.

Every schedule is a small frozen dataclass called with the optimizer step and returning λ in
``[0, 1]``; ``make_schedule`` accepts a number, a name, a config dict, or any callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InputError, check_choice, check_range

__all__ = [
    "ConstantSchedule",
    "LinearWarmup",
    "CosineWarmup",
    "StepWarmup",
    "SCHEDULES",
    "make_schedule",
]


def _check_warmup(warmup_steps: int) -> None:
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise InputError(f"warmup_steps: expected an integer >= 0, got {warmup_steps!r}")


def _progress(step: int, warmup_steps: int) -> float:
    if warmup_steps == 0:
        return 1.0
    return min(1.0, max(0.0, step / warmup_steps))


@dataclass(frozen=True)
class ConstantSchedule:
    """λ fixed at ``value`` (0: MeanFlow's stop-gradient loss; 1: full JVP gradients)."""

    value: float = 0.0

    def __post_init__(self) -> None:
        check_range("lam", self.value, 0.0, 1.0)

    def __call__(self, step: int) -> float:
        return float(self.value)

    def config(self) -> dict[str, Any]:
        return {"name": "constant", **asdict(self)}


@dataclass(frozen=True)
class LinearWarmup:
    """The paper's curriculum ``λ(k) = min(1, k / warmup_steps)``."""

    warmup_steps: int = 1000

    def __post_init__(self) -> None:
        _check_warmup(self.warmup_steps)

    def __call__(self, step: int) -> float:
        return _progress(step, self.warmup_steps)

    def config(self) -> dict[str, Any]:
        return {"name": "linear", **asdict(self)}


@dataclass(frozen=True)
class CosineWarmup:
    """Half-cosine rise ``λ(k) = (1 - cos(π · min(1, k / warmup_steps))) / 2``."""

    warmup_steps: int = 1000

    def __post_init__(self) -> None:
        _check_warmup(self.warmup_steps)

    def __call__(self, step: int) -> float:
        return 0.5 * (1.0 - math.cos(math.pi * _progress(step, self.warmup_steps)))

    def config(self) -> dict[str, Any]:
        return {"name": "cosine", **asdict(self)}


@dataclass(frozen=True)
class StepWarmup:
    """Staircase rise in ``n_levels`` equal jumps, reaching 1 at ``warmup_steps``."""

    warmup_steps: int = 1000
    n_levels: int = 4

    def __post_init__(self) -> None:
        _check_warmup(self.warmup_steps)
        if (
            isinstance(self.n_levels, bool)
            or not isinstance(self.n_levels, int)
            or self.n_levels < 1
        ):
            raise InputError(f"n_levels: expected an integer >= 1, got {self.n_levels!r}")

    def __call__(self, step: int) -> float:
        return math.floor(_progress(step, self.warmup_steps) * self.n_levels) / self.n_levels

    def config(self) -> dict[str, Any]:
        return {"name": "step", **asdict(self)}


SCHEDULES = {
    "constant": ConstantSchedule,
    "linear": LinearWarmup,
    "cosine": CosineWarmup,
    "step": StepWarmup,
}


def make_schedule(spec: Any, **kwargs: Any) -> Callable[[int], float]:
    """Turn ``spec`` into a callable ``step -> λ``.

    Args:
        spec: a number in ``[0, 1]`` (constant), a name from ``SCHEDULES`` (keyword arguments
            such as ``warmup_steps`` go to its constructor), a config dict with ``name``, or a
            callable of the step (returned as is).

    Example:
        >>> make_schedule("linear", warmup_steps=100)(50)
        0.5
    """
    if isinstance(spec, bool):
        raise InputError(
            f"lam: expected a number in [0, 1], a schedule name or a callable, got {spec!r}"
        )
    if isinstance(spec, (int, float)):
        return ConstantSchedule(float(spec))
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        check_choice("lam['name']", name, SCHEDULES)
        return SCHEDULES[name](**{**spec, **kwargs})
    if isinstance(spec, str):
        check_choice("lam", spec, SCHEDULES)
        return SCHEDULES[spec](**kwargs)
    if callable(spec):
        return spec
    raise InputError(
        f"lam: expected a number in [0, 1], one of {sorted(SCHEDULES)}, a config dict or a "
        f"callable of the step, got {spec!r}"
    )
