"""The mathematics of Modular MeanFlow: path, time samplers, λ schedules, objectives, samplers.

This package imports neither ``meanflow_sci.nn`` nor ``meanflow_sci.train``.
"""

from meanflow_sci.core.guidance import Guidance
from meanflow_sci.core.jvp import time_derivative
from meanflow_sci.core.objective import (
    OBJECTIVES,
    FlowMatching,
    ModularMeanFlow,
    Regression,
    make_objective,
    objective_from_config,
    sg_lambda,
)
from meanflow_sci.core.paths import linear_path
from meanflow_sci.core.protocol import LossOutput, Objective
from meanflow_sci.core.sampling import sample
from meanflow_sci.core.schedules import SCHEDULES, make_schedule
from meanflow_sci.core.time_samplers import TIME_SAMPLERS, make_time_sampler

__all__ = [
    "FlowMatching",
    "Guidance",
    "LossOutput",
    "ModularMeanFlow",
    "OBJECTIVES",
    "Objective",
    "Regression",
    "SCHEDULES",
    "TIME_SAMPLERS",
    "linear_path",
    "make_objective",
    "make_schedule",
    "make_time_sampler",
    "objective_from_config",
    "sample",
    "sg_lambda",
    "time_derivative",
]
