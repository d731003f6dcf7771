"""Data handling: normalisers saved with the model and array/xarray conversion."""

from meanflow_sci.data.convert import (
    SAMPLE_DIM,
    cond_for_sampling,
    cond_to_tensor,
    data_to_tensor,
    tensor_to_data,
)
from meanflow_sci.data.normalize import NORMALIZER_MODES, Normalizer, default_mode

__all__ = [
    "NORMALIZER_MODES",
    "Normalizer",
    "default_mode",
    "SAMPLE_DIM",
    "data_to_tensor",
    "tensor_to_data",
    "cond_to_tensor",
    "cond_for_sampling",
]
