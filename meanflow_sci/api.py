"""``fit`` / ``FittedModel`` / ``load``: the one-call entry point of the library.

``fit`` turns user arrays (numpy, torch, xarray) into normalised tensors, builds a backbone and an
objective, and runs the one :class:`~meanflow_sci.train.Trainer`. The returned
:class:`FittedModel` holds the EMA network together with everything needed to give samples back in
the user's units and type (the normalisers and the data spec), and saves all of it to a folder:
tensors in safetensors, everything else in JSON, never a pickle.

Example:
    >>> import numpy as np, meanflow_sci as mfs
    >>> data = np.random.randn(1000, 2) @ [[1.0, 0.5], [0.0, 2.0]]
    >>> fm = mfs.fit(data, max_steps=500, progress=False)
    >>> x = fm.sample(256, seed=0)             # numpy (256, 2), one network evaluation
    >>> fm.save("runs/gauss"); fm2 = mfs.load("runs/gauss")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset

from meanflow_sci.core import Objective
from meanflow_sci.core import sample as core_sample
from meanflow_sci.data import Normalizer, cond_to_tensor, data_to_tensor, tensor_to_data
from meanflow_sci.data.convert import SAMPLE_DIM, cond_for_sampling, lazy_data_spec
from meanflow_sci.data.stream import (
    ArraySource,
    DatasetSource,
    DataStream,
    IterableSource,
    is_lazy_xarray,
    scan,
)
from meanflow_sci.errors import (
    CheckpointError,
    InputError,
    check_label_cond,
    check_positive_int,
    check_range,
    describe,
)
from meanflow_sci.nn import (
    backbone_spec,
    build_backbone,
    build_backbone_from_spec,
    wrap_backbone,
)
from meanflow_sci.recipes import (
    BackboneConfig,
    ObjectiveConfig,
    Recipe,
    choose_recipe,
    resolve_recipe,
)
from meanflow_sci.train import Trainer
from meanflow_sci.train.checkpoint import (
    check_checkpoint_dir,
    check_parent_folders,
    read_folder,
    write_folder,
)

__all__ = [
    "fit",
    "FittedModel",
    "load",
    "check_save_path",
    "MODEL_FORMAT",
    "WEIGHTS_FILE",
    "CONFIG_FILE",
    "unet2d_layout",
]

_log = logging.getLogger("meanflow_sci")

MODEL_FORMAT = "meanflow_sci.fitted_model/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"


NOISE_BLOCK = 4096  # samples whose noise one generator draws: block b of a seed is seeded (seed, b)


def _noise_blocks(
    n: int, shape: tuple[int, ...], seed: int | None
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first row, noise)`` for rows ``[b * NOISE_BLOCK, (b + 1) * NOISE_BLOCK)`` of ``n``.

    Block 0 is drawn from ``seed`` itself, block b > 0 from a seed derived from ``(seed, b)``,
    so the noise of a row depends on the seed and the row only, never on how the rows are
    batched, and no more than one block is held at a time.
    """
    for b, lo in enumerate(range(0, n, NOISE_BLOCK)):
        gen = torch.Generator()
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(
                seed
                if b == 0
                else int(np.random.SeedSequence([seed, b]).generate_state(1, np.uint64)[0])
            )
        yield lo, torch.randn((min(NOISE_BLOCK, n - lo), *shape), generator=gen)


class FittedModel:
    """A trained generator: the EMA network plus the normalisers and data description.

    Usually made by :func:`fit` or :func:`load`, not directly.

    Attributes:
        model: The EMA network, ``forward(x, r, t, cond=None)``, in eval mode.
        normalizer: Data :class:`~meanflow_sci.data.Normalizer`.
        cond_normalizer: Normaliser of float conditioning vectors (None for labels or no cond).
        data_spec: How to rebuild the fitted data type (see ``data_to_tensor``).
        cond_spec: The fitted conditioning (labels or vectors), None when unconditional.
        objective_config: ``objective.config()`` of the training objective.
        sampling_mode: ``"mean"``, ``"flow"`` or ``"regression"`` (from the objective).
        backbone: ``{"name", "config"}`` that rebuilds the network.
        history: Training log, one dict per logged step.
        train_time_s: Wall time of the training loop in seconds.
        steps_trained: Optimizer steps taken.
        fit_config: The arguments of ``fit`` (JSON), for the record.
        recipe: The resolved :class:`~meanflow_sci.recipes.Recipe` it was trained with (None for
            models saved before recipes existed).
    """

    def __init__(
        self,
        model: nn.Module,
        normalizer: Normalizer,
        data_spec: dict,
        *,
        backbone: dict,
        objective_config: dict,
        sampling_mode: str,
        cond_spec: dict | None = None,
        cond_normalizer: Normalizer | None = None,
        history: Sequence[dict] = (),
        train_time_s: float = 0.0,
        steps_trained: int = 0,
        fit_config: dict | None = None,
        recipe: Recipe | None = None,
    ) -> None:
        self.model = model.eval()
        self.normalizer = normalizer
        self.cond_normalizer = cond_normalizer
        self.data_spec = data_spec
        self.cond_spec = cond_spec
        self.backbone = backbone
        self.objective_config = objective_config
        self.sampling_mode = sampling_mode
        self.history = list(history)
        self.train_time_s = float(train_time_s)
        self.steps_trained = int(steps_trained)
        self.fit_config = dict(fit_config or {})
        self.recipe = recipe

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the batch dimension."""
        return tuple(self.data_spec["shape"])

    @property
    def num_parameters(self) -> int:
        """Number of network parameters."""
        return sum(p.numel() for p in self.model.parameters())

    def _cond_tensor(self, cond: Any, n: int | None) -> tuple[torch.Tensor | None, int]:
        """Check ``cond`` and ``n`` against the fitted model; return the cond tensor and n."""
        if self.cond_spec is None:
            if cond is not None:
                raise InputError(
                    f"cond: this model was fitted without conditioning, expected None, "
                    f"got {describe(cond)}"
                )
            if n is None:
                raise InputError(
                    "n: expected the number of samples (an integer >= 1) for an unconditional "
                    "model, got None"
                )
            return None, check_positive_int("n", n)
        if cond is None:
            if self.cond_spec["kind"] == "labels":
                what = f"integer labels (n,) in [0, {self.cond_spec['num_classes']})"
            else:
                what = f"float rows of shape (n, {', '.join(map(str, self.cond_spec['shape']))})"
            raise InputError(f"cond: this model is conditional, expected {what}, got None")
        c = cond_for_sampling(cond, self.cond_spec)
        if n is None:
            n = c.shape[0]
        check_positive_int("n", n)
        if n != c.shape[0]:
            raise InputError(f"n: expected {c.shape[0]} to match the rows of cond, got {n}")
        if self.cond_normalizer is not None:
            c = self.cond_normalizer.normalize(c)  # NaN (null) rows stay NaN
        return c, n

    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        *,
        cond: Any = None,
        steps: int = 1,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> Any:
        """Generate ``n`` samples in the type and units of the fitted data.

        Args:
            n: Number of samples; defaults to the rows of ``cond`` for conditional models.
            cond: Conditioning like the fitted one: labels ``(n,)`` (``-1`` is the null class)
                or float rows ``(n, ...)`` (a row of NaN is the null condition).
            steps: Network evaluations per sample (1 is the one-step sampler).
            seed: Makes the noise, hence the samples, reproducible.
            batch_size: Samples per network call (bounds memory); None: up to 4096 at once.
                The samples of a seed do not depend on it.

        Returns:
            numpy array, torch tensor, ``xarray.DataArray`` or ``xarray.Dataset`` (as fitted) of
            shape ``(n, *sample_shape)``; xarray outputs keep dims, coords and attrs with a new
            ``sample`` index.
        """
        tensors = [x for _, x in self._sample_tensors(n, cond, steps, seed, batch_size)]
        return tensor_to_data(torch.cat(tensors), self.data_spec)

    def sample_chunks(
        self,
        n: int | None = None,
        *,
        cond: Any = None,
        steps: int = 1,
        seed: int | None = None,
        batch_size: int = NOISE_BLOCK,
    ) -> Iterator[Any]:
        """:meth:`sample` in pieces of at most ``batch_size`` samples (outputs too large to hold).

        The pieces, concatenated, equal ``sample(n, cond=cond, steps=steps, seed=seed)``;
        xarray pieces carry their slice of the ``sample`` index.
        """
        pieces = self._sample_tensors(n, cond, steps, seed, batch_size)  # checks the inputs now

        def data() -> Iterator[Any]:
            for lo, x in pieces:
                out = tensor_to_data(x, self.data_spec)
                if hasattr(out, "assign_coords"):
                    out = out.assign_coords({SAMPLE_DIM: np.arange(lo, lo + len(x))})
                yield out

        return data()

    def _sample_tensors(
        self, n: int | None, cond: Any, steps: int, seed: int | None, batch_size: int | None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Check the inputs, then return an iterator over ``(first row, samples)`` per call."""
        check_positive_int("steps", steps)
        c, n = self._cond_tensor(cond, n)
        chunk = NOISE_BLOCK if batch_size is None else check_positive_int("batch_size", batch_size)
        if seed is not None:
            check_positive_int("seed", seed, minimum=0)
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")

        def pieces() -> Iterator[tuple[int, torch.Tensor]]:
            self.model.eval()
            for lo, noise in _noise_blocks(n, self.sample_shape, seed):
                # Noise is drawn on the CPU so that a seed gives the same samples on any device.
                for i in range(0, len(noise), chunk):
                    z = noise[i : i + chunk].to(device)
                    ci = None if c is None else c[lo + i : lo + i + len(z)].to(device)
                    with torch.no_grad():
                        x = core_sample(self.model, z, ci, steps=steps, mode=self.sampling_mode)
                    yield lo + i, self.normalizer.denormalize(x.float().cpu())

        return pieces()

    # -- saving ---------------------------------------------------------------------------------
    def config(self) -> dict:
        """Everything but the tensors, as saved in ``model.json``."""
        return {
            "format": MODEL_FORMAT,
            "backbone": self.backbone,
            "objective": self.objective_config,
            "sampling_mode": self.sampling_mode,
            "data_spec": self.data_spec,
            "cond_spec": self.cond_spec,
            "normalizer_mode": self.normalizer.mode,
            "cond_normalizer_mode": None
            if self.cond_normalizer is None
            else self.cond_normalizer.mode,
            "steps_trained": self.steps_trained,
            "train_time_s": self.train_time_s,
            "fit_config": self.fit_config,
            "recipe": None if self.recipe is None else self.recipe.to_dict(),
            "history": _jsonable_history(self.history),
            "versions": {"torch": torch.__version__},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to the folder ``path``: ``model.safetensors`` and ``model.json``.

        The write is atomic (a temporary folder renamed into place), so a crash leaves any
        previous model at ``path`` intact. An existing ``path`` must be an empty folder or a
        saved model.

        Returns:
            The folder as a Path.

        Raises:
            InputError: ``path`` is a file or a folder that is not a saved model.
        """
        target = check_save_path(path)
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"normalizer.{k}": v for k, v in self.normalizer.state_dict().items()})
        if self.cond_normalizer is not None:
            tensors.update(
                {f"cond_normalizer.{k}": v for k, v in self.cond_normalizer.state_dict().items()}
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        write_folder(
            target,
            tensors,
            self.config(),
            weights_name=WEIGHTS_FILE,
            config_name=CONFIG_FILE,
            fmt=MODEL_FORMAT,
        )
        return target

    def __repr__(self) -> str:
        params = self.num_parameters
        size = f"{params / 1e6:.2f}M" if params >= 1e6 else f"{params / 1e3:.1f}k"
        if self.cond_spec is None:
            cond = "none"
        elif self.cond_spec["kind"] == "labels":
            cond = f"{self.cond_spec['num_classes']} classes"
        else:
            cond = f"vector {tuple(self.cond_spec['shape'])}"
        return (
            f"FittedModel(backbone={self.backbone['name']!r}, params={size}, "
            f"objective={self.objective_config.get('name')!r}, steps={self.steps_trained}, "
            f"data={self.data_spec['kind']} {self.sample_shape}, cond={cond})"
        )


def _jsonable_history(history: Sequence[dict]) -> list[dict]:
    """History rows as plain JSON values (tensors and numpy scalars become numbers)."""
    rows = []
    for row in history:
        clean = {}
        for k, v in row.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            elif hasattr(v, "item") and not isinstance(v, (list, dict)):
                v = v.item()
            if isinstance(v, (bool, int, float, str)) or v is None:
                clean[str(k)] = v
        rows.append(clean)
    return rows


def check_save_path(path: str | os.PathLike, *, name: str = "path") -> Path:
    """Check that a model may be saved at ``path``: new, an empty folder, or a saved model.

    Raises:
        InputError: ``path`` is a file, a folder holding anything but a saved model, or lies
            under a plain file.
    """
    target = check_parent_folders(path, name)
    if target.exists():
        if not target.is_dir():
            raise InputError(
                f"{name}: expected a new folder or a saved model, got an existing file "
                f"{str(target)!r}"
            )
        if any(target.iterdir()) and not _looks_like_model(target):
            raise InputError(
                f"{name}: expected a new or empty folder or a saved model, got the folder "
                f"{str(target)!r} holding other files (refusing to overwrite it)"
            )
    return target


def _looks_like_model(folder: Path) -> bool:
    try:
        return json.loads((folder / CONFIG_FILE).read_text()).get("format") == MODEL_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def load(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> FittedModel:
    """Read a model written by :meth:`FittedModel.save`. Nothing is unpickled.

    Args:
        path: The model folder.
        device: Where to put the network.

    Raises:
        CheckpointError: the folder is missing, truncated, or not a saved model.
    """
    folder = Path(path)
    tensors, cfg = read_folder(
        folder,
        weights_name=WEIGHTS_FILE,
        config_name=CONFIG_FILE,
        fmt=MODEL_FORMAT,
        what="saved model",
    )
    try:
        spec = cfg["backbone"]
        net = build_backbone_from_spec(spec)
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        net.load_state_dict(state, strict=True)
        normalizer = Normalizer.from_state(
            {k: tensors[f"normalizer.{k}"] for k in ("shift", "scale")}, cfg["normalizer_mode"]
        )
        cond_normalizer = None
        if cfg.get("cond_normalizer_mode") is not None:
            cond_normalizer = Normalizer.from_state(
                {k: tensors[f"cond_normalizer.{k}"] for k in ("shift", "scale")},
                cfg["cond_normalizer_mode"],
            )
        return FittedModel(
            net.to(device),
            normalizer,
            cfg["data_spec"],
            backbone=spec,
            objective_config=cfg["objective"],
            sampling_mode=cfg["sampling_mode"],
            cond_spec=cfg.get("cond_spec"),
            cond_normalizer=cond_normalizer,
            history=cfg.get("history", []),
            train_time_s=cfg.get("train_time_s", 0.0),
            steps_trained=cfg.get("steps_trained", 0),
            fit_config=cfg.get("fit_config"),
            recipe=None if cfg.get("recipe") is None else Recipe.from_dict(cfg["recipe"]),
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{folder}: inconsistent saved model ({type(exc).__name__}: {exc})"
        ) from exc


# -- fit --------------------------------------------------------------------------------------

# The sample rank each backbone takes, and its config field that carries the data's size.
_SAMPLE_RANK = {"mlp": 1, "unet1d": 2, "transformer": 2, "unet2d": 3}
_SIZE_FIELD = {
    "mlp": "dim",
    "unet1d": "channels",
    "transformer": "channels",
    "unet2d": "in_channels",
}
_RANK_SHAPES = {1: "(D,)", 2: "(T, D)", 3: "(C, H, W)"}


def unet2d_layout(resolution: int) -> dict[str, Any]:
    """UNet2D depth for a resolution: one halving per factor of 2 above 4x4.

    8x8 -> two levels (8, 4); 16x16 -> three; 32x32 -> four with attention at 16x16 (DDPM's
    CIFAR-10 layout).
    """
    check_positive_int("resolution", resolution)
    levels = max(1, min(4, (resolution // 4).bit_length()))
    return {
        "channel_mults": (1, 2, 2, 2)[:levels],
        "attn_resolutions": (16,) if resolution >= 32 else (),
        "resolution": resolution,
    }


def _build_network(
    config: BackboneConfig, sample_shape: tuple[int, ...], cond_spec: dict | None
) -> nn.Module:
    """The recipe's network for samples of ``sample_shape``, wrapped for layout and output."""
    name = config.name
    rank = _SAMPLE_RANK[name]
    flat = len(sample_shape) != rank
    if flat and name != "mlp":
        raise InputError(
            f"backbone: {name!r} expects samples of shape {_RANK_SHAPES[rank]}, got data with "
            f"sample shape {sample_shape} (an 'mlp' takes any shape, flattened)"
        )
    inner_shape = (math.prod(sample_shape),) if flat else sample_shape
    derived: dict[str, Any] = {_SIZE_FIELD[name]: inner_shape[0 if name == "unet2d" else -1]}
    if cond_spec is not None and cond_spec["kind"] == "labels":
        derived["num_classes"] = cond_spec["num_classes"]
    elif cond_spec is not None:
        derived["cond_dim"] = cond_spec["dim"]
    options = dict(config.options)
    for key, value in derived.items():
        if key in options and options[key] != value and key != "num_classes":
            raise InputError(
                f"backbone[{key!r}]: expected {value} (set from the data and cond) or nothing, "
                f"got {options[key]!r}"
            )
    kwargs = unet2d_layout(sample_shape[1]) if name == "unet2d" else {}
    kwargs.update(options)
    kwargs.update(derived)
    net = build_backbone(name, **kwargs)
    return wrap_backbone(
        net, prediction=config.prediction, sample_shape=sample_shape if flat else None
    )


def _check_instance(net: nn.Module, sample_shape: tuple[int, ...]) -> nn.Module:
    backbone_spec(net)  # fails early if the network could not be saved
    if not any(p.requires_grad for p in net.parameters()):
        raise InputError(
            f"backbone: expected a network with trainable parameters, got a frozen "
            f"{type(net).__name__} (a FittedModel's network is frozen for sampling: to train on "
            "from it, pass copy.deepcopy(fitted.model).requires_grad_(True))"
        )
    return net


def _make_objective(objective: Any, config: ObjectiveConfig, max_steps: int) -> Any:
    if isinstance(objective, Objective):
        return objective
    return config.build(max_steps=max_steps)


def _split_arrays(x, c, cond_spec, val_fraction: float, seed: int) -> tuple:
    """``(train_x, train_c, val_x, val_c, normalizer, cond_normalizer)`` of in-memory data,
    normalised; the validation rows are a seeded random subset."""
    n_total = x.shape[0]
    n_val = int(round(val_fraction * n_total)) if val_fraction > 0 else 0
    if val_fraction > 0 and not 1 <= n_val < n_total:
        raise InputError(
            f"val_fraction: expected a fraction leaving at least one sample on each side of the "
            f"split of N={n_total}, got {val_fraction!r}"
        )
    if n_val:
        perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
    else:
        val_idx, train_idx = None, slice(None)
    x_train = x[train_idx]
    c_train = None if c is None else c[train_idx]
    normalizer = Normalizer.fit(x_train)
    cond_normalizer = None
    if cond_spec is not None and cond_spec["kind"] == "vector":
        cond_normalizer = Normalizer.fit(c_train, mode="standard")
    norm = _Normalise(normalizer, cond_normalizer)
    train_x, train_c = norm((x_train, c_train))
    val_x, val_c = (None, None) if val_idx is None else norm((x[val_idx], _rows(c, val_idx)))
    return train_x, train_c, val_x, val_c, normalizer, cond_normalizer


def _rows(t: torch.Tensor | None, idx: Any) -> torch.Tensor | None:
    return None if t is None else t[idx]


class _Normalise:
    """The normalisers as a batch transform ``(x, cond) -> (x, cond)`` (picklable for the
    DataLoader's workers)."""

    def __init__(self, normalizer: Normalizer, cond_normalizer: Normalizer | None) -> None:
        self.normalizer, self.cond_normalizer = normalizer, cond_normalizer

    def __call__(self, batch: tuple) -> tuple:
        x, c = batch
        if c is not None and self.cond_normalizer is not None:
            c = self.cond_normalizer.normalize(c)
        return self.normalizer.normalize(x), c


def _stream_source(data: Any, var: str | None) -> tuple[Any, dict | None]:
    """``(source, data_spec)`` for data that streams (a lazy xarray object, a torch Dataset),
    ``(None, None)`` for in-memory arrays."""
    if isinstance(data, IterableDataset):
        source = IterableSource(data)
    elif isinstance(data, Dataset):
        source = DatasetSource(data)
    elif is_lazy_xarray(data):
        da, spec = lazy_data_spec(data, var=var)
        return ArraySource(da), spec
    else:
        return None, None
    if var is not None:
        raise InputError(f"var: only used with an xarray.Dataset, got var={var!r} for a Dataset")
    return source, {"kind": "torch", "dtype": "float32", "shape": list(source.sample_shape)}


def _peek(source: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(source, IterableSource):
        return next(source.items(1))
    return source.read(np.zeros(1, dtype=np.int64))


def _item_cond_spec(c: torch.Tensor | None, num_classes: int | None) -> dict | None:
    """The condition ``c`` of a Dataset's first item describes: labels (classes counted in the
    statistics pass) or float vectors."""
    if c is None:
        return None
    if not c.is_floating_point():
        return {"kind": "labels", "num_classes": num_classes, "dims": None}
    return {"kind": "vector", "dim": int(c.shape[1]), "shape": list(c.shape[1:]), "dims": None}


def _split_stream(source: Any, c, cond_spec, val_fraction: float, seed: int) -> tuple:
    """``(train, val, normalizer, cond_normalizer)`` of streamed data: whole blocks go to
    validation, and the statistics come from one pass over the training rows."""
    if c is not None:
        source.cond = c
    val = None
    if val_fraction > 0:
        if isinstance(source, IterableSource):
            raise InputError(
                "val_fraction: an IterableDataset cannot be split, expected 0, got "
                f"{val_fraction!r} (pass a map-style Dataset or hold out data yourself)"
            )
        source, val = source.split(val_fraction, seed)
    conds: list[torch.Tensor] = []

    def xs():
        for x, cb in scan(source):
            if cb is not None:
                conds.append(cb)
            yield x

    normalizer = Normalizer.fit_batches(xs(), tuple(source.sample_shape))
    cond_normalizer = None
    kind = None if cond_spec is None else cond_spec["kind"]
    if conds and kind == "labels":
        labels = torch.cat(conds)
        low, high = int(labels.min()), int(labels.max())
        k = cond_spec["num_classes"]
        if low < 0 or (k is not None and high >= k):
            raise InputError(
                f"data: expected class labels in [0, {k or 'K'}), got values in [{low}, {high}]"
            )
        cond_spec["num_classes"] = k or high + 1
    if kind == "vector":
        cond_normalizer = Normalizer.fit(torch.cat(conds) if conds else c, mode="standard")
    return source, val, normalizer, cond_normalizer


def fit(
    data: Any,
    cond: Any = None,
    *,
    recipe: str | Recipe = "auto",
    backbone: Any = None,
    objective: Any = None,
    train: Any = None,
    var: str | None = None,
    device: str = "auto",
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    val_fraction: float = 0.0,
) -> FittedModel:
    """Fit a one-step generator to ``data`` (optionally conditioned on ``cond``).

    The setting comes from a recipe (:mod:`meanflow_sci.recipes`); each of ``backbone``,
    ``objective`` and ``train`` changes one group of it. ``recipe="auto"`` picks by this rule:
    samples ``(C, H, W)`` -> ``"images"``; ``(D,)`` -> ``"vectors"``; ``(T, D)`` with float
    condition vectors -> ``"trajectory_map"`` (a deterministic map of the condition, such as an
    ODE trajectory from its initial state and parameters); ``(T, D)`` without a condition or with
    class labels -> ``"trajectory_ensemble"``. Policies (``"policy"``) are picked by
    :mod:`meanflow_sci.tasks.control`. The choice and its reason are logged (logger
    ``meanflow_sci``) and the resolved recipe is saved with the model (``model.recipe``).

    Args:
        data: numpy array or torch tensor ``(N, *shape)``, an ``xarray.DataArray`` whose first
            dim is ``sample``, or an ``xarray.Dataset`` with ``var``.
        cond: Optional conditioning with N rows: integer labels ``(N,)`` or floats ``(N, ...)``.
        recipe: ``"auto"``, a name in :data:`~meanflow_sci.recipes.RECIPES`, or a ``Recipe``.
        backbone: Changes the recipe's network: a name, a dict (``"name"``, ``"prediction"``
            and config fields such as ``"hidden"``), a ``BackboneConfig``, or an ``nn.Module``
            instance (used as it is). An ``"mlp"`` on ``(N, T, D)`` data sees each sample
            flattened; samples come back as ``(T, D)``.
        objective: Changes the recipe's objective: a name (``"mmf"``, ``"fm"``,
            ``"regression"``), a dict of ``ObjectiveConfig`` fields (e.g. ``{"lam": "linear"}``),
            an ``ObjectiveConfig``, or an objective instance.
        train: Changes the recipe's trainer options: a dict of ``TrainConfig`` fields (e.g.
            ``{"max_steps": 5000, "lr": 1e-3}``) or a ``TrainConfig``.
        var: The data variable of a Dataset.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        seed: Seeds the network initialisation, the validation split and the trainer.
        checkpoint_dir: Folder for training checkpoints (None: no checkpoints).
        resume: Continue from the newest checkpoint in ``checkpoint_dir``.
        progress: Show a progress bar (and the recipe chosen).
        callbacks: Trainer callbacks ``cb(trainer, record)``.
        val_fraction: Fraction of the samples held out for a validation loss (0: none).

    Returns:
        A :class:`FittedModel`.

    Raises:
        InputError: any invalid or inapplicable argument, before training starts or any file is
            written.

    Example:
        >>> fm = fit(np.random.randn(512, 3), train={"max_steps": 200}, progress=False)
        >>> fm.sample(10).shape
        (10, 3)
    """
    # Everything is checked before training starts or a file is written.
    num_classes = backbone.get("num_classes") or None if isinstance(backbone, Mapping) else None
    source, data_spec = _stream_source(data, var)
    if source is None:
        x, data_spec = data_to_tensor(data, var=var)
        n_total, sample_shape = x.shape[0], tuple(x.shape[1:])
    else:
        x, n_total, sample_shape = None, source.n, tuple(source.sample_shape)
    c, cond_spec = (None, None)
    if cond is not None:
        if source is not None and not isinstance(source, ArraySource):
            raise InputError(
                f"cond: a Dataset gives its condition with each item (x, cond), expected None, "
                f"got {describe(cond)}"
            )
        c, cond_spec = cond_to_tensor(cond, n=n_total, num_classes=num_classes)
    item_cond = None  # the first item's condition: a Dataset's items carry their own
    if cond is None and source is not None:
        item_cond = _peek(source)[1]
        cond_spec = _item_cond_spec(item_cond, num_classes)
    if isinstance(recipe, str) and recipe == "auto":
        name, reason = choose_recipe(sample_shape, None if cond_spec is None else cond_spec["kind"])
        _log.info("recipe %r: %s", name, reason)
        if progress:
            print(f"meanflow_sci: recipe {name!r} ({reason})", file=sys.stderr)
        recipe = name
    instance_net = backbone if isinstance(backbone, nn.Module) else None
    instance_obj = objective if isinstance(objective, Objective) else None
    resolved = resolve_recipe(
        recipe,
        backbone=None if instance_net is not None else backbone,
        objective=None if instance_obj is not None else objective,
        train=train,
    )
    if instance_net is not None or instance_obj is not None:
        # The recipe no longer describes the whole setting: say what replaced which group.
        given = [f"{type(v).__name__} {k}" for k, v in (("backbone", instance_net),
                 ("objective", instance_obj)) if v is not None]  # fmt: skip
        resolved = dataclasses.replace(
            resolved,
            name="custom",
            summary=f"recipe {resolved.name!r} with a {' and a '.join(given)} instance",
        )
    config = dataclasses.replace(resolved.train, device=device, seed=seed, progress=progress)
    check_positive_int("seed", seed, minimum=0)
    check_range("val_fraction", val_fraction, 0.0, 1.0)
    if resolved.objective.guidance is not None and cond is None:
        raise InputError("objective['guidance']: classifier-free guidance needs cond, got None")
    if checkpoint_dir is not None:
        check_checkpoint_dir(checkpoint_dir)
    if resume and checkpoint_dir is None:
        raise InputError("resume: expected a checkpoint_dir to resume from, got None")
    # Options that would be silently ignored are refused.
    given = set(train) if isinstance(train, Mapping) else set()
    for key in sorted(given & {"checkpoint_every", "keep_last"}):
        if checkpoint_dir is None:
            raise InputError(f"train[{key!r}]: applies to checkpoints, but checkpoint_dir is None")
    if "num_workers" in given and source is None:
        raise InputError(
            "train['num_workers']: applies to streamed data (a lazy xarray object or a torch "
            "Dataset), but data is in memory"
        )
    if "num_workers" in given and isinstance(source, IterableSource) and train["num_workers"]:
        raise InputError(
            "train['num_workers']: an IterableDataset is read in the training process (its "
            f"order is its own), expected 0, got {train['num_workers']!r}"
        )
    if "val_every" in given and val_fraction == 0:
        raise InputError("train['val_every']: applies to validation, but val_fraction is 0")

    if source is None:
        train_x, train_c, val_x, val_c, normalizer, cond_normalizer = _split_arrays(
            x, c, cond_spec, val_fraction, seed
        )
        n_train, label_cond = train_x.shape[0], train_c
    else:
        train_x, val_x, normalizer, cond_normalizer = _split_stream(
            source, c, cond_spec, val_fraction, seed
        )
        n_train, train_c, val_c = train_x.n, None, None
        label_cond = c[:1] if c is not None else item_cond
    config = dataclasses.replace(config, batch_size=min(config.batch_size, n_train))
    if source is not None:
        transform = _Normalise(normalizer, cond_normalizer)
        train_x, val_x = (
            None
            if src is None
            else DataStream(
                src,
                config.batch_size,
                config.seed,
                num_workers=config.num_workers,
                transform=transform,
            )  # fmt: skip
            for src in (train_x, val_x)
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # reproducible initial weights without touching the caller's RNG
        if instance_net is not None:
            net = _check_instance(instance_net, sample_shape)
        else:
            net = _build_network(resolved.backbone, sample_shape, cond_spec)
    obj = _make_objective(instance_obj, resolved.objective, config.max_steps)
    # Options that group a batch by class label: refused before any training step, with the
    # message the step itself would give.
    for need in obj.label_needs():
        check_label_cond(*need, label_cond)

    record = {
        "recipe": resolved.to_dict(),
        "var": var,
        "seed": seed,
        "val_fraction": val_fraction,
        "backbone_instance": None if instance_net is None else type(instance_net).__name__,
        "objective_instance": None if instance_obj is None else type(instance_obj).__name__,
    }
    trainer = Trainer(
        net,
        obj,
        train_x,
        train_c,
        config=config,
        checkpoint_dir=checkpoint_dir,
        val_data=val_x,
        val_cond=val_c,
        callbacks=callbacks,
        metadata={"data_spec": data_spec, "cond_spec": cond_spec, "fit": record},
    )
    result = trainer.train(resume=resume)
    ema = result.ema_model if result.ema_model is not None else result.model
    return FittedModel(
        ema,
        normalizer,
        data_spec,
        backbone=backbone_spec(ema),
        objective_config=obj.config(),
        sampling_mode=str(obj.sampling_mode),
        cond_spec=cond_spec,
        cond_normalizer=cond_normalizer,
        history=result.history,
        train_time_s=result.train_time_s,
        steps_trained=result.step,
        fit_config=record,
        recipe=resolved,
    )
