"""A registry of ordinary differential equation systems.

Each system is a frozen :class:`ODESystem`: a vector field ``f(t, x, p)`` batched over states
``x`` of shape ``(B, S)`` and parameters ``p`` of shape ``(B, P)``, the ranges that parameters and
initial states are drawn from, a default time grid and, where one exists, a conserved quantity.
``SYSTEMS`` is a plain dict; :func:`register_system` adds a user's own system without touching the
package.

Example:
    >>> import torch
    >>> from meanflow_sci.tasks.ode import ODESystem, register_system
    >>> decay = ODESystem(
    ...     name="decay", state_names=("x",), param_names=("k",),
    ...     vector_field=lambda t, x, p: -p * x,
    ...     param_ranges=((0.5, 2.0),), x0_ranges=((0.5, 1.5),), t_span=(0.0, 3.0), n_times=32)
    >>> _ = register_system(decay)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from meanflow_sci.errors import InputError, check_choice, check_positive_int

__all__ = ["ODESystem", "SYSTEMS", "register_system", "get_system"]

VectorField = Callable[[Tensor, Tensor, Tensor], Tensor]
Quantity = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ODESystem:
    """An autonomous or non-autonomous ODE ``dx/dt = f(t, x, p)`` with its sampling ranges.

    Attributes:
        name: registry key.
        state_names: one name per state component (length ``S``).
        param_names: one name per parameter (length ``P``; may be empty).
        vector_field: ``f(t, x, p) -> dx/dt`` with ``t`` a scalar tensor, ``x`` of shape ``(B, S)``
            and ``p`` of shape ``(B, P)``; returns ``(B, S)``.
        param_ranges: ``P`` pairs ``(low, high)``: the declared range of each parameter.
        x0_ranges: ``S`` pairs ``(low, high)``: the box initial states are drawn from.
        t_span: ``(t0, t1)`` of the default time grid.
        n_times: number of points of the default time grid (``linspace(t0, t1, n_times)``).
        default_params: parameters used when a fixed setting is asked for (``params="default"``);
            the midpoint of each range when ``None``.
        conserved: optional ``H(x, p) -> (B,)`` that the exact flow keeps constant.
        burn_in: integration time used by ``x0="attractor"`` to move initial states onto the
            attractor before the recorded trajectory starts.
        description: one line for tables and docs.
    """

    name: str
    state_names: tuple[str, ...]
    param_names: tuple[str, ...]
    vector_field: VectorField
    param_ranges: tuple[tuple[float, float], ...]
    x0_ranges: tuple[tuple[float, float], ...]
    t_span: tuple[float, float]
    n_times: int
    default_params: tuple[float, ...] | None = None
    conserved: Quantity | None = None
    burn_in: float = 0.0
    description: str = ""

    def __post_init__(self) -> None:
        # Freeze list inputs into tuples so that the dataclass stays hashable and immutable.
        for field in ("state_names", "param_names", "param_ranges", "x0_ranges", "t_span"):
            value = getattr(self, field)
            if not isinstance(value, tuple):
                object.__setattr__(self, field, tuple(value))
        object.__setattr__(self, "param_ranges", tuple(tuple(r) for r in self.param_ranges))
        object.__setattr__(self, "x0_ranges", tuple(tuple(r) for r in self.x0_ranges))
        if self.default_params is not None and not isinstance(self.default_params, tuple):
            object.__setattr__(self, "default_params", tuple(self.default_params))
        self._validate()

    def _validate(self) -> None:
        where = f"ODESystem {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"name: expected a non-empty string, got {self.name!r}")
        if not callable(self.vector_field):
            raise InputError(
                f"{where}: vector_field must be callable f(t, x, p), got "
                f"{type(self.vector_field).__name__}"
            )
        if len(self.state_names) == 0:
            raise InputError(f"{where}: state_names must name at least one state, got ()")
        if len(self.x0_ranges) != len(self.state_names):
            raise InputError(
                f"{where}: x0_ranges must have one (low, high) pair per state "
                f"({len(self.state_names)}), got {len(self.x0_ranges)}"
            )
        if len(self.param_ranges) != len(self.param_names):
            raise InputError(
                f"{where}: param_ranges must have one (low, high) pair per parameter "
                f"({len(self.param_names)}), got {len(self.param_ranges)}"
            )
        for label, ranges in (("x0_ranges", self.x0_ranges), ("param_ranges", self.param_ranges)):
            for pair in ranges:
                if len(pair) != 2 or not pair[0] <= pair[1]:
                    raise InputError(
                        f"{where}: {label} entries must be (low, high) with "
                        f"low <= high, got {pair!r}"
                    )
        if len(self.t_span) != 2 or not self.t_span[1] > self.t_span[0]:
            raise InputError(f"{where}: t_span must be (t0, t1) with t1 > t0, got {self.t_span!r}")
        check_positive_int(f"{where}: n_times", self.n_times, minimum=2)
        if self.default_params is not None and len(self.default_params) != len(self.param_names):
            raise InputError(
                f"{where}: default_params must have {len(self.param_names)} values, "
                f"got {len(self.default_params)}"
            )
        if self.burn_in < 0:
            raise InputError(f"{where}: burn_in must be >= 0, got {self.burn_in!r}")

    @property
    def state_dim(self) -> int:
        """Number of state components ``S``."""
        return len(self.state_names)

    @property
    def param_dim(self) -> int:
        """Number of parameters ``P``."""
        return len(self.param_names)

    def time_grid(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The default time grid, shape ``(n_times,)``."""
        return torch.linspace(self.t_span[0], self.t_span[1], self.n_times, dtype=dtype)

    def default_param_tensor(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The default parameters, shape ``(P,)`` (range midpoints unless declared)."""
        if self.default_params is not None:
            return torch.tensor(self.default_params, dtype=dtype)
        return torch.tensor([(lo + hi) / 2 for lo, hi in self.param_ranges], dtype=dtype)


# --- the built-in systems -------------------------------------------------------------------


def _lorenz63(t: Tensor, x: Tensor, p: Tensor) -> Tensor:
    sigma, rho, beta = p.unbind(-1)
    x1, x2, x3 = x.unbind(-1)
    return torch.stack((sigma * (x2 - x1), x1 * (rho - x3) - x2, x1 * x2 - beta * x3), dim=-1)


def _van_der_pol(t: Tensor, x: Tensor, p: Tensor) -> Tensor:
    mu = p[..., 0]
    pos, vel = x.unbind(-1)
    return torch.stack((vel, mu * (1 - pos * pos) * vel - pos), dim=-1)


def _lotka_volterra(t: Tensor, x: Tensor, p: Tensor) -> Tensor:
    alpha, beta, delta, gamma = p.unbind(-1)
    prey, pred = x.unbind(-1)
    return torch.stack((alpha * prey - beta * prey * pred, delta * prey * pred - gamma * pred), -1)


def _lotka_volterra_invariant(x: Tensor, p: Tensor) -> Tensor:
    # V = delta x - gamma ln x + beta y - alpha ln y is constant along every orbit.
    alpha, beta, delta, gamma = p.unbind(-1)
    prey, pred = x.unbind(-1)
    return delta * prey - gamma * torch.log(prey) + beta * pred - alpha * torch.log(pred)


def _damped_pendulum(t: Tensor, x: Tensor, p: Tensor) -> Tensor:
    damping, omega_sq = p.unbind(-1)
    theta, omega = x.unbind(-1)
    return torch.stack((omega, -omega_sq * torch.sin(theta) - damping * omega), dim=-1)


def _fitzhugh_nagumo(t: Tensor, x: Tensor, p: Tensor) -> Tensor:
    a, b, tau, current = p.unbind(-1)
    v, w = x.unbind(-1)
    return torch.stack((v - v**3 / 3 - w + current, (v + a - b * w) / tau), dim=-1)


SYSTEMS: dict[str, ODESystem] = {
    "lorenz63": ODESystem(
        name="lorenz63",
        state_names=("x", "y", "z"),
        param_names=("sigma", "rho", "beta"),
        vector_field=_lorenz63,
        param_ranges=((8.0, 12.0), (24.0, 32.0), (2.0, 3.0)),
        x0_ranges=((-15.0, 15.0), (-20.0, 20.0), (5.0, 40.0)),
        t_span=(0.0, 1.0),
        n_times=64,
        default_params=(10.0, 28.0, 8.0 / 3.0),
        burn_in=10.0,
        description="Lorenz-63, chaotic; default parameters give the classic butterfly attractor",
    ),
    "van_der_pol": ODESystem(
        name="van_der_pol",
        state_names=("x", "v"),
        param_names=("mu",),
        vector_field=_van_der_pol,
        param_ranges=((0.5, 2.0),),
        x0_ranges=((-2.5, 2.5), (-2.5, 2.5)),
        t_span=(0.0, 8.0),
        n_times=64,
        default_params=(1.0,),
        description="Van der Pol oscillator x'' - mu (1 - x^2) x' + x = 0",
    ),
    "lotka_volterra": ODESystem(
        name="lotka_volterra",
        state_names=("prey", "predator"),
        param_names=("alpha", "beta", "delta", "gamma"),
        vector_field=_lotka_volterra,
        param_ranges=((0.8, 1.5), (0.3, 0.7), (0.2, 0.5), (0.8, 1.5)),
        x0_ranges=((0.5, 3.0), (0.5, 3.0)),
        t_span=(0.0, 15.0),
        n_times=64,
        default_params=(1.1, 0.4, 0.3, 1.0),
        conserved=_lotka_volterra_invariant,
        description="Lotka-Volterra predator-prey; conserves V = dx - g ln x + by - a ln y",
    ),
    "damped_pendulum": ODESystem(
        name="damped_pendulum",
        state_names=("theta", "omega"),
        param_names=("damping", "omega0_sq"),
        vector_field=_damped_pendulum,
        param_ranges=((0.05, 0.5), (0.5, 2.0)),
        x0_ranges=((-0.8 * math.pi, 0.8 * math.pi), (-1.5, 1.5)),
        t_span=(0.0, 10.0),
        n_times=64,
        default_params=(0.2, 1.0),
        description="Damped pendulum theta'' = -omega0^2 sin(theta) - c theta'",
    ),
    "fitzhugh_nagumo": ODESystem(
        name="fitzhugh_nagumo",
        state_names=("v", "w"),
        param_names=("a", "b", "tau", "current"),
        vector_field=_fitzhugh_nagumo,
        param_ranges=((0.6, 0.8), (0.7, 0.9), (10.0, 15.0), (0.3, 0.7)),
        x0_ranges=((-2.0, 2.0), (-1.0, 1.5)),
        t_span=(0.0, 40.0),
        n_times=64,
        default_params=(0.7, 0.8, 12.5, 0.5),
        description="FitzHugh-Nagumo neuron model (a = 0.7, b = 0.8, tau = 12.5 by default)",
    ),
}


def register_system(system: ODESystem, *, overwrite: bool = False) -> ODESystem:
    """Add ``system`` to :data:`SYSTEMS` under ``system.name``; return it.

    Args:
        system: the system to register.
        overwrite: replace an existing entry of the same name (otherwise that is an error, so a
            typo cannot silently shadow a built-in system).

    Raises:
        InputError: ``system`` is not an :class:`ODESystem`, or the name is taken.
    """
    if not isinstance(system, ODESystem):
        raise InputError(f"system: expected an ODESystem, got {type(system).__name__}")
    if system.name in SYSTEMS and not overwrite:
        raise InputError(
            f"system: a system named {system.name!r} is already registered; "
            "pass overwrite=True to replace it"
        )
    SYSTEMS[system.name] = system
    return system


def get_system(system: str | ODESystem) -> ODESystem:
    """Look a system up by name, or pass an :class:`ODESystem` through.

    A name ``"dysts:NAME"`` not yet registered is built from the dysts catalogue
    (:func:`~meanflow_sci.tasks.ode.catalogue.from_dysts`) and registered.

    Raises:
        InputError: unknown name (the message lists the registered ones).
    """
    if isinstance(system, ODESystem):
        return system
    if isinstance(system, str) and system.startswith("dysts:") and system not in SYSTEMS:
        from .catalogue import from_dysts

        return from_dysts(system)
    return SYSTEMS[check_choice("system", system, SYSTEMS)]
