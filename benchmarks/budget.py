"""Equal wall-clock training budgets for the benchmarks' method comparisons.

A method's learning-rate schedule spans its ``max_steps``, so a budget is turned into a step count
from a calibration (:func:`seconds_per_step`), given a little headroom, and the run is stopped at
the budget itself by :class:`TimeLimit`. Both are measured in the machine's own units at run time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from meanflow_sci.train import get_lr

# Step counts from a calibration get this margin and the time limit stops the run: on a shared
# machine the calibration is noisy, and without the margin a run could end early (an FM run once
# stopped at 114 s of a 155 s budget).
HEADROOM = 1.2


class TimeLimit:
    """Trainer callback that stops training once ``budget_s`` of wall time has passed since it
    was made (checked at the trainer's log steps).

    With ``lr_by_time`` the cosine decay after the warm-up follows the elapsed share of the
    budget instead of the step count (through the trainer's ``lr_scale``, rollback halvings
    kept); schedule more steps than the budget buys (``3 * steps_for(...)``).
    """

    def __init__(self, budget_s: float, lr_by_time: bool = False) -> None:
        self.budget_s = budget_s
        self.lr_by_time = lr_by_time
        self.start = time.perf_counter()

    def __call__(self, trainer: Any, record: dict) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed >= self.budget_s:
            trainer.should_stop = True
        cfg = trainer.config
        if self.lr_by_time and trainer.step >= cfg.lr_warmup_steps:
            frac = min(1.0, elapsed / self.budget_s)
            low = cfg.lr * cfg.min_lr_ratio
            want = low + 0.5 * (1.0 + math.cos(math.pi * frac)) * (cfg.lr - low)
            by_step = get_lr(trainer.step, cfg)
            if by_step > 0:
                trainer.lr_scale = 0.5**trainer.rollbacks * want / by_step


def seconds_per_step(fit_steps: Callable[[int], Any], steps: int) -> float:
    """Seconds per optimizer step of ``fit_steps(n)`` (a fit of ``n`` steps).

    Two fits, of ``steps`` and ``3 * steps``: the difference of their wall times cancels the
    fixed cost of building the model and trainer and of the first, slower steps.
    """
    start = time.perf_counter()
    fit_steps(steps)
    short = time.perf_counter() - start
    start = time.perf_counter()
    fit_steps(3 * steps)
    long = time.perf_counter() - start
    return max((long - short) / (2 * steps), 1e-5)


def steps_for(budget_s: float, s_per_step: float, minimum: int = 1) -> int:
    """Steps to schedule for ``budget_s``: the calibrated count with :data:`HEADROOM`."""
    return max(minimum, int(HEADROOM * budget_s / s_per_step))


def fit_within(fit_steps: Callable[..., Any], budget_s: float, calib_steps: int) -> Any:
    """Fit for ``budget_s`` of wall time: ``fit_steps(n)`` fits ``n`` steps and
    ``fit_steps(n, budget_s)`` also stops at the budget with the LR's cosine on the clock
    (:class:`TimeLimit`); a calibration (:func:`seconds_per_step`) schedules 3x the steps the
    budget should buy, so the clock, not the step count, ends the run."""
    sps = seconds_per_step(fit_steps, calib_steps)
    return fit_steps(3 * steps_for(budget_s, sps), budget_s)
