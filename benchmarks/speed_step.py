"""Training-step and sampling cost of MMF against flow matching, per backbone (the ``speed`` task).

Per backbone and size: median times of a flow-matching step, an MMF step at λ = 0, 0.5 and 1
(also λ = 0 with plain ``torch.func.jvp`` and with ``jvp_backend="fd"``) and a one-step sample
over a bare forward, interleaved in one process so the ratios are fair; the task adds the
sampling latency of one batch against NFE.

Usage:
    python benchmarks/speed_step.py [--repeats 15] [--threads 2] [--ratio 0.25] [--json OUT]
    python -c "from benchmarks.speed_step import run; print(run('smoke'))"
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from meanflow_sci.core import FlowMatching, ModularMeanFlow, sample
from meanflow_sci.nn import build_backbone
from meanflow_sci.nn.layers import set_lean_jvp

try:
    from benchmarks.common import check_suite, columns_of, machine_info, median_times, rows_md
except ModuleNotFoundError:  # run as a script: python benchmarks/speed_step.py
    from common import check_suite, columns_of, machine_info, median_times, rows_md

# name, size, backbone kwargs, sample shape, batch
CASES = [
    ("mlp", "small", {"dim": 64, "hidden": 256, "depth": 2}, (64,), 256),
    ("mlp", "medium", {"dim": 64, "hidden": 512, "depth": 4}, (64,), 512),
    ("unet1d", "small", {"channels": 4, "down_dims": (32, 64)}, (16, 4), 64),
    ("unet1d", "medium", {"channels": 8, "down_dims": (64, 128, 256)}, (32, 8), 128),
    ("transformer", "small", {"channels": 4, "width": 64, "depth": 2, "heads": 4}, (16, 4), 64),
    ("transformer", "medium", {"channels": 8, "width": 128, "depth": 4, "heads": 4}, (32, 8), 128),
    ("unet2d", "small", {"in_channels": 1, "base": 16, "channel_mults": (1, 2)}, (1, 8, 8), 64),
    ("unet2d", "medium", {"in_channels": 3, "base": 32, "channel_mults": (1, 2, 2)}, (3, 16, 16),
     32),
]  # fmt: skip
SPEED_CASES: dict[str, list[tuple]] = {
    "tiny": [
        ("mlp", "tiny", {"dim": 8, "hidden": 32, "depth": 1}, (8,), 16),
        ("unet1d", "tiny", {"channels": 2, "down_dims": (8, 16)}, (8, 2), 8),
    ],
    "small": [c for c in CASES if c[1] == "small"],
    "all": CASES,
}


@dataclass(frozen=True)
class SpeedConfig:
    """Sizes of the speed task for one suite."""

    cases: str  # key of SPEED_CASES
    repeats: int  # timed repetitions of each training step
    nfe: tuple[int, ...]  # sampling steps to time
    latency_repeats: int
    ratio_r_neq_t: float = 0.25


_NFE = (1, 2, 4, 10, 50)
SUITES = {
    "smoke": SpeedConfig(cases="tiny", repeats=2, nfe=(1, 2, 4), latency_repeats=2),
    "quick": SpeedConfig(cases="small", repeats=7, nfe=_NFE, latency_repeats=5),
    "standard": SpeedConfig(cases="small", repeats=7, nfe=_NFE, latency_repeats=5),
    "full": SpeedConfig(cases="all", repeats=15, nfe=_NFE, latency_repeats=15),
}


def _case_row(case: tuple, repeats: int, ratio: float) -> dict:
    name, size, kwargs, shape, batch = case
    torch.manual_seed(0)
    model = build_backbone(name, **kwargs)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, *shape)
    kw = {"check_inputs": False, "time_sampler": "logit_normal", "ratio_r_neq_t": ratio}
    objs = {
        "fm": FlowMatching(check_inputs=False),
        **{f"mmf_lam{lam:g}": ModularMeanFlow(lam=lam, **kw) for lam in (0.0, 0.5, 1.0)},
        "mmf_lam0_func": ModularMeanFlow(lam=0.0, jvp_backend="func", **kw),
        "mmf_lam0_fd": ModularMeanFlow(lam=0.0, jvp_backend="fd", **kw),
    }

    def step_fn(objective, lean: bool = True) -> Callable[[], None]:
        def step() -> None:
            # lean=False: PyTorch's own forward-mode formulas, the reference implementation.
            old = set_lean_jvp(lean)
            try:
                loss = objective(model, x).loss.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            finally:
                set_lean_jvp(old)

        return step

    fns = {k: step_fn(o, lean=k != "mmf_lam0_func") for k, o in objs.items()}
    noise, ones = torch.randn_like(x), torch.ones(batch)

    @torch.no_grad()
    def forward() -> None:
        model(noise, ones * 0, ones)

    fns["forward"] = forward
    fns["sample_1step"] = lambda: sample(model, noise, steps=1)
    t = median_times(fns, repeats)
    return {
        "backbone": name,
        "size": size,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": batch,
        "shape": list(shape),
        **{f"{k}_ms": 1e3 * v for k, v in t.items()},
        "mmf0_over_fm": t["mmf_lam0"] / t["fm"],
        "mmf05_over_fm": t["mmf_lam0.5"] / t["fm"],
        "mmf1_over_fm": t["mmf_lam1"] / t["fm"],
        "mmf0_func_over_fm": t["mmf_lam0_func"] / t["fm"],
        "mmf0_fd_over_fm": t["mmf_lam0_fd"] / t["fm"],
        "sample1_over_forward": t["sample_1step"] / t["forward"],
    }


def step_cost(
    repeats: int = 15, ratio: float = 0.25, cases: Sequence[tuple] = CASES
) -> tuple[list[dict], dict[str, str]]:
    """Step-cost rows of each case, one case at a time so one failing backbone loses no other.

    Returns:
        The rows of the cases that ran, and ``{"<backbone> (<size>)": error}`` of those that
        raised.
    """
    rows, errors = [], {}
    for case in cases:
        try:
            rows.append(_case_row(case, repeats, ratio))
        except Exception as exc:  # noqa: BLE001 - recorded in the table
            errors[f"{case[0]} ({case[1]})"] = f"{type(exc).__name__}: {exc}"
    return rows, errors


def _latency(case: tuple, nfes: Sequence[int], repeats: int, device: torch.device) -> list[dict]:
    """Median sampling latency of one batch against NFE, MMF ("mean") and FM ("flow") samplers."""
    name, size, kwargs, shape, batch = case
    torch.manual_seed(0)
    model = build_backbone(name, **kwargs).to(device).eval()
    noise = torch.randn(batch, *shape, device=device)

    def fn(mode: str, k: int) -> Callable[[], None]:
        def call() -> None:
            with torch.no_grad():
                sample(model, noise, steps=k, mode=mode)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        return call

    fns = {
        (label, k): fn(mode, k) for mode, label in (("mean", "MMF"), ("flow", "FM")) for k in nfes
    }
    med = median_times(fns, repeats)
    return [
        {
            "backbone": f"{name} ({size})",
            "method": label,
            "nfe": k,
            "batch": batch,
            "ms": round(1e3 * t, 4),
            "per_sample_us": round(1e6 * t / batch, 3),
            "over_1nfe": round(t / med[(label, 1)], 2) if (label, 1) in med else None,
        }
        for (label, k), t in med.items()
    ]


# Step-cost table: column -> row key (ratios rounded to 2 digits, times to 3).
_STEP_COLUMNS = {
    "FM ms": "fm_ms",
    "MMF λ=0 ms": "mmf_lam0_ms",
    "MMF λ=0.5 ms": "mmf_lam0.5_ms",
    "MMF λ=1 ms": "mmf_lam1_ms",
    "λ=0/FM": "mmf0_over_fm",
    "λ=0.5/FM": "mmf05_over_fm",
    "λ=1/FM": "mmf1_over_fm",
    "1-step/forward": "sample1_over_forward",
    "λ=0/FM (torch.func.jvp)": "mmf0_func_over_fm",
    "λ=0/FM (fd)": "mmf0_fd_over_fm",
}


def _step_table(rows: list[dict]) -> list[dict]:
    """Step-cost rows by the table's columns (times rounded to 3 digits, ratios to 2)."""
    return [
        {
            **{k: r[k] for k in ("backbone", "size", "params", "batch")},
            **{c: round(r[k], 3 if c.endswith("ms") else 2) for c, k in _STEP_COLUMNS.items()},
        }
        for r in rows
    ]


def run(
    suite: str = "quick", device: str = "auto", out: str | Path | None = None, seed: int = 0
) -> dict:
    """Training-step cost (always on the CPU) and sampling latency on ``device`` (the task).

    ``out`` and ``seed`` are unused (fixed initialisation; the suite writes the files).
    """
    from meanflow_sci.train import resolve_device

    cfg = check_suite(suite, SUITES)
    dev = resolve_device(device)
    cases = SPEED_CASES[cfg.cases]
    t0 = time.perf_counter()
    step_rows, errors = step_cost(cfg.repeats, cfg.ratio_r_neq_t, cases)
    if not step_rows:
        raise RuntimeError(f"every training-step case failed: {errors}")
    latency_rows = [r for case in cases for r in _latency(case, cfg.nfe, cfg.latency_repeats, dev)]
    step_table = _step_table(step_rows) + [{"backbone": k, "error": v} for k, v in errors.items()]
    pivot: dict[tuple[str, str], dict] = {}
    for r in latency_rows:
        row = pivot.setdefault(
            (r["backbone"], r["method"]),
            {"backbone": r["backbone"], "method": r["method"], "batch": r["batch"]},
        )
        row[f"NFE {r['nfe']} ms"] = r["ms"]
    first, last = cfg.nfe[0], cfg.nfe[-1]
    for row in pivot.values():
        row[f"NFE {last} / NFE {first}"] = round(
            row[f"NFE {last} ms"] / max(row[f"NFE {first} ms"], 1e-12), 1
        )
    tables = [
        {
            "name": "speed_step_cost",
            "task": "speed",
            "title": f"Training-step cost, MMF against flow matching (CPU, "
            f"{torch.get_num_threads()} threads, median of {cfg.repeats}, ratios from one run)",
            "columns": columns_of(step_table),
            "rows": step_table,
        },
        {
            "name": "speed_sampling_latency",
            "task": "speed",
            "title": f"Sampling latency of one batch against NFE ({dev}, untrained networks: "
            f"latency does not depend on the weights; median of {cfg.latency_repeats})",
            "columns": list(next(iter(pivot.values())).keys()),
            "rows": list(pivot.values()),
        },
    ]
    return {
        "benchmark": "speed",
        "suite": suite,
        "config": asdict(cfg),
        "device": {"step_cost": "cpu", "latency": str(dev)},
        "step_cost": step_rows,
        "errors": errors,
        "latency": latency_rows,
        "tables": tables,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=15, help="timed repetitions per variant")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--ratio", type=float, default=0.25, help="fraction of the batch with r != t")
    p.add_argument("--only", default=None, help="comma-separated backbone names")
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cases = [c for c in CASES if a.only is None or c[0] in a.only.split(",")]
    rows, errors = step_cost(a.repeats, a.ratio, cases)
    m = machine_info("cpu")
    print(f"torch {m['torch']}, {m['processor']}, {m['torch_threads']} threads, r != t {a.ratio}")
    extra = [
        {"fwd ms": round(r["forward_ms"], 3), "1-step ms": round(r["sample_1step_ms"], 3)}
        for r in rows
    ]
    print(rows_md([{**t, **e} for t, e in zip(_step_table(rows), extra)]))
    for label, err in errors.items():
        print(f"{label}: {err}")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": m, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
