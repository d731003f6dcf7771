"""Time and condition embeddings shared by every backbone, plus the common input checks.

The network sees time as the pair ``(t, t - r)`` (MeanFlow's choice): two sinusoidal features, each
through its own small MLP, summed. Conditions are either a float vector ``(B, cond_dim)`` or an
integer class label ``(B,)``; the "null" condition (label ``-1`` or a row of NaN, or no ``cond`` at
all) maps to a learned embedding, which classifier-free guidance needs.

Everything here must stay differentiable in forward mode: the trainer runs ``torch.func.jvp`` with
``(x, r, t)`` as primals. ``cond`` is never a primal, so the data-dependent checks on it are safe.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from meanflow_sci.errors import InputError, check_batch_match, describe
from meanflow_sci.nn.layers import Linear, SiLU, silu

__all__ = [
    "SinusoidalEmbedding",
    "TimeEmbedding",
    "CondEmbedding",
    "BackboneEmbedding",
    "check_backbone_inputs",
    "check_cond_config",
    "group_count",
]


class SinusoidalEmbedding(nn.Module):
    """Fixed sinusoidal features of a scalar per sample.

    Args:
        dim: Number of output features (even).
        scale: Multiplies the input first (times live in ``[0, 1]``). The trainer differentiates
            the network in ``t`` (the MeanFlow JVP), and high frequencies make ``du/dt`` large
            and noisy: on a 2-D ring toy (1500 steps, two seeds) scale 1 or 10 put 80-93 % of
            one-step samples near a mode against 75-78 % for the diffusion habit of 1000; on
            the 8x8 digits (3000 MMF steps) scale 10 and 100 gave one-step Fréchet distances of
            36.7 and 68.8 against 30.9 for 1.
        max_period: Longest period of the features.

    Shapes:
        ``(B,) -> (B, dim)``.
    """

    def __init__(self, dim: int, scale: float = 1.0, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise InputError(f"dim: expected an even integer >= 2, got {dim!r}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        # Non-persistent: a constant table, rebuilt at construction, never saved in checkpoints.
        self.register_buffer("freqs", freqs * scale, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        args = t[:, None].to(self.freqs.dtype) * self.freqs
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(Linear(in_dim, out_dim), SiLU(), Linear(out_dim, out_dim))


class TimeEmbedding(nn.Module):
    """Embedding of the time pair ``(t, t - r)``: two sinusoidal + MLP embeddings, summed.

    Args:
        emb_dim: Output width.
        freq_dim: Width of the sinusoidal features.

    Shapes:
        ``r, t: (B,) -> (B, emb_dim)``.
    """

    def __init__(self, emb_dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.sinusoid = SinusoidalEmbedding(freq_dim)
        self.t_mlp = _mlp(freq_dim, emb_dim)
        self.h_mlp = _mlp(freq_dim, emb_dim)

    def forward(self, r: Tensor, t: Tensor) -> Tensor:
        dtype = self.t_mlp[0].weight.dtype
        feats_t = self.sinusoid(t).to(dtype)
        feats_h = self.sinusoid(t - r).to(dtype)
        return self.t_mlp(feats_t) + self.h_mlp(feats_h)


def check_cond_config(cond_dim: int, num_classes: int) -> None:
    """Validate the two conditioning fields every backbone config carries."""
    for name, value in (("cond_dim", cond_dim), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{name}: expected an integer >= 0, got {value!r}")
    if cond_dim and num_classes:
        raise InputError(
            "cond_dim, num_classes: expected at most one of them non-zero (a model takes either a "
            f"float condition vector or a class label), got cond_dim={cond_dim}, "
            f"num_classes={num_classes}"
        )


class CondEmbedding(nn.Module):
    """Embedding of the condition, with a learned null embedding for dropped conditions.

    Args:
        emb_dim: Output width.
        cond_dim: Length of a float condition vector (0: none).
        num_classes: Number of integer class labels (0: none). At most one of ``cond_dim`` and
            ``num_classes`` is non-zero.

    Shapes:
        ``cond: (B, cond_dim)`` float or ``(B,)`` integer ``-> (B, emb_dim)``. A label ``-1`` or a
        float row of NaN selects the null embedding; ``cond=None`` means null for every sample.
    """

    def __init__(self, emb_dim: int, cond_dim: int = 0, num_classes: int = 0) -> None:
        super().__init__()
        check_cond_config(cond_dim, num_classes)
        self.cond_dim = cond_dim
        self.num_classes = num_classes
        self.emb_dim = emb_dim
        if cond_dim:
            self.cond_mlp = _mlp(cond_dim, emb_dim)
            self.null = nn.Parameter(torch.zeros(emb_dim))
            nn.init.normal_(self.null, std=0.02)
        elif num_classes:
            # Row ``num_classes`` is the null class: label -1 is mapped onto it.
            self.table = nn.Embedding(num_classes + 1, emb_dim)
            nn.init.normal_(self.table.weight, std=0.02)

    @property
    def conditional(self) -> bool:
        return bool(self.cond_dim or self.num_classes)

    def check(self, cond: Tensor | None, batch: int) -> None:
        """Raise :class:`InputError` if ``cond`` does not fit this embedding."""
        if cond is None:
            return
        if not isinstance(cond, Tensor):
            raise InputError(f"cond: expected a torch.Tensor or None, got {describe(cond)}")
        if not self.conditional:
            raise InputError(
                "cond: this model is unconditional (cond_dim=0 and num_classes=0), so cond must "
                f"be None, got {describe(cond)}"
            )
        check_batch_match("cond", cond, batch)
        if self.cond_dim:
            if not cond.is_floating_point() or cond.shape != (batch, self.cond_dim):
                raise InputError(
                    f"cond: expected a float tensor of shape ({batch}, {self.cond_dim}) "
                    f"(cond_dim={self.cond_dim}), got {describe(cond)}"
                )
            if torch.compiler.is_compiling():
                return
            nan = torch.isnan(cond)
            if bool((nan.any(dim=1) & ~nan.all(dim=1)).any()):
                raise InputError(
                    "cond: expected each row either fully finite or fully NaN (the null "
                    "condition), got rows with only some NaN entries"
                )
        else:
            if cond.is_floating_point() or cond.is_complex() or cond.dtype == torch.bool:
                raise InputError(
                    f"cond: expected integer class labels of shape ({batch},) "
                    f"(num_classes={self.num_classes}), got {describe(cond)}"
                )
            if cond.shape != (batch,):
                raise InputError(
                    f"cond: expected integer class labels of shape ({batch},), got {describe(cond)}"
                )
            if torch.compiler.is_compiling():
                return
            if bool(((cond < -1) | (cond >= self.num_classes)).any()):
                raise InputError(
                    f"cond: expected labels in [0, {self.num_classes - 1}] or -1 (null), got "
                    f"values in [{int(cond.min())}, {int(cond.max())}]"
                )

    def forward(self, cond: Tensor | None, batch: int) -> Tensor | None:
        """Return the condition embedding ``(batch, emb_dim)``, or None for unconditional models."""
        if not self.conditional:
            return None
        if self.cond_dim:
            null = self.null.expand(batch, self.emb_dim)
            if cond is None:
                return null
            is_null = torch.isnan(cond).all(dim=1, keepdim=True)
            dtype = self.cond_mlp[0].weight.dtype
            # Zero the NaN rows before the MLP so no NaN reaches the graph (torch.where alone
            # would still back-propagate NaN through the discarded branch).
            clean = torch.where(is_null, torch.zeros_like(cond), cond).to(dtype)
            return torch.where(is_null, null, self.cond_mlp(clean))
        labels = torch.full(
            (batch,), self.num_classes, dtype=torch.long, device=self.table.weight.device
        )
        if cond is not None:
            cond = cond.long()
            labels = torch.where(cond < 0, labels, cond)
        return self.table(labels)


def check_backbone_inputs(
    x: Tensor,
    r: Tensor,
    t: Tensor,
    *,
    ndim: int,
    layout: str,
    cond_emb: CondEmbedding,
    cond: Tensor | None,
    channel_axis: int | None = None,
    channels: int | None = None,
) -> None:
    """The input checks every backbone runs at the top of ``forward``.

    Args:
        x: Input batch; must have ``ndim`` dimensions.
        r, t: Times, each ``(B,)``.
        ndim: Expected rank of ``x``.
        layout: Human-readable layout of ``x`` for the error message, e.g. ``"(B, T, D)"``.
        cond_emb: The model's condition embedding (checks ``cond``).
        cond: The condition or None.
        channel_axis: Axis of ``x`` whose size must equal ``channels`` (None: not checked).
        channels: Expected size along ``channel_axis``.

    Raises:
        InputError: naming the argument, what was expected and what was given.
    """
    if (
        not isinstance(x, Tensor)
        or x.ndim != ndim
        or (channel_axis is not None and x.shape[channel_axis] != channels)
    ):
        raise InputError(f"x: expected a tensor of shape {layout}, got {describe(x)}")
    batch = x.shape[0]
    for name, value in (("r", r), ("t", t)):
        if not isinstance(value, Tensor) or value.ndim != 1:
            raise InputError(
                f"{name}: expected a tensor of shape ({batch},), got {describe(value)}"
            )
        check_batch_match(name, value, batch)
    cond_emb.check(cond, batch)


def group_count(channels: int, max_groups: int = 32) -> int:
    """Largest number of GroupNorm groups ``<= max_groups`` that divides ``channels``."""
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


class BackboneEmbedding(nn.Module):
    """What every backbone does first: check the inputs and embed ``(r, t, cond)``.

    Returns ``SiLU(time_embedding + cond_embedding)``, ready for FiLM / adaLN layers.

    Args:
        emb_dim: Output width.
        cond_dim: Length of a float condition vector (0: none).
        num_classes: Number of class labels (0: none).

    Shapes:
        ``r, t: (B,)``, ``cond: (B, cond_dim)`` float, ``(B,)`` labels or None ``-> (B, emb_dim)``.
    """

    def __init__(self, emb_dim: int, cond_dim: int = 0, num_classes: int = 0) -> None:
        super().__init__()
        self.time = TimeEmbedding(emb_dim)
        self.cond = CondEmbedding(emb_dim, cond_dim, num_classes)

    def check(
        self, x: Tensor, r: Tensor, t: Tensor, cond: Tensor | None, sample: tuple[int | str, ...]
    ) -> None:
        """Check the inputs of a backbone's ``forward``.

        Args:
            x, r, t, cond: The arguments of ``forward``.
            sample: Expected per-sample shape of ``x``: an int is a fixed size, a string a free
                one named in the error message, e.g. ``("T", 3)``.

        Raises:
            InputError: naming the argument, what was expected and what was given.
        """
        fixed = [(i + 1, n) for i, n in enumerate(sample) if isinstance(n, int)]
        axis, size = fixed[0] if fixed else (None, None)
        check_backbone_inputs(
            x,
            r,
            t,
            ndim=len(sample) + 1,
            layout="(" + ", ".join(str(n) for n in ("B", *sample)) + ")",
            cond_emb=self.cond,
            cond=cond,
            channel_axis=axis,
            channels=size,
        )

    def forward(self, r: Tensor, t: Tensor, cond: Tensor | None, batch: int) -> Tensor:
        emb = self.time(r, t)
        c = self.cond(cond, batch)
        if c is not None:
            emb = emb + c
        return silu(emb)
