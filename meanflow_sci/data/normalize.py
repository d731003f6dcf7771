"""Per-feature normalisation that is saved with the model.

Both modes are the same affine map ``x_n = (x - shift) / scale``; they differ only in how the
statistics are fitted:

- ``"standard"``: mean and standard deviation per feature, pooled over the sample axis and any
  time axis (vectors ``(N, D)`` and sequences ``(N, T, D)`` get statistics of shape ``(D,)``).
- ``"minmax"``: maps each image channel to ``[-1, 1]`` (images ``(N, C, H, W)`` get statistics of
  shape ``(C, 1, 1)``).
- ``"none"``: the identity (``shift = 0``, ``scale = 1``).

The statistics are plain tensors (``state_dict``), so they can be written to safetensors beside the
weights and read back without unpickling: the normaliser travels with the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from meanflow_sci.errors import InputError, check_choice, check_finite, describe

__all__ = ["NORMALIZER_MODES", "Normalizer", "default_mode"]

NORMALIZER_MODES = ("standard", "minmax", "none")

# A feature whose spread is below this is treated as constant: dividing by ~0 would turn float
# round-off into huge normalised values.
_MIN_SCALE = 1e-8


def default_mode(sample_shape: tuple[int, ...]) -> str:
    """The mode ``Normalizer.fit(..., mode="auto")`` picks: ``"minmax"`` for images ``(C, H, W)``,
    ``"standard"`` otherwise."""
    return "minmax" if len(sample_shape) == 3 else "standard"


def _feature_shape(sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the statistics, broadcastable against one sample.

    Vectors ``(D,)`` -> ``(D,)``; sequences ``(T, D)`` -> ``(D,)`` (pooled over time); images
    ``(C, H, W)`` -> ``(C, 1, 1)`` (pooled over pixels); anything else -> one scalar statistic.
    """
    if len(sample_shape) in (1, 2):
        return (sample_shape[-1],)
    if len(sample_shape) == 3:
        return (sample_shape[0], 1, 1)
    return ()


class Normalizer:
    """An affine per-feature normaliser ``x_n = (x - shift) / scale``.

    Args:
        shift: Tensor broadcastable against one sample, e.g. ``(D,)`` or ``(C, 1, 1)``.
        scale: Tensor of the same shape, strictly positive.
        mode: How the statistics were fitted (kept for display and saving).

    Example:
        >>> norm = Normalizer.fit(torch.randn(100, 3) * 5 + 2)
        >>> z = norm.normalize(torch.randn(10, 3))
        >>> x = norm.denormalize(z)
    """

    def __init__(self, shift: torch.Tensor, scale: torch.Tensor, mode: str = "standard"):
        check_choice("mode", mode, NORMALIZER_MODES)
        shift = torch.as_tensor(shift, dtype=torch.float32)
        scale = torch.as_tensor(scale, dtype=torch.float32)
        if shift.shape != scale.shape:
            raise InputError(
                f"scale: expected the shape of shift {tuple(shift.shape)}, got {tuple(scale.shape)}"
            )
        check_finite("shift", shift)
        check_finite("scale", scale)
        if bool((scale <= 0).any()):
            raise InputError(f"scale: expected strictly positive values, got {describe(scale)}")
        self.shift = shift
        self.scale = scale
        self.mode = mode

    @classmethod
    def fit(cls, x: torch.Tensor, mode: str = "auto") -> Normalizer:
        """Fit the statistics on data ``x`` of shape ``(N, *sample_shape)``.

        Args:
            x: Float tensor, ``(N, D)``, ``(N, T, D)`` or ``(N, C, H, W)``.
            mode: ``"auto"`` (minmax for images, standard otherwise), ``"standard"``,
                ``"minmax"`` or ``"none"``.
        """
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] < 1:
            raise InputError(
                f"x: expected a tensor of shape (N, ...) with N >= 1, got {describe(x)}"
            )
        return cls.fit_batches([x], tuple(x.shape[1:]), mode)

    @classmethod
    def fit_batches(
        cls, batches: Iterable[torch.Tensor], sample_shape: tuple[int, ...], mode: str = "auto"
    ) -> Normalizer:
        """Fit the statistics in one pass over ``batches`` ``(B, *sample_shape)`` (data that
        does not fit in memory); the result equals :meth:`fit` on their concatenation up to
        float64 round-off."""
        check_choice("mode", mode, ("auto", *NORMALIZER_MODES))
        if mode == "auto":
            mode = default_mode(sample_shape)
        stat_shape = _feature_shape(sample_shape)
        if mode == "none":
            return cls(torch.zeros(stat_shape), torch.ones(stat_shape), mode)
        count, ref, total, squares, lo, hi = 0, None, 0.0, 0.0, None, None
        for x in batches:
            # Statistics in float64: float32 sums over large N lose digits.
            x64 = x.detach().to("cpu", torch.float64)
            if len(sample_shape) == 3:  # images: channel axis first
                flat = x64.transpose(0, 1).reshape(sample_shape[0], -1).T
            elif stat_shape:
                flat = x64.reshape(-1, sample_shape[-1])
            else:
                flat = x64.reshape(-1, 1)
            if ref is None:  # sums about the first batch's mean keep the variance accurate
                ref = flat.mean(0)
            d = flat - ref
            count, total, squares = count + len(flat), total + d.sum(0), squares + (d * d).sum(0)
            b_lo, b_hi = flat.min(0).values, flat.max(0).values
            lo = b_lo if lo is None else torch.minimum(lo, b_lo)
            hi = b_hi if hi is None else torch.maximum(hi, b_hi)
        if ref is None:
            raise InputError("x: expected at least one sample to fit a normaliser, got none")
        if mode == "standard":
            mean = total / count
            shift = ref + mean
            scale = (squares / count - mean * mean).clamp_min(0).sqrt()
        else:  # minmax: map [min, max] to [-1, 1]
            shift = (hi + lo) / 2
            scale = (hi - lo) / 2
        scale = torch.where(scale < _MIN_SCALE, torch.ones_like(scale), scale)
        return cls(shift.reshape(stat_shape), scale.reshape(stat_shape), mode)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map data ``(B, *sample_shape)`` to normalised space."""
        return (x - self.shift.to(x.device, x.dtype)) / self.scale.to(x.device, x.dtype)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Map normalised values ``(B, *sample_shape)`` back to data space."""
        return z * self.scale.to(z.device, z.dtype) + self.shift.to(z.device, z.dtype)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The statistics as plain tensors (``shift``, ``scale``), safe for safetensors."""
        return {"shift": self.shift.clone(), "scale": self.scale.clone()}

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], mode: str = "standard") -> Normalizer:
        """Rebuild a normaliser from ``state_dict()`` output."""
        missing = [k for k in ("shift", "scale") if k not in state]
        if missing:
            raise InputError(
                f"state: expected keys ['scale', 'shift'], missing {missing} in {sorted(state)}"
            )
        return cls(state["shift"], state["scale"], mode)

    def __repr__(self) -> str:
        return f"Normalizer(mode={self.mode!r}, shape={tuple(self.shift.shape)})"
