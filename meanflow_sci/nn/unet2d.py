"""Small DDPM/EDM-style U-Net backbone for images ``(B, C, H, W)``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from meanflow_sci.errors import InputError, check_positive_int, check_range
from meanflow_sci.nn.embeddings import (
    BackboneEmbedding,
    check_cond_config,
    group_count,
)
from meanflow_sci.nn.layers import Conv2d, GroupNorm, Linear, silu
from meanflow_sci.nn.transformer import RMSNorm, math_attention

__all__ = ["UNet2DConfig", "UNet2D"]


@dataclass(frozen=True)
class UNet2DConfig:
    """Configuration of :class:`UNet2D`.

    Attributes:
        in_channels: Image channels ``C``.
        base: Channel width of the first level.
        channel_mults: Width multiplier per level; ``len(channel_mults) - 1`` halvings of H, W.
        num_res_blocks: Residual blocks per level on the way down (one more on the way up).
        attn_resolutions: Feature-map sizes (as in DDPM, relative to ``resolution``) whose blocks
            get self-attention, e.g. ``(16,)`` for 32x32 images. The bottleneck always has one
            attention layer.
        dropout: Dropout rate inside residual blocks.
        cond_dim: Length of a float condition vector (0: none).
        num_classes: Number of class labels (0: none).
        resolution: Nominal input size used to read ``attn_resolutions`` (level ``i`` has size
            ``resolution / 2**i``). Any input size works at run time.
    """

    in_channels: int
    base: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = ()
    dropout: float = 0.0
    cond_dim: int = 0
    num_classes: int = 0
    resolution: int = 32

    def __post_init__(self) -> None:
        check_positive_int("in_channels", self.in_channels)
        check_positive_int("base", self.base)
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        object.__setattr__(self, "attn_resolutions", tuple(self.attn_resolutions))
        if not self.channel_mults:
            raise InputError("channel_mults: expected at least one multiplier, got ()")
        for m in self.channel_mults:
            check_positive_int("channel_mults", m)
        check_positive_int("num_res_blocks", self.num_res_blocks)
        check_range("dropout", self.dropout, 0.0, 1.0)
        check_positive_int("resolution", self.resolution)
        sizes = self.level_sizes()
        bad = [a for a in self.attn_resolutions if a not in sizes]
        if bad:
            raise InputError(
                f"attn_resolutions: expected sizes among {sizes} (resolution={self.resolution} "
                f"halved per level), got {self.attn_resolutions}"
            )
        check_cond_config(self.cond_dim, self.num_classes)

    def level_sizes(self) -> list[int]:
        """Nominal feature-map size of each level."""
        return [max(1, self.resolution // 2**i) for i in range(len(self.channel_mults))]


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with FiLM from the embedding and a zero-initialised last conv."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = GroupNorm(group_count(cin), cin)
        self.conv1 = Conv2d(cin, cout, 3, padding=1)
        self.film = Linear(emb_dim, 2 * cout)
        self.norm2 = GroupNorm(group_count(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(silu(h)))
        return h + self.skip(x)


class _Attention(nn.Module):
    """Single-head-per-64-channels self-attention over pixels with QK-norm (JVP-safe math path)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.heads = max(1, ch // 64) if ch % 64 == 0 else 1
        self.norm = GroupNorm(group_count(ch), ch)
        self.qkv = Conv2d(ch, 3 * ch, 1)
        self.q_norm = RMSNorm(ch // self.heads)
        self.k_norm = RMSNorm(ch // self.heads)
        self.proj = Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        height = x.shape[2]
        qkv = rearrange(
            self.qkv(self.norm(x)), "b (three h d) y x -> three b h (y x) d", three=3, h=self.heads
        )
        y = math_attention(self.q_norm(qkv[0]), self.k_norm(qkv[1]), qkv[2])
        y = rearrange(y, "b h (y x) d -> b (h d) y x", y=height)
        return x + self.proj(y)


class UNet2D(nn.Module):
    """Conditional image U-Net for ``(B, C, H, W)`` inputs of any size.

    H and W are zero-padded at the bottom/right to a multiple of ``2 ** (len(channel_mults) - 1)``
    and the output cropped back. Residual branches and the output convolution start at zero.

    Args:
        config: A :class:`UNet2DConfig`.

    Shapes:
        ``x: (B, C, H, W)``, ``r, t: (B,)``, ``cond: (B, cond_dim)`` float or ``(B,)`` labels
        ``-> (B, C, H, W)``.

    Example:
        >>> net = UNet2D(UNet2DConfig(in_channels=1, base=16))
        >>> net(torch.randn(2, 1, 7, 9), torch.zeros(2), torch.ones(2)).shape
        torch.Size([2, 1, 7, 9])
    """

    config_class = UNet2DConfig

    def __init__(self, config: UNet2DConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        emb_dim = 4 * c.base
        self.embed = BackboneEmbedding(emb_dim, c.cond_dim, c.num_classes)
        sizes = c.level_sizes()
        levels = len(c.channel_mults)
        self.conv_in = Conv2d(c.in_channels, c.base, 3, padding=1)

        # Down path: record the width of every tensor pushed onto the skip stack.
        self.down = nn.ModuleList()
        skip_widths = [c.base]
        ch = c.base
        for i, mult in enumerate(c.channel_mults):
            attn = sizes[i] in c.attn_resolutions
            for _ in range(c.num_res_blocks):
                out = c.base * mult
                self.down.append(self._stage(ch, out, emb_dim, attn))
                ch = out
                skip_widths.append(ch)
            if i < levels - 1:
                self.down.append(Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_widths.append(ch)

        self.mid = nn.ModuleList(
            [
                _ResBlock(ch, ch, emb_dim, c.dropout),
                _Attention(ch),
                _ResBlock(ch, ch, emb_dim, c.dropout),
            ]
        )

        self.up = nn.ModuleList()
        for i in reversed(range(levels)):
            attn = sizes[i] in c.attn_resolutions
            for _ in range(c.num_res_blocks + 1):
                out = c.base * c.channel_mults[i]
                self.up.append(self._stage(ch + skip_widths.pop(), out, emb_dim, attn))
                ch = out
            if i > 0:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2.0, mode="nearest"),
                        Conv2d(ch, ch, 3, padding=1),
                    )
                )
        self.out_norm = GroupNorm(group_count(ch), ch)
        self.conv_out = Conv2d(ch, c.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self._multiple = 2 ** (levels - 1)

    def _stage(self, cin: int, cout: int, emb_dim: int, attn: bool) -> nn.ModuleList:
        parts = [_ResBlock(cin, cout, emb_dim, self.config.dropout)]
        if attn:
            parts.append(_Attention(cout))
        return nn.ModuleList(parts)

    def forward(self, x: Tensor, r: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Average velocity ``u(x, r, t | cond)``, shaped like ``x``."""
        self.embed.check(x, r, t, cond, (self.config.in_channels, "H", "W"))
        height, width = x.shape[2], x.shape[3]
        emb = self.embed(r, t, cond, x.shape[0])

        pad_h, pad_w = -height % self._multiple, -width % self._multiple
        h = F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x
        h = self.conv_in(h)
        skips = [h]
        for module in self.down:
            if isinstance(module, nn.ModuleList):
                for part in module:
                    h = part(h, emb)
            else:
                h = module(h)
            skips.append(h)
        h = self.mid[0](h, emb)
        h = self.mid[1](h)
        h = self.mid[2](h, emb)
        for module in self.up:
            if isinstance(module, nn.ModuleList):
                h = torch.cat([h, skips.pop()], dim=1)
                for part in module:
                    h = part(h, emb)
            else:
                h = module(h)
        h = self.conv_out(silu(self.out_norm(h)))
        if pad_h or pad_w:
            h = h[:, :, :height, :width]
        return h
