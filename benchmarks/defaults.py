"""Defaults benchmark: ``fit(data, cond)`` with nothing else, on conditional trajectories of
systems the recipes were not tuned on.

Per system (written here, not in the library; ``damped_oscillator`` and ``duffing`` checked the
recipe's setting, the other three were held out until it was fixed: ``benchmarks/NOTES.md``,
"Defaults"): 4096 training trajectories fitted with ``recipe="auto"`` (``"trajectory_map"``),
the same recipe with ``objective="regression"`` and nearest neighbour, scored by the one-step
median rel L2 on 512 test trajectories against :data:`TARGETS` (issue 18).

Usage:
    python benchmarks/defaults.py                   # standard: all five systems (~15 min)
    python benchmarks/defaults.py --suite quick     # three held-out systems, 1000 steps
    python benchmarks/defaults.py --suite smoke     # seconds, checks the plumbing
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import meanflow_sci
from meanflow_sci.tasks import ode

try:
    from benchmarks.common import check_suite, machine_info
    from benchmarks.report import table_markdown, write_results
except ModuleNotFoundError:  # run as a script: python benchmarks/defaults.py
    from common import check_suite, machine_info
    from report import table_markdown, write_results

TARGETS = {"train_s": 300.0, "mmf1_over_nn": 0.3, "mmf1_over_regression": 1.5}


def _damped_oscillator(t, x, p):
    # x'' + 2 zeta w x' + w^2 x = 0
    zeta, w = p[:, 0], p[:, 1]
    return torch.stack([x[:, 1], -2 * zeta * w * x[:, 1] - w**2 * x[:, 0]], 1)


def _duffing(t, x, p):
    # unforced damped Duffing: x'' + delta x' + alpha x + beta x^3 = 0
    d, a, b = p[:, 0], p[:, 1], p[:, 2]
    return torch.stack([x[:, 1], -d * x[:, 1] - a * x[:, 0] - b * x[:, 0] ** 3], 1)


def _brusselator(t, x, p):
    # u' = a - (b + 1) u + u^2 v, v' = b u - u^2 v (Hopf bifurcation at b = 1 + a^2)
    a, b = p[:, 0], p[:, 1]
    u, v = x[:, 0], x[:, 1]
    return torch.stack([a - (b + 1) * u + u**2 * v, b * u - u**2 * v], 1)


def _selkov(t, x, p):
    # Sel'kov glycolysis: x' = -x + a y + x^2 y, y' = b - a y - x^2 y
    a, b = p[:, 0], p[:, 1]
    u, v = x[:, 0], x[:, 1]
    return torch.stack([-u + a * v + u**2 * v, b - a * v - u**2 * v], 1)


def _predator_prey(t, x, p):
    # Rosenzweig-MacArthur (logistic prey, Holling type II), non-dimensional
    k, c, d = p[:, 0], p[:, 1], p[:, 2]
    u, v = x[:, 0], x[:, 1]
    q = u / (1 + u)
    return torch.stack([u * (1 - u / k) - q * v, c * v * (q - d)], 1)


def _system(name, field, states, params, p_ranges, x0_ranges, horizon, note):
    return ode.ODESystem(
        name=name,
        state_names=states,
        param_names=params,
        vector_field=field,
        param_ranges=p_ranges,
        x0_ranges=x0_ranges,
        t_span=(0.0, horizon),
        n_times=64,
        description=note,
    )


SYSTEMS = {
    "damped_oscillator": _system(
        "damped_oscillator", _damped_oscillator, ("x", "v"), ("zeta", "w"),
        ((0.02, 0.15), (1.0, 3.0)), ((-1.0, 1.0), (-1.0, 1.0)), 10.0,
        "1.6-4.8 periods, amplitude decay exp(-zeta w T) in [0.006, 0.6]",
    ),
    "duffing": _system(
        "duffing", _duffing, ("x", "v"), ("delta", "alpha", "beta"),
        ((0.05, 0.3), (0.5, 1.5), (0.2, 1.5)), ((-1.5, 1.5), (-1.5, 1.5)), 15.0,
        "hardening spring, lightly to moderately damped",
    ),
    "brusselator": _system(
        "brusselator", _brusselator, ("u", "v"), ("a", "b"),
        ((1.0, 1.5), (2.0, 3.5)), ((0.2, 2.5), (0.5, 3.5)), 20.0,
        "both sides of the Hopf line: spirals into the fixed point and limit cycles",
    ),
    "selkov": _system(
        "selkov", _selkov, ("x", "y"), ("a", "b"),
        ((0.06, 0.1), (0.5, 0.8)), ((0.1, 1.5), (0.1, 1.5)), 30.0,
        "around the classical a = 0.08, b = 0.6 limit cycle",
    ),
    "predator_prey": _system(
        "predator_prey", _predator_prey, ("prey", "predator"), ("K", "c", "d"),
        ((2.0, 4.0), (0.5, 1.5), (0.3, 0.5)), ((0.2, 2.0), (0.2, 1.0)), 40.0,
        "limit cycle when K > 2 x* + 1 (part of the range), else damped",
    ),
}  # fmt: skip
TUNED_ON = ("damped_oscillator", "duffing")
HELD_OUT = ("brusselator", "selkov", "predator_prey")


@dataclass(frozen=True)
class Tier:
    systems: tuple[str, ...]
    n_train: int
    n_test: int
    steps: int | None  # None: the recipe's own (3000)


TIERS = {
    "smoke": Tier(("brusselator",), 64, 16, 4),
    "quick": Tier(HELD_OUT, 4096, 512, 1000),
    "standard": Tier(TUNED_ON + HELD_OUT, 4096, 512, None),
}


def _rel_l2(model, test, system, steps: int = 1) -> float:
    res = ode.evaluate(model, test, steps=steps, reintegrate=False, system=system)
    return float(res["rel_l2_median"])


def run_system(name: str, tier: Tier, seed: int) -> dict:
    system = SYSTEMS[name]
    train = ode.simulate(system, tier.n_train, seed=seed)
    test = ode.simulate(system, tier.n_test, seed=seed + 1000)
    data, cond = ode.fit_inputs(train, "conditional")
    row: dict = {
        "system": name,
        "held_out": name in HELD_OUT,
        "nn": _rel_l2(ode.NearestNeighbour(train), test, system),
    }
    # The defaults under test: no option but the tier's step count (None in the standard tier).
    train_opts = None if tier.steps is None else {"max_steps": tier.steps}
    for label, objective in (("mmf", None), ("regression", "regression")):
        t0 = time.perf_counter()
        model = meanflow_sci.fit(data, cond, objective=objective, train=train_opts, seed=seed,
                                 progress=False)  # fmt: skip
        row[f"{label}_train_s"] = time.perf_counter() - t0
        row[f"{label}_steps"] = model.steps_trained
        row["recipe"] = model.recipe.name
        for steps in (1, 2) if label == "mmf" else (1,):
            row[f"{label}_{steps}"] = _rel_l2(model, test, system, steps)
    row["mmf1_over_nn"] = row["mmf_1"] / row["nn"]
    row["mmf1_over_regression"] = row["mmf_1"] / row["regression_1"]
    row["met"] = bool(
        row["mmf1_over_nn"] <= TARGETS["mmf1_over_nn"]
        and row["mmf1_over_regression"] <= TARGETS["mmf1_over_regression"]
        and row["mmf_train_s"] <= TARGETS["train_s"]
    )
    return row


COLUMNS = (
    ("system", "system"), ("held_out", "held out"), ("mmf_steps", "steps"),
    ("mmf_train_s", "MMF train s"), ("nn", "NN rel-L2"), ("regression_1", "regression"),
    ("mmf_1", "MMF 1-step"), ("mmf_2", "MMF 2-step"), ("mmf1_over_nn", "1-step / NN"),
    ("mmf1_over_regression", "1-step / regression"), ("met", "targets met"),
)  # fmt: skip


def run(suite: str = "standard", *, out: str | Path | None = None, seed: int = 0,
        verbose: bool = True) -> dict:  # fmt: skip
    """Run a tier; return (and write under ``out``) the rows and the verdict."""
    tier = check_suite(suite, TIERS)
    rows = []
    for name in tier.systems:
        rows.append(run_system(name, tier, seed))
        if verbose:
            r = rows[-1]
            print(
                f"{name}: NN {r['nn']:.4f} regression {r['regression_1']:.4f} MMF-1 "
                f"{r['mmf_1']:.4f} ({r['mmf1_over_nn']:.3f}x NN, "
                f"{r['mmf1_over_regression']:.2f}x regression) in {r['mmf_train_s']:.0f} s",
                flush=True,
            )
    held = [r for r in rows if r["held_out"]]
    report = {
        "suite": suite,
        "seed": seed,
        "targets": TARGETS,
        "machine": machine_info("cpu"),
        "rows": rows,
        "met_on_held_out": sum(r["met"] for r in held),
        "held_out": len(held),
        "median_mmf1_over_nn": float(np.median([r["mmf1_over_nn"] for r in rows])),
        "median_mmf1_over_regression": float(np.median([r["mmf1_over_regression"] for r in rows])),
    }
    table = {
        "title": f"Defaults: fit(data, cond) on unseen systems ({suite})",
        "columns": [c for _, c in COLUMNS],
        "rows": [{c: r[k] for k, c in COLUMNS} for r in rows],
    }
    report["tables"] = [table]
    if out is not None:
        write_results(Path(out), "defaults", report, table_markdown(table))
    return report


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="standard", choices=sorted(TIERS))
    p.add_argument("--out", default="runs/defaults")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    report = run(a.suite, out=a.out, seed=a.seed)
    print(
        f"targets met on {report['met_on_held_out']} of {report['held_out']} held-out systems; "
        f"median 1-step / NN {report['median_mmf1_over_nn']:.3f}, / regression "
        f"{report['median_mmf1_over_regression']:.2f}"
    )
    return report


if __name__ == "__main__":
    main()
