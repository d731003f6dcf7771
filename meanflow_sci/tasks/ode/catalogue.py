"""Chaotic flows from the dysts catalogue (the ``dysts`` extra) as :class:`ODESystem` entries.

``from_dysts("Rossler")`` (or any ``"dysts:Rossler"`` handed to :func:`simulate` and the rest of
``tasks.ode``) builds the system from dysts's own definition: its right-hand side, published
parameters, characteristic period and an initial condition on the attractor. The right-hand side
is dysts's Python function evaluated on torch tensors, so the flow integrates in batch with
``torchdiffeq`` like the built-in systems. A flow whose right-hand side does not run on tensors
(one written for numpy arrays only, with array parameters, or a delay equation) is refused with an
error naming it: a numpy path would integrate one trajectory at a time through scipy, which is
what the batched solver is here to avoid.

Defaults for a dysts flow: the recorded grid is one characteristic period (``period`` from the
catalogue) in 64 points; initial states are drawn in a small box (:data:`BOX` standard deviations
of the attractor) around dysts's initial condition, which lies on the attractor, and, with
``x0="attractor"``, integrated for :data:`BURN_IN_PERIODS` periods first, which spreads them over
the attractor (a wider box lets some flows, Rossler among them, start outside the basin and
escape). The published parameters are fixed (each declared range is
the single published value). A non-autonomous flow keeps absolute time: its grid starts after the
burn-in, so that the forcing phase of the recorded window is the one the solver used.

Example:
    >>> from meanflow_sci.tasks import ode
    >>> ds = ode.simulate("dysts:Rossler", 4, x0="attractor")  # doctest: +SKIP
    >>> ds["x"].shape  # doctest: +SKIP
    (4, 64, 3)
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from meanflow_sci.errors import InputError

from .systems import SYSTEMS, ODESystem, register_system

__all__ = ["PREFIX", "BURN_IN_PERIODS", "from_dysts", "dysts_names", "torch_flows", "dysts_info"]

PREFIX = "dysts:"
BURN_IN_PERIODS = 20
BOX = 0.02  # half-width of the initial-state box, in attractor standard deviations
N_TIMES = 64
_INSTALL = 'pip install -e ".[dysts]"'


def _require() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Numba not installed" and similar
            import dysts.base
            import dysts.flows
    except ImportError as err:
        raise ImportError(f"dysts systems need the dysts extra: {_INSTALL} ({err})") from err
    return dysts


@lru_cache(maxsize=1)
def dysts_names() -> tuple[str, ...]:
    """Every continuous-time flow in dysts's catalogue, sorted by name."""
    dysts = _require()
    base, flows = dysts.base, dysts.flows
    return tuple(
        sorted(
            name
            for name, cls in inspect.getmembers(flows, inspect.isclass)
            if issubclass(cls, base.DynSys) and cls.__module__ == flows.__name__
        )
    )


def _instance(name: str) -> Any:
    dysts = _require()
    names = dysts_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"close matches: {close}" if close else f"{len(names)} flows, e.g. {names[:5]}"
        raise InputError(f"system: unknown dysts flow {name!r} ({hint})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(dysts.flows, name)()


def _parts(flow: Any) -> tuple[Any, tuple[str, ...], tuple[float, ...]]:
    """The raw right-hand side ``f(*state, t, *params)``, parameter names and values, or an
    ``InputError`` saying why the flow cannot run on tensors."""
    name = type(flow).__name__
    dysts = _require()
    if isinstance(flow, dysts.base.DynSysDelay):
        raise InputError(f"system: dysts flow {name!r} is a delay equation, not an ODE")
    rhs = getattr(flow, "_rhs", None)
    rhs = getattr(rhs, "py_func", rhs)  # numba's dispatcher keeps the Python function
    dim = len(np.atleast_1d(flow.ic))
    try:
        args = list(inspect.signature(rhs).parameters)
    except (TypeError, ValueError):
        args = []
    names = tuple(flow.params)
    if len(args) != dim + 1 + len(names) or tuple(args[dim + 1 :]) != names:
        raise InputError(
            f"system: dysts flow {name!r} defines its right-hand side on whole numpy arrays "
            "(rhs(X, t)), not component by component, so it cannot run batched on torch tensors"
        )
    values = []
    for key in names:
        value = np.asarray(flow.params[key], dtype=np.float64)
        if value.ndim != 0:
            raise InputError(
                f"system: dysts flow {name!r} has an array parameter {key!r} "
                f"(shape {value.shape}); only scalar parameters run as (B, P) tensors"
            )
        values.append(float(value))
    return rhs, names, tuple(values)


def _torch_field(rhs: Any, dim: int) -> Any:
    def field(t: Tensor, x: Tensor, p: Tensor) -> Tensor:
        with warnings.catch_warnings():
            # numpy ufuncs (np.exp, np.tanh) applied to a tensor return a tensor through
            # __array_wrap__, which numpy 2 flags as deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            out = rhs(*x.unbind(-1), t, *p.unbind(-1))
        comps = [torch.as_tensor(c, dtype=x.dtype, device=x.device) for c in out]
        return torch.stack(torch.broadcast_tensors(*comps, x[..., 0]), dim=-1)[..., :dim]

    return field


def _check_on_tensors(name: str, flow: Any, field: Any, values: tuple[float, ...]) -> None:
    """Compare the tensor field with dysts's own ``rhs`` at a few states near the attractor."""
    rng = np.random.default_rng(0)
    ic = np.atleast_1d(np.asarray(flow.ic, dtype=np.float64))
    states = ic + 0.1 * (np.abs(ic) + 1.0) * rng.standard_normal((4, ic.size))
    t = 0.37
    try:
        ref = np.stack([np.asarray(flow.rhs(s, t), dtype=np.float64) for s in states])
        x = torch.as_tensor(states)
        p = torch.tensor(values, dtype=torch.float64).expand(len(states), -1)
        got = field(torch.tensor(t, dtype=torch.float64), x, p)
        if not isinstance(got, Tensor) or got.shape != x.shape:
            raise TypeError(f"returned {type(got).__name__}")
        err = float(np.abs(got.numpy() - ref).max() / (np.abs(ref).max() + 1e-12))
    except Exception as exc:  # the function is third-party code: any failure means "no"
        raise InputError(
            f"system: dysts flow {name!r}: its right-hand side does not run on torch tensors "
            f"({type(exc).__name__}: {str(exc)[:80]})"
        ) from exc
    if not err < 1e-9:
        raise InputError(
            f"system: dysts flow {name!r}: on torch tensors its right-hand side differs from "
            f"dysts's own by {err:.2g} (relative), so it is refused (it calls numpy on the "
            "state, which does not run batched on tensors)"
        )


def _build(name: str, flow: Any = None) -> ODESystem:
    flow = _instance(name) if flow is None else flow
    rhs, param_names, values = _parts(flow)
    ic = np.atleast_1d(np.asarray(flow.ic, dtype=np.float64))
    dim = ic.size
    field = _torch_field(rhs, dim)
    _check_on_tensors(name, flow, field, values)
    std = getattr(flow, "std", None)
    std = np.ones(dim) if std is None else np.atleast_1d(np.asarray(std, dtype=np.float64))
    if std.size != dim or not np.all(np.isfinite(std)):
        std = np.ones(dim)
    period = float(flow.period)
    burn_in = BURN_IN_PERIODS * period
    t0 = burn_in if flow.nonautonomous else 0.0
    states = ("x", "y", "z") if dim == 3 else tuple(f"x{i}" for i in range(dim))
    doc = " ".join(str(flow.description or "").split())
    return ODESystem(
        name=PREFIX + name,
        state_names=states,
        param_names=param_names,
        vector_field=field,
        param_ranges=tuple((v, v) for v in values),
        x0_ranges=tuple((float(c - BOX * s), float(c + BOX * s)) for c, s in zip(ic, std)),
        t_span=(t0, t0 + period),
        n_times=N_TIMES,
        default_params=values,
        burn_in=burn_in,
        description=f"dysts {name}: {doc[:120]}" if doc else f"dysts {name}",
    )


def from_dysts(name: str, *, register: bool = True) -> ODESystem:
    """The dysts flow ``name`` (``"Rossler"`` or ``"dysts:Rossler"``) as an :class:`ODESystem`.

    Args:
        name: a flow of dysts's catalogue (see :func:`dysts_names`).
        register: add it to :data:`SYSTEMS` as ``"dysts:NAME"`` (a no-op when it is there).

    Raises:
        ImportError: the ``dysts`` extra is not installed.
        InputError: unknown name (with close matches), or a flow whose right-hand side does not
            run on torch tensors (the message says why).
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"system: expected a dysts flow name such as 'Rossler', got {name!r}")
    bare = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    key = PREFIX + bare
    if key in SYSTEMS:
        return SYSTEMS[key]
    system = _build(bare)
    return register_system(system) if register else system


def dysts_info(name: str) -> dict[str, Any]:
    """Catalogue facts of a flow: ``period``, ``dt``, ``lyapunov`` (largest exponent, 1 / time
    unit), ``dimension``, ``nonautonomous`` and the ``mean`` / ``std`` of the attractor."""
    bare = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    flow = _instance(bare)
    return {
        "name": bare,
        "period": float(flow.period),
        "dt": float(flow.dt),
        "lyapunov": float(flow.maximum_lyapunov_estimated),
        "dimension": len(np.atleast_1d(flow.ic)),
        "nonautonomous": bool(flow.nonautonomous),
        "mean": np.atleast_1d(np.asarray(flow.mean, dtype=np.float64)).tolist(),
        "std": np.atleast_1d(np.asarray(flow.std, dtype=np.float64)).tolist(),
    }


@lru_cache(maxsize=4)
def torch_flows(dimension: int | None = 3, autonomous: bool = True) -> tuple[str, ...]:
    """The catalogue's flows that run on torch tensors, sorted by name; optionally only those of
    one ``dimension`` and only autonomous ones (the rule the chaos benchmark draws its list by)."""
    out = []
    for name in dysts_names():
        flow = _instance(name)
        if dimension is not None and np.atleast_1d(flow.ic).size != dimension:
            continue
        if autonomous and flow.nonautonomous:
            continue
        try:
            _build(name, flow)  # the tensor check; the system is not registered
        except InputError:
            continue
        out.append(name)
    return tuple(out)
