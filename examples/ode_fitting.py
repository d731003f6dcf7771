"""Fit ODE trajectories in one step and check them against the solver.

1. Van der Pol, conditional: the trajectory for a new initial state and mu, in one network
   evaluation; compared with flow matching (50 Euler steps), a neural ODE and nearest neighbour.
2. Lorenz-63, unconditional: an ensemble of trajectories on the attractor; its time marginals are
   compared with the solver's (sliced Wasserstein, relative to two solver ensembles).

Prints a table and saves phase portraits of generated against solver trajectories.

``--system`` runs the conditional map on another system (a built-in name or any dysts flow,
``dysts:NAME``, with the ``dysts`` extra; its starts lie on the attractor). ``--forecast`` runs the
forecasting setting instead: 16 noisy observed points, an ensemble of the next 48 from one network
evaluation per member, scored against the truth beside the solver's calibrated ensemble and the
analog ensemble (CRPS, energy score, spread-skill, coverage, valid time; plots of CRPS against
lead time, the rank histogram and an ensemble fan).

Usage:
    python examples/ode_fitting.py                 # about five minutes on 2 CPU cores
    python examples/ode_fitting.py --steps 3000    # longer training, better numbers
    python examples/ode_fitting.py --system dysts:Rossler
    python examples/ode_fitting.py --system dysts:Lorenz --forecast
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

import meanflow_sci  # noqa: E402
from meanflow_sci.tasks import ode  # noqa: E402

# The settings are the library's recipes, chosen by fit from the data: "trajectory_map" for the
# conditional Van der Pol trajectories (a wide MLP on the flattened trajectory that outputs a data
# estimate) and "trajectory_ensemble" for the unconditional Lorenz-63 ensemble (the same MLP and
# output with logit-normal times and a lower learning rate); forecasts use the setting's recipe,
# "trajectory_forecast" (velocity output); see README, "Recipes".


class TimeLimit:
    """Trainer callback: stop after ``budget_s`` seconds (same wall clock for the baselines)."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.start = time.perf_counter()

    def __call__(self, trainer, record: dict) -> None:
        if time.perf_counter() - self.start >= self.budget_s:
            trainer.should_stop = True


def conditional_map(steps: int, out: Path, system: str = "van_der_pol") -> list[dict]:
    kw = {"x0": "attractor"} if system.startswith("dysts:") else {}
    train = ode.simulate(system, 2000, seed=0, **kw)
    test = ode.simulate(system, 256, seed=1, **kw)
    # Trajectories (N, T, S) with cond = [x0, mu]: recipe "trajectory_map".
    data, cond = ode.fit_inputs(train, "conditional")
    mmf = meanflow_sci.fit(data, cond, train={"max_steps": steps}, progress=False)
    budget = mmf.train_time_s
    # Flow matching steps are cheaper (no JVP): allow more, stopped at MMF's wall-clock time.
    fm = meanflow_sci.fit(
        data,
        cond,
        objective={"name": "fm", "time_sampler": "uniform"},
        train={"max_steps": 2 * steps},
        callbacks=(TimeLimit(budget),),
        progress=False,
    )
    node = ode.fit_neural_ode(train, time_budget_s=budget, max_steps=100_000)
    nearest = ode.NearestNeighbour(train)

    rows = []
    for name, model, k, train_s in (
        ("MMF 1-step", mmf, 1, mmf.train_time_s),
        ("MMF 2-step", mmf, 2, mmf.train_time_s),
        ("FM 50-step", fm, 50, fm.train_time_s),
        ("neural ODE", node, 1, node.train_time_s),
        ("nearest neighbour", nearest, 1, 0.0),
    ):
        res = ode.evaluate(model, test, steps=k, timing_repeats=3)
        rows.append(
            {
                "method": name,
                "rel_l2_median": res["rel_l2_median"],
                "rel_l2_p90": res["rel_l2_p90"],
                "residual": res.get("dynamics_residual_median", float("nan")),
                "sample_ms": 1e3 * res["sample_time_s"],
                "train_s": train_s,
            }
        )
    rows.append(
        {"method": "dopri5 (its own residual)", "residual": res["dynamics_residual_solver"]}
    )

    c = ode.condition_of(test)[:4]
    pred = np.asarray(mmf.sample(cond=c, seed=0))
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for i, ax in enumerate(axes):
        ax.plot(*test["x"].values[i, :, :2].T, "k", lw=1, label="dopri5")
        ax.plot(*pred[i, :, :2].T, "r--", label="MMF, 1 step")
        ax.set_title(f"{system}, test {i}")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out / f"{system.replace(':', '_')}.png", dpi=90)
    plt.close(fig)
    return rows


def lorenz(steps: int, out: Path) -> list[dict]:
    kw = {"x0": "attractor", "params": "default", "rtol": 1e-6, "atol": 1e-8}
    train = ode.simulate("lorenz63", 2000, seed=10, **kw)
    test = ode.simulate("lorenz63", 256, seed=11, **kw)
    other = ode.simulate("lorenz63", 256, seed=12, **kw)
    floor = ode.evaluate(other["x"].values, test, setting="unconditional")["sw_mean"]
    data, _ = ode.fit_inputs(train, "unconditional")
    model = meanflow_sci.fit(data, train={"max_steps": steps}, progress=False)
    res = ode.evaluate(model, test, setting="unconditional", timing_repeats=3)

    gen = np.asarray(model.sample(64, seed=0))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, traj, title in ((axes[0], test["x"].values[:64], "dopri5"), (axes[1], gen, "MMF")):
        for tr in traj:
            ax.plot(tr[:, 0], tr[:, 2], lw=0.6)
        ax.set_title(f"Lorenz-63 (x, z), {title}")
    fig.tight_layout()
    fig.savefig(out / "lorenz.png", dpi=90)
    plt.close(fig)
    return [
        {
            "method": "Lorenz MMF 1-step",
            "sw_over_floor": res["sw_mean"] / floor,
            "residual": res["dynamics_residual_median"],
            "residual_solver": res["dynamics_residual_solver"],
            "sample_ms": 1e3 * res["sample_time_s"],
            "train_s": model.train_time_s,
        }
    ]


def forecast(steps: int, out: Path, system: str) -> list[dict]:
    kw = {"x0": "attractor"} | ({} if system.startswith("dysts:") else {"params": "default"})
    train = ode.simulate(system, 2048, seed=0, **kw)
    test = ode.simulate(system, 128, seed=1, **kw)
    setting = ode.forecast_setting(train, window=16, horizon=48, noise=0.05)
    cond, target = setting.inputs(train, seed=0)
    obs = setting.observe(test["x"].values, seed=1)
    truth = setting.truth(test)
    # A distribution of futures given the window: the setting's recipe, not the deterministic map;
    # an eighth of the windows is held out to calibrate the ensembles' spread.
    n_cal = len(cond) // 8
    model = meanflow_sci.fit(
        target[:-n_cal], cond[:-n_cal], recipe=setting.recipe, train={"max_steps": steps},
        progress=False,
    )  # fmt: skip
    ensembles, sample_ms = {}, {}
    for k in (1, 2):
        spread = ode.calibrate_spread(model, setting, cond[-n_cal:], target[-n_cal:], steps=k)
        start = time.perf_counter()
        ensembles[f"MMF {k}-step"] = ode.forecast(
            model, setting, obs, members=32, steps=k, spread=spread
        )
        sample_ms[f"MMF {k}-step"] = 1e3 * (time.perf_counter() - start) / len(obs)
    ensembles["solver"], _ = ode.reference_ensemble(system, test, setting, obs, members=32)
    lyapunov = None
    if system.startswith("dysts:"):
        lyapunov = ode.catalogue.dysts_info(system)["lyapunov"]
    scores = {k: ode.score_ensemble(v, truth, lyapunov=lyapunov) for k, v in ensembles.items()}
    combined = xr.concat(
        [v.expand_dims(model=[k]) for k, v in scores.items()], dim="model", coords="minimal"
    )
    combined.to_netcdf(out / "forecast_scores.nc")
    ode.plot_forecast(combined, ensembles, truth, out / "forecast.png", title=system)
    return [
        {
            "method": k,
            "crps": float(v["crps"].mean()),
            "energy_traj": float(v["energy_trajectory"]),
            "spread_skill": float(np.nanmean(v["spread_skill"].values)),
            "coverage_90": float(v["coverage_90"].mean()),
            "valid_time": float(v["valid_time"]),
            "sample_ms": sample_ms.get(k, float("nan")),
        }
        for k, v in scores.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="MMF optimizer steps")
    parser.add_argument("--out", default="runs/ode_fitting")
    parser.add_argument("--system", default=None, help="a system name or dysts:NAME")
    parser.add_argument("--forecast", action="store_true", help="the forecasting setting")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.forecast:
        rows = forecast(args.steps, out, args.system or "lorenz63")
    elif args.system is not None:
        rows = conditional_map(args.steps, out, args.system)
    else:
        rows = conditional_map(args.steps, out) + lorenz(args.steps, out)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    print(" | ".join(f"{c:>18}" for c in cols))
    for r in rows:
        cells = [r.get(c, "") for c in cols]
        print(" | ".join(f"{v:>18.4g}" if isinstance(v, float) else f"{v!s:>18}" for v in cells))
    print(f"plots in {out}/")


if __name__ == "__main__":
    main()
