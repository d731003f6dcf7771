"""Temporal U-Net backbone for sequences ``(B, T, D)`` (action chunks, trajectories).

Modelled on diffusion policy's ConditionalUnet1D: Conv1d residual blocks with GroupNorm and Mish,
FiLM from the embedding in every block, skip connections between matching resolutions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from meanflow_sci.errors import InputError, check_positive_int
from meanflow_sci.nn.embeddings import (
    BackboneEmbedding,
    check_cond_config,
)
from meanflow_sci.nn.layers import Conv1d, ConvTranspose1d, GroupNorm, Linear, mish

__all__ = ["UNet1DConfig", "UNet1D"]


@dataclass(frozen=True)
class UNet1DConfig:
    """Configuration of :class:`UNet1D`.

    Attributes:
        channels: Feature size ``D`` of the input ``(B, T, D)``.
        down_dims: Channel widths per level; ``len(down_dims) - 1`` halvings of ``T``.
        kernel_size: Temporal convolution width (odd).
        n_groups: GroupNorm groups; must divide every entry of ``down_dims``.
        cond_dim: Length of a float condition vector (0: none).
        num_classes: Number of class labels (0: none).
        emb_dim: Width of the time/condition embedding.
    """

    channels: int
    down_dims: tuple[int, ...] = (64, 128, 256)
    kernel_size: int = 5
    n_groups: int = 8
    cond_dim: int = 0
    num_classes: int = 0
    emb_dim: int = 128

    def __post_init__(self) -> None:
        check_positive_int("channels", self.channels)
        # JSON round trips turn tuples into lists; store a tuple so the config stays hashable.
        object.__setattr__(self, "down_dims", tuple(self.down_dims))
        if not self.down_dims:
            raise InputError("down_dims: expected at least one width, got ()")
        for d in self.down_dims:
            check_positive_int("down_dims", d)
        check_positive_int("kernel_size", self.kernel_size)
        if self.kernel_size % 2 == 0:
            raise InputError(f"kernel_size: expected an odd integer, got {self.kernel_size}")
        check_positive_int("n_groups", self.n_groups)
        bad = [d for d in self.down_dims if d % self.n_groups]
        if bad:
            raise InputError(
                f"n_groups: expected a divisor of every entry of down_dims {self.down_dims}, "
                f"got {self.n_groups} (does not divide {bad})"
            )
        check_positive_int("emb_dim", self.emb_dim)
        check_cond_config(self.cond_dim, self.num_classes)


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, n_groups: int) -> None:
        super().__init__()
        self.conv = Conv1d(cin, cout, kernel_size, padding=kernel_size // 2)
        self.norm = GroupNorm(n_groups, cout)

    def forward(self, x: Tensor) -> Tensor:
        return mish(self.norm(self.conv(x)))


class _ResBlock(nn.Module):
    """Two conv blocks with FiLM (scale, shift) from the embedding in between, plus a skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, kernel_size: int, n_groups: int) -> None:
        super().__init__()
        self.block1 = _ConvBlock(cin, cout, kernel_size, n_groups)
        self.block2 = _ConvBlock(cout, cout, kernel_size, n_groups)
        self.film = Linear(emb_dim, 2 * cout)
        self.skip = Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb)[:, :, None].chunk(2, dim=1)
        h = self.block1(x) * (1 + scale) + shift
        return self.block2(h) + self.skip(x)


class UNet1D(nn.Module):
    """Conditional temporal U-Net for ``(B, T, D)`` inputs of any length ``T``.

    ``T`` is zero-padded at the end to a multiple of ``2 ** (len(down_dims) - 1)`` and the output
    cropped back, so odd lengths and ``T = 1`` work. The output convolution starts at zero.

    Args:
        config: A :class:`UNet1DConfig`.

    Shapes:
        ``x: (B, T, D)``, ``r, t: (B,)``, ``cond: (B, cond_dim)`` float or ``(B,)`` labels
        ``-> (B, T, D)``.

    Example:
        >>> net = UNet1D(UNet1DConfig(channels=2, down_dims=(16, 32)))
        >>> net(torch.randn(4, 7, 2), torch.zeros(4), torch.ones(4)).shape
        torch.Size([4, 7, 2])
    """

    config_class = UNet1DConfig

    def __init__(self, config: UNet1DConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        k, g, e = c.kernel_size, c.n_groups, c.emb_dim
        self.embed = BackboneEmbedding(e, c.cond_dim, c.num_classes)
        dims = (c.channels, *c.down_dims)
        pairs = list(zip(dims[:-1], dims[1:], strict=True))
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        _ResBlock(cin, cout, e, k, g),
                        _ResBlock(cout, cout, e, k, g),
                        nn.Identity() if last else Conv1d(cout, cout, 3, stride=2, padding=1),
                    ]
                )
            )
        mid = c.down_dims[-1]
        self.mid = nn.ModuleList([_ResBlock(mid, mid, e, k, g), _ResBlock(mid, mid, e, k, g)])
        self.up = nn.ModuleList()
        for cin, cout in reversed(pairs[1:]):
            self.up.append(
                nn.ModuleList(
                    [
                        _ResBlock(2 * cout, cin, e, k, g),
                        _ResBlock(cin, cin, e, k, g),
                        ConvTranspose1d(cin, cin, 4, stride=2, padding=1),
                    ]
                )
            )
        start = c.down_dims[0]
        self.final = nn.Sequential(_ConvBlock(start, start, k, g), Conv1d(start, c.channels, 1))
        nn.init.zeros_(self.final[-1].weight)
        nn.init.zeros_(self.final[-1].bias)
        self._multiple = 2 ** (len(pairs) - 1)

    def forward(self, x: Tensor, r: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Average velocity ``u(x, r, t | cond)``, shaped like ``x``."""
        self.embed.check(x, r, t, cond, ("T", self.config.channels))
        length = x.shape[1]
        emb = self.embed(r, t, cond, x.shape[0])

        h = rearrange(x, "b t d -> b d t")
        pad = -length % self._multiple
        if pad:
            h = F.pad(h, (0, pad))
        skips = []
        for res1, res2, downsample in self.down:
            h = res2(res1(h, emb), emb)
            skips.append(h)
            h = downsample(h)
        for res in self.mid:
            h = res(h, emb)
        # As in diffusion policy, each up level joins the skip of the same resolution, deepest
        # first; the full-resolution skip of the first level stays unused.
        for res1, res2, upsample in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = upsample(res2(res1(h, emb), emb))
        h = self.final(h)
        if pad:
            h = h[:, :, :length]
        return rearrange(h, "b d t -> b t d")
