"""Backbones: every one is ``forward(x, r, t, cond=None) -> tensor shaped like x``.

``BACKBONES`` maps a name to its class; each class carries its frozen config dataclass as
``config_class`` and keeps the instance as ``self.config``, so a model is rebuilt from
``backbone_spec(model)`` alone.

Example:
    >>> net = build_backbone("mlp", dim=3, cond_dim=2)
    >>> spec = backbone_spec(net)          # {"name": "mlp", "config": {...}}, JSON-able
    >>> twin = build_backbone(spec["name"], **spec["config"])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from torch import nn

from meanflow_sci.errors import InputError, check_choice, describe
from meanflow_sci.nn.embeddings import CondEmbedding, SinusoidalEmbedding, TimeEmbedding
from meanflow_sci.nn.mlp import MLP, MLPConfig
from meanflow_sci.nn.transformer import Transformer1D, Transformer1DConfig
from meanflow_sci.nn.unet1d import UNet1D, UNet1DConfig
from meanflow_sci.nn.unet2d import UNet2D, UNet2DConfig

__all__ = [
    "BACKBONES",
    "build_backbone",
    "backbone_spec",
    "auto_backbone",
    "MLP",
    "MLPConfig",
    "UNet1D",
    "UNet1DConfig",
    "Transformer1D",
    "Transformer1DConfig",
    "UNet2D",
    "UNet2DConfig",
    "SinusoidalEmbedding",
    "TimeEmbedding",
    "CondEmbedding",
]

BACKBONES: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "unet1d": UNet1D,
    "transformer": Transformer1D,
    "unet2d": UNet2D,
}

# Rank of one sample -> default backbone name.
_AUTO = {1: "mlp", 2: "unet1d", 3: "unet2d"}


def build_backbone(name_or_module: str | nn.Module, **kwargs: Any) -> nn.Module:
    """Build a backbone from its registry name and config fields, or pass a module through.

    Args:
        name_or_module: A key of :data:`BACKBONES`, or an ``nn.Module`` (returned unchanged).
        **kwargs: Fields of the backbone's config dataclass (e.g. ``dim=`` for ``"mlp"``).

    Returns:
        The backbone module.

    Raises:
        InputError: unknown name (listing the valid ones), unknown or missing config fields
            (naming them), kwargs given with a module, or an invalid field value.
    """
    if isinstance(name_or_module, nn.Module):
        if kwargs:
            raise InputError(
                f"backbone_kwargs: expected none when an nn.Module instance is given, got "
                f"{sorted(kwargs)}"
            )
        return name_or_module
    name = check_choice("backbone", name_or_module, BACKBONES)
    cls = BACKBONES[name]
    config_class = cls.config_class
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise InputError(
            f"backbone_kwargs: {unknown} are not fields of {config_class.__name__} "
            f"(backbone {name!r}); expected a subset of {sorted(fields)}"
        )
    missing = sorted(
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise InputError(
            f"backbone_kwargs: backbone {name!r} requires {missing}, got only {sorted(kwargs)}"
        )
    try:
        config = config_class(**kwargs)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:
        raise InputError(f"backbone_kwargs: invalid {config_class.__name__}: {exc}") from exc
    return cls(config)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def backbone_spec(model: nn.Module) -> dict[str, Any]:
    """The JSON-able description ``{"name": str, "config": dict}`` of a registered backbone.

    ``build_backbone(spec["name"], **spec["config"])`` rebuilds an identical architecture.

    Raises:
        InputError: if ``model`` is not an instance of a class in :data:`BACKBONES`.
    """
    for name, cls in BACKBONES.items():
        if type(model) is cls:
            config = dataclasses.asdict(model.config)
            return {"name": name, "config": {k: _jsonable(v) for k, v in config.items()}}
    raise InputError(
        f"model: expected an instance of one of {sorted(BACKBONES)} "
        f"({[c.__name__ for c in BACKBONES.values()]}), got {describe(model)}"
    )


def auto_backbone(sample_shape: Sequence[int]) -> str:
    """Default backbone name for one sample's shape.

    ``(D,) -> "mlp"``, ``(T, D) -> "unet1d"``, ``(C, H, W) -> "unet2d"``.

    Raises:
        InputError: for any other rank.
    """
    try:
        shape = tuple(int(s) for s in sample_shape)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"sample_shape: expected a sequence of ints, got {describe(sample_shape)}"
        ) from exc
    if len(shape) not in _AUTO:
        raise InputError(
            f"sample_shape: expected a per-sample shape of rank 1 (D,), 2 (T, D) or 3 (C, H, W), "
            f"got {shape} (rank {len(shape)})"
        )
    return _AUTO[len(shape)]
