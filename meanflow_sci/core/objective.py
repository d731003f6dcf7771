"""The Modular MeanFlow objective, its two special cases, and the protocol they share.

For a data batch ``x`` the objective draws noise ``eps`` and times ``r <= t``, forms
``z = (1 - t) x + t eps`` and ``v = eps - x``, and fits the MeanFlow identity

    Δ = u(z, r, t) + (t - r) · SG_λ(du/dt) - v,   du/dt = v · ∂_z u + ∂_t u,

where ``du/dt`` is one forward-mode JVP of the network with tangents ``(v, 0, 1)`` for its inputs
``(z, r, t)`` (:mod:`meanflow_sci.core.jvp`) and ``SG_λ(a) = λ a + (1 - λ) sg(a)`` keeps the value
of ``a`` but scales its gradient by λ. The per-sample loss is ``w · ||Δ||²`` with
``w = sg(1 / (||Δ||² + c)^p)``.

Objectives are plain classes, not modules: ``obj(model, x, cond, step=k) -> LossOutput`` returns
unreduced per-sample values and the trainer reduces them. Every objective subclasses
:class:`Objective`, the whole of what the trainer and ``fit`` call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import torch

from ..errors import InputError, check_choice, check_range
from .guidance import Guidance, drop_labels, guided_velocity
from .jvp import JVP_BACKENDS, TANGENTS, acc, refuse_fd_with_gradient, time_derivative
from .paths import expand_time, linear_path
from .protocol import Gather, LossOutput, Objective, check_batch, check_times
from .schedules import make_schedule
from .target_field import LABEL_NEED as STF_LABEL_NEED
from .target_field import ReferenceBank, check_target_field, stable_target
from .time_samplers import make_time_sampler

__all__ = [
    "ModularMeanFlow",
    "FlowMatching",
    "Regression",
    "OBJECTIVES",
    "make_objective",
    "objective_from_config",
    "sg_lambda",
]


def sg_lambda(a: torch.Tensor, lam: float) -> torch.Tensor:
    """``SG_λ(a) = λ a + (1 - λ) stopgrad(a)``: the value of ``a``, the gradient ``λ ∂a``."""
    if lam == 1.0:
        return a
    if lam == 0.0:
        return a.detach()
    return lam * a + (1.0 - lam) * a.detach()


class _PathObjective(Objective):
    """MMF's and flow matching's shared part: inputs, draws, target field, guidance, reduction.

    The keyword arguments are :class:`ModularMeanFlow`'s that apply without intervals; the
    defaults are flow matching's.
    """

    def __init__(
        self,
        *,
        time_sampler: Any = "uniform",
        adaptive_p: float = 0.0,
        adaptive_c: float = 1e-3,
        guidance: Guidance | dict | None = None,
        check_inputs: bool = True,
        target_field: str = "conditional",
        reference_size: int = 1024,
    ) -> None:
        self.target_field = check_target_field(target_field)
        self.bank = ReferenceBank(reference_size)
        self._evaluating = False
        self.time_sampler = make_time_sampler(time_sampler)
        self.adaptive_p = check_range("adaptive_p", adaptive_p, 0.0, None)
        self.adaptive_c = check_range("adaptive_c", adaptive_c, 1e-12, None)
        if isinstance(guidance, dict):
            guidance = Guidance(**guidance)
        if guidance is not None and not isinstance(guidance, Guidance):
            raise InputError(f"guidance: expected a Guidance, a dict or None, got {guidance!r}")
        self.guidance = guidance
        self.check_inputs = check_inputs

    def label_needs(self) -> list[tuple[str, str, str, str]]:
        return [STF_LABEL_NEED] if self.target_field == "stf" else []

    @contextmanager
    def evaluating(self) -> Iterator[Objective]:
        """Score against the conditional target and leave the reference bank alone: validation
        losses then depend on the model alone and validation data never enter the bank (the
        expectation of the loss is unchanged)."""
        before, self._evaluating = self._evaluating, True
        try:
            yield self
        finally:
            self._evaluating = before

    def share_across_ranks(self, all_gather: Gather | None) -> None:
        """The stable target field's bank then holds the recent global batches, as in one
        process."""
        self.bank.gather = all_gather

    def _prepare(self, model, x, cond, t, r, noise) -> tuple:
        """``(z, v, t, r, cond_fed)``: the path point, its target velocity, times, condition."""
        if self.check_inputs:
            check_batch(x, cond, noise)
        if t is None and r is not None:
            raise InputError("r: expected t to be given too when r is given, got t=None")
        if t is None:
            ts = self.time_sampler(x.shape[0], x.device)
            t, r = ts.t.to(x.dtype), ts.r.to(x.dtype)
        elif self.check_inputs:
            t, r = check_times(x, t, r)
        else:
            r = t if r is None else r
        path = linear_path(x, torch.randn_like(x) if noise is None else noise, t)
        keep, cond_in = drop_labels(self.guidance, cond)
        v = self._target_field(path.z, t, path.v, cond, x, keep)
        v = guided_velocity(self.guidance, model, path.z, t, v, cond, keep)
        return path.z, v, t, r, cond_in

    def _target_field(self, z, t, v, cond, x, keep):
        """The velocity the objective fits: ``eps - x``, or the stable target field's estimate."""
        if self.target_field != "stf" or self._evaluating:
            return v
        bank = self.bank
        ref = (bank.x, bank.cond) if bank.matches(x, cond) else (None, None)
        vhat = stable_target(z, t, x, v, cond, ref_x=ref[0], ref_cond=ref[1], use_cond=keep)
        bank.push(x, cond)
        return vhat.to(v.dtype)

    def _reduce(self, delta: torch.Tensor, lam: float) -> LossOutput:
        sq = acc(delta).square().flatten(1).sum(1)
        mse = sq / delta[0].numel()
        if self.adaptive_p > 0:
            w = (sq.detach() + self.adaptive_c).pow(-self.adaptive_p)
            return LossOutput(loss=w * sq, mse=mse.detach(), lam=lam)
        return LossOutput(loss=sq, mse=mse.detach(), lam=lam)

    def config(self) -> dict[str, Any]:
        ts = self.time_sampler
        return {
            "name": self.name,
            "time_sampler": ts.config() if hasattr(ts, "config") else None,
            "adaptive_p": self.adaptive_p,
            "adaptive_c": self.adaptive_c,
            "guidance": None if self.guidance is None else asdict(self.guidance),
            "target_field": self.target_field,
            "reference_size": self.bank.size,
        }


class ModularMeanFlow(_PathObjective):
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
        guidance: classifier-free guidance trained into the target (:mod:`.guidance`).
        check_inputs: validate ``x``, ``t``, ``r``, ``noise`` and ``cond`` on every call.
        jvp_backend: ``"auto"`` (exact forward mode), ``"dual"``, ``"func"`` or ``"fd"`` (a
            finite difference along the trajectory, λ = 0 only): :mod:`meanflow_sci.core.jvp`.
        tangent: the ``z`` direction of the JVP. ``"conditional"`` (MeanFlow's) is the drawn
            pair's ``v``; ``"model"`` is the model's own ``u(z_t, t, t)`` (no gradient, one extra
            forward on the ``r < t`` rows), free of the pair's noise. With λ > 0 the conditional
            tangent adds a variance term that contracts one-step maps of distributions
            (``docs/choosing-lambda.md``); the model tangent does not. The target stays ``v``.
        target_field: ``"conditional"`` (``v = eps - x``) or ``"stf"``: the stable target field
            over the batch and a bank of recent batches (:mod:`meanflow_sci.core.target_field`),
            used as ``v`` in the target and, with the conditional tangent, in the JVP.
        reference_size: samples the ``"stf"`` bank keeps.

    Example:
        >>> obj = ModularMeanFlow(lam="linear", lam_warmup=1000)
        >>> out = obj(model, x, step=250)   # out.loss, out.mse: (B,); out.lam == 0.25
        >>> out.loss.mean().backward()

    Only rows with ``r < t`` need the JVP (the term is multiplied by ``t - r``), so it is computed
    on them alone; at λ = 0 without building a graph.
    """

    name = "mmf"
    sampling_mode = "mean"
    time_derivative = staticmethod(time_derivative)

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
        target_field: str = "conditional",
        reference_size: int = 1024,
    ) -> None:
        self.jvp_backend = check_choice("jvp_backend", jvp_backend, JVP_BACKENDS)
        self.tangent = check_choice("tangent", tangent, TANGENTS)
        if ratio_r_neq_t is not None:
            if time_sampler is not None and not isinstance(time_sampler, str):
                raise InputError(
                    "ratio_r_neq_t: expected None when time_sampler is an instance or config "
                    f"(set it there), got {ratio_r_neq_t!r}"
                )
            time_sampler = make_time_sampler(time_sampler, ratio_r_neq_t=ratio_r_neq_t)
        super().__init__(
            time_sampler=make_time_sampler(time_sampler),
            adaptive_p=adaptive_p,
            adaptive_c=adaptive_c,
            guidance=guidance,
            check_inputs=check_inputs,
            target_field=target_field,
            reference_size=reference_size,
        )
        kw = {} if lam_warmup is None else {"warmup_steps": lam_warmup}
        self.lam = make_schedule(lam, **kw)
        if jvp_backend == "fd" and any(self.lam(s) != 0 for s in (0, 1, 10, 10**3, 10**6)):
            raise refuse_fd_with_gradient(f"lam={lam!r}")

    def lam_at(self, step: int) -> float:
        """λ at an optimizer step, checked to lie in ``[0, 1]``."""
        lam = float(self.lam(step))
        if not 0.0 <= lam <= 1.0:
            raise InputError(f"lam: expected the schedule to give λ in [0, 1], got {lam} at {step}")
        return lam

    def __call__(self, model, x, cond=None, *, step=0, t=None, r=None, noise=None) -> LossOutput:
        """Per-sample MMF loss for a data batch ``x`` of shape ``(B, ...)``."""
        lam = self.lam_at(step)
        z, v, t, r, cond_in = self._prepare(model, x, cond, t, r, noise)
        u = model(z, r, t, cond_in)
        dudt = time_derivative(
            model,
            z,
            r,
            t,
            v,
            cond_in,
            lam=lam,
            backend=self.jvp_backend,
            tangent=self.tangent,
            u=u.detach(),
        )
        h = acc(expand_time(t - r, u))
        delta = acc(u) + h * sg_lambda(dudt, lam).to(h.dtype) - acc(v)
        return self._reduce(delta, lam)

    def config(self) -> dict[str, Any]:
        lam = self.lam.config() if hasattr(self.lam, "config") else None
        return {
            **super().config(),
            "lam": lam,
            "jvp_backend": self.jvp_backend,
            "tangent": self.tangent,
        }


class FlowMatching(_PathObjective):
    """Flow matching on the same path: ``r = t`` for every sample, target ``v``.

    The network is still called as ``u(z, r=t, t)``, so a flow-matching model is sampled with
    Euler steps of the instantaneous velocity (``sampling_mode = "flow"``). The keyword arguments
    are :class:`ModularMeanFlow`'s that apply without intervals (``time_sampler`` defaults to
    uniform here).
    """

    name = "fm"
    sampling_mode = "flow"

    def __call__(self, model, x, cond=None, *, step=0, t=None, r=None, noise=None) -> LossOutput:
        """Per-sample flow-matching loss for a data batch ``x`` of shape ``(B, ...)``."""
        z, v, t, _, cond_in = self._prepare(model, x, cond, t, None, noise)
        u = model(z, t, t, cond_in)
        return self._reduce(acc(u) - acc(v), 0.0)


class Regression(Objective):
    """Deterministic regression ``cond -> x`` with the same backbone (a baseline).

    The prediction is ``-u(0, r=0, t=1 | cond)``, which is exactly what the one-step sampler
    returns for zero noise, so the same network and sampler serve both.
    """

    name = "regression"
    sampling_mode = "regression"

    def __init__(self, *, check_inputs: bool = True) -> None:
        self.check_inputs = check_inputs

    def __call__(self, model, x, cond=None, *, step=0, t=None, r=None, noise=None) -> LossOutput:
        """Per-sample squared error of the regression for ``x`` of shape ``(B, ...)``."""
        if self.check_inputs:
            check_batch(x, cond)
        zeros = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        pred = -model(torch.zeros_like(x), zeros, torch.ones_like(zeros), cond)
        sq = (acc(pred) - acc(x)).square().flatten(1).sum(1)
        return LossOutput(loss=sq, mse=(sq / x[0].numel()).detach(), lam=0.0)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


OBJECTIVES = {"mmf": ModularMeanFlow, "fm": FlowMatching, "regression": Regression}


def make_objective(spec: Any = "mmf", **kwargs: Any) -> Objective:
    """Build an objective from a name in ``OBJECTIVES`` (keyword arguments go to it) or pass an
    :class:`Objective` instance through."""
    if isinstance(spec, str):
        check_choice("objective", spec, OBJECTIVES)
        return OBJECTIVES[spec](**kwargs)
    if isinstance(spec, Objective) and not kwargs:
        return spec
    raise InputError(
        f"objective: expected one of {sorted(OBJECTIVES)} or an Objective instance (without "
        f"further options), got {spec!r}" + (f" with {sorted(kwargs)}" if kwargs else "")
    )


def objective_from_config(config: dict[str, Any]) -> Objective:
    """Rebuild an objective from its ``config()`` dict."""
    cfg = dict(config)
    name = cfg.pop("name", None)
    check_choice("objective config 'name'", name, OBJECTIVES)
    if cfg.get("time_sampler", ...) is None:
        cfg.pop("time_sampler")
    if name == "mmf" and cfg.get("lam") is None:
        raise InputError("objective config: expected a 'lam' schedule config, got None")
    return OBJECTIVES[name](**cfg)
