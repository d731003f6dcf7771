"""Launch-bound training steps on an accelerator: eager against CUDA graphs and ``torch.compile``.

A small network's MMF step is dominated by kernel launches on a large GPU (the digits UNet took
47 ms per step on an H200 against 42 ms on 2 CPU cores). This script times one static-shape
training step (the MMF loss with the JVP, backward and AdamW) of the digits-sized UNet2D three
ways, interleaved so the ratios are fair:

* ``eager``: the step as the trainer runs it;
* ``graph``: the same step captured once as a CUDA graph and replayed (AdamW ``capturable``; the
  batch, noise and times are drawn inside the graph from the CUDA generator, so every replay
  draws fresh ones; λ is fixed, as a capture freezes Python-side values);
* ``compile``: the network ``torch.compile``d, checked first against eager: the output and the
  forward-mode tangent ``du/dt`` must agree to ``--tol`` (else the variant is not timed).

On the CPU the graph variant is skipped (CUDA only) and ``compile`` can use a backend without
code generation (``--backend aot_eager``) so that the code path runs in seconds.

Usage:
    python benchmarks/gpu_step.py --device cuda --repeats 50 --out runs/gpu_step.json
    python benchmarks/gpu_step.py --device cpu --repeats 3 --backend aot_eager   # dry run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from meanflow_sci.core import ModularMeanFlow
from meanflow_sci.nn import build_backbone

try:
    from benchmarks.common import machine_info
except ModuleNotFoundError:  # run as a script: python benchmarks/gpu_step.py
    from common import machine_info

SHAPE = (1, 8, 8)  # scikit-learn's digits
BATCH = 64  # the images recipe's batch


def _build(device: str, seed: int = 0) -> tuple[torch.nn.Module, ModularMeanFlow]:
    torch.manual_seed(seed)
    net = build_backbone("unet2d", in_channels=1, base=16, resolution=8)  # the images recipe's
    return net.to(device), ModularMeanFlow(lam=0.5)


def tangent_check(eager: torch.nn.Module, compiled: torch.nn.Module, device: str) -> dict:
    """Max relative difference of the output and of the JVP tangent, compiled against eager."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, *SHAPE, generator=g).to(device)
    t = torch.rand(16, generator=g).to(device)
    r = t * torch.rand(16, generator=g).to(device)
    tangents = (torch.randn_like(x), torch.zeros_like(r), torch.ones_like(t))

    def jvp(model):
        return torch.func.jvp(lambda a, b, c: model(a, b, c), (x, r, t), tangents)

    (u0, du0), (u1, du1) = jvp(eager), jvp(compiled)

    def rel(a, b):
        a, b = a.detach(), b.detach()
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))

    return {"output_rel": rel(u1, u0), "tangent_rel": rel(du1, du0)}


def _step_fn(model, objective, opt, device: str, batch: int):
    def step() -> torch.Tensor:
        x = torch.randn(batch, *SHAPE, device=device)  # the data's stand-in (timing only)
        loss = objective(model, x, step=10_000).loss.mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timer(fn, device: str):
    def timed() -> float:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t0

    return timed


def variants(device: str, backend: str, tol: float, batch: int) -> tuple[dict, dict]:
    """``({name: timed step}, notes)`` for the variants that run on ``device``."""
    notes: dict = {}
    out = {}
    model, objective = _build(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    out["eager"] = _timer(_step_fn(model, objective, opt, device, batch), device)

    if device.startswith("cuda"):
        g_model, g_obj = _build(device)
        g_opt = torch.optim.AdamW(g_model.parameters(), lr=1e-4, capturable=True)
        step = _step_fn(g_model, g_obj, g_opt, device, batch)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on a side stream, as capture requires
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                step()
            out["graph"] = _timer(graph.replay, device)
        except Exception as exc:  # noqa: BLE001 - report why capture failed, time the rest
            notes["graph"] = f"capture failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    else:
        notes["graph"] = "CUDA graphs need a CUDA device"

    c_model, c_obj = _build(device)
    try:
        compiled = torch.compile(c_model, backend=backend)
        check = tangent_check(c_model, compiled, device)
        notes["compile_check"] = check
        if max(check.values()) > tol:
            notes["compile"] = f"not timed: compiled differs from eager by {check} (> {tol})"
        else:
            c_opt = torch.optim.AdamW(c_model.parameters(), lr=1e-4)
            out["compile"] = _timer(_step_fn(compiled, c_obj, c_opt, device, batch), device)
    except Exception as exc:  # noqa: BLE001
        notes["compile"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    return out, notes


def run(device: str = "cpu", repeats: int = 20, warmup: int = 3, backend: str = "inductor",
        tol: float = 1e-3, batch: int = BATCH) -> dict:  # fmt: skip
    """Median step time per variant (interleaved) and the ratios against eager."""
    fns, notes = variants(device, backend, tol, batch)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(fn())
    rows = []
    eager = statistics.median(times["eager"])
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"variant": name, "ms": round(1e3 * med, 3), "steps/s": round(1 / med, 1),
                     "x eager": round(eager / med, 2)})  # fmt: skip
    return {"device": device, "backend": backend, "batch": batch, "shape": SHAPE,
            "repeats": repeats, "rows": rows, "notes": notes,
            "machine": machine_info(device)}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--backend", default="inductor", help="torch.compile backend")
    p.add_argument("--tol", type=float, default=1e-3, help="compiled-vs-eager tolerance")
    p.add_argument("--out", default=None, help="JSON file")
    a = p.parse_args(argv)
    result = run(a.device, a.repeats, backend=a.backend, tol=a.tol)
    print(f"MMF training step, digits UNet2D, batch {BATCH}, {a.device}, median of {a.repeats}")
    for row in result["rows"]:
        print(row)
    for key, note in result["notes"].items():
        print(f"{key}: {note}")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
