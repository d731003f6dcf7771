"""Wrappers around any backbone: the data-estimate output and flattening for flat networks.

Both keep the backbone contract ``forward(x, r, t, cond=None) -> tensor shaped like x`` and use
only shape and element-wise operations, so forward-mode AD (dual tensors, ``torch.func.jvp``)
passes through them as through the network itself.

Example:
    >>> net = DataEstimate(Flattened(MLP(MLPConfig(dim=64 * 2)), (64, 2)))
    >>> net(torch.randn(5, 64, 2), torch.zeros(5), torch.ones(5)).shape
    torch.Size([5, 64, 2])
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from meanflow_sci.errors import InputError, describe

__all__ = ["PREDICTIONS", "T_FLOOR", "DataEstimate", "Flattened"]

# "u": the network outputs the average velocity; "x": a data estimate (DataEstimate).
PREDICTIONS = ("u", "x")
# Floor on t in ``u = (x_t - F) / max(t, T_FLOOR)``; below it the map from F to u is still
# one-to-one, so no velocity field becomes unreachable.
T_FLOOR = 0.05


class DataEstimate(nn.Module):
    """Read the inner network's output ``F`` as a data estimate: ``u = (x_t - F) / max(t, 0.05)``.

    On the linear path every average velocity ending at a deterministic target ``x_0`` is
    ``(x_t - x_0) / t``, whatever ``r``, so the inner network only has to output ``x_0``: it no
    longer carries the noise through to its output, which is what limits a one-step model of a
    deterministic map (conditional ODE trajectories) at a given width. The map ``F -> u`` is
    one-to-one for every ``t``, so nothing becomes unreachable. A fresh backbone (zero output
    layer) gives ``F = 0``: its one-step sample from noise is zero.

    Args:
        inner: A backbone ``forward(x, r, t, cond=None)``.

    Shapes:
        Those of ``inner``; ``t: (B,)`` is broadcast over the sample axes.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        if not isinstance(inner, nn.Module):
            raise InputError(f"inner: expected an nn.Module backbone, got {describe(inner)}")
        self.inner = inner
        self._register_load_state_dict_pre_hook(_accept_bare_state)

    def forward(self, x: Tensor, r: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Average velocity ``u(x, r, t | cond)``, shaped like ``x``."""
        out = self.inner(x, r, t, cond)
        tt = t.clamp_min(T_FLOOR).reshape(-1, *([1] * (x.ndim - 1))).to(out.dtype)
        return (x.to(out.dtype) - out) / tt


class Flattened(nn.Module):
    """Run a flat network (``(B, D)``, e.g. an MLP with ``dim = prod(sample_shape)``) on samples
    of shape ``sample_shape``: ``(B, *sample_shape) -> (B, D) -> inner -> (B, *sample_shape)``.

    Args:
        inner: A flat backbone ``forward(x, r, t, cond=None)`` on ``(B, prod(sample_shape))``.
        sample_shape: Shape of one sample, e.g. ``(T, D)`` for trajectories.

    Shapes:
        ``x: (B, *sample_shape)``, ``r, t: (B,)`` ``-> (B, *sample_shape)``.
    """

    def __init__(self, inner: nn.Module, sample_shape: Sequence[int]) -> None:
        super().__init__()
        if not isinstance(inner, nn.Module):
            raise InputError(f"inner: expected an nn.Module backbone, got {describe(inner)}")
        self.inner = inner
        self.sample_shape = check_sample_shape(sample_shape)

    @property
    def flat_dim(self) -> int:
        """Size of one flattened sample, ``prod(sample_shape)``."""
        return math.prod(self.sample_shape)

    def extra_repr(self) -> str:
        return f"sample_shape={self.sample_shape}"

    def forward(self, x: Tensor, r: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Average velocity ``u(x, r, t | cond)``, shaped like ``x``."""
        if not isinstance(x, Tensor) or tuple(x.shape[1:]) != self.sample_shape:
            layout = ", ".join(str(n) for n in ("B", *self.sample_shape))
            raise InputError(f"x: expected a tensor of shape ({layout}), got {describe(x)}")
        out = self.inner(x.reshape(x.shape[0], self.flat_dim), r, t, cond)
        return out.reshape(x.shape)


def _accept_bare_state(state_dict: dict, prefix: str, *args: Any) -> None:
    # Models saved when the data-estimate output was a backbone config field hold the bare
    # backbone's keys; they are this wrapper's ``inner.`` keys (same tensors, same function).
    keys = [k for k in state_dict if k.startswith(prefix)]
    if keys and not any(k.startswith(prefix + "inner.") for k in keys):
        for key in keys:
            state_dict[prefix + "inner." + key[len(prefix) :]] = state_dict.pop(key)


def check_sample_shape(sample_shape: Any) -> tuple[int, ...]:
    """``sample_shape`` as a tuple of positive ints, or :class:`InputError`."""
    try:
        shape = tuple(operator.index(n) for n in sample_shape if not isinstance(n, bool))
        ok = bool(shape) and len(shape) == len(sample_shape) and min(shape) > 0
    except TypeError:
        ok = False
    if not ok:
        raise InputError(
            f"sample_shape: expected a non-empty sequence of positive ints, got "
            f"{describe(sample_shape)}"
        )
    return shape
