"""Image metrics: Fréchet distance and k-NN precision/recall in a feature space.

Two feature extractors, by registry name:

- ``"digits"``: a small CNN trained in-project on the scikit-learn digits (80/20 split, seed 0),
  trained once and cached as safetensors under :func:`cache_dir` (``$MEANFLOW_SCI_CACHE``, else
  ``$XDG_CACHE_HOME/meanflow_sci``, else ``~/.cache/meanflow_sci``). Its held-out test accuracy is
  stored with the weights and reported with every metric. Features are its 64-d penultimate layer.
- ``"inception"``: the standard Inception-v3 pool features (2048-d) through torch-fidelity or
  clean-fid, used only when the library is installed *and* its weights file is already on disk;
  nothing is downloaded. Otherwise :class:`MetricUnavailableError` says what to install and where
  to put the file.

Every :class:`ImageMetrics` names the extractor it used, so numbers from different feature spaces
are never compared by mistake.

Example:
    >>> from meanflow_sci.tasks.images import load_digits, evaluate_images
    >>> real = load_digits().images
    >>> evaluate_images(real, real).frechet_distance  # doctest: +SKIP
    0.0
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from meanflow_sci.errors import InputError, MeanFlowError, check_choice, check_positive_int
from meanflow_sci.tasks.images.datasets import (
    check_images,
    check_labels,
    load_digits,
    to_unit_range,
)

__all__ = [
    "MetricUnavailableError",
    "cache_dir",
    "DigitClassifierConfig",
    "DigitClassifier",
    "DigitFeatureExtractor",
    "digit_classifier",
    "InceptionFeatureExtractor",
    "inception_extractor",
    "FEATURE_EXTRACTORS",
    "frechet_distance",
    "PrecisionRecall",
    "precision_recall",
    "ImageMetrics",
    "evaluate_images",
]

_CLASSIFIER_FORMAT = "meanflow_sci.digit_classifier"
_CLASSIFIER_VERSION = "2"
_TORCH_FIDELITY_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
_TORCH_FIDELITY_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + _TORCH_FIDELITY_WEIGHTS
)
_CLEANFID_WEIGHTS = "inception-2015-12-05.pt"


class MetricUnavailableError(MeanFlowError, RuntimeError):
    """A metric needs a library or weights file that is not on this machine."""


def cache_dir() -> Path:
    """Where trained metric networks are cached (not created until something is written)."""
    env = os.environ.get("MEANFLOW_SCI_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "meanflow_sci"


# --------------------------------------------------------------------------------------------
# the in-project digit classifier
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitClassifierConfig:
    """How the digit classifier is built and trained (part of its cache key).

    Attributes:
        width: channels of the first conv layer (the second has twice as many).
        feature_dim: size of the penultimate layer, the metric's feature space.
        epochs: passes over the 1438 training digits.
        batch_size: minibatch size.
        lr: Adam learning rate (cosine-decayed to 0).
        weight_decay: AdamW weight decay.
        max_shift: random translation in pixels during training (robustness to small offsets).
        seed: seed of the initialisation and minibatch order.
    """

    width: int = 32
    feature_dim: int = 64
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_shift: int = 1
    seed: int = 0

    def key(self) -> str:
        """A short hash of the config, used in the cache file name."""
        text = json.dumps(asdict(self), sort_keys=True) + _CLASSIFIER_VERSION
        return hashlib.sha256(text.encode()).hexdigest()[:12]


class DigitClassifier(nn.Module):
    """A small CNN for 8x8 greyscale digits in ``[0, 1]``.

    Args:
        width: channels of the first conv layer.
        feature_dim: size of the penultimate (feature) layer.
        num_classes: output classes.
    """

    def __init__(self, width: int = 32, feature_dim: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.SiLU(),
            nn.AvgPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim),
        )
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(feature_dim, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``(B, feature_dim)`` of images ``(B, 1, 8, 8)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of images ``(B, 1, 8, 8)``."""
        return self.head(self.body(x))


def _augment(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation, and for half the batch an up-/down-sampling round trip.

    The round trip (bilinear to 16x16 or 32x32, area back to 8x8) is what generated images at
    those sizes go through before classification; training on it keeps the classifier accurate
    there too.
    """
    b, _, h, w = x.shape
    if max_shift > 0:
        s = 2 * max_shift + 1
        padded = F.pad(x, (max_shift,) * 4)
        crops = torch.stack(
            [padded[:, :, dy : dy + h, dx : dx + w] for dy in range(s) for dx in range(s)]
        )
        choice = torch.randint(0, s * s, (b,), generator=gen)
        x = crops[choice, torch.arange(b)]
    side = (16, 32)[int(torch.randint(0, 2, (1,), generator=gen))]
    up = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    trip = F.interpolate(up, size=(h, w), mode="area")
    pick = (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1)
    return torch.where(pick, trip, x)


def _train_digit_classifier(config: DigitClassifierConfig) -> tuple[DigitClassifier, float, int]:
    train = load_digits(split="train", value_range=(0.0, 1.0))
    test = load_digits(split="test", value_range=(0.0, 1.0))
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = DigitClassifier(config.width, config.feature_dim)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(train)
    steps_per_epoch = max(1, n // config.batch_size)
    total = config.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1.0 + np.cos(np.pi * min(k, total) / total))
    )
    model.train()
    for _ in range(config.epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(steps_per_epoch):
            idx = perm[s * config.batch_size : (s + 1) * config.batch_size]
            x = _augment(train.images[idx], config.max_shift, gen)
            loss = F.cross_entropy(model(x), train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(test.images).argmax(1) == test.labels).float().mean().item()
    return model, acc, len(test)


class DigitFeatureExtractor:
    """Features and class predictions of the cached digit classifier.

    Images of any size are area-resampled to 8x8 first (exact for 16x16 and 32x32 up-samples
    made by nearest-neighbour; a close approximation for bilinear ones).

    Attributes:
        name: "digits-cnn", written into every metric result.
        model: the classifier (eval mode, on CPU).
        test_accuracy: its accuracy on the 359 held-out digits.
        config: the :class:`DigitClassifierConfig` it was trained with.
        path: the cache file it was loaded from or written to (None if not cached).
    """

    name = "digits-cnn"

    def __init__(
        self,
        model: DigitClassifier,
        test_accuracy: float,
        config: DigitClassifierConfig,
        path: Path | None = None,
    ) -> None:
        self.model = model.eval()
        self.test_accuracy = float(test_accuracy)
        self.config = config
        self.path = path

    def description(self) -> str:
        """One line naming the extractor and its quality."""
        return f"{self.name} (64-d, in-project, test accuracy {self.test_accuracy:.3f})"

    def _prepare(self, images: object, value_range: Sequence[float]) -> torch.Tensor:
        x = check_images("images", images, channels=1)
        x = to_unit_range(x.detach().cpu(), value_range)
        if tuple(x.shape[-2:]) != (8, 8):
            x = F.interpolate(x, size=(8, 8), mode="area")
        return x

    @torch.no_grad()
    def __call__(
        self, images: torch.Tensor, value_range: Sequence[float] = (-1.0, 1.0)
    ) -> torch.Tensor:
        """Features ``(N, feature_dim)`` of greyscale images ``(N, 1, H, W)`` in ``value_range``."""
        x = self._prepare(images, value_range)
        return torch.cat([self.model.features(c) for c in x.split(1024)])

    @torch.no_grad()
    def classify(
        self, images: torch.Tensor, value_range: Sequence[float] = (-1.0, 1.0)
    ) -> torch.Tensor:
        """Predicted digit ``(N,)`` of images ``(N, 1, H, W)`` in ``value_range``."""
        x = self._prepare(images, value_range)
        return torch.cat([self.model(c).argmax(1) for c in x.split(1024)])


def _load_cached(path: Path, config: DigitClassifierConfig) -> DigitFeatureExtractor | None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("format") != _CLASSIFIER_FORMAT or meta.get("config") != json.dumps(
            asdict(config), sort_keys=True
        ):
            return None
        model = DigitClassifier(config.width, config.feature_dim)
        model.load_state_dict(load_file(str(path)))
        return DigitFeatureExtractor(model, float(meta["test_accuracy"]), config, path)
    except Exception as exc:  # a cache: a damaged file is rebuilt, never trusted
        warnings.warn(f"ignoring unreadable digit-classifier cache {path} ({exc})", stacklevel=3)
        return None


def digit_classifier(
    *,
    config: DigitClassifierConfig | None = None,
    cache: str | os.PathLike | None = None,
    retrain: bool = False,
) -> DigitFeatureExtractor:
    """The in-project digit classifier, trained on first use and cached.

    Training takes a few seconds to a minute on one CPU thread; later calls load the cached
    safetensors file. The file name carries a hash of ``config``, so a different config never
    loads stale weights.

    Args:
        config: architecture and training settings (defaults: see :class:`DigitClassifierConfig`).
        cache: cache folder (default :func:`cache_dir`).
        retrain: train again even if a cached file exists.

    Returns:
        A :class:`DigitFeatureExtractor`; its ``test_accuracy`` is the held-out accuracy.
    """
    from safetensors.torch import save_file

    config = config or DigitClassifierConfig()
    check_positive_int("config.epochs", config.epochs)
    folder = Path(cache).expanduser() if cache is not None else cache_dir()
    path = folder / f"digit_classifier_{config.key()}.safetensors"
    if path.is_file() and not retrain:
        found = _load_cached(path, config)
        if found is not None:
            return found
    model, acc, n_test = _train_digit_classifier(config)
    meta = {
        "format": _CLASSIFIER_FORMAT,
        "version": _CLASSIFIER_VERSION,
        "config": json.dumps(asdict(config), sort_keys=True),
        "test_accuracy": repr(acc),
        "n_test": str(n_test),
        "torch": torch.__version__,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Atomic write: a concurrent reader sees either no file or a complete one.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), meta)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"could not cache the digit classifier in {folder} ({exc})", stacklevel=2)
        path = None
    return DigitFeatureExtractor(model, acc, config, path)


# --------------------------------------------------------------------------------------------
# Inception-v3 through a well-kept library, only with weights already on disk
# --------------------------------------------------------------------------------------------


class InceptionFeatureExtractor:
    """2048-d Inception-v3 pool features computed by torch-fidelity or clean-fid.

    Build it with :func:`inception_extractor`, which checks that the library and weights exist.
    """

    def __init__(self, backend: str, weights_path: Path, device: str = "cpu") -> None:
        self.backend = backend
        self.weights_path = Path(weights_path)
        self.device = torch.device(device)
        self.name = f"inception-v3-2048 ({backend})"
        self.test_accuracy: float | None = None
        if backend == "torch-fidelity":
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

            self._net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_path)
            ).to(self.device)
        else:
            from cleanfid.inception_torchscript import InceptionV3W

            self._net = InceptionV3W(str(self.weights_path.parent), download=False).to(self.device)

    def description(self) -> str:
        """One line naming the extractor."""
        return f"{self.name}, weights {self.weights_path}"

    @torch.no_grad()
    def __call__(
        self, images: torch.Tensor, value_range: Sequence[float] = (-1.0, 1.0)
    ) -> torch.Tensor:
        """Features ``(N, 2048)`` of images ``(N, C, H, W)`` (C = 1 or 3) in ``value_range``."""
        x = check_images("images", images)
        x = to_unit_range(x.detach().cpu(), value_range)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        # Both libraries expect 8-bit images: quantise as a PNG file would.
        x8 = (x * 255.0 + 0.5).to(torch.uint8)
        feats = []
        for chunk in x8.split(100):
            chunk = chunk.to(self.device)
            if self.backend == "torch-fidelity":
                (f,) = self._net(chunk)
            else:
                # clean-fid resizes with PIL bicubic; torch's antialiased bicubic is close.
                c = F.interpolate(
                    chunk.float(), size=(299, 299), mode="bicubic", antialias=True
                ).clamp(0, 255)
                f = self._net(c)
            feats.append(f.float().cpu())
        return torch.cat(feats)


def _inception_candidates(weights_path: str | os.PathLike | None) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    if importlib.util.find_spec("torch_fidelity") is not None:
        paths = (
            [Path(weights_path)]
            if weights_path
            else [Path(torch.hub.get_dir()) / "checkpoints" / _TORCH_FIDELITY_WEIGHTS]
        )
        out += [("torch-fidelity", p) for p in paths if p.name == _TORCH_FIDELITY_WEIGHTS]
    if importlib.util.find_spec("cleanfid") is not None:
        paths = (
            [Path(weights_path)]
            if weights_path
            else [Path("/tmp") / _CLEANFID_WEIGHTS, cache_dir() / _CLEANFID_WEIGHTS]
        )
        out += [("clean-fid", p) for p in paths if p.name == _CLEANFID_WEIGHTS]
    return out


def inception_extractor(
    *, weights_path: str | os.PathLike | None = None, device: str = "cpu"
) -> InceptionFeatureExtractor:
    """Inception-v3 features from torch-fidelity or clean-fid, if installed with weights on disk.

    Args:
        weights_path: the weights file (torch-fidelity's
            ``weights-inception-2015-12-05-6726825d.pth`` or clean-fid's
            ``inception-2015-12-05.pt``); default: each library's usual location
            (torch hub's ``checkpoints/`` folder; ``/tmp`` or :func:`cache_dir` for clean-fid).
        device: where the network runs.

    Raises:
        MetricUnavailableError: neither library is installed, or no weights file is on disk.
            Nothing is downloaded.
    """
    cands = _inception_candidates(weights_path)
    for backend, path in cands:
        if path.is_file():
            return InceptionFeatureExtractor(backend, path, device)
    have = [b for b in ("torch_fidelity", "cleanfid") if importlib.util.find_spec(b) is not None]
    hub = Path(torch.hub.get_dir()) / "checkpoints" / _TORCH_FIDELITY_WEIGHTS
    looked = ", ".join(str(p) for _, p in cands) or "nowhere"
    raise MetricUnavailableError(
        "Inception FID is unavailable: "
        + (
            f"{' and '.join(have)} installed but no weights file found (looked at {looked}). "
            if have
            else "neither torch-fidelity nor clean-fid is installed. "
        )
        + "To enable it, 'pip install torch-fidelity' and put the Inception weights "
        + f"({_TORCH_FIDELITY_URL}) at {hub} (or pass weights_path=). Nothing is downloaded at "
        + "run time. The 'digits' feature extractor works offline."
    )


FEATURE_EXTRACTORS: dict[str, Callable[..., object]] = {
    "digits": digit_classifier,
    "inception": inception_extractor,
}


# --------------------------------------------------------------------------------------------
# distances on features
# --------------------------------------------------------------------------------------------


def _as_features(name: str, x: object) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise InputError(f"{name}: expected features (N, F) with N >= 2, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: expected finite features, got NaN/Inf")
    return arr


def frechet_distance(features_a: object, features_b: object) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``||mu_a - mu_b||² + tr(S_a) + tr(S_b) - 2 tr((S_a^½ S_b S_a^½)^½)``, computed in float64
    with symmetric eigendecompositions (no complex ``sqrtm`` round-off), so a set against itself
    gives 0 up to ~1e-10.

    Args:
        features_a: ``(N, F)``.
        features_b: ``(M, F)``.

    Returns:
        The distance (>= 0).
    """
    a = _as_features("features_a", features_a)
    b = _as_features("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise InputError(
            f"features_b: expected {a.shape[1]} features to match features_a, got {b.shape[1]}"
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root_a @ s_b @ root_a
    ev = np.clip(np.linalg.eigvalsh((m + m.T) / 2.0), 0.0, None)
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * np.sqrt(ev).sum())
    return max(fd, 0.0)


@dataclass(frozen=True)
class PrecisionRecall:
    """k-NN manifold metrics (all in [0, 1]).

    Attributes:
        precision: fraction of generated samples inside the real manifold (fidelity).
        recall: fraction of real samples inside the generated manifold (diversity).
        coverage: fraction of real samples whose k-NN ball holds a generated sample
            (Naeem et al. 2020; less sensitive to generated outliers than recall).
        k: neighbours used for the ball radii.
    """

    precision: float
    recall: float
    coverage: float
    k: int


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    # The 0th neighbour is the point itself.
    return d.topk(k + 1, dim=1, largest=False).values[:, k]


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Bool ``(P,)``: whether each point lies in at least one ball."""
    out = []
    for chunk in points.split(2048):
        out.append((torch.cdist(chunk, centres) <= radii[None, :]).any(1))
    return torch.cat(out)


def precision_recall(
    real_features: object, fake_features: object, *, k: int = 3
) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019) and coverage (Naeem et al. 2020).

    Each set's manifold is the union of balls around its points, with radius the distance to the
    k-th nearest neighbour within the same set.

    Args:
        real_features: ``(N, F)``.
        fake_features: ``(M, F)``.
        k: neighbours for the radii (3 as in the paper; must be < N and < M).

    Returns:
        :class:`PrecisionRecall`.
    """
    real = torch.from_numpy(_as_features("real_features", real_features))
    fake = torch.from_numpy(_as_features("fake_features", fake_features))
    if real.shape[1] != fake.shape[1]:
        raise InputError(
            f"fake_features: expected {real.shape[1]} features to match real_features, "
            f"got {fake.shape[1]}"
        )
    check_positive_int("k", k)
    if k >= min(len(real), len(fake)):
        raise InputError(
            f"k: expected fewer neighbours than samples ({len(real)} real, {len(fake)} fake), "
            f"got {k}"
        )
    r_real = _kth_radius(real, k)
    r_fake = _kth_radius(fake, k)
    precision = _inside(fake, real, r_real).double().mean().item()
    recall = _inside(real, fake, r_fake).double().mean().item()
    # Coverage: real centre i is covered when its own ball contains some fake sample.
    covered = torch.zeros(len(real), dtype=torch.bool)
    for chunk in fake.split(2048):
        covered |= (torch.cdist(chunk, real) <= r_real[None, :]).any(0)
    return PrecisionRecall(precision, recall, covered.double().mean().item(), k)


# --------------------------------------------------------------------------------------------
# one call for a generated set
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageMetrics:
    """Quality of a generated image set against a real one, in one feature space.

    Attributes:
        frechet_distance: Fréchet distance of the feature Gaussians (lower is better).
        precision, recall, coverage: k-NN manifold metrics (higher is better).
        n_real, n_fake: set sizes (the Fréchet distance is biased upward for small sets: compare
            only numbers computed with equal sizes).
        extractor: which feature extractor was used, e.g. "digits-cnn (64-d, in-project, test
            accuracy 0.986)" or "inception-v3-2048 (torch-fidelity), weights ...".
        extractor_accuracy: the digit classifier's held-out accuracy (None for Inception).
        label_accuracy: for class-conditional samples, the fraction the classifier assigns to the
            requested class (None when no labels were given).
        fd_mean_term: the part of ``frechet_distance`` that is the squared distance of the two
            feature means, ``||mu_real - mu_fake||²`` (the rest is the covariance mismatch): a
            large share points to a systematic shift of every sample (e.g. a grey background)
            rather than missing variety.
    """

    frechet_distance: float
    precision: float
    recall: float
    coverage: float
    n_real: int
    n_fake: int
    extractor: str
    extractor_accuracy: float | None = None
    label_accuracy: float | None = None
    fd_mean_term: float | None = None

    def to_dict(self) -> dict:
        """A JSON-able dict."""
        return asdict(self)


def evaluate_images(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    extractor: str | object = "digits",
    value_range: Sequence[float] = (-1.0, 1.0),
    k: int = 3,
    fake_labels: torch.Tensor | None = None,
    **extractor_kwargs: object,
) -> ImageMetrics:
    """Fréchet distance, precision, recall and coverage of ``fake`` against ``real``.

    Args:
        real: real images ``(N, C, H, W)`` in ``value_range``.
        fake: generated images ``(M, C, H, W)`` in ``value_range`` (clamped before features).
        extractor: a registry name ("digits", "inception") or an extractor instance
            (callable ``(images, value_range) -> (N, F)`` with a ``name``).
        value_range: pixel range of both sets.
        k: neighbours for precision/recall.
        fake_labels: the class each fake image was asked to be (``(M,)``, digits only): adds
            ``label_accuracy``.
        **extractor_kwargs: passed to the registry constructor (e.g. ``cache=``).

    Returns:
        :class:`ImageMetrics` naming the extractor.
    """
    real = check_images("real", real)
    fake = check_images("fake", fake, channels=real.shape[1], size=tuple(real.shape[2:]))
    if isinstance(extractor, str):
        check_choice("extractor", extractor, FEATURE_EXTRACTORS)
        extractor = FEATURE_EXTRACTORS[extractor](**extractor_kwargs)
    elif not callable(extractor):
        raise InputError(f"extractor: expected one of {sorted(FEATURE_EXTRACTORS)} or a callable")
    f_real = extractor(real, value_range)
    f_fake = extractor(fake, value_range)
    pr = precision_recall(f_real, f_fake, k=k)
    label_acc = None
    if fake_labels is not None:
        if not hasattr(extractor, "classify"):
            raise InputError("fake_labels: label accuracy needs a classifier extractor ('digits')")
        labels = check_labels("fake_labels", fake_labels, fake.shape[0], 10)
        label_acc = (extractor.classify(fake, value_range) == labels).double().mean().item()
    describe_fn = getattr(extractor, "description", None)
    a, b = _as_features("real features", f_real), _as_features("fake features", f_fake)
    return ImageMetrics(
        frechet_distance=frechet_distance(a, b),
        fd_mean_term=float(((a.mean(0) - b.mean(0)) ** 2).sum()),
        precision=pr.precision,
        recall=pr.recall,
        coverage=pr.coverage,
        n_real=int(real.shape[0]),
        n_fake=int(fake.shape[0]),
        extractor=describe_fn() if callable(describe_fn) else str(getattr(extractor, "name", "?")),
        extractor_accuracy=getattr(extractor, "test_accuracy", None),
        label_accuracy=label_acc,
    )
