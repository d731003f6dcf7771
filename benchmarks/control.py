"""Control benchmark: one-step MMF action-chunk policies against baselines on MuJoCo.

Tiers (:data:`SUITES`, all offline: the experts are computed from the simulator): InvertedPendulum
and Reacher at growing budgets, plus a HalfCheetah figure with MPPI demonstrations from
``standard`` on. Settings: the ``"policy"`` recipe for every method (flow matching and behaviour
cloning are the same recipe with another objective). Targets (:func:`_targets`): 1-step MMF score
>= 0.95; the 100-step sampler's latency >= 50x MMF's at no worse score (within 0.02); on Reacher,
MMF samples both elbow branches from at least half of the states while behaviour cloning
averages them.

Usage:
    python benchmarks/control.py --out runs/bench_control              # standard
    python benchmarks/control.py --suite quick --out runs/bench_control
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from meanflow_sci.tasks import control

try:
    from benchmarks.common import check_suite, machine_info, task_parser
    from benchmarks.policies import compare, format_table
    from benchmarks.report import write_results
except ModuleNotFoundError:  # run as a script: python benchmarks/control.py
    from common import check_suite, machine_info, task_parser
    from policies import compare, format_table
    from report import write_results

ALL = ("mmf-1", "bc", "fm-1", "fm-10", "fm-100", "mmf-traj-1")

# suite -> list of (env_id, demo episodes, train steps, eval episodes, max_steps, methods)
SUITES = {
    "smoke": [("InvertedPendulum-v5", 3, 20, 2, 50, ("mmf-1", "bc", "fm-10"))],
    # The benchmark suite's share of about 15 minutes: the two fast environments, smaller budgets.
    "quick": [
        ("InvertedPendulum-v5", 10, 300, 5, None, ALL),
        ("Reacher-v5", 100, 600, 20, None, ("mmf-1", "bc", "fm-10", "fm-100")),
    ],
    # The sizes behind the issue targets.
    "standard": [
        ("InvertedPendulum-v5", 20, 600, 10, None, ALL),
        ("Reacher-v5", 200, 1500, 50, None, ALL),
        ("HalfCheetah-v5", 4, 1000, 5, 200, ("mmf-1", "bc", "fm-10")),
    ],
    "full": [
        ("InvertedPendulum-v5", 50, 2000, 20, None, ALL),
        ("Reacher-v5", 500, 4000, 100, None, ALL),
        ("HalfCheetah-v5", 10, 3000, 5, 300, ("mmf-1", "bc", "fm-10", "fm-100")),
    ],
}


def _targets(results: dict) -> dict:
    out: dict = {}
    for key, env_id in (("score_ip", "InvertedPendulum-v5"), ("score_reacher", "Reacher-v5")):
        r = results.get(env_id, {}).get("methods", {}).get("mmf-1")
        if r is not None:
            out[key] = {"value": r["normalised_score"], "target": ">= 0.95"}
            out[key]["met"] = bool(r["normalised_score"] >= 0.95)
    for env_id, res in results.items():
        m = res["methods"]
        if "mmf-1" in m and "fm-100" in m:
            ratio = m["fm-100"]["latency_ms_median"] / m["mmf-1"]["latency_ms_median"]
            gap = m["mmf-1"]["normalised_score"] - m["fm-100"]["normalised_score"]
            out[f"latency_{env_id}"] = {
                "ratio": ratio,
                "score_mmf_minus_fm100": gap,
                "target": "ratio >= 50 and score gap >= -0.02",
                "met": bool(ratio >= 50 and gap >= -0.02),
            }
        if "branches" in m.get("mmf-1", {}) and "branches" in m.get("bc", {}):
            b, c = m["mmf-1"]["branches"], m["bc"]["branches"]
            out[f"multimodality_{env_id}"] = {
                "mmf_both_branches_rate": b["both_branches_rate"],
                "mmf_minority_share": b["minority_share"],
                "bc_both_branches_rate": c["both_branches_rate"],
                "bc_abs_elbow_over_expert": c["mean_abs_elbow"] / c["expert_abs_elbow"],
                "mmf_abs_elbow_over_expert": b["mean_abs_elbow"] / b["expert_abs_elbow"],
                "target": "mmf both_branches_rate >= 0.5 and bc |elbow| < 0.5 expert",
                "met": bool(
                    b["both_branches_rate"] >= 0.5
                    and c["mean_abs_elbow"] < 0.5 * c["expert_abs_elbow"]
                ),
            }
    return out


def run(
    suite: str = "quick",
    device: str = "auto",
    out: str | Path | None = None,
    seed: int = 0,
    verbose: bool = False,
) -> dict:
    """Run a suite; return (and write under ``out``) a JSON-able dict of results and targets."""
    envs = check_suite(suite, SUITES)
    say = print if verbose else (lambda *a, **k: None)
    t0 = time.perf_counter()
    results = {}
    for env_id, n_eps, steps, n_eval, max_steps, methods in envs:
        t_env = time.perf_counter()
        say(f"== {env_id}: collecting {n_eps} episodes")
        ds = control.collect(env_id, n_eps, seed=seed, max_steps=max_steps, progress=verbose)
        res = compare(
            ds,
            methods=methods,
            train={"max_steps": steps},
            eval_episodes=n_eval,
            max_steps=max_steps,
            device=device,
            seed=seed,
            log=say if verbose else None,
        )
        res["time_s"] = time.perf_counter() - t_env
        for r in [res["expert"], *res["methods"].values()]:
            r.pop("trajectories", None)
            r.pop("final_obs", None)
        results[env_id] = res
        say(format_table(res))
    report = {
        "tables": [_env_table(env_id, res) for env_id, res in results.items()],
        "suite": suite,
        "seed": seed,
        "machine": machine_info(device),
        "results": results,
        "targets": _targets(results),
        "time_s": time.perf_counter() - t0,
    }
    if out is not None:
        write_results(out, "control", report, to_markdown(report))
    return report


_FAMILY = {"mmf": "MMF action chunks", "mmf-traj": "MMF trajectory", "fm": "FM", "bc": "BC"}


def _env_table(env_id: str, res: dict) -> dict:
    """One environment's methods as a suite table (``method`` + ``NFE`` rows, plotted vs NFE)."""
    rows = []
    entries = [("expert", res["expert"], None, None)] + [
        (name, r, r.get("nfe"), r.get("train_time_s")) for name, r in res["methods"].items()
    ]
    for name, r, nfe, train_s in entries:
        family = name.rsplit("-", 1)[0] if name[-1].isdigit() else name
        rows.append(
            {
                "method": _FAMILY.get(family, family),
                "variant": name,
                "NFE": nfe if nfe is not None else "-",
                "normalised_score": r.get("normalised_score"),
                "mean_return": r.get("mean_return"),
                "std_return": r.get("std_return"),
                "success_rate": r.get("success_rate"),
                "latency_ms_median": r.get("latency_ms_median"),
                "latency_ms_p95": r.get("latency_ms_p95"),
                "train_s": train_s,
            }
        )
    cfg = res["config"]
    return {
        "name": f"control_{env_id}",
        "title": f"{env_id}: closed-loop score and decision latency ({cfg['n_demo_episodes']} "
        f"demos, {cfg['train_steps']} steps, {cfg['eval_episodes']} evaluation episodes)",
        "rows": rows,
    }


def to_markdown(report: dict) -> str:
    lines = [f"# Control benchmark ({report['suite']})", ""]
    m = report["machine"]
    lines.append(f"torch {m['torch']}, {m['torch_threads']} threads, device {m['device']}")
    for env_id, res in report["results"].items():
        lines += [
            "",
            f"## {env_id} ({res['config']['n_demo_episodes']} demos, "
            f"{res['config']['train_steps']} steps, {res['time_s']:.0f} s)",
            "",
        ]
        lines.append(format_table(res))
    lines += ["", "## Targets", ""]
    for k, v in report["targets"].items():
        lines.append(f"- {k}: {'met' if v['met'] else 'MISSED'} {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = task_parser(__doc__, "control", SUITES).parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = run(args.suite, args.device, args.out, args.seed, verbose=True)
    print(to_markdown(report))


if __name__ == "__main__":
    main()
