"""collect(): the documented dataset, reproducibility, NetCDF round trip, bad input."""

import json

import numpy as np
import pytest
import xarray as xr

from meanflow_sci.errors import InputError
from meanflow_sci.tasks.control import (
    PolicyConfig,
    collect,
    episode_returns,
    load_dataset,
    make_env,
)
from meanflow_sci.tasks.control.collect import check_dataset
from meanflow_sci.tasks.control.policy import make_windows


@pytest.fixture(scope="module")
def reacher_ds():
    return collect("Reacher-v5", 6, seed=3, progress=False)


def test_collect_returns_the_documented_dataset(reacher_ds):
    ds = reacher_ds
    assert isinstance(ds, xr.Dataset)
    assert ds.obs.dims == ("episode", "time", "obs_dim") and ds.obs.shape == (6, 50, 10)
    assert ds.action.dims == ("episode", "time", "act_dim") and ds.action.shape == (6, 50, 2)
    assert ds.reward.dims == ("episode", "time") and ds.done.dtype == bool
    assert ds.done.values[:, -1].all() and not ds.done.values[:, :-1].any()
    assert (ds.length.values == 50).all()
    assert ds.attrs["env_id"] == "Reacher-v5" and ds.attrs["expert"] == "reacher"
    assert json.loads(ds.attrs["expert_config"])["branch"] == "random"
    assert ds.seed.values.tolist() == [3, 4, 5, 6, 7, 8]
    assert set(ds["mode"].values.tolist()) <= {1, -1}
    # Actions stay inside the action box and rewards are the env's (negative distances).
    assert np.abs(ds.action.values).max() <= 1.0
    assert (episode_returns(ds) < 0).all()


def test_collect_is_reproducible(reacher_ds):
    again = collect("Reacher-v5", 2, seed=3, progress=False)
    np.testing.assert_array_equal(again.obs.values, reacher_ds.obs.values[:2])


def test_collect_pads_terminated_episodes():
    ds = collect("InvertedPendulum-v5", 2, expert="random", progress=False)
    lengths = ds.length.values
    assert (lengths < 1000).all()
    i = int(np.argmin(lengths))
    k = lengths[i]
    assert ds.terminated.values[i, k - 1] and ds.done.values[i, k - 1 :].all()
    assert np.isnan(ds.obs.values[i, k:]).all() if k < ds.sizes["time"] else True
    assert np.isfinite(ds.obs.values[i, :k]).all()


def test_netcdf_round_trip(reacher_ds, tmp_path):
    path = tmp_path / "demo.nc"
    reacher_ds.to_netcdf(path)
    back = load_dataset(path)
    xr.testing.assert_identical(back, reacher_ds)


def test_max_steps_cuts_episodes():
    ds = collect("InvertedPendulum-v5", 1, max_steps=30, progress=False)
    assert ds.sizes["time"] == 30 and ds.done.values[0, -1]
    assert ds.attrs["max_steps"] == 30


def test_collect_bad_input():
    with pytest.raises(InputError, match="n_episodes"):
        collect("InvertedPendulum-v5", 0, progress=False)
    with pytest.raises(InputError, match="known|InvertedPendulum-v5"):
        collect("Pendulumm-v9", 1, progress=False)
    with pytest.raises(InputError, match="equilibrium"):
        collect("HalfCheetah-v5", 1, expert="lqr", progress=False)


def test_dataset_env_dimension_mismatch(reacher_ds):
    env = make_env("InvertedPendulum-v5")
    with pytest.raises(InputError, match="obs_dim=4"):
        check_dataset(reacher_ds, env)
    with pytest.raises(InputError, match="missing"):
        check_dataset(reacher_ds.drop_vars("action"))


def test_windows_are_padded_at_episode_edges(reacher_ds):
    cfg = PolicyConfig(kind="chunk", horizon=8, n_obs_steps=2, n_action_steps=4)
    x, cond = make_windows(reacher_ds, cfg)
    assert x.shape == (6 * 50, 8, 2) and cond.shape == (6 * 50, 20)
    obs, act = reacher_ds.obs.values, reacher_ds.action.values
    # First window: history repeats the first observation; its chunk is actions 0..7.
    np.testing.assert_array_equal(cond[0], np.concatenate([obs[0, 0], obs[0, 0]]))
    np.testing.assert_array_equal(x[0], act[0, :8])
    # Last window of episode 0: the chunk repeats the final action.
    np.testing.assert_array_equal(x[49], np.repeat(act[0, 49:50], 8, axis=0))
    traj = PolicyConfig(kind="trajectory", horizon=4, n_obs_steps=1, n_action_steps=2)
    xt, ct = make_windows(reacher_ds, traj)
    assert xt.shape == (300, 4, 12) and ct.shape == (300, 10)
    np.testing.assert_array_equal(xt[0, :, 2:], obs[0, :4])
