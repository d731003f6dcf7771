"""ODE benchmark: one-step MMF against the solver, flow matching, regression and classic baselines.

Van der Pol conditional on (x0, mu): MMF trains first, flow matching, regression and a neural ODE
then get the same wall time, nearest neighbour needs none; rel L2 against dopri5 and sampling
time are reported. Lorenz-63 on its attractor, unconditional: sliced Wasserstein of the ensemble
against the solver's, over the floor of two solver ensembles. Targets: :data:`TARGETS`; settings:
the ``"trajectory_map"`` and ``"trajectory_ensemble"`` recipes plus the tiers of :data:`SUITES`
(``benchmarks/README.md`` and ``benchmarks/NOTES.md``, "ODE").

Usage:
    python benchmarks/ode.py                  # standard suite (5-8 minutes on 2 CPU cores)
    python benchmarks/ode.py --suite quick    # the benchmark suite's share (about 3 minutes)
    python benchmarks/ode.py --suite smoke    # seconds, checks the plumbing
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import meanflow_sci
from meanflow_sci.recipes import Recipe, resolve_recipe
from meanflow_sci.tasks import ode

try:
    from benchmarks.budget import TimeLimit, fit_within
    from benchmarks.common import check_suite, machine_info, median_times, pyplot, rows_md
    from benchmarks.report import write_results
except ModuleNotFoundError:  # run as a script: python benchmarks/<name>.py
    from budget import TimeLimit, fit_within
    from common import check_suite, machine_info, median_times, pyplot, rows_md
    from report import write_results

# Van der Pol, 1-step MMF: rel L2 over each baseline's (at most), sampling speed-up (at least).
TARGETS = {
    "mmf1_over_nn": 0.5,
    "mmf1_over_fm50": 1.25,
    "mmf1_over_regression": 2.0,
    "fm50_time_over_mmf1_time": 30.0,
}


@dataclass(frozen=True)
class SuiteConfig:
    """Sizes of one tier; ``backbone`` and ``train`` change the recipes' groups."""

    n_train: int
    n_test: int
    mmf_steps: int  # Van der Pol MMF steps (the recipe's 3000 is the defaults benchmark's)
    lorenz_steps: int
    backbone: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    calib_steps: int = 20
    fm_steps_eval: tuple[int, ...] = (1, 10, 50)


SUITES = {
    # Plumbing only: a tiny network.
    "smoke": SuiteConfig(n_train=64, n_test=16, mmf_steps=6, lorenz_steps=4, calib_steps=3,
                         backbone={"hidden": 32, "depth": 1}, train={"batch_size": 32},
                         fm_steps_eval=(1, 50)),
    # quick: the suite's share of about 15 minutes; standard: the sizes behind the issue targets.
    "quick": SuiteConfig(n_train=1000, n_test=128, mmf_steps=600, lorenz_steps=400),
    "standard": SuiteConfig(n_train=2000, n_test=256, mmf_steps=1500, lorenz_steps=1000),
    # GPU scale: a deeper network and a longer weight average for the longer run.
    "full": SuiteConfig(n_train=4000, n_test=512, mmf_steps=6000, lorenz_steps=4000,
                        backbone={"depth": 3}, train={"ema_decay": 0.999}),
}  # fmt: skip


def _recipe(cfg: SuiteConfig, name: str, steps: int, objective: str | None = None) -> Recipe:
    backbone = cfg.backbone
    train = {**cfg.train, "max_steps": steps, "log_every": 10}
    return resolve_recipe(name, backbone=backbone, objective=objective, train=train)


def _fit(data, cond, recipe: Recipe, device: str, seed: int, budget_s: float | None = None):
    # Under a budget the LR's cosine follows the clock, so the schedule ends at the budget
    # however fast the machine runs (the step count is then only a cap).
    callbacks = () if budget_s is None else (TimeLimit(budget_s, lr_by_time=True),)
    return meanflow_sci.fit(
        data, cond, recipe=recipe, device=device, seed=seed, progress=False, callbacks=callbacks
    )


def solver_time_s(ds, repeats: int = 3) -> float:
    """Median seconds of one batched solve of every trajectory in ``ds`` (the reference), with the
    method and tolerances that made it."""
    a, inputs = ds.attrs, [torch.as_tensor(ds[k].values) for k in ("x0", "params", "time")]
    opts = {"method": a["method"], "rtol": a["rtol"], "atol": a["atol"]}
    return median_times({0: lambda: ode.integrate(a["system"], *inputs, **opts)}, repeats, 0)[0]


def _solver_row(ds, **extra: Any) -> dict:
    return {
        "method": f"{ds.attrs['method']} solve (torchdiffeq, reference)",
        "NFE": "adaptive",
        **extra,
        "sample_ms": round(1e3 * solver_time_s(ds), 2),
    }


def _fit_in_budget(data, cond, objective: str, cfg: SuiteConfig, budget_s: float, device, seed):
    """Fit ``objective`` for ``budget_s`` of wall time: the clock stops the run and drives the
    LR's cosine; a calibration caps the step count at 3x what the budget should buy."""

    def fit_steps(n: int, budget: float | None = None):
        recipe = _recipe(cfg, "trajectory_map", n, objective)
        return _fit(data, cond, recipe, device, seed, budget_s=budget)

    return fit_within(fit_steps, budget_s, cfg.calib_steps)


def _row(method: str, steps: Any, res: dict, train_s: float, train_steps: Any) -> dict:
    return {
        "method": method,
        "NFE": steps,
        "rel_l2_median": round(res["rel_l2_median"], 4),
        "rel_l2_p90": round(res["rel_l2_p90"], 4),
        "reintegration_rel_l2": round(res.get("reintegration_rel_l2_median", float("nan")), 4),
        "sample_ms": round(1e3 * res.get("sample_time_s", float("nan")), 2),
        "train_s": round(train_s, 1),
        "train_steps": train_steps,
    }


def van_der_pol_conditional(cfg: SuiteConfig, device: str, seed: int) -> dict:
    """The conditional benchmark; returns rows, ratios and verdicts."""
    train = ode.simulate("van_der_pol", cfg.n_train, seed=seed)
    test = ode.simulate("van_der_pol", cfg.n_test, seed=seed + 1)
    data, cond = ode.fit_inputs(train, "conditional")
    ev = {"reintegrate": True, "timing_repeats": 3, "seed": seed}
    rows: list[dict] = []
    results: dict[str, dict] = {}

    mmf = _fit(data, cond, _recipe(cfg, "trajectory_map", cfg.mmf_steps), device, seed)
    budget = mmf.train_time_s
    for k in (1, 2):
        results[f"mmf{k}"] = ode.evaluate(mmf, test, steps=k, **ev)
        rows.append(_row("MMF", k, results[f"mmf{k}"], budget, mmf.steps_trained))

    # Same wall-clock budget for the others: calibrate their step cost, cap with a time limit.
    fm = _fit_in_budget(data, cond, "fm", cfg, budget, device, seed)
    for k in cfg.fm_steps_eval:
        results[f"fm{k}"] = ode.evaluate(fm, test, steps=k, **ev)
        rows.append(_row("FM (Euler)", k, results[f"fm{k}"], fm.train_time_s, fm.steps_trained))

    reg = _fit_in_budget(data, cond, "regression", cfg, budget, device, seed)
    results["regression"] = ode.evaluate(reg, test, **ev)
    rows.append(_row("regression", 1, results["regression"], reg.train_time_s, reg.steps_trained))

    node = ode.fit_neural_ode(train, time_budget_s=budget, max_steps=100_000, seed=seed)
    results["neural_ode"] = ode.evaluate(node, test, **ev)
    node_steps = node.history[-1]["step"] if node.history else 0
    rk4_nfe = 4 * (test.sizes["time"] - 1)
    rows.append(
        _row("neural ODE (RK4)", rk4_nfe, results["neural_ode"], node.train_time_s, node_steps)
    )

    nn_model = ode.NearestNeighbour(train)
    results["nearest_neighbour"] = ode.evaluate(nn_model, test, **ev)
    rows.append(_row("nearest neighbour", 0, results["nearest_neighbour"], 0.0, 0))
    solver_row = _solver_row(test, rel_l2_median=0.0)
    rows.append(solver_row)

    m1 = results["mmf1"]["rel_l2_median"]
    last = cfg.fm_steps_eval[-1]
    ratios = {
        "mmf1_over_nn": m1 / results["nearest_neighbour"]["rel_l2_median"],
        f"mmf1_over_fm{last}": m1 / results[f"fm{last}"]["rel_l2_median"],
        "mmf1_over_regression": m1 / results["regression"]["rel_l2_median"],
        f"fm{last}_time_over_mmf1_time": results[f"fm{last}"]["sample_time_s"]
        / results["mmf1"]["sample_time_s"],
        "solver_time_over_mmf1_time": solver_row["sample_ms"]
        / (1e3 * results["mmf1"]["sample_time_s"]),
    }
    verdicts = {}
    for key, value in ratios.items():
        target = TARGETS.get(key)
        if target is None:
            continue
        met = value >= target if key.endswith("time") else value <= target
        verdicts[key] = {"value": round(value, 3), "target": target, "met": bool(met)}
    return {
        "rows": rows,
        "ratios": {k: round(v, 4) for k, v in ratios.items()},
        "verdicts": verdicts,
        "error_vs_time": {k: results[k]["error_vs_time"] for k in ("mmf1", "regression")},
        "time": results["mmf1"]["time"],
        "mmf_history_last": mmf.history[-1] if mmf.history else {},
        "models": {"mmf": mmf, "fm": fm, "regression": reg},
        "test": test,
    }


def lorenz_unconditional(cfg: SuiteConfig, device: str, seed: int) -> dict:
    """The unconditional benchmark: SW of time marginals against the two-ensemble floor."""
    kw = {"x0": "attractor", "params": "default", "rtol": 1e-6, "atol": 1e-8}
    train = ode.simulate("lorenz63", cfg.n_train, seed=seed + 10, **kw)
    test = ode.simulate("lorenz63", cfg.n_test, seed=seed + 11, **kw)
    other = ode.simulate("lorenz63", cfg.n_test, seed=seed + 12, **kw)
    floor = ode.evaluate(other["x"].values, test, setting="unconditional", reintegrate=False)
    data, _ = ode.fit_inputs(train, "unconditional")
    recipe = _recipe(cfg, "trajectory_ensemble", cfg.lorenz_steps)
    model = _fit(data, None, recipe, device, seed)

    def sw_row(method: str, nfe: Any, res: dict, **extra: Any) -> dict:
        sw, mmd = res["sw_mean"], res["mmd_mean"]
        over = sw / floor["sw_mean"]
        return {
            "method": method,
            "NFE": nfe,
            "sw_mean": sw,
            "sw_over_floor": over,
            "mmd_mean": mmd,
            **extra,
        }

    rows = [sw_row("solver vs solver (floor)", "-", floor)]
    for k in (1, 2):
        res = ode.evaluate(
            model, test, steps=k, setting="unconditional", seed=seed, timing_repeats=3
        )
        rows.append(
            sw_row(
                "MMF",
                k,
                res,
                reintegration_rel_l2=res.get("reintegration_rel_l2_median"),
                sample_ms=1e3 * res["sample_time_s"],
            )
        )
    memo = ode.NearestNeighbour(train, setting="unconditional")
    rows.append(
        sw_row("training set draw", 0, ode.evaluate(memo, test, setting="unconditional", seed=seed))
    )
    # The ensemble from its initial states on the attractor (the burn-in that found them is not
    # counted).
    rows.append(_solver_row(test))
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float):
                row[key] = round(value, 4)
    return {
        "rows": rows,
        "train_s": model.train_time_s,
        "steps": model.steps_trained,
        "model": model,
        "test": test,
        "sw_floor": floor["sw_mean"],
    }


def _plots(out: Path, vdp: dict, lorenz: dict) -> list[str]:
    plt = pyplot()
    test = vdp["test"]
    cond = ode.condition_of(test)[:4]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for name, style in (("mmf", "-"), ("fm", ":"), ("regression", "--")):
        model = vdp["models"][name]
        pred = np.asarray(model.sample(cond=cond, steps=1 if name != "fm" else 50, seed=0))
        for i, ax in enumerate(axes):
            ax.plot(pred[i, :, 0], pred[i, :, 1], style, label=f"{name}")
    for i, ax in enumerate(axes):
        ax.plot(test["x"].values[i, :, 0], test["x"].values[i, :, 1], "k", lw=0.8, label="dopri5")
        ax.set_title(f"mu={float(test['params'].values[i, 0]):.2f}")
    axes[0].legend(fontsize=7)
    figures = [(fig, "van_der_pol_phase.png")]
    gen = np.asarray(lorenz["model"].sample(64, steps=1, seed=0))
    ref = lorenz["test"]["x"].values[:64]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, traj, title in ((axes[0], ref, "dopri5"), (axes[1], gen, "MMF, 1 step")):
        for tr in traj:
            ax.plot(tr[:, 0], tr[:, 2], lw=0.6)
        ax.set_title(f"Lorenz-63 (x, z): {title}")
    figures.append((fig, "lorenz_phase.png"))
    for fig, name in figures:
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
    return [str(out / name) for _, name in figures]


def run(
    suite: str = "quick", device: str = "auto", out: str | Path | None = None, seed: int = 0
) -> dict:
    """Run the ODE benchmark; return JSON-able results (tables as lists of rows) and, with
    ``out``, write ``results.json``, ``results.md`` and the plots there."""
    cfg = check_suite(suite, SUITES)
    start = time.perf_counter()
    vdp = van_der_pol_conditional(cfg, device, seed)
    lorenz = lorenz_unconditional(cfg, device, seed)
    tables = [
        {
            "name": "ode_van_der_pol_conditional",
            "title": "Van der Pol, conditional on (x0, mu): relative L2 against dopri5 "
            "(same backbone and wall-clock training time)",
            "rows": vdp["rows"],
        },
        {
            "name": "ode_lorenz_unconditional",
            "title": "Lorenz-63 on its attractor, unconditional: per-time sliced Wasserstein "
            "against the solver, and its ratio to the floor of two solver ensembles",
            "rows": lorenz["rows"],
        },
    ]
    result = {
        "benchmark": "ode",
        "suite": suite,
        "config": asdict(cfg),
        "recipe": {
            "van_der_pol": vdp["models"]["mmf"].recipe.to_dict(),
            "lorenz": lorenz["model"].recipe.to_dict(),
        },
        "tables": tables,
        "ratios": vdp["ratios"],
        "verdicts": vdp["verdicts"],
        "error_vs_time": vdp["error_vs_time"],
        "time": vdp["time"],
        "mmf_history_last": {
            k: v for k, v in vdp["mmf_history_last"].items() if isinstance(v, (int, float, str))
        },
        "lorenz": {k: lorenz[k] for k in ("train_s", "steps", "sw_floor")},
        "machine": machine_info(device),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        result["plots"] = _plots(folder, vdp, lorenz)
        md = [f"## {t['title']}\n\n{rows_md(t['rows'])}\n" for t in tables]
        write_results(folder, "results", result, "\n".join(md))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="standard", choices=sorted(SUITES))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/bench_ode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = run(args.suite, device=args.device, out=args.out, seed=args.seed)
    for table in result["tables"]:
        print(f"\n{table['title']}\n")
        print(rows_md(table["rows"]))
    print("\nTargets (Van der Pol, 1-step MMF):")
    for key, v in result["verdicts"].items():
        print(f"  {key}: {v['value']} (target {v['target']}): {'met' if v['met'] else 'MISSED'}")
    print(f"\nwall time {result['wall_s']} s; results in {args.out}")


__all__ = ["run", "SUITES", "SuiteConfig"]

if __name__ == "__main__":
    main()
