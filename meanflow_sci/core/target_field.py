"""Velocity targets of lower variance: the stable target field over a reference bank.

The objectives regress on the conditional velocity ``eps - x`` of each pair. Its expectation given
the noisy point ``z_t`` is the marginal velocity the flow needs, but the estimate itself is noisy
wherever many data points could have produced ``z_t`` (large ``t``). The stable target field
(``"stf"``; Xu et al. 2023, "Stable Target Field for Reduced Variance Score Estimation in Diffusion
Models") replaces it by a self-normalised estimate of the marginal velocity over a reference set
that contains the pair's own data point:

    w_j ∝ exp(-||z_t - (1 - t) x_j||² / (2 t²)),   x̄ = Σ_j w_j x_j,   v̂ = (z_t - x̄) / t,

the posterior mean of the data on the linear path ``z_t = (1 - t) x + t eps`` under the reference
points, turned into a velocity (computed as ``v̂ = (eps - x) + (x - x̄) / t``, exact at
``t = 0``). At small ``t`` the weights fall on the pair's own point and ``v̂`` is ``eps - x``; at
large ``t`` it averages over the reference. The estimate converges to the same
marginal velocity as the plain target as the reference grows, so the loss has the same minimiser;
its bias for a finite reference is O(1 / size).

The reference is the current batch plus a first-in first-out bank of recent batches (no extra
data passes). Under ``torchrun`` the trainer hands the objective an all-gather over the ranks
(``share_across_ranks``), which gives it to the bank, so every rank's bank holds the recent
global batches. With class labels the reference is restricted to
the sample's class (samples whose label was dropped for guidance use every class); float
conditions are refused, since a posterior under a continuous condition cannot be estimated from a
bank of other conditions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import InputError, check_choice, check_label_cond, check_positive_int

__all__ = [
    "LABEL_NEED",
    "TARGET_FIELDS",
    "ReferenceBank",
    "check_target_field",
    "stable_target",
]

TARGET_FIELDS = ("conditional", "stf")
# The option that needs class labels (or no condition), why, and what to use instead.
LABEL_NEED = ("target_field", "stf", "conditional", "the reference is split by label")


def check_target_field(name: str) -> str:
    """Validate a target-field name."""
    return check_choice("target_field", name, TARGET_FIELDS)


class ReferenceBank:
    """First-in first-out store of recent data batches and their labels (no gradients).

    Args:
        size: most samples kept (older ones are dropped first).
    """

    def __init__(self, size: int) -> None:
        self.size = check_positive_int("reference_size", size)
        self.x: torch.Tensor | None = None
        self.cond: torch.Tensor | None = None
        # Maps a local batch to the batches of every process (set through the objective's
        # share_across_ranks under torchrun), so that each rank's bank holds the global batches.
        self.gather: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __len__(self) -> int:
        return 0 if self.x is None else self.x.shape[0]

    def matches(self, x: torch.Tensor, cond: torch.Tensor | None) -> bool:
        """Whether the stored samples can serve as a reference for ``(x, cond)``."""
        return (
            self.x is not None
            and self.x.shape[1:] == x.shape[1:]
            and self.x.device == x.device
            and (self.cond is None) == (cond is None)
        )

    def push(self, x: torch.Tensor, cond: torch.Tensor | None) -> None:
        """Add a batch; drop the oldest samples beyond ``size``. A batch the stored samples do not
        match (another sample shape, device or kind of condition) starts the bank again."""
        x = x.detach()
        cond = None if cond is None else cond.detach()
        if self.gather is not None:
            x = self.gather(x)
            cond = None if cond is None else self.gather(cond)
        if self.matches(x, cond):
            x = torch.cat([x, self.x])
            cond = None if cond is None else torch.cat([cond, self.cond])
        self.x = x[: self.size]
        self.cond = None if cond is None else cond[: self.size]


def stable_target(
    z: torch.Tensor,
    t: torch.Tensor,
    x: torch.Tensor,
    v: torch.Tensor,
    cond: torch.Tensor | None = None,
    *,
    ref_x: torch.Tensor | None = None,
    ref_cond: torch.Tensor | None = None,
    use_cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """Self-normalised estimate of the marginal velocity at ``(z, t)``, float32, no gradient.

    Args:
        z: noisy points ``(B, ...)`` on the linear path from ``x`` (t = 0) to noise (t = 1).
        t: times ``(B,)`` in ``[0, 1]``.
        x: the batch's data ``(B, ...)``: part of the reference, so each row's own point is in it.
        v: the conditional velocities ``eps - x`` of the pairs.
        cond: ``None`` or integer labels ``(B,)`` of ``x``.
        ref_x, ref_cond: further reference points ``(R, ...)`` and their labels.
        use_cond: boolean ``(B,)``: rows whose class restricts the reference (default: all rows
            when ``cond`` is given). Rows with ``False`` average over every class.

    Returns:
        ``v̂`` shaped like ``v``, float32.
    """
    check_label_cond(*LABEL_NEED, cond)
    if ref_x is not None and (ref_cond is None) != (cond is None):
        raise InputError(
            "ref_cond: expected labels for the reference exactly when cond is given, got "
            f"cond={'None' if cond is None else 'labels'}, "
            f"ref_cond={'None' if ref_cond is None else 'labels'}"
        )
    # float32 throughout, also under autocast: the logits scale as 1 / t², so bf16 distances
    # would move the weights.
    no_autocast = torch.autocast(device_type=z.device.type, enabled=False)
    with torch.no_grad(), no_autocast:
        zf = z.detach().flatten(1).float()
        xs = x.detach().flatten(1).float()
        cs = cond
        if ref_x is not None and ref_x.shape[0]:
            xs = torch.cat([xs, ref_x.flatten(1).float()])
            if cond is not None:
                cs = torch.cat([cond, ref_cond])
        tt = t.detach().float().clamp_min(1e-4)[:, None]
        # ||z_i - (1 - t_i) x_j||² by expansion: B x R, no (B, R, D) tensor.
        cross = zf @ xs.T
        sq = zf.square().sum(1, keepdim=True) - 2 * (1 - tt) * cross
        sq = sq + (1 - tt).square() * xs.square().sum(1)[None, :]
        logits = -sq.clamp_min(0) / (2 * tt.square())
        if cond is not None:
            other = cond[:, None] != cs[None, :]
            if use_cond is not None:
                other = other & use_cond[:, None]
            logits = logits.masked_fill(other, float("-inf"))
        w = torch.softmax(logits, dim=1)
        own = xs[: z.shape[0]]
        shift = (own - w @ xs) / tt
        shift = torch.where(t.detach()[:, None] > 0, shift, torch.zeros_like(shift))
        return v.detach().float() + shift.reshape(v.shape)
