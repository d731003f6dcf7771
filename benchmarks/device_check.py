"""One prepared check of the trainer on an accelerator (or, for a dry run, the CPU).

Per backbone: fit a few hundred MMF steps (bf16 autocast on CUDA, the JVP in float32; the recipe
``fit`` picks, with MMF's own objective defaults), record steps/s and the final MSE, resume from
a checkpoint, and time 1- against 50-step sampling (``--compile``: also a ``torch.compile``d
one-step sampler). Prints a Markdown table and writes JSON.

Usage:
    python benchmarks/device_check.py --device cuda --steps 300 --out runs/device_check.json
    python benchmarks/device_check.py --device cpu --steps 5      # dry run of the plumbing
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import meanflow_sci as mfs
from meanflow_sci.recipes import ObjectiveConfig
from meanflow_sci.train.device import resolve_autocast_dtype

try:
    from benchmarks.common import machine_info, median_time
except ModuleNotFoundError:  # run as a script: python benchmarks/device_check.py
    from common import machine_info, median_time

CASES = {
    "mlp": ((64,), {"hidden": 512, "depth": 4}),
    "unet1d": ((32, 8), {"down_dims": (64, 128, 256)}),
    "transformer": ((32, 8), {"width": 128, "depth": 4, "heads": 4}),
    "unet2d": ((3, 32, 32), {"base": 64, "channel_mults": (1, 2, 2), "resolution": 32}),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _latency_ms(model, steps: int, device: str, repeats: int = 5) -> float:
    def call() -> None:
        model.sample(64, steps=steps, seed=0)
        _sync(device)

    _sync(device)
    return 1e3 * median_time(call, repeats)


def _compiled_latency(model, device: str) -> dict:
    """Compile the network for sampling; one-step latency and agreement with eager."""
    eager = model.sample(64, steps=1, seed=0)
    net = model.model
    try:
        t0 = time.perf_counter()
        model.model = torch.compile(net)
        compiled = model.sample(64, steps=1, seed=0)  # triggers compilation
        _sync(device)
        compile_s = time.perf_counter() - t0
        ms = _latency_ms(model, 1, device)
        diff = float(np.max(np.abs(np.asarray(compiled) - np.asarray(eager))))
        return {"compile_s": compile_s, "compiled_1step_ms": ms, "compiled_max_abs_diff": diff}
    except Exception as exc:  # report, do not abort the other backbones
        return {"compile_error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        model.model = net


def check_backbone(
    name: str, steps: int, device: str, batch: int, n: int = 2048, compile: bool = False
) -> dict:
    shape, kwargs = CASES[name]
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, *shape)).astype(np.float32)
    train = {"batch_size": batch, "log_every": max(1, steps // 10)}
    common = dict(
        backbone={"name": name, **kwargs},
        objective=ObjectiveConfig("mmf"),
        device=device,
        progress=False,
    )
    t0 = time.perf_counter()
    model = mfs.fit(data, train={**train, "max_steps": steps}, **common)
    _sync(device)
    train_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        half = max(1, steps // 2)
        first = {**train, "max_steps": half, "checkpoint_every": half}
        mfs.fit(data, train=first, checkpoint_dir=tmp, **common)
        again = {**train, "max_steps": steps}
        resumed = mfs.fit(data, train=again, checkpoint_dir=tmp, resume=True, **common)
    lat = {k: _latency_ms(model, k, device, repeats=5 if k == 1 else 2) for k in (1, 50)}
    last = model.history[-1]
    row = {
        "backbone": name,
        "params": model.num_parameters,
        "steps": steps,
        "train_s": train_s,
        "steps_per_s": steps / train_s,
        "final_mse": last["mse"],
        "finite": bool(np.isfinite(last["loss"])),
        "resumed_to": resumed.steps_trained,
        "sample_1step_ms": lat[1],
        "sample_50step_ms": lat[50],
        "autocast": str(resolve_autocast_dtype("auto", torch.device(device))),
    }
    if compile:
        row.update(_compiled_latency(model, device))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda, cpu, auto (default auto)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per backbone")
    p.add_argument("--batch", type=int, default=256, help="batch size")
    p.add_argument("--only", default=None, help="comma-separated backbone names")
    p.add_argument("--out", default=None, help="JSON output path")
    p.add_argument("--compile", action="store_true", help="also time a torch.compile'd sampler")
    a = p.parse_args(argv)
    names = list(CASES) if a.only is None else a.only.split(",")
    info = machine_info(a.device)
    rows = []
    for n in names:
        rows.append(check_backbone(n, a.steps, a.device, a.batch, compile=a.compile))
        print(rows[-1], flush=True)
        if a.out:  # written after each backbone, so a cut-off run keeps what it measured
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    print(info)
    print(
        "| backbone | params | steps/s | final mse | finite | resumed to | 1-step ms | 50-step ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backbone']} | {r['params']:,} | {r['steps_per_s']:.1f} | "
            f"{r['final_mse']:.4f} | {r['finite']} | {r['resumed_to']} | "
            f"{r['sample_1step_ms']:.2f} | {r['sample_50step_ms']:.1f} |"
        )
    if a.compile:
        for r in rows:
            if "compile_error" in r:
                print(f"{r['backbone']}: torch.compile failed: {r['compile_error']}")
            else:
                print(
                    f"{r['backbone']}: compiled 1-step {r['compiled_1step_ms']:.2f} ms "
                    f"(eager {r['sample_1step_ms']:.2f}), compile {r['compile_s']:.1f} s, "
                    f"max |compiled - eager| {r['compiled_max_abs_diff']:.2e}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
