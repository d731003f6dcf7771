"""Samplers of the time pair ``(t, r)`` with ``0 <= r <= t <= 1``.

Two draws are made, ``t`` takes the larger and ``r`` the smaller; a fraction ``1 - ratio_r_neq_t``
of the batch then gets ``r = t`` (plain flow matching on those samples).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import InputError, check_choice, check_range

__all__ = [
    "TimeSample",
    "LogitNormalTimeSampler",
    "UniformTimeSampler",
    "TIME_SAMPLERS",
    "make_time_sampler",
]


@dataclass(frozen=True)
class TimeSample:
    """Per-sample times, each of shape ``(B,)``, with ``r <= t``."""

    t: torch.Tensor
    r: torch.Tensor


def _order_and_tie(
    a: torch.Tensor, b: torch.Tensor, ratio_r_neq_t: float, generator: torch.Generator | None
) -> TimeSample:
    t, r = torch.maximum(a, b), torch.minimum(a, b)
    tie = torch.rand(a.shape, device=a.device, generator=generator) >= ratio_r_neq_t
    return TimeSample(t=t, r=torch.where(tie, t, r))


@dataclass(frozen=True)
class LogitNormalTimeSampler:
    """Logit-normal draws ``sigmoid(N(mu, sigma))`` (MeanFlow's ImageNet default: -0.4, 1.0).

    Args:
        mu: mean of the normal before the sigmoid.
        sigma: standard deviation before the sigmoid.
        ratio_r_neq_t: fraction of the batch with ``r != t``.

    Example:
        >>> LogitNormalTimeSampler(mu=-0.4, sigma=1.6, ratio_r_neq_t=0.5)(8)
    """

    mu: float = -0.4
    sigma: float = 1.0
    ratio_r_neq_t: float = 0.25

    def __post_init__(self) -> None:
        check_range("sigma", self.sigma, 1e-6, None)
        check_range("ratio_r_neq_t", self.ratio_r_neq_t, 0.0, 1.0)

    def __call__(
        self,
        batch: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> TimeSample:
        n = torch.randn(2, batch, device=device, generator=generator)
        a, b = torch.sigmoid(n * self.sigma + self.mu)
        return _order_and_tie(a, b, self.ratio_r_neq_t, generator)

    def config(self) -> dict[str, Any]:
        return {"name": "logit_normal", **asdict(self)}


@dataclass(frozen=True)
class UniformTimeSampler:
    """Uniform draws on ``[0, 1]``.

    Args:
        ratio_r_neq_t: fraction of the batch with ``r != t``.
    """

    ratio_r_neq_t: float = 0.25

    def __post_init__(self) -> None:
        check_range("ratio_r_neq_t", self.ratio_r_neq_t, 0.0, 1.0)

    def __call__(
        self,
        batch: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> TimeSample:
        a, b = torch.rand(2, batch, device=device, generator=generator)
        return _order_and_tie(a, b, self.ratio_r_neq_t, generator)

    def config(self) -> dict[str, Any]:
        return {"name": "uniform", **asdict(self)}


TIME_SAMPLERS = {"logit_normal": LogitNormalTimeSampler, "uniform": UniformTimeSampler}


def make_time_sampler(spec: Any = None, **kwargs: Any):
    """Build a time sampler from a name, a config dict, an instance, or ``None`` (default).

    Example:
        >>> make_time_sampler("uniform", ratio_r_neq_t=0.5)
        UniformTimeSampler(ratio_r_neq_t=0.5)
    """
    if spec is None:
        return LogitNormalTimeSampler(**kwargs)
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        check_choice("time_sampler['name']", name, TIME_SAMPLERS)
        return TIME_SAMPLERS[name](**{**spec, **kwargs})
    if isinstance(spec, str):
        check_choice("time_sampler", spec, TIME_SAMPLERS)
        return TIME_SAMPLERS[spec](**kwargs)
    if callable(spec):
        return spec
    raise InputError(
        f"time_sampler: expected one of {sorted(TIME_SAMPLERS)}, a config dict or a callable "
        f"(batch, device, generator) -> TimeSample, got {spec!r}"
    )
