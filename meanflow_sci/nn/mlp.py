"""Residual MLP backbone for flat samples ``(B, D)``."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from meanflow_sci.errors import check_positive_int
from meanflow_sci.nn.embeddings import (
    BackboneEmbedding,
    check_cond_config,
)
from meanflow_sci.nn.layers import LayerNorm, Linear, silu

__all__ = ["MLPConfig", "MLP"]


@dataclass(frozen=True)
class MLPConfig:
    """Configuration of :class:`MLP`.

    Attributes:
        dim: Sample size ``D``.
        hidden: Width of the residual stream.
        depth: Number of residual blocks.
        cond_dim: Length of a float condition vector (0: none).
        num_classes: Number of class labels (0: none).
        emb_dim: Width of the time/condition embedding.
    """

    dim: int
    hidden: int = 256
    depth: int = 4
    cond_dim: int = 0
    num_classes: int = 0
    emb_dim: int = 128

    def __post_init__(self) -> None:
        check_positive_int("dim", self.dim)
        check_positive_int("hidden", self.hidden)
        check_positive_int("depth", self.depth)
        check_positive_int("emb_dim", self.emb_dim)
        check_cond_config(self.cond_dim, self.num_classes)


class _FiLMBlock(nn.Module):
    """Pre-norm residual block: LayerNorm, FiLM from the embedding, SiLU, two linear layers."""

    def __init__(self, hidden: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm(hidden, elementwise_affine=False)
        self.film = Linear(emb_dim, 2 * hidden)
        self.fc1 = Linear(hidden, hidden)
        self.fc2 = Linear(hidden, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb).chunk(2, dim=-1)
        y = self.norm(h) * (1 + scale) + shift
        y = self.fc2(silu(self.fc1(silu(y))))
        return h + y


class MLP(nn.Module):
    """Residual MLP conditioned by FiLM on the ``(t, t - r)`` and condition embeddings.

    The output layer starts at zero, so the initial network predicts ``u = 0`` and the first
    steps of training are stable.

    Args:
        config: An :class:`MLPConfig`.

    Shapes:
        ``x: (B, D)``, ``r, t: (B,)``, ``cond: (B, cond_dim)`` float or ``(B,)`` labels
        ``-> (B, D)``.

    Example:
        >>> net = MLP(MLPConfig(dim=3))
        >>> net(torch.randn(5, 3), torch.zeros(5), torch.ones(5)).shape
        torch.Size([5, 3])
    """

    config_class = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = BackboneEmbedding(c.emb_dim, c.cond_dim, c.num_classes)
        self.inp = Linear(c.dim, c.hidden)
        self.blocks = nn.ModuleList(_FiLMBlock(c.hidden, c.emb_dim) for _ in range(c.depth))
        self.out_norm = LayerNorm(c.hidden)
        self.out = Linear(c.hidden, c.dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, r: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Average velocity ``u(x, r, t | cond)``, shaped like ``x``."""
        self.embed.check(x, r, t, cond, (self.config.dim,))
        emb = self.embed(r, t, cond, x.shape[0])
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(silu(self.out_norm(h)))
