"""Training and sampling image generators through :func:`meanflow_sci.fit`.

There is no second training loop here: :func:`fit_images` checks images and labels, applies the
optional flip augmentation, and calls ``fit`` with the ``"images"`` recipe.
Class-conditional models may have classifier-free guidance trained into the target (MeanFlow
§4), so guided samples still take one network evaluation.

Example:
    >>> from meanflow_sci.tasks.images import load_digits, fit_images, sample_images
    >>> data = load_digits()
    >>> fm = fit_images(data, objective={"guidance": {"omega": 2.0}})  # doctest: +SKIP
    >>> x = sample_images(fm, labels=torch.arange(10), steps=1)        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from meanflow_sci.errors import InputError, check_positive_int
from meanflow_sci.tasks.images.augment import augment_hflip
from meanflow_sci.tasks.images.datasets import ImageData, check_images, check_labels

__all__ = ["fit_images", "sample_images"]


def fit_images(
    data: ImageData | torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    num_classes: int | None = None,
    class_conditional: bool | None = None,
    hflip: bool = False,
    recipe: Any = "images",
    backbone: Any = None,
    objective: Any = None,
    train: Any = None,
    **fit_kwargs: Any,
) -> Any:
    """Train an image generator with ``meanflow_sci.fit`` and the ``"images"`` recipe.

    The recipe's UNet2D takes one halving per factor of 2 above 4x4
    (:func:`meanflow_sci.api.unet2d_layout`).

    Args:
        data: an :class:`ImageData` or images ``(N, C, H, W)`` (C = 1 or 3).
        labels: class labels ``(N,)``; default ``data.labels`` for an ImageData.
        num_classes: number of classes; default ``data.num_classes`` or ``labels.max() + 1``.
        class_conditional: condition on the labels; default True when labels exist.
        hflip: append mirrored copies of the images (EDM-style flip augmentation; wrong for
            digits, right for CIFAR-10).
        recipe, backbone, objective, train: passed to ``fit``. Classifier-free guidance trained
            into the target is ``objective={"guidance": {"omega": 2.0}}`` (needs class labels).
        **fit_kwargs: ``fit``'s other arguments (``device``, ``seed``, ``progress``,
            ``callbacks``, ``checkpoint_dir``, ...).

    Returns:
        The :class:`~meanflow_sci.FittedModel`; it samples tensors ``(n, C, H, W)``.

    Raises:
        InputError: bad images (rank, channel count, non-finite), labels out of
            ``[0, num_classes)``, or guidance without class conditioning.
    """
    import meanflow_sci

    if isinstance(data, ImageData):
        images = data.images
        if labels is None:
            labels = data.labels
        if num_classes is None and data.num_classes:
            num_classes = data.num_classes
    else:
        images = data
    images = check_images("data", images)
    if class_conditional is None:
        class_conditional = labels is not None
    cond = None
    if class_conditional:
        if labels is None:
            raise InputError("labels: class_conditional=True needs class labels (N,), got None")
        if num_classes is None:
            probe = torch.as_tensor(labels)
            if probe.is_floating_point() or probe.numel() == 0:
                raise InputError(f"labels: expected integer class labels, got {probe.dtype}")
            num_classes = int(probe.max()) + 1
        check_positive_int("num_classes", num_classes)
        cond = check_labels("labels", labels, images.shape[0], num_classes)
        if backbone is None or isinstance(backbone, Mapping):
            backbone = {**(backbone or {}), "num_classes": num_classes}
    if hflip:
        images, cond = augment_hflip(images, cond)
    return meanflow_sci.fit(
        images,
        cond,
        recipe=recipe,
        backbone=backbone,
        objective=objective,
        train=train,
        **fit_kwargs,
    )


def sample_images(
    fitted: Any,
    n: int | None = None,
    *,
    labels: torch.Tensor | Sequence[int] | None = None,
    steps: int = 1,
    seed: int | None = None,
    value_range: Sequence[float] = (-1.0, 1.0),
    batch_size: int | None = 500,
) -> torch.Tensor:
    """Sample images from a fitted model, clamped to the data's ``value_range``.

    Args:
        fitted: a model from :func:`fit_images` (or ``fit`` on images).
        n: number of images (unconditional models; defaults to ``len(labels)`` otherwise).
        labels: requested classes ``(n,)`` for class-conditional models; ``-1`` asks for the
            unconditional (null-class) sample.
        steps: network evaluations per image (1 = one step).
        seed: makes the samples reproducible.
        value_range: the pixel range the model was trained in; samples are clamped to it.
        batch_size: images per network call.

    Returns:
        float32 tensor ``(n, C, H, W)`` inside ``value_range``.
    """
    low, high = (float(v) for v in value_range)
    cond = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
    x = fitted.sample(n, cond=cond, steps=steps, seed=seed, batch_size=batch_size)
    return torch.as_tensor(x).float().clamp(low, high)
