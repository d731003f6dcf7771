"""Images: datasets, augmentation, metrics, grids, and class-conditional training through ``fit``.

Example:
    >>> from meanflow_sci.tasks import images
    >>> data = images.load_digits(size=16)
    >>> data.images.shape
    torch.Size([1797, 1, 16, 16])
"""

from meanflow_sci.tasks.images.augment import augment_hflip, hflip
from meanflow_sci.tasks.images.datasets import (
    CIFAR10_URL,
    DATASETS,
    ImageData,
    check_images,
    check_labels,
    from_unit_range,
    load_cifar10,
    load_dataset,
    load_digits,
    load_image_folder,
    to_unit_range,
)
from meanflow_sci.tasks.images.grid import make_grid, save_image_grid, save_panels
from meanflow_sci.tasks.images.metrics import (
    FEATURE_EXTRACTORS,
    DigitClassifier,
    DigitClassifierConfig,
    DigitFeatureExtractor,
    ImageMetrics,
    InceptionFeatureExtractor,
    MetricUnavailableError,
    PrecisionRecall,
    cache_dir,
    digit_classifier,
    evaluate_images,
    frechet_distance,
    inception_extractor,
    precision_recall,
)
from meanflow_sci.tasks.images.train import default_unet_kwargs, fit_images, sample_images

__all__ = [
    "CIFAR10_URL",
    "DATASETS",
    "FEATURE_EXTRACTORS",
    "DigitClassifier",
    "DigitClassifierConfig",
    "DigitFeatureExtractor",
    "ImageData",
    "ImageMetrics",
    "InceptionFeatureExtractor",
    "MetricUnavailableError",
    "PrecisionRecall",
    "augment_hflip",
    "cache_dir",
    "check_images",
    "check_labels",
    "default_unet_kwargs",
    "digit_classifier",
    "evaluate_images",
    "fit_images",
    "frechet_distance",
    "from_unit_range",
    "hflip",
    "inception_extractor",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "make_grid",
    "precision_recall",
    "save_image_grid",
    "sample_images",
    "save_panels",
    "to_unit_range",
]
