"""Layers with lean forward-mode derivatives, drop-in for their ``torch.nn`` twins.

The MMF objective needs one JVP of the network per step. PyTorch's built-in forward-mode formulas
are general but wasteful for this use: ``linear`` and ``conv`` also evaluate the weight-tangent
term with a zero tensor (a whole extra matmul or convolution), and ``group_norm`` goes through a
decomposition that costs tens of forwards. Measured on one CPU thread: a JVP of
``F.linear`` (512x256 @ 256x256) 10.3 ms against 1.9 ms for the forward; ``F.conv2d``
(64x32x16x16, 3x3) 45 ms against 16 ms; ``F.group_norm`` 52 ms against 0.8 ms.

The modules here compute the same values and, when they run inside ``torch.func.jvp`` with
gradients disabled (the λ = 0 path of the objective), switch to ``autograd.Function``\\ s whose
``jvp`` is the textbook formula: one extra matmul/convolution for affine layers, a few element-wise
ops and two reductions for the norms. With gradients enabled (λ > 0, or ordinary training) they
are exactly the native ops, so reverse-over-forward differentiation stays the well-tested one.
State-dict keys are those of the ``torch.nn`` classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Linear",
    "Conv1d",
    "Conv2d",
    "ConvTranspose1d",
    "GroupNorm",
    "LayerNorm",
    "SiLU",
    "GELU",
    "silu",
    "mish",
    "gelu_tanh",
    "use_lean_jvp",
    "set_lean_jvp",
]

_LEAN = {"enabled": True}


def set_lean_jvp(enabled: bool) -> bool:
    """Switch the lean forward-mode formulas on or off (for comparisons); returns the old value."""
    old = _LEAN["enabled"]
    _LEAN["enabled"] = bool(enabled)
    return old


def use_lean_jvp(x: Tensor) -> bool:
    """True for a forward-mode input (a dual tensor or inside ``torch.func.jvp``) with gradients
    disabled: the lean-JVP case."""
    if not _LEAN["enabled"] or torch.is_grad_enabled():
        return False
    return (
        torch._C._functorch.is_functorch_wrapped_tensor(x)
        or fwAD.unpack_dual(x).tangent is not None
    )


class _AffineJVP(torch.autograd.Function):
    """``fn(x, w, b)`` bilinear in ``x`` and ``(w, b)``: tangent ``fn(ẋ, w) + fn(x, ẇ, ḃ)``."""

    @staticmethod
    def forward(fn: Callable, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return fn(x, w, b)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        # Inputs without a tangent (the weights) then get None, not a zero tensor to multiply.
        ctx.set_materialize_grads(False)
        fn, x, w, b = inputs
        ctx.fn = fn
        ctx.save_for_forward(x, w)

    @staticmethod
    def jvp(ctx, _fn_t, x_t: Tensor | None, w_t: Tensor | None, b_t: Tensor | None) -> Tensor:
        x, w = ctx.saved_tensors
        out = None if x_t is None else ctx.fn(x_t, w, None)
        if w_t is not None or b_t is not None:
            extra = ctx.fn(x, torch.zeros_like(w) if w_t is None else w_t, b_t)
            out = extra if out is None else out + extra
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - only used with gradients disabled
        raise RuntimeError("lean JVP layers run with gradients disabled only")


def _norm_tangent(y: Tensor, x_t: Tensor, rstd: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Tangent of ``y = (x - mean) * rstd`` over ``dims``: ``rstd (ẋ - <ẋ> - y <y ẋ>)``."""
    return rstd * (x_t - x_t.mean(dims, keepdim=True) - y * (y * x_t).mean(dims, keepdim=True))


class _GroupNormJVP(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, groups: int, w: Tensor | None, b: Tensor | None, eps: float) -> Tensor:
        return F.group_norm(x, groups, w, b, eps)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        # Inputs without a tangent (the weights) then get None, not a zero tensor to multiply.
        ctx.set_materialize_grads(False)
        x, groups, w, b, eps = inputs
        ctx.groups, ctx.eps = groups, eps
        ctx.save_for_forward(x, w)

    @staticmethod
    def jvp(ctx, x_t, _g, w_t, b_t, _e) -> Tensor:
        x, w = ctx.saved_tensors
        x, x_t = x.contiguous(), x_t.contiguous()
        shape = x.shape
        n, c = shape[0], shape[1]
        # The native kernel gives the normalised values and 1/std in one pass (x.var is slow).
        y, _, rstd = torch.ops.aten.native_group_norm(
            x, None, None, n, c, x[0, 0].numel(), ctx.groups, ctx.eps
        )
        y = y.reshape(n, ctx.groups, -1)
        out = _norm_tangent(y, x_t.reshape_as(y), rstd[..., None], (-1,)).reshape(shape)
        y = y.reshape(shape)
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        if w is not None:
            out = out * w.reshape(bshape)
        if w_t is not None:
            out = out + y * w_t.reshape(bshape)
        if b_t is not None:
            out = out + b_t.reshape(bshape)
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover
        raise RuntimeError("lean JVP layers run with gradients disabled only")


class _LayerNormJVP(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, shape: tuple, w: Tensor | None, b: Tensor | None, eps: float) -> Tensor:
        return F.layer_norm(x, shape, w, b, eps)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        # Inputs without a tangent (the weights) then get None, not a zero tensor to multiply.
        ctx.set_materialize_grads(False)
        x, shape, w, b, eps = inputs
        ctx.dims, ctx.shape, ctx.eps = tuple(range(-len(shape), 0)), shape, eps
        ctx.save_for_forward(x, w)

    @staticmethod
    def jvp(ctx, x_t, _s, w_t, b_t, _e) -> Tensor:
        x, w = ctx.saved_tensors
        y, _, rstd = torch.native_layer_norm(x, ctx.shape, None, None, ctx.eps)
        out = _norm_tangent(y, x_t, rstd, ctx.dims)
        if w is not None:
            out = out * w
        if w_t is not None:
            out = out + y * w_t
        if b_t is not None:
            out = out + b_t
        return out

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover
        raise RuntimeError("lean JVP layers run with gradients disabled only")


def _silu_slope(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _mish_slope(x: Tensor) -> Tensor:
    th = torch.tanh(F.softplus(x))
    return th + x * (1 - th * th) * torch.sigmoid(x)


_GELU_K = math.sqrt(2.0 / math.pi)


def _gelu_tanh_slope(x: Tensor) -> Tensor:
    th = torch.tanh(_GELU_K * (x + 0.044715 * x**3))
    return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * _GELU_K * (1 + 3 * 0.044715 * x * x)


class _PointwiseJVP(torch.autograd.Function):
    """Element-wise ``f(x)`` with tangent ``f'(x) ẋ``."""

    @staticmethod
    def forward(fn: Callable, slope: Callable, x: Tensor) -> Tensor:
        return fn(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        # Inputs without a tangent (the weights) then get None, not a zero tensor to multiply.
        ctx.set_materialize_grads(False)
        _, slope, x = inputs
        ctx.slope = slope
        ctx.save_for_forward(x)

    @staticmethod
    def jvp(ctx, _f, _s, x_t: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return ctx.slope(x) * x_t

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover
        raise RuntimeError("lean JVP layers run with gradients disabled only")


def silu(x: Tensor) -> Tensor:
    """``F.silu`` with a lean forward-mode derivative."""
    if use_lean_jvp(x):
        return _PointwiseJVP.apply(F.silu, _silu_slope, x)
    return F.silu(x)


def mish(x: Tensor) -> Tensor:
    """``F.mish`` with a lean forward-mode derivative."""
    if use_lean_jvp(x):
        return _PointwiseJVP.apply(F.mish, _mish_slope, x)
    return F.mish(x)


_gelu_native = partial(F.gelu, approximate="tanh")


def gelu_tanh(x: Tensor) -> Tensor:
    """``F.gelu(approximate="tanh")`` with a lean forward-mode derivative."""
    if use_lean_jvp(x):
        return _PointwiseJVP.apply(_gelu_native, _gelu_tanh_slope, x)
    return _gelu_native(x)


class SiLU(nn.SiLU):
    def forward(self, x: Tensor) -> Tensor:
        return silu(x)


class GELU(nn.GELU):
    """Tanh-approximated GELU (the only form used by the backbones)."""

    def __init__(self) -> None:
        super().__init__(approximate="tanh")

    def forward(self, x: Tensor) -> Tensor:
        return gelu_tanh(x)


class Linear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        if use_lean_jvp(x):
            return _AffineJVP.apply(F.linear, x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class _LeanConv:
    """Forward of ``nn.Conv1d`` / ``nn.Conv2d`` with the lean JVP; ``_conv`` is the functional."""

    _conv: Callable

    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros" or not use_lean_jvp(x):
            return super().forward(x)
        fn = partial(
            type(self)._conv,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )
        return _AffineJVP.apply(fn, x, self.weight, self.bias)


class Conv1d(_LeanConv, nn.Conv1d):
    _conv = staticmethod(F.conv1d)


class Conv2d(_LeanConv, nn.Conv2d):
    _conv = staticmethod(F.conv2d)


class ConvTranspose1d(nn.ConvTranspose1d):
    def forward(self, x: Tensor, output_size=None) -> Tensor:
        if output_size is not None or not use_lean_jvp(x):
            return super().forward(x, output_size)
        fn = partial(
            F.conv_transpose1d,
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            groups=self.groups,
            dilation=self.dilation,
        )
        return _AffineJVP.apply(fn, x, self.weight, self.bias)


class GroupNorm(nn.GroupNorm):
    def forward(self, x: Tensor) -> Tensor:
        if use_lean_jvp(x):
            return _GroupNormJVP.apply(x, self.num_groups, self.weight, self.bias, self.eps)
        return super().forward(x)


class LayerNorm(nn.LayerNorm):
    def forward(self, x: Tensor) -> Tensor:
        if use_lean_jvp(x):
            shape = tuple(self.normalized_shape)
            return _LayerNormJVP.apply(x, shape, self.weight, self.bias, self.eps)
        return super().forward(x)
