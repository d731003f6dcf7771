"""The mathematics of Modular MeanFlow: path, time samplers, λ schedules, objectives, samplers.

This package imports neither ``meanflow_sci.nn`` nor ``meanflow_sci.train``.
"""

from .guidance import Guidance, null_cond
from .jvp import JVP_BACKENDS, time_derivative
from .objective import (
    OBJECTIVES,
    FlowMatching,
    ModularMeanFlow,
    Regression,
    make_objective,
    objective_from_config,
    sg_lambda,
)
from .paths import PathSample, expand_time, linear_path
from .protocol import LossOutput, Objective
from .sampling import SAMPLING_MODES, sample, uniform_time_grid
from .schedules import (
    SCHEDULES,
    ConstantSchedule,
    CosineWarmup,
    LinearWarmup,
    StepWarmup,
    make_schedule,
)
from .target_field import TARGET_FIELDS, ReferenceBank, stable_target
from .time_samplers import (
    TIME_SAMPLERS,
    LogitNormalTimeSampler,
    TimeSample,
    UniformTimeSampler,
    make_time_sampler,
)

__all__ = [
    "JVP_BACKENDS",
    "OBJECTIVES",
    "SAMPLING_MODES",
    "SCHEDULES",
    "TARGET_FIELDS",
    "TIME_SAMPLERS",
    "ConstantSchedule",
    "CosineWarmup",
    "FlowMatching",
    "Guidance",
    "LinearWarmup",
    "LogitNormalTimeSampler",
    "LossOutput",
    "ModularMeanFlow",
    "Objective",
    "PathSample",
    "ReferenceBank",
    "Regression",
    "StepWarmup",
    "TimeSample",
    "UniformTimeSampler",
    "expand_time",
    "linear_path",
    "make_objective",
    "make_schedule",
    "make_time_sampler",
    "null_cond",
    "objective_from_config",
    "sample",
    "sg_lambda",
    "stable_target",
    "time_derivative",
    "uniform_time_grid",
]
