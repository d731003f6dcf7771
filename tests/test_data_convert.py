import numpy as np
import pytest
import torch
import xarray as xr

from meanflow_sci.data import cond_to_tensor, data_to_tensor, tensor_to_data
from meanflow_sci.data.convert import cond_for_sampling
from meanflow_sci.errors import InputError


def _da(n=6):
    return xr.DataArray(
        np.random.randn(n, 4, 2),
        dims=("sample", "time", "state"),
        coords={
            "time": np.linspace(0, 1, 4),
            "state": ["x", "v"],
            "sample": np.arange(n) + 100,
            "when": ("time", np.array("2020-01-01", dtype="datetime64[ns]") + np.arange(4)),
        },
        attrs={"units": "m", "scale": np.float32(2.0), "obj": object()},
        name="traj",
    )


def test_numpy_and_torch_round_trip_types():
    arr = np.random.randn(5, 3)
    x, spec = data_to_tensor(arr)
    assert x.dtype == torch.float32 and x.shape == (5, 3)
    out = tensor_to_data(x[:2], spec)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (2, 3)
    t = torch.randn(4, 2, 3, dtype=torch.float64)
    x, spec = data_to_tensor(t)
    out = tensor_to_data(x, spec)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert torch.allclose(out, t, atol=1e-6)
    # integer data comes back as floats (samples are continuous)
    _, spec = data_to_tensor(np.arange(6).reshape(3, 2))
    assert spec["dtype"] == "float32"


def test_dataarray_keeps_dims_coords_attrs():
    import json

    da = _da()
    x, spec = data_to_tensor(da)
    json.dumps(spec)  # the spec is saved as JSON
    assert x.shape == (6, 4, 2)
    out = tensor_to_data(x[:3], spec)
    assert isinstance(out, xr.DataArray)
    assert out.dims == da.dims and out.name == "traj"
    assert out.attrs == {"units": "m", "scale": 2.0}
    np.testing.assert_allclose(out["time"].values, da["time"].values)
    assert list(out["state"].values) == ["x", "v"]
    assert (out["when"].values == da["when"].values).all()
    assert list(out["sample"].values) == [0, 1, 2]


def test_dataset_var():
    ds = xr.Dataset({"traj": _da(), "other": ("k", np.zeros(3))}, attrs={"source": "sim"})
    x, spec = data_to_tensor(ds, var="traj")
    out = tensor_to_data(x, spec)
    assert isinstance(out, xr.Dataset) and list(out.data_vars) == ["traj"]
    assert out.attrs == {"source": "sim"}
    with pytest.raises(InputError, match=r"var.*\['other', 'traj'\]"):
        data_to_tensor(ds)
    with pytest.raises(InputError, match="var"):
        data_to_tensor(ds, var="nope")
    with pytest.raises(InputError, match="var"):
        data_to_tensor(np.zeros((3, 2)), var="traj")


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([[1.0, np.nan]]), "NaN/Inf"),
        (np.array([[1.0, np.inf]]), "NaN/Inf"),
        (np.zeros((0, 3)), "non-empty"),
        (np.zeros(5), "at least 2 dims"),
        (np.array([["a", "b"]]), "numeric"),
        (xr.DataArray(np.zeros((3, 2)), dims=("x", "sample")), "first dim is 'sample'"),
    ],
)
def test_data_errors(bad, match):
    with pytest.raises(InputError, match=match) as info:
        data_to_tensor(bad)
    assert str(info.value).startswith("data")


def test_cond_labels_and_vectors():
    labels, spec = cond_to_tensor(np.array([0, 2, 1, 2]), n=4)
    assert labels.dtype == torch.long and spec == {"kind": "labels", "num_classes": 3, "dims": None}
    _, spec = cond_to_tensor(torch.tensor([0, 1]), num_classes=5)
    assert spec["num_classes"] == 5
    with pytest.raises(InputError, match="num_classes"):
        cond_to_tensor(np.array([0, 3]), num_classes=2)
    vec, spec = cond_to_tensor(np.random.randn(4, 2, 3))
    assert vec.shape == (4, 6) and vec.dtype == torch.float32 and spec["shape"] == [2, 3]
    vec, spec = cond_to_tensor(np.random.randn(4))
    assert vec.shape == (4, 1) and spec["dim"] == 1
    da = xr.DataArray(np.random.randn(4, 3), dims=("sample", "param"))
    vec, spec = cond_to_tensor(da)
    assert spec["dims"] == ["sample", "param"]


def test_cond_errors():
    with pytest.raises(InputError, match="match data"):
        cond_to_tensor(np.zeros((3, 2)), n=4)
    with pytest.raises(InputError, match="NaN/Inf"):
        cond_to_tensor(np.array([[np.nan, 1.0]]))
    with pytest.raises(InputError, match=">= 0"):
        cond_to_tensor(np.array([0, -1]))
    with pytest.raises(InputError, match="first dim"):
        cond_to_tensor(xr.DataArray(np.zeros((2, 3)), dims=("param", "sample")))
    with pytest.raises(InputError, match="Dataset"):
        cond_to_tensor(xr.Dataset({"a": ("sample", np.zeros(2))}))


def test_cond_for_sampling():
    _, spec = cond_to_tensor(np.array([0, 1, 2]))
    assert cond_for_sampling(np.array([2, -1]), spec).tolist() == [2, -1]
    with pytest.raises(InputError, match=r"\[0, 3\)"):
        cond_for_sampling(np.array([3]), spec)
    with pytest.raises(InputError, match="integer class labels"):
        cond_for_sampling(np.array([0.5]), spec)
    _, spec = cond_to_tensor(xr.DataArray(np.zeros((3, 2)), dims=("sample", "param")))
    out = cond_for_sampling(np.array([[1.0, 2.0], [np.nan, np.nan]]), spec)
    assert out.shape == (2, 2)
    with pytest.raises(InputError, match=r"rows of shape \(2,\).*'param'"):
        cond_for_sampling(np.zeros((2, 3)), spec)
    with pytest.raises(InputError, match="NaN/Inf"):
        cond_for_sampling(np.array([[1.0, np.nan]]), spec)
