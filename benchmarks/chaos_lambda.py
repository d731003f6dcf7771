"""Claim 1 (the λ curriculum) re-tested on chaotic forecasts from the dysts catalogue.

The chaos benchmark's forecast setting (16 noisy observed points -> the next 48, the
``trajectory_forecast`` recipe) on the first flows of its rule plus the held-out Lorenz. Per
system and JVP tangent (MeanFlow's conditional one and the model's own), the linear λ warm-up
(to 1 at half of training) against fixed λ = 0, 0.5 and 1, over seeds, judged by the claims'
verdict rules (``benchmarks/claims.py``): one-step CRPS (lower is better), the variance of the
training MSE over the last quarter of training, and divergences.

Usage:
    python benchmarks/chaos_lambda.py --suite quick --threads 1 --out runs/chaos_lambda
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

import meanflow_sci
from meanflow_sci.tasks import ode

try:
    from benchmarks.chaos import HELD_OUT, forecast_data, systems_for
    from benchmarks.claims import VERDICT_RULES, RunRecord, _lambda_table, _tail_var
    from benchmarks.common import check_suite, machine_info, rows_md, task_parser
except ModuleNotFoundError:  # run as a script: python benchmarks/chaos_lambda.py
    from chaos import HELD_OUT, forecast_data, systems_for
    from claims import VERDICT_RULES, RunRecord, _lambda_table, _tail_var
    from common import check_suite, machine_info, rows_md, task_parser

SUITES = {
    "smoke": dict(systems=1, held_out=False, seeds=(0, 1), n_train=128, n_test=16, steps=8,
                  members=8, backbone={"hidden": 32, "depth": 1}),
    "quick": dict(systems=2, held_out=True, seeds=(0, 1, 2), n_train=1024, n_test=128,
                  steps=400, members=32, backbone={"hidden": 256}),
    "standard": dict(systems=5, held_out=True, seeds=(0, 1, 2), n_train=2048, n_test=256,
                     steps=1500, members=32, backbone={}),
    "full": dict(systems=20, held_out=True, seeds=(0, 1, 2, 3, 4), n_train=2048, n_test=256,
                 steps=1500, members=32, backbone={}),
}  # fmt: skip
VARIANTS = {"lam0": 0.0, "lam0.5": 0.5, "lam1": 1.0, "linear": "linear"}
TANGENTS = ("conditional", "model")


def _one_run(target, cond, setting, obs, truth, cfg, lam, tangent, seed) -> RunRecord:
    objective = {"lam": lam, "tangent": tangent}
    if lam == "linear":
        objective["lam_warmup"] = max(1, cfg["steps"] // 2)
    rec = RunRecord(seed=seed)
    fm = meanflow_sci.fit(
        target, cond, recipe=setting.recipe, backbone=cfg["backbone"] or None,
        objective=objective, train={"max_steps": cfg["steps"], "log_every": 1}, seed=seed,
        device="cpu", progress=False,
    )  # fmt: skip
    hist = fm.history
    rec.train_time_s = float(fm.train_time_s)
    rec.nonfinite_steps = int(not all(math.isfinite(float(h["loss"])) for h in hist))
    rec.tail_mse_var = _tail_var(hist, "mse", 0.25)
    ens = ode.forecast(fm, setting, obs, members=cfg["members"], steps=1, seed=seed)
    values = ens.values
    if not np.isfinite(values).all():
        rec.nonfinite_steps += 1
        rec.quality["crps@1"] = float("nan")
    else:
        rec.quality["crps@1"] = float(ode.score_ensemble(ens, truth)["crps"].mean())
    return rec


def count_verdicts(verdicts: dict[str, dict[str, str]]) -> dict[str, dict[str, int]]:
    """How many of the tables gave each verdict, per claim."""
    counts: dict[str, dict[str, int]] = {}
    for per in verdicts.values():
        for claim, v in per.items():
            counts.setdefault(claim, {}).setdefault(v, 0)
            counts[claim][v] += 1
    return counts


def run(suite: str = "quick", out: str | Path | None = None, seed: int = 0) -> dict:
    """Claim-1 tables per system and tangent, and the count of verdicts."""
    cfg = check_suite(suite, SUITES)
    systems = list(systems_for(cfg["systems"])) + (list(HELD_OUT[:1]) if cfg["held_out"] else [])
    t0 = time.perf_counter()
    tables, verdicts = [], {}
    for name in systems:
        _, _, setting, cond, target, obs, truth = forecast_data(
            name, cfg["n_train"], cfg["n_test"], seed
        )
        for tangent in TANGENTS:
            runs = {
                k: [
                    _one_run(target, cond, setting, obs, truth, cfg, lam, tangent, seed + s)
                    for s in cfg["seeds"]
                ]  # fmt: skip
                for k, lam in VARIANTS.items()
            }
            label = f"{name}, {tangent} tangent" + (" (held out)" if name in HELD_OUT else "")
            table = _lambda_table(
                f"chaos {label}", runs, "crps@1", "CRPS (1-step)", len(cfg["seeds"])
            )
            table["task"] = "chaos_lambda"
            tables.append(table)
            verdicts[label] = table["verdicts"]
    result = {
        "benchmark": "chaos_lambda",
        "suite": suite,
        "config": cfg,
        "systems": systems,
        "machine": machine_info("cpu"),
        "verdicts": verdicts,
        "verdict_counts": count_verdicts(verdicts),
        "verdict_rules": VERDICT_RULES,
        "tables": tables,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    if out is not None:
        write_result(result, out)
    return result


def write_result(result: dict, out: str | Path) -> None:
    """``<benchmark>.json`` and ``<benchmark>.md`` (its tables) of a claim-1 result in ``out``."""
    out, name = Path(out), result["benchmark"]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
    (out / f"{name}.md").write_text(
        "\n\n".join(f"{t['title']}\n\n{rows_md(t['rows'])}" for t in result["tables"]) + "\n"
    )


def print_result(result: dict, over: str) -> None:
    """Each table of a claim-1 result, its verdicts, and the verdict counts ``over`` the tables."""
    for t in result["tables"]:
        print(t["title"])
        print(rows_md(t["rows"]))
        print("verdicts:", t["verdicts"], "\n", flush=True)
    print(f"verdict counts over {over}:", result["verdict_counts"])
    print(f"{result['wall_s']:.0f} s")


def main(argv=None) -> int:
    import torch

    a = task_parser(__doc__, "chaos_lambda", SUITES).parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print_result(run(a.suite, out=a.out, seed=a.seed), "systems x tangents")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
