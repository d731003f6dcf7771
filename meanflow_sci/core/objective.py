"""The Modular MeanFlow objective and its two special cases (flow matching, regression).

For a data batch ``x`` the objective draws noise ``eps`` and times ``r <= t``, forms
``z = (1 - t) x + t eps`` and ``v = eps - x``, and fits the MeanFlow identity

    Δ = u(z, r, t) + (t - r) · SG_λ(du/dt) - v,   du/dt = v · ∂_z u + ∂_t u,

where ``du/dt`` is one forward-mode JVP of the network with tangents ``(v, 0, 1)`` for its inputs
``(z, r, t)`` and ``SG_λ(a) = λ a + (1 - λ) sg(a)`` keeps the value of ``a`` but scales its
gradient by λ. The per-sample loss is ``w · ||Δ||²`` with ``w = sg(1 / (||Δ||² + c)^p)``.

Objectives are plain classes, not modules: ``obj(model, x, cond, step=k) -> LossOutput`` returns
unreduced per-sample values and the trainer reduces them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch.func import jvp

from ..errors import (
    InputError,
    check_batch_match,
    check_choice,
    check_finite,
    check_positive_int,
    check_range,
)
from .coupling import LABEL_NEED as OT_LABEL_NEED
from .coupling import check_coupling, ot_pair_noise
from .paths import expand_time, linear_path
from .schedules import make_schedule
from .target_field import LABEL_NEED as STF_LABEL_NEED
from .target_field import ReferenceBank, check_target_field, stable_target
from .time_samplers import TimeSample, make_time_sampler

__all__ = [
    "JVP_BACKENDS",
    "LossOutput",
    "Guidance",
    "ModularMeanFlow",
    "FlowMatching",
    "Regression",
    "OBJECTIVES",
    "make_objective",
    "objective_from_config",
    "sg_lambda",
    "null_cond",
]


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


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance trained into the target (MeanFlow §4).

    The conditional target velocity becomes ``ω v + κ u(z, t, t | c) + (1 - ω - κ) u(z, t, t | ∅)``
    so that guided sampling stays one network evaluation; a fraction ``drop_prob`` of the batch is
    trained unconditionally (with the plain target ``v``) to learn ``u(· | ∅)``.

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


JVP_BACKENDS = ("auto", "dual", "func", "fd")
# Step of the finite-difference time derivative (backend "fd"), in units of t.
FD_STEP = 1e-3
TANGENTS = ("conditional", "model")
TARGETS = ("conditional", "model")


def sg_lambda(a: torch.Tensor, lam: float) -> torch.Tensor:
    """``SG_λ(a) = λ a + (1 - λ) stopgrad(a)``: the value of ``a``, the gradient ``λ ∂a``."""
    if lam == 1.0:
        return a
    if lam == 0.0:
        return a.detach()
    return lam * a + (1.0 - lam) * a.detach()


def null_cond(cond: torch.Tensor) -> torch.Tensor:
    """The "no condition" marker backbones understand: label -1, or a row of NaN."""
    if cond.is_floating_point():
        return torch.full_like(cond, float("nan"))
    return torch.full_like(cond, -1)


def _check_x(x: Any) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise InputError(f"x: expected a floating tensor of shape (B, ...), got {x!r:.80}")
    check_finite("x", x)


def _check_times(x: torch.Tensor, t: Any, r: Any) -> tuple[torch.Tensor, torch.Tensor]:
    b = x.shape[0]
    out = []
    for name, val in (("t", t), ("r", t if r is None else r)):
        val = torch.as_tensor(val, dtype=x.dtype, device=x.device)
        if val.ndim == 0:
            val = val.expand(b)
        if val.shape != (b,):
            raise InputError(f"{name}: expected shape ({b},) to match x, got {tuple(val.shape)}")
        check_finite(name, val)
        if bool(((val < 0) | (val > 1)).any()):
            raise InputError(
                f"{name}: expected values in [0, 1], got min {val.min().item():.4g} and "
                f"max {val.max().item():.4g}"
            )
        out.append(val)
    t, r = out
    if bool((r > t).any()):
        raise InputError("r: expected r <= t for every sample, got r > t for some")
    return t, r


def _acc(a: torch.Tensor) -> torch.Tensor:
    """Cast to at least float32 (bf16/fp16 are too coarse for residuals and tangents)."""
    return a if a.dtype == torch.float64 else a.float()


def _fp32_region(device: torch.device):
    """Disable autocast so the JVP runs in float32 (bf16 tangents are too coarse)."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return nullcontext()


class _Objective:
    """Shared plumbing: input checks, noise and time draws, guidance, reduction to LossOutput."""

    name = "base"
    sampling_mode = "mean"

    def __init__(
        self,
        *,
        time_sampler: Any = None,
        adaptive_p: float = 0.0,
        adaptive_c: float = 1e-3,
        guidance: Guidance | dict | None = None,
        check_inputs: bool = True,
        coupling: str = "independent",
        target_field: str = "conditional",
        reference_size: int = 1024,
        **sampler_kwargs: Any,
    ) -> None:
        self.coupling = check_coupling(coupling)
        self.target_field = check_target_field(target_field)
        self.bank = ReferenceBank(reference_size)
        self._evaluating = False
        self.time_sampler = make_time_sampler(time_sampler, **sampler_kwargs)
        self.adaptive_p = check_range("adaptive_p", adaptive_p, 0.0, None)
        self.adaptive_c = check_range("adaptive_c", adaptive_c, 1e-12, None)
        if isinstance(guidance, dict):
            guidance = Guidance(**guidance)
        if guidance is not None and not isinstance(guidance, Guidance):
            raise InputError(f"guidance: expected a Guidance, a dict or None, got {guidance!r}")
        self.guidance = guidance
        self.check_inputs = check_inputs

    def label_needs(self) -> list[tuple[str, str, str, str]]:
        """The options set on this objective that need class labels or no condition.

        Each is ``(option, value, fallback, why)``, the arguments of
        :func:`meanflow_sci.errors.check_label_cond`.
        """
        needs = []
        if self.target_field == "stf":
            needs.append(STF_LABEL_NEED)
        if self.coupling == "ot":
            needs.append(OT_LABEL_NEED)
        return needs

    @contextmanager
    def evaluating(self):
        """Within it, score against the conditional target and leave the reference bank alone.

        Validation losses then depend on the model alone (not on the bank's recent batches),
        and validation data never enter the bank. The expectation of the loss is unchanged.
        """
        before, self._evaluating = self._evaluating, True
        try:
            yield self
        finally:
            self._evaluating = before

    # -- pieces -------------------------------------------------------------------------------
    def _prepare(self, model, x, cond, t, r, noise) -> tuple:
        if self.check_inputs:
            _check_x(x)
            check_batch_match("cond", cond, x.shape[0])
            if noise is not None and tuple(noise.shape) != tuple(x.shape):
                raise InputError(
                    f"noise: expected shape {tuple(x.shape)} like x, got {tuple(noise.shape)}"
                )
        if t is None and r is not None:
            raise InputError("r: expected t to be given too when r is given, got t=None")
        if t is None:
            ts: TimeSample = self.time_sampler(x.shape[0], x.device)
            t, r = ts.t.to(x.dtype), ts.r.to(x.dtype)
        elif self.check_inputs:
            t, r = _check_times(x, t, r)
        else:
            r = t if r is None else r
        if noise is None:
            noise = torch.randn_like(x)
            if self.coupling == "ot":
                noise = ot_pair_noise(x, noise, cond)
        path = linear_path(x, noise, t)
        keep, cond_in = self._drop_labels(path.z, cond)
        v = self._target_field(path.z, t, path.v, cond, x, keep)
        return path.z, self._guide(model, path.z, t, v, cond, keep), t, r, cond_in

    def _drop_labels(self, z, cond) -> tuple:
        """Classifier-free guidance's label drop: the rows keeping their label, and the cond fed."""
        g = self.guidance
        if g is None or cond is None:
            return None, cond
        keep = torch.rand(z.shape[0], device=z.device) >= g.drop_prob
        keep_c = keep.reshape(-1, *([1] * (cond.ndim - 1)))
        return keep, torch.where(keep_c, cond, null_cond(cond))

    def _target_field(self, z, t, v, cond, x, keep):
        """The velocity the objective fits: ``eps - x``, or the stable target field's estimate."""
        if self.target_field != "stf" or self._evaluating:
            return v
        bank = self.bank
        ref = (bank.x, bank.cond) if bank.matches(x, cond) else (None, None)
        vhat = stable_target(z, t, x, v, cond, ref_x=ref[0], ref_cond=ref[1], use_cond=keep)
        bank.push(x, cond)
        return vhat.to(v.dtype)

    def _guide(self, model, z, t, v, cond, keep):
        """Guidance trained into the target on the rows that kept their label."""
        g = self.guidance
        if g is None or cond is None or (g.omega == 1.0 and g.kappa == 0.0):
            return v
        with torch.no_grad():
            u_null = _acc(model(z, t, t, null_cond(cond)))
            mix = g.omega * v + (1.0 - g.omega - g.kappa) * u_null
            if g.kappa:
                mix = mix + g.kappa * _acc(model(z, t, t, cond))
        return torch.where(expand_time(keep, v), mix.to(v.dtype), v)

    def _reduce(self, delta: torch.Tensor, lam: float) -> LossOutput:
        sq = _acc(delta).square().flatten(1).sum(1)
        mse = sq / delta[0].numel()
        if self.adaptive_p > 0:
            w = (sq.detach() + self.adaptive_c).pow(-self.adaptive_p)
            return LossOutput(loss=w * sq, mse=mse.detach(), lam=lam)
        return LossOutput(loss=sq, mse=mse.detach(), lam=lam)

    def _base_config(self) -> dict[str, Any]:
        ts = self.time_sampler
        return {
            "name": self.name,
            "time_sampler": ts.config() if hasattr(ts, "config") else None,
            "adaptive_p": self.adaptive_p,
            "adaptive_c": self.adaptive_c,
            "guidance": None if self.guidance is None else asdict(self.guidance),
            "coupling": self.coupling,
            "target_field": self.target_field,
            "reference_size": self.bank.size,
        }


class ModularMeanFlow(_Objective):
    """The MMF loss with gradient modulation SG_λ on the JVP term.

    Args:
        lam: λ as a number in ``[0, 1]``, a schedule name (``"linear"``, ``"cosine"``,
            ``"step"``, ``"constant"``), a config dict, or a callable of the optimizer step.
        lam_warmup: ``warmup_steps`` for a named warm-up schedule.
        time_sampler: name, config dict, or callable ``(batch, device) -> TimeSample``;
            ``None`` is logit-normal(-0.4, 1.0).
        adaptive_p: power p of the adaptive weight (0 disables it).
        adaptive_c: constant c of the adaptive weight.
        ratio_r_neq_t: fraction of the batch with ``r != t`` when ``time_sampler`` is a name or
            ``None``.
        guidance: classifier-free guidance trained into the target.
        check_inputs: validate ``x``, ``t``, ``r``, ``noise`` and ``cond`` on every call.
        jvp_backend: ``"auto"`` (the default), ``"dual"`` (forward-mode dual tensors),
            ``"func"`` (``torch.func.jvp``) or ``"fd"`` (a finite difference along the
            trajectory, λ = 0 only); see :meth:`time_derivative`.
        tangent: the ``z`` direction of the JVP. ``"conditional"`` (MeanFlow's) uses the
            conditional velocity ``v = eps - x`` of the drawn pair; ``"model"`` uses the model's
            own instantaneous velocity ``u(z_t, t, t)`` (no gradient, one extra forward on the
            ``r < t`` samples), an estimate of the marginal velocity that the exact identity
            calls for, without the noise of the drawn pair in the target. The regression
            target stays ``v``. With λ > 0 the conditional tangent adds a variance term that
            contracts one-step maps of distributions (README, "Choosing λ"); the model tangent
            does not. For data that are a deterministic function of ``cond`` the two agree once
            the model fits.
        target: the velocity ``v`` in the regression target of the ``r < t`` samples.
            ``"conditional"`` (MeanFlow's) is ``eps - x`` of the drawn pair. ``"model"`` is the
            model's own ``u(z_t, t, t)`` (no gradient), which is then also the JVP direction
            (``tangent`` becomes ``"model"``): the whole target is then a function of
            ``(z_t, r, t)``, free of the noise of the drawn pair, with the same minimiser (the
            average velocity of the marginal flow). The ``r = t`` samples keep the conditional
            target, i.e. flow matching, which trains the velocity the others use. Not combined
            with guidance trained into the target.
        interval_warmup: optimizer steps over which the share of ``r != t`` samples rises
            linearly from 0 to the time sampler's (0: off). Training starts as flow matching,
            which learns the instantaneous velocity that the identity's targets for longer
            intervals are built from, and the early steps skip the JVP. Applies to drawn times
            only (not to ``t``/``r`` passed in).
        coupling: ``"independent"`` or ``"ot"`` pairing of drawn noise with the batch's data
            (:mod:`meanflow_sci.core.coupling`).
        target_field: ``"conditional"`` (``v = eps - x``) or ``"stf"``: the stable target
            field, a self-normalised estimate of the marginal velocity over the batch and a bank
            of recent batches (within each class), used as ``v`` in the target and, with the
            conditional tangent, as the JVP direction (:mod:`meanflow_sci.core.target_field`).
        reference_size: samples the ``"stf"`` bank keeps.

    Example:
        >>> obj = ModularMeanFlow(lam="linear", lam_warmup=1000)
        >>> out = obj(model, x, step=250)   # out.loss, out.mse: (B,); out.lam == 0.25
        >>> out.loss.mean().backward()

    Only samples with ``r < t`` need the JVP (the term is multiplied by ``t - r``), so it is
    computed on that subset alone; at λ = 0 it runs without building a graph.
    """

    name = "mmf"
    sampling_mode = "mean"

    def __init__(
        self,
        lam: Any = 0.0,
        *,
        lam_warmup: int | None = None,
        time_sampler: Any = None,
        adaptive_p: float = 1.0,
        adaptive_c: float = 1e-3,
        ratio_r_neq_t: float | None = None,
        guidance: Guidance | dict | None = None,
        check_inputs: bool = True,
        jvp_backend: str = "auto",
        tangent: str = "conditional",
        target: str = "conditional",
        interval_warmup: int = 0,
        coupling: str = "independent",
        target_field: str = "conditional",
        reference_size: int = 1024,
    ) -> None:
        self.jvp_backend = check_choice("jvp_backend", jvp_backend, JVP_BACKENDS)
        self.interval_warmup = check_positive_int("interval_warmup", interval_warmup, minimum=0)
        self.tangent = check_choice("tangent", tangent, TANGENTS)
        self.target = check_choice("target", target, TARGETS)
        if target == "model":
            self.tangent = "model"
        sk = {} if ratio_r_neq_t is None else {"ratio_r_neq_t": ratio_r_neq_t}
        if time_sampler is not None and not isinstance(time_sampler, str) and sk:
            raise InputError(
                "ratio_r_neq_t: expected None when time_sampler is an instance or config "
                f"(set it there), got {ratio_r_neq_t!r}"
            )
        super().__init__(
            time_sampler=time_sampler,
            adaptive_p=adaptive_p,
            adaptive_c=adaptive_c,
            guidance=guidance,
            check_inputs=check_inputs,
            coupling=coupling,
            target_field=target_field,
            reference_size=reference_size,
            **sk,
        )
        g = self.guidance
        if target == "model" and g is not None and (g.omega != 1.0 or g.kappa != 0.0):
            raise InputError(
                "target: 'model' is not combined with guidance trained into the target "
                f"(omega={g.omega}, kappa={g.kappa}); use target='conditional' or omega=1, kappa=0"
            )
        kw = {} if lam_warmup is None else {"warmup_steps": lam_warmup}
        self.lam = make_schedule(lam, **kw)
        if jvp_backend == "fd" and any(self.lam(s) != 0 for s in (0, 1, 10, 10**3, 10**6)):
            raise InputError(
                f"jvp_backend: 'fd' gives no gradient through the tangent, so it needs lam=0, "
                f"got lam={lam!r}; use 'auto' for λ > 0"
            )

    def lam_at(self, step: int) -> float:
        """λ at an optimizer step, checked to lie in ``[0, 1]``."""
        lam = float(self.lam(step))
        if not 0.0 <= lam <= 1.0:
            raise InputError(f"lam: expected the schedule to give λ in [0, 1], got {lam} at {step}")
        return lam

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
        """Per-sample MMF loss for a data batch ``x`` of shape ``(B, ...)``."""
        lam = self.lam_at(step)
        drawn = t is None
        z, v, t, r, cond_in = self._prepare(model, x, cond, t, r, noise)
        if drawn and step < self.interval_warmup:
            keep = torch.rand(r.shape, device=r.device) < step / self.interval_warmup
            r = torch.where(keep, r, t)
        u = model(z, r, t, cond_in)
        tangent = self.tangent
        if self.target == "model":
            v = self.model_velocity(model, z, r, t, v, cond_in)
            tangent = "conditional"  # v is the model's velocity on every r < t sample now
        dudt = self.time_derivative(
            model,
            z,
            r,
            t,
            v,
            cond_in,
            lam=lam,
            backend=self.jvp_backend,
            tangent=tangent,
            u=u.detach(),
        )
        h = _acc(expand_time(t - r, u))
        delta = _acc(u) + h * sg_lambda(dudt, lam).to(h.dtype) - _acc(v)
        return self._reduce(delta, lam)

    @staticmethod
    def model_velocity(model, z, r, t, v, cond=None) -> torch.Tensor:
        """``v`` with its ``r < t`` rows replaced by the model's ``u(z, t, t)`` (no gradient)."""
        idx = (t > r).nonzero().squeeze(1)
        if idx.numel() == 0:
            return v
        c = None if cond is None else cond[idx]
        with torch.no_grad(), _fp32_region(z.device):
            u_tt = model(_acc(z[idx]), _acc(t[idx]), _acc(t[idx]), c)
        return _acc(v).index_copy(0, idx, _acc(u_tt))

    @staticmethod
    def time_derivative(
        model,
        z,
        r,
        t,
        v,
        cond=None,
        *,
        lam: float = 0.0,
        backend: str = "auto",
        tangent: str = "conditional",
        u: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``du/dt = v · ∂_z u + ∂_t u`` by one forward-mode JVP, zero where ``r == t``.

        Runs in float32 with autocast disabled. With ``lam == 0`` no graph is built.

        Args:
            tangent: ``"conditional"`` differentiates along ``v``; ``"model"`` along the model's
                own ``u(z, t, t)`` (computed without gradient on the ``r < t`` samples only).
            backend: ``"dual"`` propagates dual tensors (``torch.autograd.forward_ad``);
                ``"func"`` uses ``torch.func.jvp``. Both are exact forward mode and give the same
                values. Without gradients (λ = 0) ``"dual"`` has far less per-operation overhead
                on CPU and lets the backbones' lean layers (``meanflow_sci.nn.layers``) use their
                own tangent formulas (see ``benchmarks/speed_step.py``). With gradients through
                the tangent (λ > 0), PyTorch's dual-tensor softmax formula modifies a saved
                tensor in place and breaks the backward pass, so ``"auto"`` (the default) picks
                ``"dual"`` for λ = 0 and ``"func"`` otherwise.
        """
        moving = t > r
        n_moving = int(moving.sum())
        out = _acc(torch.zeros_like(z))
        if n_moving == 0:
            return out
        if n_moving < z.shape[0]:
            idx = moving.nonzero().squeeze(1)
            z, r, t, v = z[idx], r[idx], t[idx], v[idx]
            cond = None if cond is None else cond[idx]
        else:
            idx = None

        check_choice("backend", backend, JVP_BACKENDS)
        check_choice("tangent", tangent, TANGENTS)
        if tangent == "model":
            with torch.no_grad(), _fp32_region(z.device):
                v = model(_acc(z), _acc(t), _acc(t), cond)
        if backend == "fd":
            if lam != 0.0:
                raise InputError(
                    f"jvp_backend: 'fd' gives no gradient through the tangent, so it needs λ = 0, "
                    f"got λ = {lam}; use 'auto' for λ > 0"
                )
            if u is not None and u.dtype in (torch.float32, torch.float64):
                u = u if idx is None else u[idx]
            else:
                u = None
            dudt = _finite_difference(model, z, r, t, v, cond, u)
            return dudt if idx is None else out.index_copy(0, idx, dudt)
        if backend == "auto":
            backend = "dual" if lam == 0.0 else "func"
        grad_ctx = torch.no_grad() if lam == 0.0 else nullcontext()
        with grad_ctx, _fp32_region(z.device):
            z, r, t, v = _acc(z), _acc(r), _acc(t), _acc(v)
            if backend == "func":
                tangents = (v, torch.zeros_like(r), torch.ones_like(t))
                _, dudt = jvp(lambda z_, r_, t_: model(z_, r_, t_, cond), (z, r, t), tangents)
            else:
                # Tangents (v, 0, 1) for (z, r, t): r gets none, which is a zero tangent.
                with fwAD.dual_level():
                    u_dual = model(
                        fwAD.make_dual(z, v), r, fwAD.make_dual(t, torch.ones_like(t)), cond
                    )
                    dudt = fwAD.unpack_dual(u_dual).tangent
                if dudt is None:  # the output does not depend on z or t
                    dudt = torch.zeros_like(z)
        dudt = _acc(dudt)
        if idx is None:
            return dudt
        return out.index_copy(0, idx, dudt)

    def config(self) -> dict[str, Any]:
        lam = self.lam.config() if hasattr(self.lam, "config") else None
        return {
            **self._base_config(),
            "lam": lam,
            "jvp_backend": self.jvp_backend,
            "tangent": self.tangent,
            "target": self.target,
            "interval_warmup": self.interval_warmup,
        }


def _finite_difference(model, z, r, t, v, cond, u) -> torch.Tensor:
    """Backward difference of ``u`` along ``(v, 0, 1)``, float32, no graph (λ = 0)."""
    with torch.no_grad(), _fp32_region(z.device):
        z, r, t, v = _acc(z), _acc(r), _acc(t), _acc(v)
        if u is None:
            u = model(z, r, t, cond)
        back = model(z - FD_STEP * v, r, t - FD_STEP, cond)
        return (_acc(u) - _acc(back)) / FD_STEP


class FlowMatching(_Objective):
    """Flow matching on the same path: ``r = t`` for every sample, target ``v``.

    The network is still called as ``u(z, r=t, t)``, so a flow-matching model is sampled with
    Euler steps of the instantaneous velocity (``sampling_mode = "flow"``). The keyword arguments
    are :class:`ModularMeanFlow`'s that apply without intervals (``time_sampler`` defaults to
    uniform here).
    """

    name = "fm"
    sampling_mode = "flow"

    def __init__(
        self,
        *,
        time_sampler: Any = "uniform",
        adaptive_p: float = 0.0,
        adaptive_c: float = 1e-3,
        guidance: Guidance | dict | None = None,
        check_inputs: bool = True,
        coupling: str = "independent",
        target_field: str = "conditional",
        reference_size: int = 1024,
    ) -> None:
        super().__init__(
            time_sampler=time_sampler,
            adaptive_p=adaptive_p,
            adaptive_c=adaptive_c,
            guidance=guidance,
            check_inputs=check_inputs,
            coupling=coupling,
            target_field=target_field,
            reference_size=reference_size,
        )

    def __call__(self, model, x, cond=None, *, step=0, t=None, r=None, noise=None) -> LossOutput:
        """Per-sample flow-matching loss for a data batch ``x`` of shape ``(B, ...)``."""
        z, v, t, _, cond_in = self._prepare(model, x, cond, t, None, noise)
        u = model(z, t, t, cond_in)
        return self._reduce(_acc(u) - _acc(v), 0.0)

    def config(self) -> dict[str, Any]:
        return self._base_config()


class Regression:
    """Deterministic regression ``cond -> x`` with the same backbone (a baseline).

    The prediction is ``-u(0, r=0, t=1 | cond)``, which is exactly what the one-step sampler
    returns for zero noise, so the same network and sampler serve both.
    """

    name = "regression"
    sampling_mode = "regression"
    guidance = None

    def __init__(self, *, check_inputs: bool = True) -> None:
        self.check_inputs = check_inputs

    def __call__(self, model, x, cond=None, *, step=0, t=None, r=None, noise=None) -> LossOutput:
        """Per-sample squared error of the regression for ``x`` of shape ``(B, ...)``."""
        if self.check_inputs:
            _check_x(x)
            check_batch_match("cond", cond, x.shape[0])
        b = x.shape[0]
        zeros = torch.zeros(b, device=x.device, dtype=x.dtype)
        pred = -model(torch.zeros_like(x), zeros, torch.ones_like(zeros), cond)
        sq = (_acc(pred) - _acc(x)).square().flatten(1).sum(1)
        return LossOutput(loss=sq, mse=(sq / x[0].numel()).detach(), lam=0.0)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


OBJECTIVES = {"mmf": ModularMeanFlow, "fm": FlowMatching, "regression": Regression}


def make_objective(spec: Any = "mmf", **kwargs: Any):
    """Build an objective from a name in ``OBJECTIVES`` (keyword arguments go to it) or pass an
    instance through."""
    if isinstance(spec, str):
        check_choice("objective", spec, OBJECTIVES)
        return OBJECTIVES[spec](**kwargs)
    if callable(spec) and hasattr(spec, "sampling_mode"):
        return spec
    raise InputError(
        f"objective: expected one of {sorted(OBJECTIVES)} or an objective instance, got {spec!r}"
    )


def objective_from_config(config: dict[str, Any]):
    """Rebuild an objective from its ``config()`` dict."""
    cfg = dict(config)
    name = cfg.pop("name", None)
    check_choice("objective config 'name'", name, OBJECTIVES)
    if name == "regression":
        return Regression()
    if cfg.get("time_sampler") is None:
        cfg.pop("time_sampler", None)
    if name == "mmf" and cfg.get("lam") is None:
        raise InputError("objective config: expected a 'lam' schedule config, got None")
    return OBJECTIVES[name](**cfg)
