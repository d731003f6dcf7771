"""Training and sampling image generators through :func:`meanflow_sci.fit`.

There is no second training loop here: :func:`fit_images` checks images and labels, applies the
optional flip augmentation, picks a UNet2D sized for the resolution, and calls ``fit``.
Class-conditional models may have classifier-free guidance trained into the target (MeanFlow
§4), so guided samples still take one network evaluation.

Example:
    >>> from meanflow_sci.tasks.images import load_digits, fit_images, sample_images
    >>> data = load_digits()
    >>> fm = fit_images(data, guidance={"omega": 2.0}, max_steps=2000)  # doctest: +SKIP
    >>> x = sample_images(fm, labels=torch.arange(10), steps=1)        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from meanflow_sci.errors import InputError, check_positive_int
from meanflow_sci.tasks.images.augment import augment_hflip
from meanflow_sci.tasks.images.datasets import ImageData, check_images, check_labels

__all__ = ["default_unet_kwargs", "fit_images", "sample_images"]


def default_unet_kwargs(resolution: int) -> dict:
    """UNet2D settings that fit a resolution: one halving per factor of 2 above 4x4.

    8x8 -> two levels (8, 4); 16x16 -> three; 32x32 -> four with attention at 16x16 (DDPM's
    CIFAR-10 layout, narrower).
    """
    check_positive_int("resolution", resolution)
    levels = max(1, min(4, (resolution // 4).bit_length()))
    mults = (1, 2, 2, 2)[:levels]
    attn = (16,) if resolution >= 32 else ()
    return {"base": 32, "channel_mults": mults, "attn_resolutions": attn, "resolution": resolution}


def fit_images(
    data: ImageData | torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    num_classes: int | None = None,
    class_conditional: bool | None = None,
    guidance: Any = None,
    hflip: bool = False,
    objective: Any = "mmf",
    backbone_kwargs: dict | None = None,
    **fit_kwargs: Any,
) -> Any:
    """Train an image generator with ``meanflow_sci.fit`` and the UNet2D backbone.

    Args:
        data: an :class:`ImageData` or images ``(N, C, H, W)`` (C = 1 or 3).
        labels: class labels ``(N,)``; default ``data.labels`` for an ImageData.
        num_classes: number of classes; default ``data.num_classes`` or ``labels.max() + 1``.
        class_conditional: condition on the labels; default True when labels exist.
        guidance: classifier-free guidance trained into the target, a
            :class:`~meanflow_sci.core.Guidance` or dict (``omega``, ``kappa``, ``drop_prob``);
            needs class conditioning.
        hflip: append mirrored copies of the images (EDM-style flip augmentation; wrong for
            digits, right for CIFAR-10).
        objective: "mmf", "fm", "regression" or an objective instance (passed to ``fit``).
        backbone_kwargs: UNet2D config fields overriding :func:`default_unet_kwargs`.
        **fit_kwargs: everything else ``fit`` takes (``max_steps``, ``batch_size``, ``lr``,
            ``lam``, ``device``, ``seed``, ``progress``, ...).

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
    elif guidance is not None:
        raise InputError(
            "guidance: classifier-free guidance needs class labels (class_conditional)"
        )
    if hflip:
        images, cond = augment_hflip(images, cond)
    h, w = images.shape[-2:]
    kwargs = default_unet_kwargs(max(h, w))
    kwargs.update(backbone_kwargs or {})
    if cond is not None:
        kwargs["num_classes"] = num_classes
    return meanflow_sci.fit(
        images,
        cond,
        backbone="unet2d",
        backbone_kwargs=kwargs,
        objective=objective,
        guidance=guidance,
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
