"""Training-step and sampling cost of MMF against flow matching, per backbone.

Prints, for each backbone at a small and a medium size: the median time of a flow-matching
step, of an MMF step at λ = 0, 0.5 and 1, their ratios, the λ = 0 ratio with plain
``torch.func.jvp`` and PyTorch's own forward-mode formulas (the straightforward implementation),
the λ = 0 ratio with ``jvp_backend="fd"`` (a finite difference instead of the JVP), and one-step
sampling over a bare forward.
All timings of one row come from the same process, interleaved, so the ratios are fair.

Usage:
    python benchmarks/speed_step.py [--repeats 15] [--threads 2] [--ratio 0.25] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

from meanflow_sci.core import FlowMatching, ModularMeanFlow, sample
from meanflow_sci.nn import build_backbone
from meanflow_sci.nn.layers import set_lean_jvp

# name, size, backbone kwargs, sample shape, batch
CASES = [
    ("mlp", "small", {"dim": 64, "hidden": 256, "depth": 2}, (64,), 256),
    ("mlp", "medium", {"dim": 64, "hidden": 512, "depth": 4}, (64,), 512),
    ("unet1d", "small", {"channels": 4, "down_dims": (32, 64)}, (16, 4), 64),
    ("unet1d", "medium", {"channels": 8, "down_dims": (64, 128, 256)}, (32, 8), 128),
    ("transformer", "small", {"channels": 4, "width": 64, "depth": 2, "heads": 4}, (16, 4), 64),
    ("transformer", "medium", {"channels": 8, "width": 128, "depth": 4, "heads": 4}, (32, 8), 128),
    ("unet2d", "small", {"in_channels": 1, "base": 16, "channel_mults": (1, 2)}, (1, 8, 8), 64),
    (
        "unet2d",
        "medium",
        {"in_channels": 3, "base": 32, "channel_mults": (1, 2, 2)},
        (3, 16, 16),
        32,
    ),
]


def _step_fn(model, objective, x: torch.Tensor, opt) -> Callable[[], None]:
    def step() -> None:
        loss = objective(model, x).loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _without_lean(fn: Callable[[], None]) -> Callable[[], None]:
    """The same step with PyTorch's own forward-mode formulas (for comparison)."""

    def wrapped() -> None:
        old = set_lean_jvp(False)
        try:
            fn()
        finally:
            set_lean_jvp(old)

    return wrapped


def _median_times(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median wall time of each function, calls interleaved so drift hits all alike."""
    for fn in fns.values():  # warm-up (first JVP compiles helpers)
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def run(repeats: int = 15, ratio: float = 0.25, cases=CASES) -> list[dict]:
    rows = []
    for name, size, kwargs, shape, batch in cases:
        torch.manual_seed(0)
        model = build_backbone(name, **kwargs)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(batch, *shape)
        sampler = {"time_sampler": "logit_normal", "ratio_r_neq_t": ratio}
        objs = {
            "fm": FlowMatching(check_inputs=False),
            "mmf_lam0": ModularMeanFlow(lam=0.0, check_inputs=False, **sampler),
            "mmf_lam0.5": ModularMeanFlow(lam=0.5, check_inputs=False, **sampler),
            "mmf_lam1": ModularMeanFlow(lam=1.0, check_inputs=False, **sampler),
            "mmf_lam0_func": ModularMeanFlow(
                lam=0.0, check_inputs=False, jvp_backend="func", **sampler
            ),
            "mmf_lam0_fd": ModularMeanFlow(
                lam=0.0, check_inputs=False, jvp_backend="fd", **sampler
            ),
        }
        fns = {k: _step_fn(model, o, x, opt) for k, o in objs.items()}
        # The reference: torch.func.jvp with PyTorch's own forward-mode formulas.
        fns["mmf_lam0_func"] = _without_lean(fns["mmf_lam0_func"])
        noise = torch.randn_like(x)
        ones = torch.ones(batch)

        @torch.no_grad()
        def forward(model=model, noise=noise, ones=ones) -> None:
            model(noise, ones * 0, ones)

        fns["forward"] = forward
        fns["sample_1step"] = lambda model=model, noise=noise: sample(model, noise, steps=1)
        t = _median_times(fns, repeats)
        rows.append(
            {
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
        )
    return rows


def format_table(rows: list[dict]) -> str:
    head = (
        "| backbone | size | params | FM ms | MMF λ=0 ms | MMF λ=0.5 ms | MMF λ=1 ms | λ=0/FM "
        "| λ=0.5/FM | λ=1/FM | λ=0/FM with torch.func.jvp | λ=0/FM with fd | fwd ms | 1-step ms "
        "| 1-step/fwd |"
    )
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['size']} | {r['params']:,} | {r['fm_ms']:.2f} | "
            f"{r['mmf_lam0_ms']:.2f} | {r['mmf_lam0.5_ms']:.2f} | {r['mmf_lam1_ms']:.2f} | "
            f"{r['mmf0_over_fm']:.2f} | {r['mmf05_over_fm']:.2f} | {r['mmf1_over_fm']:.2f} | "
            f"{r['mmf0_func_over_fm']:.2f} | {r['mmf0_fd_over_fm']:.2f} | "
            f"{r['forward_ms']:.3f} | {r['sample_1step_ms']:.3f} | "
            f"{r['sample1_over_forward']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=15, help="timed repetitions per variant")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--ratio", type=float, default=0.25, help="fraction of the batch with r != t (MMF)"
    )
    p.add_argument("--only", default=None, help="comma-separated backbone names")
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cases = [c for c in CASES if a.only is None or c[0] in a.only.split(",")]
    rows = run(a.repeats, a.ratio, cases)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, r != t fraction {a.ratio}"
    )
    print(format_table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
