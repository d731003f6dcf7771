"""simulate(): batched torchdiffeq ground truth, checked against scipy and for bad input."""

import numpy as np
import pytest
import xarray as xr
from scipy.integrate import solve_ivp

from meanflow_sci.errors import InputError
from meanflow_sci.tasks.ode import fit_inputs, simulate


def test_simulate_dataset_layout():
    ds = simulate("van_der_pol", 6, seed=0, t=[0.0, 0.5, 1.0])
    assert ds["x"].dims == ("sample", "time", "state")
    assert ds["x0"].dims == ("sample", "state")
    assert ds["params"].dims == ("sample", "param")
    assert list(ds["state"].values) == ["x", "v"]
    assert list(ds["param"].values) == ["mu"]
    assert ds.attrs["system"] == "van_der_pol"
    assert ds.attrs["method"] == "dopri5"
    assert ds.attrs["rtol"] == 1e-7 and ds.attrs["atol"] == 1e-9
    np.testing.assert_allclose(ds["time"].values, [0.0, 0.5, 1.0])
    lo, hi = 0.5, 2.0
    assert ((ds["params"] >= lo) & (ds["params"] <= hi)).all()


def test_simulate_matches_scipy_solve_ivp_with_per_sample_parameters():
    ds = simulate("lotka_volterra", 4, seed=2)
    t = ds["time"].values
    for i in range(4):
        a, b, d, g = ds["params"].values[i]

        def f(_, y, a=a, b=b, d=d, g=g):
            return [a * y[0] - b * y[0] * y[1], d * y[0] * y[1] - g * y[1]]

        ref = solve_ivp(
            f, (t[0], t[-1]), ds["x0"].values[i], t_eval=t, method="DOP853", rtol=1e-10, atol=1e-12
        )
        np.testing.assert_allclose(ds["x"].values[i], ref.y.T, rtol=1e-5, atol=1e-6)


def test_seed_reproducible_and_different_seeds_differ():
    kw = dict(t=[0.0, 1.0, 2.0], rtol=1e-5, atol=1e-7)
    a = simulate("damped_pendulum", 5, seed=7, **kw)
    b = simulate("damped_pendulum", 5, seed=7, **kw)
    c = simulate("damped_pendulum", 5, seed=8, **kw)
    np.testing.assert_array_equal(a["x"].values, b["x"].values)
    assert not np.allclose(a["x0"].values, c["x0"].values)


def test_explicit_x0_params_and_grid():
    ds = simulate("van_der_pol", 3, t=[0.0, 0.5, 1.0], x0=[1.0, 0.0], params=[[0.5], [1.0], [2.0]])
    assert ds["x"].shape == (3, 3, 2)
    np.testing.assert_allclose(ds["x"].values[:, 0], [[1.0, 0.0]] * 3)
    # Different parameters per sample give different trajectories in one batched call.
    assert not np.allclose(ds["x"].values[0, -1], ds["x"].values[2, -1])
    default = simulate("lorenz63", 2, params="default")
    np.testing.assert_allclose(default["params"].values, [[10.0, 28.0, 8 / 3]] * 2)


def test_lorenz_attractor_initial_states_are_on_the_attractor():
    ds = simulate("lorenz63", 16, x0="attractor", params="default", seed=0, rtol=1e-4, atol=1e-6)
    assert ds.attrs["x0_mode"] == "attractor"
    z = ds["x0"].values[:, 2]
    # The attractor lives around z in roughly [5, 48]; the box also allows z in [5, 40] but its x, y
    # range is wider than the attractor's |x| <= 20.
    assert np.abs(ds["x0"].values[:, 0]).max() < 21 and z.min() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x0=[1.0, 2.0, 3.0]), "x0"),
        (dict(x0=np.zeros((4, 3))), "x0"),
        (dict(params=[5.0]), "mu"),
        (dict(params=[[1.0, 2.0]]), "params"),
        (dict(t=[0.0, 1.0, 1.0, 2.0]), "strictly increasing"),
        (dict(t=[1.0, 0.0]), "strictly increasing"),
        (dict(x0=[float("nan"), 0.0]), "finite"),
        (dict(method="magic"), "method"),
        (dict(x0="somewhere"), "x0"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        simulate("van_der_pol", 4, **kwargs)


def test_out_of_range_params_allowed_with_extrapolation():
    ds = simulate("van_der_pol", 2, params=[3.0], allow_extrapolation=True, t=[0.0, 1.0])
    assert float(ds["params"].values[0, 0]) == 3.0
    with pytest.raises(InputError, match="allow_extrapolation"):
        simulate("van_der_pol", 2, params=[3.0])


def test_bad_n():
    with pytest.raises(InputError, match="n"):
        simulate("van_der_pol", 0)


def test_netcdf_round_trip(tmp_path):
    ds = simulate("fitzhugh_nagumo", 4, seed=1, rtol=1e-5, atol=1e-7)
    path = tmp_path / "traj.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path) as back:
        back = back.load()
    xr.testing.assert_allclose(ds, back)
    assert back.attrs["system"] == "fitzhugh_nagumo"
    assert list(back["state"].values) == ["v", "w"]


def test_fit_inputs_shapes():
    ds = simulate("lotka_volterra", 5, rtol=1e-5, atol=1e-7)
    data, cond = fit_inputs(ds, "conditional")
    assert tuple(data.shape) == (5, 64, 2) and tuple(cond.shape) == (5, 6)
    np.testing.assert_allclose(cond[:, :2].numpy(), ds["x0"].values, rtol=1e-6)
    seq, none = fit_inputs(ds, "unconditional")
    assert tuple(seq.shape) == (5, 64, 2) and none is None
    with pytest.raises(InputError, match="setting"):
        fit_inputs(ds, "sideways")
