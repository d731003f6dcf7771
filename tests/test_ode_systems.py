"""The ODE systems registry: built-in systems integrate, users can register their own."""

import math

import numpy as np
import pytest
import torch

from meanflow_sci.errors import InputError
from meanflow_sci.tasks.ode import SYSTEMS, ODESystem, register_system, simulate
from meanflow_sci.tasks.ode.systems import get_system


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_every_builtin_system_is_finite_over_its_default_grid(name):
    system = SYSTEMS[name]
    ds = simulate(name, 8, seed=3, rtol=1e-5, atol=1e-7)
    x = ds["x"].values
    assert x.shape == (8, system.n_times, system.state_dim)
    assert np.isfinite(x).all()
    # The trajectory starts at the recorded initial state and actually moves.
    np.testing.assert_allclose(x[:, 0], ds["x0"].values, rtol=0, atol=1e-12)
    assert np.abs(x[:, -1] - x[:, 0]).max() > 1e-2


def test_builtin_systems_declare_required_fields():
    for name in ("lorenz63", "van_der_pol", "lotka_volterra", "damped_pendulum", "fitzhugh_nagumo"):
        system = SYSTEMS[name]
        assert system.name == name
        assert len(system.param_ranges) == system.param_dim
        assert len(system.x0_ranges) == system.state_dim
    assert SYSTEMS["lotka_volterra"].conserved is not None


def test_lotka_volterra_invariant_is_conserved_by_the_solver():
    ds = simulate("lotka_volterra", 8, seed=0, rtol=1e-9, atol=1e-11)
    system = SYSTEMS["lotka_volterra"]
    x = torch.as_tensor(ds["x"].values)
    p = torch.as_tensor(ds["params"].values)[:, None].expand(-1, x.shape[1], -1)
    h = system.conserved(x.reshape(-1, 2), p.reshape(-1, 4)).reshape(8, -1)
    assert float((h - h[:, :1]).abs().max()) < 1e-5
    # ... and is not constant along a perturbed path (the check can fail).
    h_bad = system.conserved((x * 1.05).reshape(-1, 2), p.reshape(-1, 4)).reshape(8, -1)
    assert float((h_bad - h_bad[:, :1]).abs().max()) > 1e-3


def _decay(t, x, p):
    return -p * x


def test_register_custom_system_and_simulate_matches_closed_form():
    decay = ODESystem(
        name="test_decay",
        state_names=("x",),
        param_names=("k",),
        vector_field=_decay,
        param_ranges=((0.5, 2.0),),
        x0_ranges=((0.5, 1.5),),
        t_span=(0.0, 3.0),
        n_times=20,
    )
    try:
        register_system(decay)
        assert get_system("test_decay") is decay
        ds = simulate("test_decay", 5, seed=1)
        t = ds["time"].values
        k = ds["params"].values[:, 0]
        exact = ds["x0"].values[:, :1] * np.exp(-k[:, None] * t[None, :])
        np.testing.assert_allclose(ds["x"].values[..., 0], exact, rtol=1e-6, atol=1e-8)
        with pytest.raises(InputError, match="already registered"):
            register_system(decay)
        register_system(decay, overwrite=True)
    finally:
        SYSTEMS.pop("test_decay", None)


def test_unknown_system_lists_known_ones():
    with pytest.raises(InputError, match="van_der_pol") as info:
        simulate("lorenz96", 4)
    assert "lorenz63" in str(info.value) and "lorenz96" in str(info.value)


def test_system_definition_is_validated():
    with pytest.raises(InputError, match="x0_ranges"):
        ODESystem(
            name="bad",
            state_names=("a", "b"),
            param_names=(),
            vector_field=_decay,
            param_ranges=(),
            x0_ranges=((0.0, 1.0),),
            t_span=(0.0, 1.0),
            n_times=8,
        )
    with pytest.raises(InputError, match="t_span"):
        ODESystem(
            name="bad",
            state_names=("a",),
            param_names=(),
            vector_field=_decay,
            param_ranges=(),
            x0_ranges=((0.0, 1.0),),
            t_span=(1.0, 0.0),
            n_times=8,
        )
    with pytest.raises(InputError, match="ODESystem"):
        register_system({"name": "dict"})


def test_default_params_midpoint_and_declared():
    assert SYSTEMS["lorenz63"].default_param_tensor()[1] == 28.0
    assert math.isclose(float(SYSTEMS["van_der_pol"].default_param_tensor()[0]), 1.0)
