"""ODE trajectories: simulate with torchdiffeq, fit in one step, check against the solver.

- :data:`SYSTEMS`, :class:`ODESystem`, :func:`register_system`: the systems registry.
- :func:`simulate`: batched ground truth as an ``xarray.Dataset`` ``x (sample, time, state)``.
- :func:`fit_inputs`: ``(data, cond)`` for ``meanflow_sci.fit`` in the conditional
  (``cond = [x0, params]``) or unconditional setting.
- :func:`evaluate`: relative L2, per-time sliced Wasserstein / MMD, re-integration, conserved-
  quantity drift and sampling time against the solver.
- Baselines: :class:`NearestNeighbour`, :func:`fit_neural_ode`.
- Chaotic flows of the dysts catalogue by name (``"dysts:Rossler"``; :mod:`.catalogue`).
- Forecasts: :func:`forecast_setting` (noisy, partial observed window -> next ``H`` steps),
  :func:`forecast` (an ensemble, one network evaluation per member), :func:`calibrate_spread`
  (spread factors from held-out windows, for ``forecast(..., spread=)``), :func:`reference_ensemble`
  (the solver's calibrated answer), :func:`score_ensemble` (CRPS, energy score, spread-skill,
  rank histogram, coverage, sMAPE, valid time); :func:`evaluate` reports the dynamics residual
  (:func:`.metrics.dynamics_residual`).

Example:
    >>> import meanflow_sci
    >>> from meanflow_sci.tasks import ode
    >>> train = ode.simulate("van_der_pol", 2000, seed=0)
    >>> test = ode.simulate("van_der_pol", 256, seed=1)
    >>> data, cond = ode.fit_inputs(train, "conditional")
    >>> model = meanflow_sci.fit(data, cond, max_steps=2000)  # doctest: +SKIP
    >>> ode.evaluate(model, test, steps=1)["rel_l2_median"]  # doctest: +SKIP
"""

from meanflow_sci.tasks.ode import catalogue
from meanflow_sci.tasks.ode.baselines import NearestNeighbour, fit_neural_ode
from meanflow_sci.tasks.ode.forecasting import (
    calibrate_spread,
    forecast,
    forecast_setting,
    reference_ensemble,
)
from meanflow_sci.tasks.ode.metrics import evaluate, relative_l2
from meanflow_sci.tasks.ode.scores import plot_forecast, score_ensemble
from meanflow_sci.tasks.ode.settings import condition_of, fit_inputs
from meanflow_sci.tasks.ode.simulate import integrate, simulate
from meanflow_sci.tasks.ode.systems import SYSTEMS, ODESystem, register_system

__all__ = [
    "NearestNeighbour",
    "ODESystem",
    "SYSTEMS",
    "catalogue",
    "condition_of",
    "evaluate",
    "fit_inputs",
    "fit_neural_ode",
    "calibrate_spread",
    "forecast",
    "forecast_setting",
    "plot_forecast",
    "reference_ensemble",
    "score_ensemble",
    "integrate",
    "register_system",
    "relative_l2",
    "simulate",
]
