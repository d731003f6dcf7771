"""A folder of image files as a map-style ``torch.utils.data.Dataset``, read one file at a time.

The layout is torchvision's ``ImageFolder``: ``root/<class>/<image>`` gives ``(image, label)``
items, with labels numbered by the sorted class folder names; images directly in ``root`` (no
class folders) give unlabelled items. Pillow reads the files (a dependency of matplotlib already);
torchvision's own ``ImageFolder`` passes to ``fit`` just as well, but ties an install to one
exact torch build.

Example:
    >>> ds = ImageFolder("faces/", size=64)        # (3, 64, 64) float32 in [0, 1], label
    >>> fm = meanflow_sci.fit(ds, train={"max_steps": 10_000})
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from meanflow_sci.errors import InputError

__all__ = ["ImageFolder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class ImageFolder(Dataset):
    """Images under ``root`` as float32 ``(C, H, W)`` tensors in ``[0, 1]``.

    Args:
        root: the folder; class subfolders make labelled items ``(image, label)``.
        size: resize every image to ``size x size`` (None: all files must share one size).
        mode: Pillow mode, ``"RGB"`` (3 channels) or ``"L"`` (1 channel).

    Raises:
        InputError: ``root`` is not a folder or holds no images, or an unknown ``mode``.
    """

    def __init__(self, root: str | os.PathLike, *, size: int | None = None, mode: str = "RGB"):
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"root: expected a folder of images, got {str(root)!r}")
        if mode not in ("RGB", "L"):
            raise InputError(f"mode: expected 'RGB' or 'L', got {mode!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise InputError(f"size: expected a positive int or None, got {size!r}")
        self.root, self.size, self.mode = root, size, mode
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and _images(p))
        if classes:
            self.classes = classes
            self.files = [(f, k) for k, c in enumerate(classes) for f in _images(root / c)]
        else:
            self.classes = []
            self.files = [(f, None) for f in _images(root)]
        if not self.files:
            raise InputError(
                f"root: expected image files ({', '.join(IMAGE_SUFFIXES)}) in {str(root)!r} or "
                f"in its class folders, found none"
            )
        self._shape: tuple[int, ...] | None = None
        self._shape = tuple(self._load(0).shape)

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        path = self.files[i][0]
        try:
            with Image.open(path) as img:
                img = img.convert(self.mode)
                if self.size is not None:
                    img = img.resize((self.size, self.size), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as exc:
            raise InputError(f"root: could not read the image {str(path)!r}: {exc}") from exc
        x = torch.from_numpy(arr.reshape(*arr.shape[:2], -1)).permute(2, 0, 1).contiguous()
        if self._shape is not None and tuple(x.shape) != self._shape:
            raise InputError(
                f"root: expected every image of shape {self._shape} like the first, got "
                f"{tuple(x.shape)} for {str(path)!r} (pass size= to resize)"
            )
        return x

    def __getitem__(self, i: int):
        x = self._load(i)
        label = self.files[i][1]
        return x if label is None else (x, label)
