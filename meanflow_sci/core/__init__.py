"""The mathematics of Modular MeanFlow: path, time samplers, λ schedules, objectives, samplers.

This package imports neither ``meanflow_sci.nn`` nor ``meanflow_sci.train``.
"""

from .coupling import COUPLINGS, ot_pair_noise
from .objective import (
    OBJECTIVES,
    FlowMatching,
    Guidance,
    LossOutput,
    ModularMeanFlow,
    Regression,
    make_objective,
    null_cond,
    objective_from_config,
    sg_lambda,
)
from .paths import PathSample, expand_time, linear_path
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
    "COUPLINGS",
    "TARGET_FIELDS",
    "ReferenceBank",
    "OBJECTIVES",
    "SAMPLING_MODES",
    "SCHEDULES",
    "TIME_SAMPLERS",
    "ConstantSchedule",
    "CosineWarmup",
    "FlowMatching",
    "Guidance",
    "LinearWarmup",
    "LogitNormalTimeSampler",
    "LossOutput",
    "ModularMeanFlow",
    "PathSample",
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
    "ot_pair_noise",
    "stable_target",
    "sample",
    "sg_lambda",
    "uniform_time_grid",
]
