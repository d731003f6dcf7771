"""Image grids written as PNG files."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from meanflow_sci.errors import InputError, check_positive_int
from meanflow_sci.tasks.images.datasets import check_images, to_unit_range

__all__ = ["make_grid", "save_image_grid", "save_panels"]


def make_grid(
    images: torch.Tensor,
    *,
    nrow: int | None = None,
    value_range: Sequence[float] = (-1.0, 1.0),
    padding: int = 1,
    pad_value: float = 0.5,
    scale: int = 1,
) -> np.ndarray:
    """Tile images into one uint8 picture.

    Args:
        images: ``(N, C, H, W)`` with C = 1 or 3, values in ``value_range`` (clamped).
        nrow: images per row; default ``ceil(sqrt(N))``.
        value_range: pixel range of ``images`` (black, white).
        padding: pixels of ``pad_value`` (in [0, 1]) between tiles.
        pad_value: grey level of the padding.
        scale: integer nearest-neighbour magnification (8x8 digits are tiny on screen).

    Returns:
        uint8 array ``(H', W')`` for greyscale or ``(H', W', 3)`` for RGB.
    """
    images = check_images("images", images)
    images = to_unit_range(images.detach().cpu(), value_range)
    n, c, h, w = images.shape
    nrow = check_positive_int("nrow", nrow if nrow is not None else math.ceil(math.sqrt(n)))
    scale = check_positive_int("scale", scale)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise InputError(f"padding: expected an integer >= 0, got {padding!r}")
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        h, w = h * scale, w * scale
    ncol_rows = math.ceil(n / nrow)
    grid = torch.full(
        (c, ncol_rows * (h + padding) + padding, nrow * (w + padding) + padding), float(pad_value)
    )
    for i in range(n):
        r, k = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, y : y + h, x : x + w] = images[i]
    arr = (grid.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
    return arr[0] if c == 1 else arr.transpose(1, 2, 0)


def _write_png(arr: np.ndarray, path: str | os.PathLike) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary name first so a crash never leaves a half-written picture behind.
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def save_image_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    *,
    nrow: int | None = None,
    value_range: Sequence[float] = (-1.0, 1.0),
    padding: int = 1,
    scale: int = 1,
) -> Path:
    """Write an image grid as a PNG file (see :func:`make_grid`); returns the path."""
    return _write_png(
        make_grid(images, nrow=nrow, value_range=value_range, padding=padding, scale=scale), path
    )


def save_panels(
    panels: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    nrow: int | None = None,
    value_range: Sequence[float] = (-1.0, 1.0),
    scale: int = 1,
    gap: int = 8,
) -> Path:
    """Write several grids side by side, each under its title (e.g. real vs 1-step vs 2-step).

    Args:
        panels: title -> images ``(N, C, H, W)``; all with the same channel count.
        path: output PNG path.
        nrow, value_range, scale: as in :func:`make_grid`.
        gap: pixels between panels.

    Returns:
        The path written.
    """
    from PIL import Image, ImageDraw

    if not panels:
        raise InputError("panels: expected at least one title -> images entry, got none")
    grids = {
        title: make_grid(imgs, nrow=nrow, value_range=value_range, scale=scale)
        for title, imgs in panels.items()
    }
    rgb = [g if g.ndim == 3 else np.repeat(g[:, :, None], 3, axis=2) for g in grids.values()]
    title_h = 14
    height = max(g.shape[0] for g in rgb) + title_h
    width = sum(g.shape[1] for g in rgb) + gap * (len(rgb) - 1)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for title, g in zip(grids, rgb, strict=True):
        draw.text((x + 2, 1), title, fill=(0, 0, 0))
        canvas.paste(Image.fromarray(g), (x, title_h))
        x += g.shape[1] + gap
    return _write_png(np.asarray(canvas), path)
