"""Conversion between user arrays (numpy, torch, xarray) and the float tensors the trainer uses.

``data_to_tensor`` returns a float32 tensor ``(N, *shape)`` plus a small JSON-able *spec* that
``tensor_to_data`` uses to give generated samples back in the type the user fitted on (xarray keeps
its dims, non-sample coords, attrs and name). ``cond_to_tensor`` does the same for conditioning:
integer labels ``(N,)`` become a long tensor, anything else a float tensor ``(N, C)``.
``cond_for_sampling`` checks a conditioning given at sample time against the fitted spec.

Example:
    >>> x, spec = data_to_tensor(np.random.randn(100, 3))
    >>> out = tensor_to_data(torch.zeros(5, 3), spec)   # numpy array (5, 3), original dtype
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from meanflow_sci.errors import InputError, check_finite, describe

__all__ = [
    "SAMPLE_DIM",
    "data_to_tensor",
    "lazy_data_spec",
    "tensor_to_data",
    "cond_to_tensor",
    "cond_for_sampling",
]

SAMPLE_DIM = "sample"


def _is_dataarray(obj: Any) -> bool:
    return type(obj).__name__ == "DataArray" and hasattr(obj, "dims")


def _is_dataset(obj: Any) -> bool:
    return type(obj).__name__ == "Dataset" and hasattr(obj, "data_vars")


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; raise ``TypeError`` when it has no JSON form."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return value.tolist()
        if value.dtype.kind in "USO":
            return [_jsonable(v) for v in value.tolist()]
        raise TypeError(value.dtype)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v) for k, v in value.items()}
    raise TypeError(type(value))


def _jsonable_attrs(attrs: dict) -> dict:
    """The attributes that have a JSON form; others (arbitrary objects) cannot be saved safely."""
    out = {}
    for key, value in attrs.items():
        try:
            out[str(key)] = _jsonable(value)
        except TypeError:
            continue
    return out


def _encode_values(values: np.ndarray) -> dict:
    """Coordinate values as JSON: dates and times as ISO strings plus their numpy dtype."""
    values = np.asarray(values)
    if values.dtype.kind in "Mm":
        return {"values": values.astype(str).tolist(), "dtype": str(values.dtype)}
    if values.dtype.kind in "biuf":
        return {"values": values.tolist(), "dtype": str(values.dtype)}
    return {
        "values": [str(v) for v in values.ravel().tolist()],
        "dtype": "str",
        "shape": list(values.shape),
    }


def _decode_values(enc: dict) -> np.ndarray:
    if enc["dtype"] == "str":
        return np.array(enc["values"], dtype=str).reshape(enc["shape"])
    return np.array(enc["values"], dtype=enc["dtype"])


def _as_numpy(data: Any, name: str) -> np.ndarray:
    """A numeric numpy array from numpy / torch / nested lists."""
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().numpy()
    try:
        arr = np.asarray(data)
    except (TypeError, ValueError) as err:  # ragged lists and the like
        raise InputError(
            f"{name}: expected a numpy array, torch tensor or xarray object, got {describe(data)}"
        ) from err
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"{name}: expected a real numeric array, got {describe(data)} (dtype {arr.dtype})"
        )
    return arr


def _check_sample_dim(da: Any, name: str) -> None:
    if not da.dims or da.dims[0] != SAMPLE_DIM:
        raise InputError(
            f"{name}: expected an xarray.DataArray whose first dim is {SAMPLE_DIM!r}, got dims "
            f"{tuple(da.dims)} (use .transpose({SAMPLE_DIM!r}, ...) or .rename(...) first)"
        )


def _select_var(data: Any, var: str | None, name: str) -> Any:
    names = sorted(str(k) for k in data.data_vars)
    if var is None:
        raise InputError(
            f"var: expected the name of the variable to model in the {name} xarray.Dataset, "
            f"one of {names}, got None"
        )
    if var not in data.data_vars:
        raise InputError(
            f"var: expected one of the {name} Dataset's data vars {names}, got {var!r}"
        )
    return data[var]


def _xarray_spec(da: Any) -> dict:
    """The dims, non-sample coords, attrs and name of a DataArray (its values are not read)."""
    coords = {}
    for cname, coord in da.coords.items():
        if SAMPLE_DIM in coord.dims:
            continue  # per-sample coords do not describe generated samples
        coords[str(cname)] = {
            "dims": [str(d) for d in coord.dims],
            "attrs": _jsonable_attrs(dict(coord.attrs)),
            **_encode_values(coord.values),
        }
    return dict(
        dims=[str(d) for d in da.dims],
        coords=coords,
        attrs=_jsonable_attrs(dict(da.attrs)),
        name=None if da.name is None else str(da.name),
    )


def lazy_data_spec(data: Any, *, var: str | None = None, name: str = "data") -> tuple[Any, dict]:
    """``(DataArray, spec)`` for a lazily opened xarray object, without reading its values.

    The spec is the one :func:`data_to_tensor` gives for the same object once loaded.
    """
    if _is_dataset(data):
        da = _select_var(data, var, name)
        spec = {"kind": "dataset", "var": str(var),
                "dataset_attrs": _jsonable_attrs(dict(data.attrs))}  # fmt: skip
    elif var is not None:
        raise InputError(
            f"var: only used with an xarray.Dataset, got var={var!r} for {describe(data)}"
        )
    else:
        da, spec = data, {"kind": "dataarray"}
    _check_sample_dim(da, name)
    if da.dtype.kind not in "biuf" or da.ndim < 2 or da.shape[0] == 0:
        raise InputError(
            f"{name}: expected a non-empty real numeric array (N, *sample_shape) with at least "
            f"2 dims, got {describe(da)}"
        )
    dtype = str(da.dtype) if da.dtype.kind == "f" else "float32"
    spec.update(_xarray_spec(da), dtype=dtype, shape=[int(s) for s in da.shape[1:]])
    return da, spec


def data_to_tensor(
    data: Any, *, var: str | None = None, name: str = "data"
) -> tuple[torch.Tensor, dict]:
    """Convert ``data`` to a float32 tensor ``(N, *shape)`` and a spec to rebuild its type.

    Args:
        data: numpy array or torch tensor ``(N, *shape)``, ``xarray.DataArray`` whose first dim is
            ``sample``, or ``xarray.Dataset`` (then ``var`` names the variable).
        var: The data variable of a Dataset; must be None for other inputs.
        name: Argument name used in error messages.

    Returns:
        ``(x, spec)``: ``x`` float32 on the CPU; ``spec`` a JSON-able dict (``kind``, ``dtype``,
        ``shape`` and, for xarray, ``dims``, ``coords``, ``attrs``, ``name``, ``var``).

    Raises:
        InputError: wrong type, empty data, fewer than 2 dims, NaN/Inf, a DataArray whose first dim
            is not ``sample``, a Dataset without a valid ``var``.
    """
    spec: dict[str, Any]
    if _is_dataset(data):
        dataset_attrs = _jsonable_attrs(dict(data.attrs))
        da = _select_var(data, var, name)
        spec = {"kind": "dataset", "var": str(var), "dataset_attrs": dataset_attrs}
    elif var is not None:
        raise InputError(
            f"var: only used with an xarray.Dataset, got var={var!r} for {describe(data)}"
        )
    else:
        da = data if _is_dataarray(data) else None
        spec = {
            "kind": "dataarray"
            if da is not None
            else ("torch" if isinstance(data, torch.Tensor) else "numpy")
        }

    if da is not None:
        _check_sample_dim(da, name)
        arr = _as_numpy(da.values, name)
        spec.update(_xarray_spec(da))
        dtype = str(arr.dtype)
    elif isinstance(data, torch.Tensor):
        if data.is_complex() or data.dtype == torch.bool:
            raise InputError(f"{name}: expected a real numeric tensor, got {describe(data)}")
        dtype = str(data.dtype).removeprefix("torch.")
        arr = None
    else:
        arr = _as_numpy(data, name)
        dtype = str(arr.dtype)

    x = data.detach().cpu() if arr is None else torch.from_numpy(np.ascontiguousarray(arr))
    if x.ndim < 2:
        raise InputError(
            f"{name}: expected shape (N, *sample_shape) with at least 2 dims, got "
            f"{describe(data)} (for N scalars use data.reshape(-1, 1))"
        )
    if x.numel() == 0:
        raise InputError(f"{name}: expected non-empty data, got {describe(data)}")
    x = x.to(torch.float32)
    check_finite(name, x)
    # Integer data is generated as floats: rounding back would silently quantise the samples.
    if not (dtype.startswith("float") or dtype.startswith("bfloat")):
        dtype = "float32"
    spec.update(dtype=dtype, shape=list(x.shape[1:]))
    return x.contiguous(), spec


def tensor_to_data(x: torch.Tensor, spec: dict) -> Any:
    """Rebuild the fitted data type from a tensor ``(n, *shape)`` and ``data_to_tensor``'s spec.

    xarray outputs get a new ``sample`` index ``0..n-1``.
    """
    kind = spec["kind"]
    x = x.detach().cpu()
    if kind == "torch":
        return x.to(getattr(torch, spec["dtype"]))
    values = x.to(torch.float64).numpy().astype(spec["dtype"])
    if kind == "numpy":
        return values
    import xarray as xr

    coords = {
        cname: xr.Variable(c["dims"], _decode_values(c), attrs=c["attrs"])
        for cname, c in spec["coords"].items()
    }
    coords[SAMPLE_DIM] = np.arange(values.shape[0])
    da = xr.DataArray(
        values, dims=spec["dims"], coords=coords, attrs=spec["attrs"], name=spec["name"]
    )
    if kind == "dataarray":
        return da
    return xr.Dataset({spec["var"]: da}, attrs=spec["dataset_attrs"])


def _cond_array(cond: Any, name: str) -> tuple[np.ndarray, list[str] | None]:
    """``cond`` as numpy plus its dims when it is a DataArray."""
    if _is_dataset(cond):
        raise InputError(
            f"{name}: expected a numpy array, torch tensor or xarray.DataArray, got an "
            f"xarray.Dataset with data vars {sorted(str(k) for k in cond.data_vars)} "
            f"(pick one, e.g. ds['name'])"
        )
    if _is_dataarray(cond):
        _check_sample_dim(cond, name)
        return _as_numpy(cond.values, name), [str(d) for d in cond.dims]
    return _as_numpy(cond, name), None


def _dims_note(dims: list[str] | None) -> str:
    return f" with dims {tuple(dims)}" if dims else ""


def cond_to_tensor(
    cond: Any, *, n: int | None = None, num_classes: int | None = None, name: str = "cond"
) -> tuple[torch.Tensor, dict]:
    """Convert conditioning to a tensor and a spec.

    Args:
        cond: numpy / torch / ``xarray.DataArray`` (first dim ``sample``). Integer ``(N,)`` values
            are class labels; anything else is a float vector per sample, flattened to ``(N, C)``.
        n: Expected number of rows (the data's N); None skips the check.
        num_classes: Number of classes for labels; inferred as ``max + 1`` when None.
        name: Argument name used in error messages.

    Returns:
        ``(c, spec)``: ``c`` long ``(N,)`` or float32 ``(N, C)``; ``spec`` is
        ``{"kind": "labels", "num_classes": K, "dims": ...}`` or
        ``{"kind": "vector", "dim": C, "shape": [...], "dims": ...}``.
    """
    arr, dims = _cond_array(cond, name)
    note = _dims_note(dims)
    if arr.ndim < 1 or arr.shape[0] == 0 or arr.size == 0:
        raise InputError(
            f"{name}: expected non-empty conditioning (N, ...), got {describe(cond)}{note}"
        )
    if n is not None and arr.shape[0] != n:
        raise InputError(
            f"{name}: expected {n} rows to match data (N={n}), got {describe(cond)}{note}"
        )
    if arr.ndim == 1 and arr.dtype.kind in "biu":
        labels = torch.from_numpy(arr.astype(np.int64))
        low, high = int(labels.min()), int(labels.max())
        if low < 0:
            raise InputError(f"{name}: expected class labels >= 0, got minimum {low}{note}")
        if num_classes is None:
            num_classes = high + 1
        elif (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, int)
            or (num_classes <= high)
        ):
            raise InputError(
                f"num_classes: expected an integer > the largest label {high}, got {num_classes!r}"
            )
        return labels, {"kind": "labels", "num_classes": num_classes, "dims": dims}
    c = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)
    check_finite(name, c)
    row_shape = list(c.shape[1:])
    c = c.reshape(c.shape[0], -1)
    return c, {"kind": "vector", "dim": int(c.shape[1]), "shape": row_shape, "dims": dims}


def cond_for_sampling(cond: Any, spec: dict, *, name: str = "cond") -> torch.Tensor:
    """Check sample-time conditioning against the fitted ``spec``; return it as a tensor.

    Labels must be integers in ``[0, num_classes)``, or ``-1`` for the null (unconditional)
    class. Vector rows must have the fitted row shape (or its flattened length); a row of all NaN
    is the null condition.

    Returns:
        Long ``(n,)`` or float32 ``(n, C)``.
    """
    arr, dims = _cond_array(cond, name)
    note = _dims_note(dims)
    fitted_dims = _dims_note(spec.get("dims"))
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise InputError(f"{name}: expected at least one row, got {describe(cond)}{note}")
    if spec["kind"] == "labels":
        k = spec["num_classes"]
        if arr.ndim != 1 or arr.dtype.kind not in "biu":
            raise InputError(
                f"{name}: expected integer class labels of shape (n,) in [0, {k}) (the model was "
                f"fitted on labels{fitted_dims}), got {describe(cond)}{note}"
            )
        labels = torch.from_numpy(arr.astype(np.int64))
        if int(labels.min()) < -1 or int(labels.max()) >= k:
            raise InputError(
                f"{name}: expected class labels in [0, {k}) or -1 (null), got values in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        return labels
    row_shape, dim = list(spec["shape"]), spec["dim"]
    got = list(arr.shape[1:])
    if got != row_shape and got != [dim] and not (row_shape == [] and got == []):
        raise InputError(
            f"{name}: expected rows of shape {tuple(row_shape)} like the fitted cond{fitted_dims}, "
            f"got {describe(cond)}{note}"
        )
    c = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32).reshape(arr.shape[0], -1)
    # A row of all NaN asks for the null condition (classifier-free guidance); partial NaN or Inf
    # is a data error.
    null = torch.isnan(c).all(dim=1)
    check_finite(name, c[~null])
    return c
