"""Images: datasets, augmentation, metrics, grids, and class-conditional training through ``fit``.

Example:
    >>> from meanflow_sci.tasks import images
    >>> data = images.load_digits(size=16)
    >>> data.images.shape
    torch.Size([1797, 1, 16, 16])
"""

from meanflow_sci.tasks.images.augment import augment_hflip
from meanflow_sci.tasks.images.datasets import (
    ImageData,
    load_cifar10,
    load_dataset,
    load_digits,
    load_image_folder,
)
from meanflow_sci.tasks.images.grid import save_panels
from meanflow_sci.tasks.images.metrics import (
    ImageMetrics,
    MetricUnavailableError,
    digit_classifier,
    evaluate_images,
    inception_extractor,
)
from meanflow_sci.tasks.images.train import fit_images, sample_images

__all__ = [
    "ImageData",
    "ImageMetrics",
    "MetricUnavailableError",
    "augment_hflip",
    "digit_classifier",
    "evaluate_images",
    "fit_images",
    "inception_extractor",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "sample_images",
    "save_panels",
]
