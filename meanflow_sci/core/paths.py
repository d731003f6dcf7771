"""The straight noise-data path shared by every objective.

Convention (MeanFlow's): ``t = 0`` is data, ``t = 1`` is noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["PathSample", "expand_time", "linear_path"]


@dataclass(frozen=True)
class PathSample:
    """A point on the path and its conditional velocity.

    Attributes:
        z: ``z_t = (1 - t) * x + t * eps``, shaped like ``x``.
        v: the conditional velocity ``eps - x``, shaped like ``x``.
    """

    z: torch.Tensor
    v: torch.Tensor


def expand_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample time ``(B,)`` to broadcast against ``like`` ``(B, ...)``."""
    return t.reshape(t.shape[0], *([1] * (like.ndim - 1)))


def linear_path(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> PathSample:
    """Interpolate data ``x`` and ``noise`` at times ``t`` of shape ``(B,)``.

    Example:
        >>> x, eps = torch.zeros(4, 2), torch.ones(4, 2)
        >>> linear_path(x, eps, torch.full((4,), 0.25)).z[0]
        tensor([0.2500, 0.2500])
    """
    tt = expand_time(t, x)
    return PathSample(z=(1.0 - tt) * x + tt * noise, v=noise - x)
