"""Backbones: every one is ``forward(x, r, t, cond=None) -> tensor shaped like x``.

``BACKBONES`` maps a name to its class; each class carries its frozen config dataclass as
``config_class`` and keeps the instance as ``self.config``. Two wrappers change what a backbone
means, never its signature: :class:`DataEstimate` reads the output as a data estimate
(``prediction="x"``) and :class:`Flattened` runs a flat network (an MLP) on samples of any shape.
:func:`wrap_backbone` is the one place that applies them, and a model is rebuilt from
``backbone_spec(model)`` alone.

Example:
    >>> net = wrap_backbone(build_backbone("mlp", dim=128), prediction="x", sample_shape=(64, 2))
    >>> spec = backbone_spec(net)  # {"name": "mlp", "config": {...}, "prediction": "x",
    >>> #                             "flatten": [64, 2]}, JSON-able
    >>> twin = build_backbone_from_spec(spec)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from meanflow_sci.errors import InputError, check_choice, describe
from meanflow_sci.nn.mlp import MLP
from meanflow_sci.nn.transformer import Transformer1D
from meanflow_sci.nn.unet1d import UNet1D
from meanflow_sci.nn.unet2d import UNet2D
from meanflow_sci.nn.wrappers import PREDICTIONS, DataEstimate, Flattened, check_sample_shape

__all__ = [
    "BACKBONES",
    "DataEstimate",
    "Flattened",
    "MLP",
    "Transformer1D",
    "UNet1D",
    "UNet2D",
    "backbone_spec",
    "build_backbone",
    "build_backbone_from_spec",
    "wrap_backbone",
]

BACKBONES: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "unet1d": UNet1D,
    "transformer": Transformer1D,
    "unet2d": UNet2D,
}


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
    if "prediction" in kwargs:
        raise InputError(
            f"backbone_kwargs: 'prediction' is no longer a field of {config_class.__name__}: the "
            f"data-estimate output is a wrapper, use wrap_backbone(net, prediction="
            f"{kwargs['prediction']!r}) (or meanflow_sci.nn.DataEstimate(net))"
        )
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


def wrap_backbone(
    net: nn.Module, *, prediction: str = "u", sample_shape: Sequence[int] | None = None
) -> nn.Module:
    """Apply the output and layout wrappers to a bare backbone (the one place that does).

    Args:
        net: A bare backbone (not already wrapped).
        prediction: ``"u"`` (the network outputs the average velocity, returned as it is) or
            ``"x"`` (its output is a data estimate: :class:`DataEstimate`).
        sample_shape: None, or the shape of one sample for a flat network (an MLP with
            ``dim = prod(sample_shape)``): :class:`Flattened` reshapes around it.

    Returns:
        ``net``, ``Flattened(net, sample_shape)``, ``DataEstimate(net)`` or
        ``DataEstimate(Flattened(net, sample_shape))``.

    Raises:
        InputError: unknown ``prediction``, a bad ``sample_shape``, an already wrapped ``net``,
            or a registered backbone that is not flat or whose size is not ``prod(sample_shape)``.
    """
    check_choice("prediction", prediction, PREDICTIONS)
    if not isinstance(net, nn.Module) or isinstance(net, (DataEstimate, Flattened)):
        raise InputError(f"net: expected a bare backbone nn.Module, got {describe(net)}")
    if sample_shape is not None:
        shape = check_sample_shape(sample_shape)
        # Registered backbones other than the MLP take structured samples: nothing to flatten.
        flat_ok = isinstance(net, MLP) and net.config.dim == math.prod(shape)
        if type(net) in BACKBONES.values() and not flat_ok:
            raise InputError(
                f"sample_shape: flattening {shape} needs a flat backbone (mlp) with "
                f"dim={math.prod(shape)}, got {describe(net)}"
            )
        net = Flattened(net, shape)
    return DataEstimate(net) if prediction == "x" else net


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def backbone_spec(model: nn.Module) -> dict[str, Any]:
    """The JSON-able description of a registered backbone, wrapped or not.

    Returns:
        ``{"name": str, "config": dict, "prediction": "u" | "x", "flatten": None | list}``;
        :func:`build_backbone_from_spec` rebuilds an identical architecture (same state-dict
        keys).

    Raises:
        InputError: if ``model`` is not a registered backbone, optionally wrapped by
            :func:`wrap_backbone`.
    """
    bare, prediction, flatten = model, "u", None
    if isinstance(bare, DataEstimate):
        bare, prediction = bare.inner, "x"
    if isinstance(bare, Flattened):
        bare, flatten = bare.inner, list(bare.sample_shape)
    for name, cls in BACKBONES.items():
        if type(bare) is cls:
            config = dataclasses.asdict(bare.config)
            return {
                "name": name,
                "config": {k: _jsonable(v) for k, v in config.items()},
                "prediction": prediction,
                "flatten": flatten,
            }
    raise InputError(
        f"model: expected an instance of one of {sorted(BACKBONES)} "
        f"({[c.__name__ for c in BACKBONES.values()]}), optionally wrapped by wrap_backbone, "
        f"got {describe(model)}"
    )


_SPEC_KEYS = ("name", "config", "prediction", "flatten")


def build_backbone_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild the network :func:`backbone_spec` described (fresh weights).

    Specs written before the wrappers existed (no ``"prediction"`` / ``"flatten"`` keys, and
    ``prediction`` inside ``"config"``) are read too: such a model's weights load into the
    rebuilt one unchanged.

    Raises:
        InputError: a spec that is not a dict with ``"name"`` and ``"config"``, unknown keys,
            or anything :func:`build_backbone` / :func:`wrap_backbone` refuses.
    """
    if not isinstance(spec, Mapping) or not isinstance(spec.get("config"), Mapping):
        raise InputError(
            f"spec: expected a dict with 'name' and 'config' (from backbone_spec), got "
            f"{describe(spec)}"
        )
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    if unknown:
        raise InputError(f"spec: unknown keys {unknown}; expected a subset of {list(_SPEC_KEYS)}")
    config = dict(spec["config"])
    legacy = config.pop("prediction", None)
    prediction = spec.get("prediction", legacy or "u")
    if legacy is not None and legacy != prediction:
        raise InputError(
            f"spec: 'prediction' given twice with different values ({prediction!r} and "
            f"{legacy!r} in 'config')"
        )
    net = build_backbone(spec.get("name"), **config)
    return wrap_backbone(net, prediction=prediction, sample_shape=spec.get("flatten"))
