"""Image datasets: shapes, ranges, the CIFAR-10 format, image folders, and bad input."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from meanflow_sci.errors import InputError
from meanflow_sci.tasks.images import (
    augment_hflip,
    load_cifar10,
    load_dataset,
    load_digits,
    load_image_folder,
)
from meanflow_sci.tasks.images.datasets import check_images, check_labels


@pytest.mark.parametrize("size", [8, 16, 32])
def test_digits_shapes_and_default_range(size):
    data = load_digits(size=size)
    assert data.images.shape == (1797, 1, size, size)
    assert data.images.dtype == torch.float32
    assert data.images.min() >= -1.0 and data.images.max() <= 1.0
    # Background is black (-1) and the ink reaches white.
    assert data.images.min() == -1.0 and data.images.max() > 0.99
    assert data.labels.shape == (1797,) and set(data.labels.tolist()) == set(range(10))
    assert data.num_classes == 10 and data.value_range == (-1.0, 1.0)


def test_digits_unit_range_and_splits():
    full = load_digits(value_range=(0, 1))
    assert full.images.min() == 0.0 and full.images.max() == 1.0
    train, test = load_digits(split="train"), load_digits(split="test")
    assert len(train) + len(test) == 1797 and len(test) == 359
    # The split is fixed: loading again gives the same images.
    assert torch.equal(load_digits(split="test").images, test.images)
    with pytest.raises(InputError, match="size"):
        load_digits(size=12)
    with pytest.raises(InputError, match="split"):
        load_digits(split="val")


def _write_cifar(folder, n=6, seed=0):
    """Write a tiny CIFAR-10 folder in the standard python-batch format."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
        batches[name] = batch
    meta = {b"label_names": [s.encode() for s in "a b c d e f g h i j".split()]}
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return batches


def test_cifar10_reads_standard_format(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    # The parent folder works as well as the batch folder itself.
    train = load_cifar10(tmp_path, value_range=(0, 1))
    assert train.images.shape == (30, 3, 32, 32)
    assert train.class_names == tuple("abcdefghij")
    raw = batches["data_batch_1"][b"data"][0]
    # Row layout: 1024 red values, then green, then blue, each row-major.
    assert train.images[0, 0, 0, 1] == pytest.approx(raw[1] / 255.0)
    assert train.images[0, 1, 0, 0] == pytest.approx(raw[1024] / 255.0)
    assert train.images[0, 2, 31, 31] == pytest.approx(raw[3071] / 255.0)
    assert train.labels.tolist()[:6] == batches["data_batch_1"][b"labels"]
    test = load_dataset("cifar10", tmp_path / "cifar-10-batches-py", split="test")
    assert test.images.shape == (6, 3, 32, 32)
    assert test.images.min() >= -1 and test.images.max() <= 1
    assert len(load_cifar10(tmp_path, split="all", limit=8)) == 8


def test_cifar10_missing_folder_says_what_to_download(tmp_path):
    with pytest.raises(InputError, match=r"cifar-10-python\.tar\.gz"):
        load_cifar10(tmp_path / "nowhere")


def test_cifar10_refuses_foreign_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": object()}, fh)
    with pytest.raises(InputError, match="not a CIFAR-10 python batch"):
        load_cifar10(folder, split="test")


def _save(path, size, mode="L", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255)).save(path)


def test_image_folder_labels_from_subfolders(tmp_path):
    for cls in ("cat", "ant"):
        for i in range(2):
            _save(tmp_path / cls / f"{i}.png", (5, 4), value=255 if cls == "cat" else 0)
    data = load_image_folder(tmp_path, value_range=(0, 1))
    assert data.images.shape == (4, 1, 4, 5)
    assert data.class_names == ("ant", "cat")
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert data.images[data.labels == 1].min() == 1.0 and data.images[data.labels == 0].max() == 0
    rgb = load_image_folder(tmp_path, channels=3, size=8)
    assert rgb.images.shape == (4, 3, 8, 8)


def test_image_folder_flat_rgb_without_labels(tmp_path):
    _save(tmp_path / "a.jpg", (6, 6), mode="RGB")
    _save(tmp_path / "b.png", (6, 6), mode="RGB")
    data = load_image_folder(tmp_path)
    assert data.images.shape == (2, 3, 6, 6) and data.labels is None and data.num_classes == 0


def test_image_folder_bad_input(tmp_path):
    with pytest.raises(InputError, match="existing folder"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .*images found"):
        load_image_folder(tmp_path / "empty")
    _save(tmp_path / "mixed" / "a.png", (8, 8))
    _save(tmp_path / "mixed" / "b.png", (9, 8))
    with pytest.raises(InputError, match="mixed sizes"):
        load_image_folder(tmp_path / "mixed")
    assert load_image_folder(tmp_path / "mixed", size=8).images.shape == (2, 1, 8, 8)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read"):
        load_image_folder(tmp_path / "broken")


def test_checks_name_the_problem():
    with pytest.raises(InputError, match=r"channel.*got Tensor of shape \(2, 2, 8, 8\)"):
        check_images("images", torch.zeros(2, 2, 8, 8))
    with pytest.raises(InputError, match="expected 1 channel"):
        check_images("images", torch.zeros(2, 3, 8, 8), channels=1)
    with pytest.raises(InputError, match="4 dimensions"):
        check_images("images", torch.zeros(2, 8, 8))
    with pytest.raises(InputError, match=r"class labels in \[0, 9\], got 10"):
        check_labels("labels", torch.tensor([1, 10]), 2, 10)
    with pytest.raises(InputError, match="got -1"):
        check_labels("labels", torch.tensor([-1, 0]), 2, 10)
    with pytest.raises(InputError, match="integer"):
        check_labels("labels", torch.tensor([0.0, 1.0]), 2, 10)


def test_hflip_augmentation_doubles_with_mirrors():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    y = torch.tensor([3, 7])
    xa, ya = augment_hflip(x, y)
    assert xa.shape == (4, 1, 2, 3) and ya.tolist() == [3, 7, 3, 7]
    assert torch.equal(xa[:2], x) and torch.equal(xa[2, 0, 0], x[0, 0, 0].flip(0))
