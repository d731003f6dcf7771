"""Training throughput from a file on disk against the same data in memory (the ``stream`` task).

Per trajectory recipe (``trajectory_ensemble``, ``trajectory_forecast``, ``trajectory_map``):
``fit`` on a NetCDF file opened lazily (``xr.open_dataset(..., chunks=...)``, read in batches by
the DataLoader with 0, 1 or 2 workers) and on the same values as a numpy array, interleaved
round by round in one process so that the ratios are fair on a shared machine. Throughput is
the median ``steps_per_s`` of the training log (the statistics pass and worker start-up are
reported apart, as ``setup_s``). Target: file-backed at least 0.9x in memory.

Usage:
    python benchmarks/streaming.py [--suite quick] [--threads 2] [--out DIR]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import meanflow_sci as mfs

try:
    from benchmarks.common import check_suite, columns_of, machine_info, rows_md, task_parser
except ModuleNotFoundError:  # run as a script: python benchmarks/streaming.py
    from common import check_suite, columns_of, machine_info, rows_md, task_parser

TARGET = 0.9
RECIPES = ("trajectory_ensemble", "trajectory_forecast", "trajectory_map")


@dataclass(frozen=True)
class StreamConfig:
    """Sizes of the stream task for one suite."""

    samples: int  # trajectories in the file
    time: int  # points per trajectory
    state: int  # state dimension
    chunk: int  # rows per NetCDF / dask chunk
    steps: int  # training steps per fit
    rounds: int  # interleaved rounds of every variant
    workers: tuple[int, ...]  # DataLoader workers tried for the file


SUITES = {
    "smoke": StreamConfig(512, 16, 3, 128, 30, 1, (0,)),
    "quick": StreamConfig(16384, 64, 3, 1024, 300, 3, (0, 1)),
    "standard": StreamConfig(65536, 64, 3, 1024, 400, 3, (0, 1, 2)),
    "full": StreamConfig(262144, 64, 3, 2048, 600, 5, (0, 1, 2)),
}


def _write_file(path: Path, cfg: StreamConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy oscillator trajectories and their (phase, frequency) condition, as a NetCDF file."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, cfg.time, dtype=np.float32)
    cond = rng.uniform([0, 0.5], [2 * np.pi, 1.5], (cfg.samples, 2)).astype(np.float32)
    phase = cond[:, :1] + cond[:, 1:] * t[None]
    x = np.stack([np.sin(phase + k) for k in range(cfg.state)], axis=-1).astype(np.float32)
    x += 0.05 * rng.standard_normal(x.shape).astype(np.float32)
    ds = xr.Dataset(
        {"x": (("sample", "time", "state"), x), "cond": (("sample", "param"), cond)},
        coords={"time": t},
    )
    ds.to_netcdf(path, encoding={"x": {"chunksizes": (cfg.chunk, cfg.time, cfg.state)}})
    return x, cond


def _fit(data, cond, recipe: str, cfg: StreamConfig, workers: int | None, seed: int) -> dict:
    train = {"max_steps": cfg.steps, "log_every": max(1, cfg.steps // 10)}
    if workers is not None:
        train["num_workers"] = workers
    t0 = time.perf_counter()
    fm = mfs.fit(data, cond if recipe != "trajectory_ensemble" else None, recipe=recipe,
                 var="x" if hasattr(data, "data_vars") else None, train=train, seed=seed,
                 val_fraction=0, progress=False)  # fmt: skip
    wall = time.perf_counter() - t0
    rates = [h["steps_per_s"] for h in fm.history[1:]]  # the first window holds warm-up
    return {
        "steps_per_s": statistics.median(rates),
        "setup_s": wall - fm.train_time_s,
        "wall_s": wall,
        "mse": fm.history[-1]["mse"],
    }


def run(suite: str = "quick", out: str | Path | None = None, seed: int = 0) -> dict:
    """Steps/s file-backed against in memory per trajectory recipe (the task)."""
    import xarray as xr

    cfg = check_suite(suite, SUITES)
    t0 = time.perf_counter()
    variants = [("memory", None)] + [(f"file, {w} workers", w) for w in cfg.workers]
    measured: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trajectories.nc"
        x, cond = _write_file(path, cfg, seed)
        file_mb = path.stat().st_size / 2**20
        for _ in range(cfg.rounds):
            for recipe in RECIPES:
                for name, workers in variants:
                    if workers is None:
                        data = x
                    else:
                        data = xr.open_dataset(path, chunks={"sample": cfg.chunk})[["x"]]
                    got = _fit(data, cond, recipe, cfg, workers, seed)
                    measured.setdefault((recipe, name), []).append(got)
    rows = []
    for recipe in RECIPES:
        base = statistics.median(r["steps_per_s"] for r in measured[(recipe, "memory")])
        for name, _ in variants:
            runs = measured[(recipe, name)]
            sps = statistics.median(r["steps_per_s"] for r in runs)
            rows.append({
                "recipe": recipe,
                "data": name,
                "steps/s": round(sps, 1),
                "x memory": round(sps / base, 3),
                "setup s": round(statistics.median(r["setup_s"] for r in runs), 2),
                "final mse": round(statistics.median(r["mse"] for r in runs), 4),
            })  # fmt: skip
    file_rows = [r for r in rows if r["data"] != "memory"]
    best = {}
    for r in file_rows:
        if r["recipe"] not in best or r["x memory"] > best[r["recipe"]]["x memory"]:
            best[r["recipe"]] = r
    default = [r for r in file_rows if r["data"] == "file, 0 workers"]
    summary = {
        "target": TARGET,
        "median_ratio_0_workers": statistics.median(r["x memory"] for r in default),
        "worst_ratio_0_workers": min(r["x memory"] for r in default),
        "met_0_workers": all(r["x memory"] >= TARGET for r in default),
        "best_workers": {k: v["data"] for k, v in best.items()},
    }
    title = (
        f"Training steps/s from a {file_mb:.0f} MiB NetCDF file (lazy, dask chunks of "
        f"{cfg.chunk}) against the same data in memory; {cfg.samples} x {cfg.time} x {cfg.state}, "
        f"{cfg.steps} steps, median of {cfg.rounds} interleaved rounds, "
        f"{torch.get_num_threads()} threads"
    )
    return {
        "benchmark": "stream",
        "suite": suite,
        "config": asdict(cfg),
        "machine": machine_info("cpu"),
        "file_mib": round(file_mb, 1),
        "runs": {f"{k[0]} | {k[1]}": v for k, v in measured.items()},
        "summary": summary,
        "tables": [
            {
                "name": "stream_throughput",
                "task": "stream",
                "title": title,
                "columns": columns_of(rows),
                "rows": rows,
            }  # fmt: skip
        ],
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main(argv=None) -> int:
    import json

    a = task_parser(__doc__, "stream", SUITES).parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    result = run(a.suite, seed=a.seed)
    table = result["tables"][0]
    print(table["title"])
    print(rows_md(table["rows"]))
    s = result["summary"]
    verdict = "met" if s["met_0_workers"] else "MISSED"
    print(
        f"file / memory with 0 workers: median {s['median_ratio_0_workers']:.3f}, worst "
        f"{s['worst_ratio_0_workers']:.3f} (target >= {TARGET}: {verdict}); best workers "
        f"{s['best_workers']}"
    )
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "stream.json").write_text(json.dumps(result, indent=1, default=str))
        (out / "stream.md").write_text(f"{table['title']}\n\n{rows_md(table['rows'])}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
