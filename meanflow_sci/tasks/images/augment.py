"""Data augmentation for image training.

``fit`` trains on an in-memory tensor, so augmentation is applied to the data before training.
Horizontal flips (EDM's default for CIFAR-10) are done by appending the mirrored copy of every
image: drawing uniform minibatches from the doubled set is the same as flipping each drawn image
with probability 1/2. Flips are wrong for digits (a mirrored 2 is not a 2), so they are off unless
asked for.
"""

from __future__ import annotations

import torch

from meanflow_sci.errors import InputError
from meanflow_sci.tasks.images.datasets import check_images

__all__ = ["hflip", "augment_hflip"]


def hflip(images: torch.Tensor) -> torch.Tensor:
    """Mirror images left-right.

    Args:
        images: ``(N, C, H, W)``.

    Returns:
        ``(N, C, H, W)`` with the last axis reversed.
    """
    images = check_images("images", images)
    return images.flip(-1)


def augment_hflip(
    images: torch.Tensor, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Append the mirrored copy of every image (and repeat its label).

    Args:
        images: ``(N, C, H, W)``.
        labels: ``(N,)`` or None.

    Returns:
        images ``(2N, C, H, W)`` (originals first) and labels ``(2N,)`` or None.
    """
    images = check_images("images", images)
    out = torch.cat([images, images.flip(-1)])
    if labels is None:
        return out, None
    if labels.shape[:1] != images.shape[:1]:
        raise InputError(
            f"labels: expected {images.shape[0]} rows to match images, "
            f"got shape {tuple(labels.shape)}"
        )
    return out, torch.cat([labels, labels])
