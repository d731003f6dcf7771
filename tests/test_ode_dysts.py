"""dysts flows through tasks.ode (the ``dysts`` extra; skipped with the reason without it)."""

import numpy as np
import pytest

from meanflow_sci.errors import InputError
from meanflow_sci.tasks import ode

dysts = pytest.importorskip(
    "dysts", reason='dysts systems need the dysts extra (pip install -e ".[dysts]")'
)
catalogue = pytest.importorskip("meanflow_sci.tasks.ode.catalogue")


def test_a_dysts_flow_integrates_in_batch_and_matches_scipy():
    from scipy.integrate import solve_ivp

    ds = ode.simulate("dysts:Rossler", 6, x0="attractor", seed=0)
    assert ds["x"].shape == (6, 64, 3) and ds.attrs["system"] == "dysts:Rossler"
    info = catalogue.dysts_info("Rossler")
    assert ds["time"].values[-1] == pytest.approx(info["period"])
    flow = dysts.flows.Rossler()
    t = ds["time"].values
    for i in range(3):
        ref = solve_ivp(
            lambda s, y: flow.rhs(y, s),
            (t[0], t[-1]),
            ds["x0"].values[i],
            t_eval=t,
            method="DOP853",
            rtol=1e-10,
            atol=1e-12,
        ).y.T
        err = np.abs(ds["x"].values[i] - ref).max() / np.abs(ref).max()
        assert err < 1e-5, err
    # the burn-in spreads the starts over the attractor: not all near dysts's initial condition
    assert ds["x0"].values.std(axis=0).min() > 0.1 * min(info["std"])


def test_unknown_flow_lists_close_matches():
    with pytest.raises(InputError, match=r"unknown dysts flow 'Rosler'.*'Rossler'"):
        ode.simulate("dysts:Rosler", 2)


def test_a_flow_that_cannot_run_on_tensors_is_refused_by_name():
    with pytest.raises(InputError, match="BeerRNN.*cannot run batched on torch tensors"):
        catalogue.from_dysts("BeerRNN")
    with pytest.raises(InputError, match="BelousovZhabotinsky.*does not run on torch tensors"):
        catalogue.from_dysts("BelousovZhabotinsky")


def test_the_torch_flow_list_is_a_rule_not_a_choice():
    flows = catalogue.torch_flows()
    assert len(flows) >= 20 and list(flows) == sorted(flows)
    assert "Lorenz" in flows and "BeerRNN" not in flows
    system = catalogue.from_dysts(flows[0])
    assert system.state_dim == 3 and system.name == "dysts:" + flows[0]
