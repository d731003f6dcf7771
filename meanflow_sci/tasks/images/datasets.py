"""Image datasets: scikit-learn's 8x8 digits, CIFAR-10 from disk, and any folder of PNG/JPEG files.

Every loader returns an :class:`ImageData` with images as a float32 tensor ``(N, C, H, W)`` whose
values lie in ``value_range`` (``(-1, 1)`` by default, the range generative models train on;
``(0, 1)`` on request), integer class labels ``(N,)`` when the source has classes, and the class
names. Nothing is downloaded: digits ship with scikit-learn, CIFAR-10 and image folders are read
from a path the caller gives.

Example:
    >>> data = load_digits(size=16)
    >>> data.images.shape, data.value_range
    (torch.Size([1797, 1, 16, 16]), (-1.0, 1.0))
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from meanflow_sci.errors import InputError, check_choice, describe

__all__ = [
    "ImageData",
    "DATASETS",
    "load_dataset",
    "load_digits",
    "load_cifar10",
    "load_image_folder",
    "check_images",
    "check_labels",
    "to_unit_range",
    "from_unit_range",
    "IMAGE_EXTENSIONS",
    "CIFAR10_URL",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = ("test_batch",)
_CIFAR10_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class ImageData:
    """A set of images with optional class labels.

    Attributes:
        images: float32 tensor ``(N, C, H, W)`` with values in ``value_range``.
        labels: long tensor ``(N,)`` of class indices in ``[0, num_classes)``, or None.
        class_names: one name per class (empty when there are no labels).
        value_range: ``(low, high)`` that pixel values were mapped to (black, white).
        name: where the data came from ("digits", "cifar10", a folder path).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: tuple[str, ...]
    value_range: tuple[float, float]
    name: str

    @property
    def num_classes(self) -> int:
        """Number of classes (0 without labels)."""
        return len(self.class_names) if self.labels is not None else 0

    @property
    def shape(self) -> tuple[int, int, int]:
        """One image's shape ``(C, H, W)``."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return int(self.images.shape[0])


# --------------------------------------------------------------------------------------------
# value ranges and checks
# --------------------------------------------------------------------------------------------


def _check_value_range(value_range: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise InputError(
            f"value_range: expected a pair (low, high), got {describe(value_range)}"
        ) from None
    if not low < high:
        raise InputError(f"value_range: expected low < high, got {value_range!r}")
    return low, high


def to_unit_range(images: torch.Tensor, value_range: Sequence[float] = (-1.0, 1.0)) -> torch.Tensor:
    """Map images from ``value_range`` to ``[0, 1]`` (clamped: model samples may overshoot)."""
    low, high = _check_value_range(value_range)
    return ((images - low) / (high - low)).clamp(0.0, 1.0)


def from_unit_range(
    images: torch.Tensor, value_range: Sequence[float] = (-1.0, 1.0)
) -> torch.Tensor:
    """Map images from ``[0, 1]`` to ``value_range``."""
    low, high = _check_value_range(value_range)
    return images * (high - low) + low


def check_images(
    name: str,
    images: object,
    *,
    channels: int | Sequence[int] | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Check an image batch and return it as a float32 tensor ``(N, C, H, W)``.

    Args:
        name: the argument's name, for the error message.
        images: a torch tensor or numpy array ``(N, C, H, W)``.
        channels: the allowed channel count(s); None allows 1 or 3.
        size: the required ``(H, W)``, or None for any.

    Raises:
        InputError: wrong type, rank, channel count, size, or non-finite values.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name}: expected a tensor or array (N, C, H, W), got {describe(images)}")
    if images.ndim != 4:
        raise InputError(f"{name}: expected 4 dimensions (N, C, H, W), got {describe(images)}")
    allowed = (1, 3) if channels is None else (channels,) if isinstance(channels, int) else channels
    if images.shape[1] not in tuple(allowed):
        raise InputError(
            f"{name}: expected {' or '.join(map(str, allowed))} channel(s) in dimension 1 "
            f"of (N, C, H, W), got {describe(images)}"
        )
    if size is not None and tuple(images.shape[2:]) != tuple(size):
        raise InputError(f"{name}: expected images of size {tuple(size)}, got {describe(images)}")
    if images.shape[0] == 0:
        raise InputError(f"{name}: expected at least one image, got {describe(images)}")
    images = images.float()
    if not torch.isfinite(images).all():
        raise InputError(f"{name}: expected finite values, got NaN/Inf in {describe(images)}")
    return images


def check_labels(name: str, labels: object, n: int, num_classes: int) -> torch.Tensor:
    """Check class labels and return them as a long tensor ``(n,)``.

    Raises:
        InputError: not integers, wrong length, or a label outside ``[0, num_classes)``.
    """
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels)
    elif isinstance(labels, (list, tuple)):
        labels = torch.as_tensor(labels)
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
        raise InputError(f"{name}: expected integer class labels (N,), got {describe(labels)}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise InputError(
            f"{name}: expected shape ({n},) to match the images, got {describe(labels)}"
        )
    if num_classes < 1:
        raise InputError(f"num_classes: expected an integer >= 1, got {num_classes!r}")
    labels = labels.long()
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        first = int(labels[bad][0])
        raise InputError(
            f"{name}: expected class labels in [0, {num_classes - 1}], got {first} "
            f"({int(bad.sum())} of {n} out of range)"
        )
    return labels


def _resize(images: torch.Tensor, size: int | tuple[int, int], mode: str) -> torch.Tensor:
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == hw:
        return images
    if mode == "nearest":
        return F.interpolate(images, size=hw, mode="nearest")
    if mode == "area":
        return F.interpolate(images, size=hw, mode="area")
    # Bilinear is a convex combination of pixels, so values stay inside [0, 1].
    return F.interpolate(images, size=hw, mode="bilinear", align_corners=False, antialias=True)


def _split_indices(n: int, split: str, test_fraction: float, seed: int) -> np.ndarray:
    check_choice("split", split, _SPLITS)
    if split == "all":
        return np.arange(n)
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction: expected a value in (0, 1), got {test_fraction!r}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(perm[:n_test] if split == "test" else perm[n_test:])


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def load_digits(
    *,
    size: int = 8,
    value_range: Sequence[float] = (-1.0, 1.0),
    split: str = "all",
    test_fraction: float = 0.2,
    seed: int = 0,
    resize_mode: str = "bilinear",
) -> ImageData:
    """The 1797 handwritten 8x8 digits that scikit-learn ships (no download).

    Pixel values 0..16 are scaled to ``[0, 1]`` (0 = black background, 1 = white ink), then
    mapped to ``value_range``. Upsampling to 16x16 or 32x32 uses antialiased bilinear
    interpolation (``resize_mode="nearest"`` keeps the blocky look).

    Args:
        size: output side length, one of 8, 16, 32.
        value_range: ``(low, high)`` pixel range; ``(-1, 1)`` (default) or ``(0, 1)`` typical.
        split: "all", or a fixed "train"/"test" split (``test_fraction`` held out, shuffled with
            ``seed``; the digit classifier used by the metrics uses the default split).
        test_fraction: fraction held out for "test".
        seed: seed of the split permutation.
        resize_mode: "bilinear" or "nearest".

    Returns:
        ImageData with images ``(N, 1, size, size)``, labels ``(N,)`` in 0..9, class names "0".."9".
    """
    from sklearn.datasets import load_digits as _sk_digits

    if size not in (8, 16, 32):
        raise InputError(f"size: expected one of [8, 16, 32], got {size!r}")
    check_choice("resize_mode", resize_mode, ("bilinear", "nearest"))
    low, high = _check_value_range(value_range)
    raw = _sk_digits()
    idx = _split_indices(len(raw.target), split, test_fraction, seed)
    images = torch.from_numpy(raw.images[idx].astype(np.float32) / 16.0).unsqueeze(1)
    images = _resize(images, size, resize_mode).clamp(0.0, 1.0)
    return ImageData(
        images=from_unit_range(images, (low, high)).contiguous(),
        labels=torch.from_numpy(raw.target[idx].astype(np.int64)),
        class_names=tuple(str(i) for i in range(10)),
        value_range=(low, high),
        name="digits",
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10 (python batches)
# --------------------------------------------------------------------------------------------


class _CifarUnpickler(pickle.Unpickler):
    """Reads the CIFAR-10 python batches and nothing else.

    The official files are pickled dicts of bytes, lists and numpy arrays; pickle can run
    arbitrary code, so only the few globals that format needs are allowed.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
        ("builtins", "bytearray"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"{module}.{name} is not part of the CIFAR-10 python-batch format"
            )
        # numpy 2 moved numpy.core to numpy._core; files written by numpy 1 name the old path.
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as exc:
        raise InputError(
            f"data_dir: {path} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(obj, dict):
        raise InputError(f"data_dir: {path} is not a CIFAR-10 python batch (not a dict)")
    # Keys are bytes in the official files (pickled by Python 2); accept str too.
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _find_cifar_dir(data_dir: str | os.PathLike) -> Path:
    root = Path(data_dir).expanduser()
    for cand in (root, root / _CIFAR10_FOLDER):
        if (cand / _CIFAR10_TEST[0]).is_file() or (cand / _CIFAR10_TRAIN[0]).is_file():
            return cand
    raise InputError(
        f"data_dir: no CIFAR-10 python batches found in {str(root)!r} (looked for "
        f"{_CIFAR10_TRAIN[0]} / {_CIFAR10_TEST[0]} there and in {_CIFAR10_FOLDER}/). Download "
        f"the 'CIFAR-10 python version' ({CIFAR10_URL}, 163 MB), extract it with "
        f"'tar xzf cifar-10-python.tar.gz' and pass the folder that contains {_CIFAR10_FOLDER}/ "
        f"(or that folder itself) as data_dir."
    )


def load_cifar10(
    data_dir: str | os.PathLike,
    *,
    split: str = "train",
    value_range: Sequence[float] = (-1.0, 1.0),
    limit: int | None = None,
) -> ImageData:
    """CIFAR-10 from a local folder in the standard python-batch format.

    Args:
        data_dir: the ``cifar-10-batches-py`` folder or its parent (nothing is downloaded).
        split: "train" (data_batch_1..5, 50000 images), "test" (test_batch, 10000), or "all".
        value_range: ``(low, high)`` pixel range after scaling bytes by 1/255.
        limit: keep only the first ``limit`` images (quick runs).

    Returns:
        ImageData with images ``(N, 3, 32, 32)`` and labels ``(N,)`` in 0..9.

    Raises:
        InputError: the folder or a batch file is missing, or a file is not in that format.
    """
    check_choice("split", split, _SPLITS)
    low, high = _check_value_range(value_range)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit: expected an integer >= 1 or None, got {limit!r}")
    folder = _find_cifar_dir(data_dir)
    names = {"train": _CIFAR10_TRAIN, "test": _CIFAR10_TEST, "all": _CIFAR10_TRAIN + _CIFAR10_TEST}
    arrays, labels = [], []
    for fname in names[split]:
        path = folder / fname
        if not path.is_file():
            raise InputError(
                f"data_dir: missing CIFAR-10 batch {fname} in {str(folder)!r}; re-extract "
                f"{CIFAR10_URL} there"
            )
        batch = _read_cifar_batch(path)
        data = np.asarray(batch.get("data"))
        lab = np.asarray(batch.get("labels"))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise InputError(
                f"data_dir: {path} holds 'data' of {describe(data)}, expected uint8 (N, 3072)"
            )
        if lab.shape != (data.shape[0],):
            raise InputError(
                f"data_dir: {path} holds {lab.shape} labels for {data.shape[0]} images"
            )
        arrays.append(data)
        labels.append(lab.astype(np.int64))
        if limit is not None and sum(len(a) for a in arrays) >= limit:
            break
    data = np.concatenate(arrays)
    lab = np.concatenate(labels)
    if limit is not None:
        data, lab = data[:limit], lab[:limit]
    class_names = _CIFAR10_NAMES
    meta = folder / "batches.meta"
    if meta.is_file():
        names_raw = _read_cifar_batch(meta).get("label_names")
        if names_raw is not None and len(names_raw) == 10:
            class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names_raw)
    labels_t = check_labels("labels", torch.from_numpy(lab), len(lab), 10)
    # Rows are 1024 red, then green, then blue values in row-major order.
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    return ImageData(
        images=from_unit_range(images, (low, high)),
        labels=labels_t,
        class_names=class_names,
        value_range=(low, high),
        name="cifar10",
    )


# --------------------------------------------------------------------------------------------
# folder of images
# --------------------------------------------------------------------------------------------


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def load_image_folder(
    path: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    value_range: Sequence[float] = (-1.0, 1.0),
) -> ImageData:
    """Every PNG/JPEG image in a folder; class labels from subfolder names.

    Layouts: ``path/<class>/<image>`` (labels from the sorted subfolder names) or
    ``path/<image>`` (no labels). Images must share one size unless ``size`` is given, in which
    case each is resized (antialiased bilinear).

    Args:
        path: the folder.
        size: resize every image to ``size`` (int or ``(H, W)``); None requires equal sizes.
        channels: 1 (greyscale) or 3 (RGB); None picks 1 when every image is greyscale, else 3.
        value_range: ``(low, high)`` pixel range after scaling bytes by 1/255.

    Returns:
        ImageData with images ``(N, C, H, W)``.

    Raises:
        InputError: missing folder, no images, unreadable files, or mixed sizes without ``size``.
    """
    from PIL import Image, UnidentifiedImageError

    low, high = _check_value_range(value_range)
    if channels is not None and channels not in (1, 3):
        raise InputError(f"channels: expected 1, 3 or None, got {channels!r}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InputError(f"path: expected an existing folder of images, got {str(root)!r}")
    files: list[tuple[Path, int]] = []
    class_names: tuple[str, ...] = ()
    top = _list_images(root)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and _list_images(d))
    if top and subdirs:
        raise InputError(
            f"path: {str(root)!r} holds images both at the top and in subfolders; use one "
            "layout (path/<class>/<image> for labels, path/<image> without)"
        )
    if subdirs:
        class_names = tuple(d.name for d in subdirs)
        files = [(f, k) for k, d in enumerate(subdirs) for f in _list_images(d)]
    else:
        files = [(f, -1) for f in top]
    if not files:
        raise InputError(
            f"path: no {'/'.join(IMAGE_EXTENSIONS)} images found in {str(root)!r} or its subfolders"
        )
    pil_images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im.load()
                pil_images.append(im.copy())
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"path: cannot read image {str(f)!r} ({exc})") from None
    if channels is None:
        channels = 1 if all(im.mode in ("1", "L", "I", "I;16", "F") for im in pil_images) else 3
    mode = "L" if channels == 1 else "RGB"
    sizes = {im.size for im in pil_images}
    if size is None and len(sizes) > 1:
        examples = {}
        for (f, _), im in zip(files, pil_images, strict=True):
            examples.setdefault(im.size, f.name)
        shown = ", ".join(f"{w}x{h} ({name})" for (w, h), name in list(examples.items())[:3])
        raise InputError(
            f"path: images of mixed sizes in {str(root)!r}: {shown}; pass size= to resize them"
        )
    tensors = []
    for im in pil_images:
        arr = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
        t = torch.from_numpy(arr)
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
        if size is not None:
            t = _resize(t.unsqueeze(0), size, "bilinear")[0].clamp(0.0, 1.0)
        tensors.append(t)
    images = torch.stack(tensors)
    labels = torch.tensor([k for _, k in files], dtype=torch.long) if class_names else None
    return ImageData(
        images=from_unit_range(images, (low, high)),
        labels=labels,
        class_names=class_names,
        value_range=(low, high),
        name=str(root),
    )


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

DATASETS: dict[str, Callable[..., ImageData]] = {
    "digits": load_digits,
    "cifar10": load_cifar10,
    "folder": load_image_folder,
}


def load_dataset(name: str, *args: object, **kwargs: object) -> ImageData:
    """Load a dataset by registry name ("digits", "cifar10", "folder"); arguments pass through.

    Example:
        >>> load_dataset("cifar10", "~/data", split="test")  # doctest: +SKIP
    """
    check_choice("name", name, DATASETS)
    return DATASETS[name](*args, **kwargs)
