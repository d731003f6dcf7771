"""The time derivative ``du/dt = v · ∂_z u + ∂_t u`` of a network along the path.

MMF's target needs ``du/dt`` at ``(z_t, r, t)``: one forward-mode JVP of the network with tangents
``(v, 0, 1)`` for its inputs ``(z, r, t)``. :func:`time_derivative` is the one entry point; its
back ends are

- ``"dual"``: dual tensors (``torch.autograd.forward_ad``). Without gradients (λ = 0) it has far
  less per-operation overhead on CPU than ``torch.func`` and lets the backbones' lean layers
  (``meanflow_sci.nn.layers``) use their own tangent formulas (``benchmarks/speed_step.py``).
- ``"func"``: ``torch.func.jvp``, the same values. With gradients through the tangent (λ > 0)
  PyTorch's dual-tensor softmax formula modifies a saved tensor in place and breaks the backward
  pass, so ``"auto"`` picks ``"dual"`` for λ = 0 and ``"func"`` otherwise.
- ``"fd"``: the backward difference ``(u(z, r, t) - u(z - h v, r, t - h)) / h``, ``h = 1e-3``,
  one plain forward instead of a dual one (it wins at equal time on the digits: README,
  "Computing du/dt"). It carries no useful gradient, so it needs λ = 0.

Everything here runs in float32 with autocast disabled: bf16 tangents are too coarse.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.autograd.forward_ad as fwAD
from torch.func import jvp

from ..errors import InputError, check_choice

__all__ = ["FD_STEP", "JVP_BACKENDS", "TANGENTS", "time_derivative"]

JVP_BACKENDS = ("auto", "dual", "func", "fd")
TANGENTS = ("conditional", "model")
# Step of the finite-difference time derivative (backend "fd"), in units of t.
FD_STEP = 1e-3


def acc(a: torch.Tensor) -> torch.Tensor:
    """Cast to at least float32 (bf16/fp16 are too coarse for residuals and tangents)."""
    return a if a.dtype == torch.float64 else a.float()


def fp32_region(device: torch.device):
    """Disable autocast so that the enclosed computation runs in float32."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return nullcontext()


def refuse_fd_with_gradient(given: str) -> InputError:
    """The error for ``"fd"`` asked to carry a gradient (``given``: the λ, as the caller has it)."""
    return InputError(
        f"jvp_backend: 'fd' gives no gradient through the tangent, so it needs λ = 0, "
        f"got {given}; use 'auto' for λ > 0"
    )


def time_derivative(
    model: Callable[..., torch.Tensor],
    z: torch.Tensor,
    r: torch.Tensor,
    t: torch.Tensor,
    v: torch.Tensor,
    cond: torch.Tensor | None = None,
    *,
    lam: float = 0.0,
    backend: str = "auto",
    tangent: str = "conditional",
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """``du/dt`` of ``model`` at ``(z, r, t)`` along ``(v, 0, 1)``, zero where ``r == t``.

    Only the rows with ``r < t`` are differentiated (the term is multiplied by ``t - r``). With
    ``lam == 0`` no graph is built.

    Args:
        model: a backbone ``model(z, r, t, cond) -> u``.
        z: points ``(B, ...)``; ``r``, ``t``: times ``(B,)``; ``v``: the tangent, shaped like ``z``.
        cond: conditioning of batch size ``B`` or ``None``.
        lam: the λ the result is used with (0: no graph; ``"fd"`` needs 0).
        backend: ``"auto"``, ``"dual"``, ``"func"`` or ``"fd"`` (module docstring).
        tangent: ``"conditional"`` differentiates along ``v``; ``"model"`` along the model's own
            ``u(z, t, t)`` (computed without gradient on the ``r < t`` rows only).
        u: the loss's own forward ``u(z, r, t)``, reused by ``"fd"`` when it is float32 or
            float64 (under bf16 autocast both points are computed in float32).

    Returns:
        ``du/dt`` shaped like ``z``, float32 (float64 for float64 inputs).

    Example:
        >>> dudt = time_derivative(model, z, r, t, eps - x)   # exact, no graph
    """
    check_choice("backend", backend, JVP_BACKENDS)
    check_choice("tangent", tangent, TANGENTS)
    if backend == "fd" and lam != 0.0:
        raise refuse_fd_with_gradient(f"λ = {lam}")
    moving = t > r
    n_moving = int(moving.sum())
    out = acc(torch.zeros_like(z))
    if n_moving == 0:
        return out
    idx = None
    if n_moving < z.shape[0]:
        idx = moving.nonzero().squeeze(1)
        z, r, t, v = z[idx], r[idx], t[idx], v[idx]
        cond = None if cond is None else cond[idx]
        u = None if u is None else u[idx]
    if tangent == "model":
        with torch.no_grad(), fp32_region(z.device):
            v = model(acc(z), acc(t), acc(t), cond)
    if backend == "fd":
        reuse = u is not None and u.dtype in (torch.float32, torch.float64)
        dudt = _finite_difference(model, z, r, t, v, cond, u if reuse else None)
    else:
        if backend == "auto":
            backend = "dual" if lam == 0.0 else "func"
        dudt = _forward_mode(model, z, r, t, v, cond, backend, grad=lam != 0.0)
    return dudt if idx is None else out.index_copy(0, idx, dudt)


def _forward_mode(model, z, r, t, v, cond, backend: str, *, grad: bool) -> torch.Tensor:
    """Exact forward-mode JVP along ``(v, 0, 1)``, float32, with a graph only if ``grad``."""
    with nullcontext() if grad else torch.no_grad(), fp32_region(z.device):
        z, r, t, v = acc(z), acc(r), acc(t), acc(v)
        if backend == "func":
            tangents = (v, torch.zeros_like(r), torch.ones_like(t))
            _, dudt = jvp(lambda z_, r_, t_: model(z_, r_, t_, cond), (z, r, t), tangents)
        else:
            # Tangents (v, 0, 1) for (z, r, t): r gets none, which is a zero tangent.
            with fwAD.dual_level():
                u_dual = model(fwAD.make_dual(z, v), r, fwAD.make_dual(t, torch.ones_like(t)), cond)
                dudt = fwAD.unpack_dual(u_dual).tangent
            if dudt is None:  # the output does not depend on z or t
                dudt = torch.zeros_like(z)
    return acc(dudt)


def _finite_difference(model, z, r, t, v, cond, u) -> torch.Tensor:
    """Backward difference of ``u`` along ``(v, 0, 1)``, float32, no graph (λ = 0)."""
    with torch.no_grad(), fp32_region(z.device):
        z, r, t, v = acc(z), acc(r), acc(t), acc(v)
        if u is None:
            u = model(z, r, t, cond)
        back = model(z - FD_STEP * v, r, t - FD_STEP, cond)
        return (acc(u) - acc(back)) / FD_STEP
