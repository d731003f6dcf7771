"""Data handling: normalisers saved with the model and array/xarray conversion."""

from meanflow_sci.data.convert import cond_to_tensor, data_to_tensor, tensor_to_data
from meanflow_sci.data.normalize import Normalizer

__all__ = ["Normalizer", "cond_to_tensor", "data_to_tensor", "tensor_to_data"]
