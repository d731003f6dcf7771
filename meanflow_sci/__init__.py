"""meanflow_sci: one-step generative modelling for science with Modular MeanFlow.

Example:
    >>> import meanflow_sci as mfs
    >>> model = mfs.fit(data, cond=conditions, max_steps=2000)
    >>> samples = model.sample(cond=new_conditions, steps=1)
"""

from __future__ import annotations

import importlib
from typing import Any

from . import core
from .core import (
    FlowMatching,
    Guidance,
    LossOutput,
    ModularMeanFlow,
    Regression,
    make_schedule,
    sample,
    schedules,
)
from .errors import CheckpointError, InputError, MeanFlowError, TrainingDivergedError

__version__ = "0.1.0"

# The API module pulls in the trainer and the backbones; load it on first use so that
# `import meanflow_sci` stays light for users of the core alone.
_LAZY = {"fit": "api", "load": "api", "FittedModel": "api"}

__all__ = [
    "CheckpointError",
    "FittedModel",
    "FlowMatching",
    "Guidance",
    "InputError",
    "LossOutput",
    "MeanFlowError",
    "ModularMeanFlow",
    "Regression",
    "TrainingDivergedError",
    "core",
    "fit",
    "load",
    "make_schedule",
    "sample",
    "schedules",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'meanflow_sci' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
