"""DiT-style transformer backbone for sequences ``(B, T, D)``.

Each block is pre-norm attention + MLP with adaLN-zero modulation from the embedding (DiT). Queries
and keys are RMS-normalised per head (QK-norm), a remedy for the late loss spikes reported in
MeanFlow ports. Attention is written out as ``softmax(q k^T / sqrt(d)) v``: the fused
scaled-dot-product kernels have no forward-mode AD, and the trainer differentiates the network
with ``torch.func.jvp``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from meanflow_sci.errors import InputError, check_positive_int, check_range
from meanflow_sci.nn.embeddings import (
    BackboneEmbedding,
    check_cond_config,
)
from meanflow_sci.nn.layers import GELU, LayerNorm, Linear

__all__ = ["Transformer1DConfig", "Transformer1D", "math_attention", "RMSNorm"]


def math_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Plain scaled dot-product attention, differentiable in forward and reverse mode.

    Args:
        q, k, v: ``(B, H, N, d)``.

    Returns:
        ``(B, H, N, d)``.
    """
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    return torch.matmul(scores.softmax(dim=-1), v)


class RMSNorm(nn.Module):
    """RMS normalisation over the last axis with a learned gain (written out, JVP-safe)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


def sincos_table(length: int, width: int) -> Tensor:
    """Fixed sine-cosine positional table ``(length, width)`` (Transformer / DiT)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    half = width // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    table = torch.zeros(length, width)
    table[:, :half] = torch.sin(pos * freqs)
    table[:, half : 2 * half] = torch.cos(pos * freqs)
    return table


@dataclass(frozen=True)
class Transformer1DConfig:
    """Configuration of :class:`Transformer1D`.

    Attributes:
        channels: Feature size ``D`` of the input ``(B, T, D)``.
        width: Token width.
        depth: Number of blocks.
        heads: Attention heads; must divide ``width``.
        mlp_ratio: Hidden width of the block MLP relative to ``width``.
        max_len: Longest sequence ``T`` accepted (size of the positional table).
        cond_dim: Length of a float condition vector (0: none).
        num_classes: Number of class labels (0: none).
    """

    channels: int
    width: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    max_len: int = 512
    cond_dim: int = 0
    num_classes: int = 0

    def __post_init__(self) -> None:
        check_positive_int("channels", self.channels)
        check_positive_int("width", self.width, minimum=2)
        check_positive_int("depth", self.depth)
        check_positive_int("heads", self.heads)
        if self.width % self.heads:
            raise InputError(f"heads: expected a divisor of width={self.width}, got {self.heads}")
        check_range("mlp_ratio", self.mlp_ratio, 1e-6, None)
        check_positive_int("max_len", self.max_len)
        check_cond_config(self.cond_dim, self.num_classes)


class _Block(nn.Module):
    """Pre-norm attention + MLP block with adaLN-zero modulation."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = Linear(width, 3 * width)
        self.q_norm = RMSNorm(width // heads)
        self.k_norm = RMSNorm(width // heads)
        self.proj = Linear(width, width)
        self.norm2 = LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = max(1, int(width * mlp_ratio))
        self.mlp = nn.Sequential(Linear(width, hidden), GELU(), Linear(hidden, width))
        # adaLN-zero: shift, scale, gate for attention and MLP; zero so each block starts as
        # the identity.
        self.ada = Linear(width, 6 * width)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        mods = self.ada(emb)[:, None, :].chunk(6, dim=-1)
        shift1, scale1, gate1, shift2, scale2, gate2 = mods
        y = self.norm1(h) * (1 + scale1) + shift1
        q, k, v = rearrange(self.qkv(y), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        y = math_attention(self.q_norm(q), self.k_norm(k), v)
        h = h + gate1 * self.proj(rearrange(y, "b h n d -> b n (h d)"))
        y = self.norm2(h) * (1 + scale2) + shift2
        return h + gate2 * self.mlp(y)


class Transformer1D(nn.Module):
    """DiT-style transformer over the time axis of ``(B, T, D)`` inputs.

    Every sample of the sequence is a token; the time pair and the condition enter only through
    adaLN modulation. The output projection starts at zero.

    Args:
        config: A :class:`Transformer1DConfig`.

    Shapes:
        ``x: (B, T, D)`` with ``T <= max_len``, ``r, t: (B,)``, ``cond: (B, cond_dim)`` float or
        ``(B,)`` labels ``-> (B, T, D)``.

    Example:
        >>> net = Transformer1D(Transformer1DConfig(channels=2, width=32, depth=2))
        >>> net(torch.randn(4, 9, 2), torch.zeros(4), torch.ones(4)).shape
        torch.Size([4, 9, 2])
    """

    config_class = Transformer1DConfig

    def __init__(self, config: Transformer1DConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = BackboneEmbedding(c.width, c.cond_dim, c.num_classes)
        self.inp = Linear(c.channels, c.width)
        # Fixed table, not saved: checkpoints stay independent of max_len.
        self.register_buffer("pos", sincos_table(c.max_len, c.width), persistent=False)
        self.blocks = nn.ModuleList(_Block(c.width, c.heads, c.mlp_ratio) for _ in range(c.depth))
        self.out_norm = LayerNorm(c.width, elementwise_affine=False, eps=1e-6)
        self.out_ada = Linear(c.width, 2 * c.width)
        self.out = Linear(c.width, c.channels)
        for layer in (self.out_ada, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, r: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Average velocity ``u(x, r, t | cond)``, shaped like ``x``."""
        self.embed.check(x, r, t, cond, ("T", self.config.channels))
        length = x.shape[1]
        if length > self.config.max_len:
            raise InputError(
                f"x: expected at most max_len={self.config.max_len} time steps, got shape "
                f"{tuple(x.shape)}"
            )
        emb = self.embed(r, t, cond, x.shape[0])
        h = self.inp(x) + self.pos[:length].to(x.dtype)
        for block in self.blocks:
            h = block(h, emb)
        shift, scale = self.out_ada(emb)[:, None, :].chunk(2, dim=-1)
        return self.out(self.out_norm(h) * (1 + scale) + shift)
