"""Meta-World benchmark: one-step MMF policies against behaviour cloning and flow matching.

The protocol of the one-step policy papers (DP3, MP1) on state observations: per task, scripted
demonstrations (``metaworld.policies``) on training goal variations (episode seeds from
``1000 * training seed``), evaluation on held-out variations (seeds from 10 000), several training
seeds x evaluation episodes; success is ``info["success"]`` and ends the episode. Every method is
the ``"policy"`` recipe on the same backbone and budget (flow matching and behaviour cloning with
another objective; the FM network is sampled with 10 and 100 steps). Per task and method: success
rate with a Wilson interval over all seeds' episodes, decision latency median / p95 (batch 1), mean
squared change of consecutive actions; and the mean success over tasks. With ``--out``: the
tables (``metaworld.md``, ``metaworld.json``) and two figures (``success.png``, ``latency.png``).

Tasks: :data:`TASKS`, fixed before any result, covering Meta-World's difficulty groups as DP3 and
MP1 report them (easy / medium / hard / very hard).

Usage (needs ``pip install -e ".[metaworld]"``):
    python benchmarks/meta_world.py --suite standard --threads 2 --out runs/bench_metaworld
    python benchmarks/meta_world.py --suite quick --out runs/bench_metaworld
    python benchmarks/meta_world.py --merge runs/seed0 runs/seed1 --out runs/bench_metaworld
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meanflow_sci.tasks import control
from meanflow_sci.tasks.control import meta_world
from meanflow_sci.tasks.control.evaluate import success_interval

try:
    from benchmarks.common import check_suite, machine_info, pyplot, read_parts, task_parser
    from benchmarks.policies import compare
    from benchmarks.report import write_results
except ModuleNotFoundError:  # run as a script: python benchmarks/meta_world.py
    from common import check_suite, machine_info, pyplot, read_parts, task_parser
    from policies import compare
    from report import write_results

TASKS = {
    "reach-v3": "easy",
    "button-press-v3": "easy",
    "drawer-open-v3": "easy",
    "door-open-v3": "easy",
    "basketball-v3": "medium",
    "hammer-v3": "medium",
    "sweep-into-v3": "medium",
    "push-v3": "hard",
    "pick-place-v3": "hard",
    "assembly-v3": "hard",
    "shelf-place-v3": "very hard",
    "stick-pull-v3": "very hard",
    "disassemble-v3": "very hard",
}
METHODS = ("mmf-1", "bc", "fm-10", "fm-100")
EVAL_SEED = 10_000  # variations 10 000 on: a block no training seed uses

# suite -> tasks, demonstrations per task, training seeds, evaluation episodes per seed,
# train steps (None: the recipe's), evaluation step limit (None: Meta-World's 500); "full" is
# the anchors' second setting, 50 demonstrations
# fmt: off
SUITES = {
    "smoke": dict(tasks=("reach-v3",), demos=2, seeds=1, episodes=2, steps=20, max_steps=40),
    "quick": dict(tasks=("reach-v3", "hammer-v3", "push-v3"), demos=10, seeds=1, episodes=10,
                  steps=None, max_steps=None),
    "standard": dict(tasks=tuple(TASKS), demos=10, seeds=3, episodes=20, steps=None,
                     max_steps=None),
    "full": dict(tasks=tuple(TASKS), demos=50, seeds=3, episodes=20, steps=None,
                       max_steps=None),
}
# fmt: on


def _task_rows(runs: list[dict]) -> dict:
    """Pool one task's runs (one per training seed) into per-method figures."""
    out = {}
    for name in runs[0]["methods"]:
        rs = [r["methods"][name] for r in runs]
        flags = [bool(s) for r in rs for s in r["successes"]]
        out[name] = {
            "success": float(np.mean(flags)),
            "success_ci": success_interval(flags),
            "success_per_seed": [r["success_rate"] for r in rs],
            "latency_ms_median": float(np.median([r["latency_ms_median"] for r in rs])),
            "latency_ms_p95": float(np.median([r["latency_ms_p95"] for r in rs])),
            "action_change": float(np.mean([r["action_change"] for r in rs])),
            "train_s": float(np.mean([r["train_time_s"] for r in rs])),
            "eval_s": float(np.mean([r["eval_time_s"] for r in rs])),
        }
    out["expert"] = {
        "success": float(np.mean([r["expert"]["success_rate"] for r in runs])),
        "action_change": float(np.mean([r["expert"]["action_change"] for r in runs])),
    }
    return out


def _targets(per_task: dict, methods: tuple[str, ...] = METHODS) -> dict:
    rows = per_task.values()
    means = {m: float(np.mean([t[m]["success"] for t in rows])) for m in methods}
    lat = {m: float(np.median([t[m]["latency_ms_median"] for t in rows])) for m in methods}
    if not {"mmf-1", "bc", "fm-100"} <= set(methods):
        return {"mean_success": means}
    ratio = lat["fm-100"] / lat["mmf-1"]
    return {
        "mean_success": means,
        "mmf_vs_bc": {
            "value": means["mmf-1"] - means["bc"],
            "target": ">= 0",
            "met": bool(means["mmf-1"] >= means["bc"]),
        },
        "mmf_vs_fm100": {
            "value": means["mmf-1"] - means["fm-100"],
            "target": ">= -0.02",
            "met": bool(means["mmf-1"] >= means["fm-100"] - 0.02),
        },
        "latency_fm100_over_mmf": {"value": ratio, "target": ">= 50", "met": bool(ratio >= 50)},
    }


def run_tasks(
    cfg: dict,
    *,
    methods: tuple[str, ...] = METHODS,
    device: str = "auto",
    seed: int = 0,
    log: Any = None,
    **policy: Any,
) -> dict:
    """Collect, fit and evaluate every task of ``cfg`` (a :data:`SUITES` entry); ``policy``
    (``horizon``, ``n_obs_steps``, ``n_action_steps``, ``backbone``) goes to ``compare``."""
    meta_world.require()
    warnings.filterwarnings("ignore", module="metaworld")
    say = log or (lambda *a, **k: None)
    t0 = time.perf_counter()
    per_task, raw, seeds = {}, {}, list(range(seed, seed + cfg["seeds"]))
    for task in cfg["tasks"]:
        runs = []
        for s in seeds:
            ds = control.collect(
                meta_world.ENV_ID, cfg["demos"], env_name=task, seed=1000 * s, progress=False
            )
            res = compare(
                ds,
                methods=methods,
                train=None if cfg["steps"] is None else {"max_steps": cfg["steps"]},
                eval_episodes=cfg["episodes"],
                eval_seed=EVAL_SEED,
                max_steps=cfg["max_steps"],
                record_episodes=0,
                device=device,
                seed=s,
                **policy,
            )
            for r in [res["expert"], *res["methods"].values()]:
                r.pop("trajectories", None)
                r.pop("final_obs", None)
            runs.append(res)
        per_task[task] = _task_rows(runs)
        raw[task] = runs
        say(task, json.dumps({m: round(v["success"], 2) for m, v in per_task[task].items()}))
    return {
        "config": {**cfg, "tasks": list(cfg["tasks"]), "eval_seed": EVAL_SEED, **policy},
        "methods": list(methods),
        "groups": {t: TASKS[t] for t in cfg["tasks"]},
        "machine": machine_info(device),
        **_summary(per_task, {t: seeds for t in per_task}, methods),
        "runs": raw,
        "time_s": time.perf_counter() - t0,
    }


def _summary(per_task: dict, seeds_per_task: dict, methods: tuple[str, ...]) -> dict:
    """The figures a report derives from its pooled tasks: targets, tables and, when every task
    has the same several training seeds, the mean success over tasks per seed."""
    out = {
        "seeds_per_task": seeds_per_task,
        "per_task": per_task,
        "targets": _targets(per_task, methods),
        "tables": [_table(per_task, methods)],
    }
    seed_lists = {tuple(v) for v in seeds_per_task.values()}
    if len(seed_lists) == 1 and len(next(iter(seed_lists))) > 1:
        n = len(next(iter(seed_lists)))
        out["mean_success_per_seed"] = {
            m: [float(np.mean([t[m]["success_per_seed"][i] for t in per_task.values()]))
                for i in range(n)]
            for m in methods
        }  # fmt: skip
    return out


def run(
    suite: str = "quick",
    device: str = "auto",
    out: str | Path | None = None,
    seed: int = 0,
    verbose: bool = False,
    tasks: tuple[str, ...] | None = None,
    seeds: int | None = None,
    steps: int | None = None,
    methods: tuple[str, ...] = METHODS,
) -> dict:
    """Run a tier (optionally only some ``tasks`` or ``methods``, another number of training
    ``seeds`` or train ``steps`` for every method); return (and write under ``out``) a JSON-able
    dict of results and targets."""
    cfg = dict(check_suite(suite, SUITES))
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"methods: expected some of {METHODS}, got {unknown}")
    try:
        meta_world.require()
    except ImportError as err:
        return {"skipped": str(err), "suite": suite}
    if tasks is not None or seeds is not None or steps is not None:
        cfg.update(tasks=tasks or cfg["tasks"], seeds=seeds or cfg["seeds"])
        cfg["steps"] = steps or cfg["steps"]
        suite = f"{suite} (subset)"
    log = print if verbose else None
    report = {
        "suite": suite,
        "seed": seed,
        **run_tasks(cfg, methods=tuple(methods), device=device, seed=seed, log=log),
    }
    if out is not None:
        write_results(out, "metaworld", report, to_markdown(report))
        plot(report, out)
    return report


_SAME = ("demos", "episodes", "steps", "max_steps", "eval_seed")


def merge(parts: list[str | Path], out: str | Path | None = None) -> dict:
    """One report from runs of the same tier on other training seeds or tasks (each a folder
    holding ``metaworld.json``, merged ones included): each task's runs are pooled over seeds and
    the figures, means and targets recomputed. A (task, training seed) pair may appear once."""
    folders, reports = read_parts(parts, "metaworld", "Meta-World")
    first = reports[0]
    for folder, r in zip(folders, reports):
        if "skipped" in r:
            raise ValueError(f"parts: {folder} holds a skipped run ({r['skipped']})")
        mine, theirs = ({k: x["config"].get(k) for k in _SAME} for x in (r, first))
        if mine != theirs or r["methods"] != first["methods"]:
            raise ValueError(
                f"parts: every run must share {_SAME} and methods, got {mine} "
                f"{r['methods']} in {folder} against {theirs} {first['methods']}"
            )
    runs: dict[str, dict[int, dict]] = {}
    for folder, r in zip(folders, reports):
        seeds = range(r["seed"], r["seed"] + r["config"]["seeds"])
        for task, task_runs in r["runs"].items():
            # reports name each task's seeds; those written before they did ran seed, seed + 1, ...
            for s, res in zip(r.get("seeds_per_task", {}).get(task, seeds), task_runs):
                if s in runs.setdefault(task, {}):
                    raise ValueError(f"parts: {task} seed {s} appears twice (again in {folder})")
                runs[task][s] = res
    order = [t for t in TASKS if t in runs]
    seeds_per_task = {t: sorted(runs[t]) for t in order}
    pooled = {t: [runs[t][s] for s in seeds_per_task[t]] for t in order}
    methods = tuple(first["methods"])
    report = {
        "suite": first["suite"].replace(" (subset)", "") + " (merged)",
        "seed": min(s for v in seeds_per_task.values() for s in v),
        "config": {**first["config"], "tasks": order,
                   "seeds": min(len(v) for v in seeds_per_task.values())},
        "methods": list(methods),
        "groups": {t: TASKS[t] for t in order},
        "machine": first["machine"],
        "parts": [str(f) for f in folders],
        **_summary({t: _task_rows(pooled[t]) for t in order}, seeds_per_task, methods),
        "runs": pooled,
        "time_s": sum(r["time_s"] for r in reports),
    }  # fmt: skip
    if out is not None:
        write_results(out, "metaworld", report, to_markdown(report))
        plot(report, out)
    return report


def plot(report: dict, out: str | Path) -> list[Path]:
    """Save ``success.png`` (success per task and method, 95 % intervals) and ``latency.png``
    (mean success against decision latency) under ``out``; return their paths."""
    plt, out = pyplot(), Path(out)
    out.mkdir(parents=True, exist_ok=True)

    tasks, methods = list(report["per_task"]), report["methods"]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(min(1.1 * len(tasks) + 2.5, 15), 4.2))
    for j, m in enumerate(methods):
        rows = [report["per_task"][t][m] for t in tasks]
        y = np.array([r["success"] for r in rows])
        lo = y - np.array([r["success_ci"][0] for r in rows])
        hi = np.array([r["success_ci"][1] for r in rows]) - y
        x = np.arange(len(tasks)) + (j - (len(methods) - 1) / 2) * width
        ax.bar(x, y, width, yerr=[lo, hi], capsize=3, label=m)
    labels = [f"{t.removesuffix('-v3')}\n({report['groups'][t]})" for t in tasks]
    ax.set_xticks(np.arange(len(tasks)), labels, fontsize=8, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (held-out goals)")
    cfg = report["config"]
    ax.set_title(
        f"Meta-World: {cfg['demos']} demos per task, {cfg['seeds']} training seed(s) x "
        f"{cfg['episodes']} held-out goals"
    )
    ax.legend(fontsize=8, ncol=len(methods), loc="lower left")
    fig.tight_layout()
    p1 = out / "success.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for m in methods:
        lat = np.median([report["per_task"][t][m]["latency_ms_median"] for t in tasks])
        mean = report["targets"]["mean_success"][m]
        ax.scatter(lat, mean, s=40, label=f"{m}: {mean:.3f} at {lat:.2f} ms")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)  # the whole scale: gaps of a few episodes look as small as they are
    ax.set_xlabel("decision latency, median (ms, batch 1)")
    ax.set_ylabel("mean success over tasks")
    ax.set_title("success against decision latency")
    fig.tight_layout()
    p2 = out / "latency.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return [p1, p2]


def _table(per_task: dict, methods: tuple[str, ...] = METHODS) -> dict:
    rows = []
    for task, res in per_task.items():
        row = {"task": task, "group": TASKS[task], "expert": res["expert"]["success"]}
        for m in methods:
            lo, hi = res[m]["success_ci"]
            row[m] = res[m]["success"]
            row[f"{m} 95% CI"] = f"{lo:.2f}-{hi:.2f}"
        rows.append(row)
    return {"name": "metaworld_success", "title": "Meta-World success rate", "rows": rows}


def to_markdown(report: dict) -> str:
    if "skipped" in report:
        return f"# Meta-World benchmark ({report['suite']})\n\nskipped: {report['skipped']}\n"
    cfg, m, methods = report["config"], report["machine"], report["methods"]
    lines = [
        f"# Meta-World benchmark ({report['suite']})",
        "",
        f"{cfg['demos']} scripted demos per task, {cfg['seeds']} training seeds x "
        f"{cfg['episodes']} held-out episodes; torch {m['torch']}, {m['torch_threads']} threads, "
        f"{report['time_s']:.0f} s",
        "",
    ]
    counts = {len(v) for v in report.get("seeds_per_task", {}).values()}
    if len(counts) > 1:
        lines += [f"training seeds per task: {report['seeds_per_task']}", ""]
    lines += [
        "| task | group | expert | " + " | ".join(f"{x} success [95% CI]" for x in methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for task, res in report["per_task"].items():
        cells = [f"{res['expert']['success']:.2f}"]
        for x in methods:
            lo, hi = res[x]["success_ci"]
            cells.append(f"{res[x]['success']:.2f} [{lo:.2f}, {hi:.2f}]")
        lines.append(f"| {task} | {TASKS[task]} | " + " | ".join(cells) + " |")
    tg = report["targets"]
    lines.append(
        "| **mean** | | | " + " | ".join(f"**{tg['mean_success'][x]:.3f}**" for x in methods) + " |"
    )
    lines += [
        "",
        "| method | latency median / p95 (ms, median over tasks) | action change (mean sq.) "
        "| fit s / evaluation s (sum over tasks, per seed) |",
        "|---|---|---|---|",
    ]
    for x in methods:
        rs = report["per_task"].values()
        lines.append(
            f"| {x} | {np.median([r[x]['latency_ms_median'] for r in rs]):.2f} / "
            f"{np.median([r[x]['latency_ms_p95'] for r in rs]):.2f} | "
            f"{np.mean([r[x]['action_change'] for r in rs]):.4f} | "
            f"{sum(r[x]['train_s'] for r in rs):.0f} / "
            f"{sum(r[x].get('eval_s', 0) for r in rs):.0f} |"
        )
    if "mean_success_per_seed" in report:
        seeds = next(iter(report["seeds_per_task"].values()))
        lines += ["", f"Mean success per training seed ({', '.join(map(str, seeds))}):", ""]
        for x in methods:
            per_seed = " / ".join(f"{v:.3f}" for v in report["mean_success_per_seed"][x])
            lines.append(f"- {x}: {per_seed}")
    lines += ["", "## Targets", ""]
    for k, v in tg.items():
        if k != "mean_success":
            verdict = "met" if v["met"] else "MISSED"
            lines.append(f"- {k}: {verdict} ({v['value']:.3f}, target {v['target']})")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = task_parser(__doc__, "metaworld", SUITES)
    p.add_argument("--tasks", default=None, help="comma-separated subset of the tier's tasks")
    p.add_argument("--seeds", type=int, default=None, help="training seeds (default: the tier's)")
    p.add_argument("--steps", type=int, default=None, help="train steps (default: the recipe's)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    p.add_argument(
        "--merge", nargs="+", default=None, metavar="FOLDER",
        help="pool finished runs (folders holding metaworld.json) into one report under --out",
    )  # fmt: skip
    args = p.parse_args()
    if args.merge is not None:
        print(to_markdown(merge(args.merge, args.out)))
        return
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tasks = None if args.tasks is None else tuple(t.strip() for t in args.tasks.split(","))
    methods = tuple(m.strip() for m in args.methods.split(","))
    report = run(
        args.suite, args.device, args.out, args.seed, True, tasks=tasks, seeds=args.seeds,
        steps=args.steps, methods=methods,
    )  # fmt: skip
    print(to_markdown(report))


if __name__ == "__main__":
    main()
