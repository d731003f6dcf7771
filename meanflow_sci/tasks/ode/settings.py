"""Turn a simulated Dataset into the ``(data, cond)`` pair that ``meanflow_sci.fit`` takes.

Two settings:

- ``"conditional"``: the condition is ``[x0, params]`` (the initial state and the parameters) and
  the data is the trajectory: the deterministic map the solver computes.
- ``"unconditional"``: no condition; the model learns the distribution of trajectories (for
  Lorenz-63, simulate with ``x0="attractor", params="default"``).

Example:
    >>> from meanflow_sci.tasks.ode import simulate, fit_inputs
    >>> ds = simulate("van_der_pol", 16)
    >>> data, cond = fit_inputs(ds, "conditional")
    >>> tuple(data.shape), tuple(cond.shape)
    ((16, 64, 2), (16, 3))
"""

from __future__ import annotations

import torch
import xarray as xr
from torch import Tensor

from meanflow_sci.errors import InputError, check_choice

__all__ = ["SETTINGS", "check_dataset", "condition_of", "fit_inputs"]

SETTINGS = ("conditional", "unconditional")


def check_dataset(ds: xr.Dataset, name: str = "ds") -> None:
    """Raise unless ``ds`` looks like the output of :func:`simulate`."""
    if not isinstance(ds, xr.Dataset):
        raise InputError(
            f"{name}: expected an xarray.Dataset from simulate(), got {type(ds).__name__}"
        )
    missing = [v for v in ("x", "x0", "params") if v not in ds]
    if missing:
        raise InputError(
            f"{name}: expected variables x, x0, params (as simulate() writes), missing {missing}"
        )
    if ds["x"].dims != ("sample", "time", "state"):
        raise InputError(
            f"{name}: expected x with dims ('sample', 'time', 'state'), got {ds['x'].dims}"
        )


def condition_of(ds: xr.Dataset, dtype: torch.dtype = torch.float32) -> Tensor:
    """The conditioning vector ``[x0, params]`` of every sample, shape ``(N, S + P)``."""
    check_dataset(ds)
    x0 = torch.as_tensor(ds["x0"].values, dtype=dtype)
    params = torch.as_tensor(ds["params"].values, dtype=dtype).reshape(x0.shape[0], -1)
    return torch.cat((x0, params), dim=1)


def fit_inputs(
    ds: xr.Dataset,
    setting: str = "conditional",
    *,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor | None]:
    """The ``(data, cond)`` pair for ``meanflow_sci.fit``.

    Args:
        ds: a Dataset from :func:`simulate`.
        setting: ``"conditional"`` (cond = ``[x0, params]``) or ``"unconditional"`` (cond None).
        dtype: floating dtype of the returned tensors.

    Returns:
        ``data`` of shape ``(N, T, S)`` (``fit`` flattens it for an MLP itself), and ``cond`` of
        shape ``(N, S + P)`` or ``None``.
    """
    check_dataset(ds)
    check_choice("setting", setting, SETTINGS)
    data = torch.as_tensor(ds["x"].values, dtype=dtype)
    cond = condition_of(ds, dtype) if setting == "conditional" else None
    return data, cond
