"""One-step quality of MMF along training, on the digits benchmark's model.

Trains the MMF side of ``benchmarks/images.py`` (same tiers and ``--set`` overrides) and every
``--every`` steps scores 1000 one-step samples of the EMA model (fixed noise and labels) by the
Fréchet distance in the digit classifier's features; ``--ema`` also scores further weight
averages of the same run.

Usage:
    python benchmarks/images_track.py --budget 600 --steps 12000 --out runs/images_track.json
    python benchmarks/images_track.py --ema 0.999 0.9995 --budget 240 --steps 6800
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from meanflow_sci.tasks.images import digit_classifier, evaluate_images, load_digits
from meanflow_sci.train import EMA

try:
    from benchmarks.budget import TimeLimit
    from benchmarks.images import SUITES, configure, fit_method, parse_overrides, recipes_for
except ModuleNotFoundError:  # run as a script: python benchmarks/images_track.py
    from budget import TimeLimit
    from images import SUITES, configure, fit_method, parse_overrides, recipes_for


class OneStepTracker:
    """Trainer callback: one-step FD of the EMA model every ``every`` steps (list in ``rows``)."""

    def __init__(
        self, data, extractor, every: int, n: int = 1000, seed: int = 1, ema: tuple = ()
    ) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.data, self.extractor, self.every = data, extractor, every
        self.labels = data.labels[torch.randint(0, len(data), (n,), generator=gen)]
        self.noise = torch.randn(n, *data.images.shape[1:], generator=gen)
        self.rows: list[dict] = []
        self.start = time.perf_counter()
        self._next = every
        self.ema_decays = tuple(float(d) for d in ema)
        self._emas: list[EMA] | None = None  # built from the trainer's model at the first call

    def _one_step_fd(self, model) -> float:
        n, dev = len(self.labels), next(model.parameters()).device
        noise, labels = self.noise.to(dev), self.labels.to(dev)
        with torch.no_grad():
            # Digits are min-max normalised to [-1, 1] already, so the model's space is the data's.
            u = model(noise, torch.zeros(n, device=dev), torch.ones(n, device=dev), labels)
            x = (noise - u).clamp(-1, 1).float().cpu()
        m = evaluate_images(self.data.images, x, extractor=self.extractor, fake_labels=self.labels)
        return round(m.frechet_distance, 3)

    def __call__(self, trainer, record: dict) -> None:
        if self._emas is None:
            self._emas = [EMA(trainer.model, d) for d in self.ema_decays]
        for ema in self._emas:
            ema.update(trainer.model)
        if trainer.step < self._next:
            return
        self._next = trainer.step + self.every
        row = {
            "step": trainer.step,
            "elapsed_s": round(time.perf_counter() - self.start, 1),
            "fd_1step": self._one_step_fd(trainer.ema.module),
        }
        for decay, ema in zip(self.ema_decays, self._emas, strict=True):
            row[f"fd_1step_ema{decay:g}"] = self._one_step_fd(ema.module)
        row.update(mse=round(record["mse"], 5), lr=record["lr"])
        self.rows.append(row)


def run(
    suite: str = "standard",
    budget_s: float = 600.0,
    steps: int = 12000,
    every: int = 500,
    overrides: dict | None = None,
    seed: int = 0,
    ema: tuple = (),
    device: str = "cpu",
) -> list[dict]:
    """Train MMF for at most ``steps`` steps or ``budget_s`` seconds; the tracked rows."""
    cfg = configure(suite, overrides)
    data = load_digits(size=cfg.size)
    tracker = OneStepTracker(data, digit_classifier(), every, ema=ema)
    callbacks = (tracker, TimeLimit(budget_s))
    mmf = recipes_for(cfg)["mmf"]
    fit_method(data, mmf, steps, device, seed, log_every=5, callbacks=callbacks)
    return tracker.rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="standard", choices=sorted(SUITES))
    p.add_argument("--budget", type=float, default=600.0, help="wall-clock limit in seconds")
    p.add_argument("--steps", type=int, default=12000, help="steps the LR schedule spans")
    p.add_argument("--every", type=int, default=500, help="steps between scores")
    p.add_argument("--ema", type=float, nargs="*", default=[], help="further EMA decays to score")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--out", default=None, help="JSON file for the rows")
    a = p.parse_args()
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    rows = run(
        a.suite,
        a.budget,
        a.steps,
        a.every,
        parse_overrides(a.set),
        ema=tuple(a.ema),
        device=a.device,
        seed=a.seed,
    )
    for r in rows:
        print(r)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
