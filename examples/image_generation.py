"""One-step image generation with Modular MeanFlow: digits on a CPU, CIFAR-10 on a GPU.

Trains a class-conditional UNet2D with MMF (classifier-free guidance trained into the target, so a
guided sample is still one network evaluation) and, as the baseline, flow matching with the same
backbone and number of steps. Writes a PNG with real images beside 1-step and 2-step MMF samples
(one row per class) and prints a metric table: MMF 1-step, MMF 2-step, FM N-step.

Digits (default; a few minutes on 2 CPU cores):
    python examples/image_generation.py

CIFAR-10, the paper's setting (download and extract
https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz first; nothing is downloaded here):
    python examples/image_generation.py --dataset cifar10 --data-dir PATH --device cuda

Any folder of PNG/JPEG images (class labels from subfolder names):
    python examples/image_generation.py --dataset folder --data-dir PATH --size 32

Metrics: digits use the in-project digit classifier's feature space (trained once, cached); other
datasets use Inception FID when torch-fidelity or clean-fid and their weights are on disk, and
otherwise print why the metric was skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from meanflow_sci import RECIPES
from meanflow_sci.tasks.images import (
    MetricUnavailableError,
    evaluate_images,
    fit_images,
    inception_extractor,
    load_cifar10,
    load_digits,
    load_image_folder,
    sample_images,
    save_panels,
)

# Per dataset: the library's recipe and the training steps of this example. Digits use the
# "images" recipe (tuned in benchmarks/images.py for short CPU runs: the stable target field, a
# finite-difference du/dt, half the batch with r != t, p = 0.5); CIFAR-10 and image folders the
# "images_large" one (MeanFlow's CIFAR-10 time sampler and weighting on a DDPM-sized UNet2D, a
# starting point for a GPU, not benchmarked here) with flips.
DATASETS = {
    "digits": {"recipe": "images", "steps": 800, "hflip": False},
    "cifar10": {"recipe": "images_large", "steps": None, "hflip": True},
    "folder": {"recipe": "images_large", "steps": 20_000, "hflip": True},
}
FM_STEPS = 50  # Euler steps of the flow-matching baseline


def load(args: argparse.Namespace):
    if args.dataset == "digits":
        return load_digits(size=args.size or 8)
    if args.data_dir is None:
        raise SystemExit(f"--data-dir is required for --dataset {args.dataset}")
    if args.dataset == "cifar10":
        return load_cifar10(args.data_dir, split="train", limit=args.limit)
    return load_image_folder(args.data_dir, size=args.size)


def metric_rows(real, samples: dict, labels, dataset: str, device: str) -> dict:
    if dataset == "digits":
        extractor = "digits"
    else:
        try:
            extractor = inception_extractor(device=device if device != "auto" else "cpu")
        except MetricUnavailableError as err:
            print(f"metrics skipped: {err}")
            return {}
    rows = {}
    fake_labels = labels if dataset == "digits" else None
    for name, x in samples.items():
        m = evaluate_images(real, x, extractor=extractor, fake_labels=fake_labels)
        rows[name] = m.to_dict()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits", choices=sorted(DATASETS))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--size", type=int, default=None, help="digits: 8, 16 or 32; folder: resize")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--steps", type=int, default=None, help="training steps (per-dataset default)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lam", default=None, help="MMF λ: a number or 'linear' (recipe default)")
    p.add_argument("--cfg", type=float, default=1.0, help="guidance scale omega (1 = none)")
    p.add_argument("--no-fm", action="store_true", help="skip the flow-matching baseline")
    p.add_argument("--n-eval", type=int, default=1000, help="generated images per metric")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/image_generation")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    setting = DATASETS[args.dataset]
    data = load(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{data.name}: {len(data)} images {data.shape}, {data.num_classes} classes")

    c, h, w = data.shape
    train = {
        "max_steps": args.steps or setting["steps"] or RECIPES[setting["recipe"]].train.max_steps
    }
    if args.batch_size:
        train["batch_size"] = args.batch_size
    common = dict(
        recipe=setting["recipe"],
        train=train,
        hflip=setting["hflip"],
        device=args.device,
        seed=args.seed,
        progress=True,
    )
    # The null class is trained in both models (10 % dropped labels); with --cfg > 1 the guided
    # velocity is trained into the target, so sampling stays one evaluation.
    guide = {"guidance": {"omega": args.cfg, "kappa": 0.0, "drop_prob": 0.1}}
    guide = guide if data.num_classes else {}
    # λ = 0 (the recipes' value): for a distribution such as images, λ > 0 also descends the
    # conditional-velocity variance term and contracts one-step samples toward the mean (a
    # 415-step digits run with the linear curriculum gave chance-level labels).
    mmf_objective = dict(guide)
    if args.lam is not None:
        try:
            lam = float(args.lam)
        except ValueError:
            lam = args.lam
        mmf_objective["lam"] = lam
        if lam != 0.0:  # the finite-difference du/dt carries no gradient for λ > 0
            mmf_objective["jvp_backend"] = "auto"
    t0 = time.perf_counter()
    mmf = fit_images(data, objective=mmf_objective, **common)
    print(f"MMF trained {mmf.steps_trained} steps in {mmf.train_time_s:.0f} s")
    mmf.save(out / "mmf_model")
    fm = None
    if not args.no_fm:
        fm = fit_images(data, objective={"name": "fm", **guide}, **common)
        print(f"FM trained {fm.steps_trained} steps in {fm.train_time_s:.0f} s")

    # Grid: one row per class (or 10 rows of unconditional samples), real images on the left.
    k = min(data.num_classes, 10) if data.num_classes else 10
    grid_labels = torch.arange(k).repeat_interleave(10) if data.num_classes else None
    n_grid = 10 * k
    if data.labels is not None:
        real = torch.cat([data.images[data.labels == i][:10] for i in range(k)])
    else:
        real = data.images[:n_grid]
    panels = {"real": real}
    for steps in (1, 2):
        panels[f"MMF {steps}-step"] = sample_images(
            mmf, None if grid_labels is not None else n_grid, labels=grid_labels, steps=steps,
            seed=args.seed, value_range=data.value_range,
        )  # fmt: skip
    grid_path = save_panels(panels, out / "samples.png", nrow=10, scale=4 if h <= 16 else 2)
    print(f"wrote {grid_path}")

    # Metric table on n_eval samples with the real label frequencies.
    gen = torch.Generator().manual_seed(args.seed + 1)
    idx = torch.randint(0, len(data), (args.n_eval,), generator=gen)
    labels = data.labels[idx] if data.labels is not None else None
    n = None if labels is not None else args.n_eval
    samples, latency = {}, {}
    plan = [("MMF 1-step", mmf, 1), ("MMF 2-step", mmf, 2)]
    if fm is not None:
        plan.append((f"FM {FM_STEPS}-step", fm, FM_STEPS))
    for name, model, steps in plan:
        t1 = time.perf_counter()
        samples[name] = sample_images(
            model, n, labels=labels, steps=steps, seed=args.seed + 2, value_range=data.value_range
        )
        latency[name] = time.perf_counter() - t1
    rows = metric_rows(data.images, samples, labels, args.dataset, args.device)
    print(f"\n| method | NFE | sample s ({args.n_eval}) | FD | precision | recall | label acc |")
    print("|---|---|---|---|---|---|---|")
    for name, _, steps in plan:
        r = rows.get(name)
        vals = "- | - | - | -"
        if r:
            acc = "-" if r["label_accuracy"] is None else f"{r['label_accuracy']:.3f}"
            vals = f"{r['frechet_distance']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {acc}"
        print(f"| {name} | {steps} | {latency[name]:.2f} | {vals} |")
    if rows:
        print(f"features: {next(iter(rows.values()))['extractor']}")
    summary = {
        "dataset": args.dataset,
        "train_s": {"mmf": mmf.train_time_s, "fm": fm.train_time_s if fm else None},
        "steps": mmf.steps_trained,
        "metrics": rows,
        "sampling_s": latency,
        "wall_s": time.perf_counter() - t0,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
