"""meanflow_sci: one-step generative modelling for science with Modular MeanFlow.

Example:
    >>> import meanflow_sci as mfs
    >>> model = mfs.fit(data, cond=conditions)              # recipe="auto" picks the setting
    >>> samples = model.sample(cond=new_conditions, steps=1)
    >>> model.recipe.name                                   # e.g. "trajectory_map"
"""

from __future__ import annotations

from meanflow_sci import core
from meanflow_sci.api import FittedModel, fit, load
from meanflow_sci.core import (
    FlowMatching,
    Guidance,
    LossOutput,
    ModularMeanFlow,
    Regression,
    make_schedule,
    sample,
)
from meanflow_sci.errors import CheckpointError, InputError, MeanFlowError, TrainingDivergedError
from meanflow_sci.recipes import RECIPES, BackboneConfig, ObjectiveConfig, Recipe
from meanflow_sci.train import TrainConfig

__version__ = "0.1.0"

__all__ = [
    "BackboneConfig",
    "CheckpointError",
    "FittedModel",
    "FlowMatching",
    "Guidance",
    "InputError",
    "LossOutput",
    "MeanFlowError",
    "ModularMeanFlow",
    "ObjectiveConfig",
    "RECIPES",
    "Recipe",
    "Regression",
    "TrainConfig",
    "TrainingDivergedError",
    "core",
    "fit",
    "load",
    "make_schedule",
    "sample",
    "__version__",
]
