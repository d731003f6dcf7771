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

from meanflow_sci.core.time_samplers import LogitNormalTimeSampler
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

# Per-dataset defaults. Digits: tuned for short CPU runs (benchmarks/images.py: a short warm-up
# and a large step size for both objectives; for MMF the adaptive weight with p = 0.5, half the
# batch with r != t, du/dt by a finite difference, which makes an MMF step about as cheap as a
# flow-matching step on a CPU, and the stable target field as its velocity target). CIFAR-10
# follows MeanFlow's CIFAR-10 recipe where it is known (time sampler, 75 % of the batch with
# r != t, adaptive weight p = 0.75, flips); the network is a narrower DDPM-style UNet than the
# paper's, and the step count is a starting point.
RECIPES = {
    "digits": dict(
        steps=800, batch_size=64, lr=4e-3, warmup=20, base=16, hflip=False, ema=0.995,
        fm_steps=50, lam=0.0, adaptive_p=0.5, jvp_backend="fd", target_field="stf",
        time_sampler=dict(mu=-0.4, sigma=1.6, ratio_r_neq_t=0.5),
    ),
    "cifar10": dict(
        steps=200_000, batch_size=128, lr=2e-4, base=128, hflip=True, ema=0.9999, fm_steps=50,
        lam=0.0,
        time_sampler=dict(mu=-2.0, sigma=2.0, ratio_r_neq_t=0.75), adaptive_p=0.75, dropout=0.1,
    ),
    "folder": dict(
        steps=20_000, batch_size=64, lr=2e-4, base=64, hflip=True, ema=0.999, fm_steps=50,
        lam=0.0,
    ),
}  # fmt: skip


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
    p.add_argument("--dataset", default="digits", choices=sorted(RECIPES))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--size", type=int, default=None, help="digits: 8, 16 or 32; folder: resize")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--steps", type=int, default=None, help="training steps (recipe default)")
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
    recipe = RECIPES[args.dataset]
    data = load(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{data.name}: {len(data)} images {data.shape}, {data.num_classes} classes")

    c, h, w = data.shape
    unet = {"base": recipe["base"], "dropout": recipe.get("dropout", 0.0)}
    common = dict(
        max_steps=args.steps or recipe["steps"],
        batch_size=args.batch_size or recipe["batch_size"],
        lr=recipe["lr"],
        lr_warmup_steps=recipe.get("warmup", 100),
        hflip=recipe["hflip"],
        backbone_kwargs=unet,
        ema_decay=recipe["ema"],
        device=args.device,
        seed=args.seed,
        progress=True,
    )
    # The null class is trained in both models (10 % dropped labels); with --cfg > 1 the guided
    # velocity is trained into the target, so sampling stays one evaluation.
    guidance = {"omega": args.cfg, "kappa": 0.0, "drop_prob": 0.1} if data.num_classes else None
    # λ = 0 (MeanFlow's stop-gradient loss) everywhere: for a distribution such as images, λ > 0
    # also descends the conditional-velocity variance term and contracts one-step samples toward
    # the mean (a 415-step digits run with the linear curriculum gave chance-level labels).
    lam = recipe["lam"] if args.lam is None else args.lam
    try:
        lam = float(lam)
    except ValueError:
        pass
    mmf_kwargs = {"lam": lam}
    if lam == 0.0 and "jvp_backend" in recipe:
        mmf_kwargs["jvp_backend"] = recipe["jvp_backend"]
    if "target_field" in recipe:
        mmf_kwargs["target_field"] = recipe["target_field"]
    if "time_sampler" in recipe:
        mmf_kwargs["time_sampler"] = LogitNormalTimeSampler(**recipe["time_sampler"])
        mmf_kwargs["adaptive_p"] = recipe["adaptive_p"]
    t0 = time.perf_counter()
    mmf = fit_images(data, objective="mmf", guidance=guidance, **mmf_kwargs, **common)
    print(f"MMF trained {mmf.steps_trained} steps in {mmf.train_time_s:.0f} s")
    mmf.save(out / "mmf_model")
    fm = None
    if not args.no_fm:
        fm = fit_images(data, objective="fm", guidance=guidance, **common)
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
        plan.append((f"FM {recipe['fm_steps']}-step", fm, recipe["fm_steps"]))
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
