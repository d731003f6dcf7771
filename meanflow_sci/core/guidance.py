"""Classifier-free guidance trained into the target (MeanFlow §4), so guided sampling is 1-NFE.

A fraction ``drop_prob`` of the batch is trained without its condition (the marker
:func:`null_cond`), with the plain target, to learn ``u(· | ∅)``; on the rows that keep it the
target velocity becomes ``ω v + κ u(z, t, t | c) + (1 - ω - κ) u(z, t, t | ∅)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import check_range
from .jvp import acc
from .paths import expand_time

__all__ = ["Guidance", "drop_labels", "guided_velocity", "null_cond"]


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance trained into the target.

    Args:
        omega: guidance scale ω (1 with κ = 0 means no guidance).
        kappa: weight κ of the conditional prediction in the mix.
        drop_prob: probability of dropping the condition for a sample.
    """

    omega: float = 1.0
    kappa: float = 0.0
    drop_prob: float = 0.1

    def __post_init__(self) -> None:
        check_range("guidance.omega", self.omega, 0.0, None)
        check_range("guidance.kappa", self.kappa, 0.0, 1.0)
        check_range("guidance.drop_prob", self.drop_prob, 0.0, 1.0)

    @property
    def mixes(self) -> bool:
        """Whether the target changes on the rows that keep their condition."""
        return self.omega != 1.0 or self.kappa != 0.0


def null_cond(cond: torch.Tensor) -> torch.Tensor:
    """The "no condition" marker backbones understand: label -1, or a row of NaN."""
    if cond.is_floating_point():
        return torch.full_like(cond, float("nan"))
    return torch.full_like(cond, -1)


def drop_labels(
    guidance: Guidance | None, cond: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The label drop: ``(keep, cond_fed)``, the rows keeping their condition ``(B,)`` (or
    ``None`` without guidance or condition) and the condition the network is fed."""
    if guidance is None or cond is None:
        return None, cond
    keep = torch.rand(cond.shape[0], device=cond.device) >= guidance.drop_prob
    keep_c = keep.reshape(-1, *([1] * (cond.ndim - 1)))
    return keep, torch.where(keep_c, cond, null_cond(cond))


def guided_velocity(
    guidance: Guidance | None,
    model: Callable[..., torch.Tensor],
    z: torch.Tensor,
    t: torch.Tensor,
    v: torch.Tensor,
    cond: torch.Tensor | None,
    keep: torch.Tensor | None,
) -> torch.Tensor:
    """``v`` with the guidance mix on the rows in ``keep`` (no gradient through the model)."""
    if guidance is None or cond is None or not guidance.mixes:
        return v
    g = guidance
    with torch.no_grad():
        u_null = acc(model(z, t, t, null_cond(cond)))
        mix = g.omega * v + (1.0 - g.omega - g.kappa) * u_null
        if g.kappa:
            mix = mix + g.kappa * acc(model(z, t, t, cond))
    return torch.where(expand_time(keep, v), mix.to(v.dtype), v)
