"""Image training through fit: a tiny UNet2D trains, samples in range, and rejects bad input."""

import pytest
import torch

from meanflow_sci.api import unet2d_layout
from meanflow_sci.errors import InputError
from meanflow_sci.tasks.images import fit_images, load_digits, sample_images

TINY_UNET = {"base": 8, "channel_mults": (1, 2)}


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    idx = torch.arange(0, 1797, 9)  # 200 images, every class
    return data.images[idx], data.labels[idx]


def test_unet_defaults_follow_resolution():
    assert unet2d_layout(8)["channel_mults"] == (1, 2)
    assert unet2d_layout(16)["channel_mults"] == (1, 2, 2)
    assert unet2d_layout(32)["attn_resolutions"] == (16,)


def test_tiny_unet_trains_with_guidance_and_samples_in_range(digits):
    torch.set_num_threads(1)
    images, labels = digits
    fitted = fit_images(
        images,
        labels,
        num_classes=10,
        objective={"guidance": {"omega": 1.5, "kappa": 0.0, "drop_prob": 0.1}},
        backbone=TINY_UNET,
        train={"max_steps": 4, "batch_size": 16, "log_every": 1},
        device="cpu",
        progress=False,
    )
    assert fitted.backbone["name"] == "unet2d" and fitted.recipe.name == "images"
    assert fitted.steps_trained == 4 and len(fitted.history) >= 1
    assert all(torch.isfinite(torch.tensor(h["mse"])) for h in fitted.history)
    for steps in (1, 2):
        x = sample_images(fitted, labels=torch.arange(10), steps=steps, seed=0)
        assert x.shape == (10, 1, 8, 8)
        assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    # Same seed, same images; the null class (-1) samples unconditionally.
    a = sample_images(fitted, labels=[3, -1], seed=1)
    b = sample_images(fitted, labels=[3, -1], seed=1)
    assert torch.equal(a, b)


def test_flow_matching_and_flip_augmentation(digits):
    images, _ = digits
    fitted = fit_images(
        images[:32],
        objective="fm",
        hflip=True,
        backbone=TINY_UNET,
        train={"max_steps": 2, "batch_size": 8},
        device="cpu",
        progress=False,
    )
    assert fitted.sampling_mode == "flow"
    x = sample_images(fitted, 4, steps=3, seed=0, value_range=(-1, 1))
    assert x.shape == (4, 1, 8, 8) and x.abs().max() <= 1


def test_bad_input_is_rejected_before_training(digits):
    images, labels = digits
    common = dict(train={"max_steps": 1, "batch_size": 8}, device="cpu", progress=False)
    bad = labels.clone()
    bad[5] = 10
    with pytest.raises(InputError, match=r"labels: expected class labels in \[0, 9\], got 10"):
        fit_images(images, bad, num_classes=10, **common)
    with pytest.raises(InputError, match="channel"):
        fit_images(images.repeat(1, 2, 1, 1), **common)
    with pytest.raises(InputError, match="shape"):
        fit_images(images, labels[:-1], num_classes=10, **common)
    with pytest.raises(InputError, match="guidance"):
        fit_images(images, objective={"guidance": {"omega": 2.0}}, **common)
