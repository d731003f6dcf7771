"""One prepared check of the trainer on an accelerator (or, for a dry run, the CPU).

For each backbone: fit a few hundred steps with MMF (bf16 autocast on CUDA, the JVP in float32),
record steps/s and the final unweighted MSE, interrupt-and-resume from a checkpoint, and time
one-step against 50-step sampling. Prints a Markdown table and writes JSON.

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

CASES = {
    "mlp": ((64,), {"hidden": 512, "depth": 4}),
    "unet1d": ((32, 8), {"down_dims": (64, 128, 256)}),
    "transformer": ((32, 8), {"width": 128, "depth": 4, "heads": 4}),
    "unet2d": ((3, 32, 32), {"base": 64, "channel_mults": (1, 2, 2), "resolution": 32}),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check_backbone(name: str, steps: int, device: str, batch: int, n: int = 2048) -> dict:
    shape, kwargs = CASES[name]
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, *shape)).astype(np.float32)
    common = dict(
        backbone=name,
        backbone_kwargs=kwargs,
        batch_size=batch,
        device=device,
        progress=False,
        log_every=max(1, steps // 10),
    )
    t0 = time.perf_counter()
    model = mfs.fit(data, max_steps=steps, **common)
    _sync(device)
    train_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        half = max(1, steps // 2)
        mfs.fit(data, max_steps=half, checkpoint_dir=tmp, checkpoint_every=half, **common)
        resumed = mfs.fit(data, max_steps=steps, checkpoint_dir=tmp, resume=True, **common)
    lat = {}
    for k in (1, 50):
        model.sample(64, steps=k, seed=0)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        model.sample(64, steps=k, seed=0)
        _sync(device)
        lat[k] = 1e3 * (time.perf_counter() - t0)
    last = model.history[-1]
    return {
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
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda, cpu, auto (default auto)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per backbone")
    p.add_argument("--batch", type=int, default=256, help="batch size")
    p.add_argument("--only", default=None, help="comma-separated backbone names")
    p.add_argument("--out", default=None, help="JSON output path")
    a = p.parse_args(argv)
    names = list(CASES) if a.only is None else a.only.split(",")
    info = {
        "torch": torch.__version__,
        "device": a.device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    rows = [check_backbone(n, a.steps, a.device, a.batch) for n in names]
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
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
