"""ODE trajectories: simulate with torchdiffeq, fit in one step, check against the solver.

- :data:`SYSTEMS`, :class:`ODESystem`, :func:`register_system`: the systems registry.
- :func:`simulate`: batched ground truth as an ``xarray.Dataset`` ``x (sample, time, state)``.
- :func:`fit_inputs`: ``(data, cond)`` for ``meanflow_sci.fit`` in the conditional
  (``cond = [x0, params]``) or unconditional setting.
- :func:`evaluate`: relative L2, per-time sliced Wasserstein / MMD, re-integration, conserved-
  quantity drift and sampling time against the solver.
- Baselines: :class:`NearestNeighbour`, :func:`fit_neural_ode`.

Example:
    >>> import meanflow_sci
    >>> from meanflow_sci.tasks import ode
    >>> train = ode.simulate("van_der_pol", 2000, seed=0)
    >>> test = ode.simulate("van_der_pol", 256, seed=1)
    >>> data, cond = ode.fit_inputs(train, "conditional")
    >>> model = meanflow_sci.fit(data, cond, max_steps=2000)  # doctest: +SKIP
    >>> ode.evaluate(model, test, steps=1)["rel_l2_median"]  # doctest: +SKIP
"""

from .baselines import NearestNeighbour, NeuralODE, fit_neural_ode
from .metrics import (
    conserved_drift,
    error_vs_time,
    evaluate,
    marginal_distances,
    mmd,
    relative_l2,
    sliced_wasserstein,
)
from .settings import SETTINGS, condition_of, fit_inputs
from .simulate import integrate, simulate
from .systems import SYSTEMS, ODESystem, get_system, register_system

__all__ = [
    "SYSTEMS",
    "ODESystem",
    "register_system",
    "get_system",
    "simulate",
    "integrate",
    "SETTINGS",
    "fit_inputs",
    "condition_of",
    "evaluate",
    "relative_l2",
    "error_vs_time",
    "sliced_wasserstein",
    "mmd",
    "marginal_distances",
    "conserved_drift",
    "NearestNeighbour",
    "NeuralODE",
    "fit_neural_ode",
]
