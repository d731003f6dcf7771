"""Data handling: normalisers saved with the model, array/xarray conversion, and data that
streams from disk (lazy xarray, torch Datasets, image folders)."""

from meanflow_sci.data.convert import cond_to_tensor, data_to_tensor, tensor_to_data
from meanflow_sci.data.folder import ImageFolder
from meanflow_sci.data.normalize import Normalizer

__all__ = [
    "ImageFolder",
    "Normalizer",
    "cond_to_tensor",
    "data_to_tensor",
    "tensor_to_data",
]
