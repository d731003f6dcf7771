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
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from meanflow_sci.core import OBJECTIVES, make_objective
from meanflow_sci.core import sample as core_sample
from meanflow_sci.core.target_field import check_target_field
from meanflow_sci.data import (
    Normalizer,
    cond_for_sampling,
    cond_to_tensor,
    data_to_tensor,
    tensor_to_data,
)
from meanflow_sci.errors import (
    CheckpointError,
    InputError,
    check_choice,
    check_label_cond,
    check_positive_int,
    check_range,
    describe,
)
from meanflow_sci.nn import BACKBONES, auto_backbone, backbone_spec, build_backbone
from meanflow_sci.train import TrainConfig, Trainer
from meanflow_sci.train.checkpoint import read_folder, write_folder

__all__ = [
    "fit",
    "FittedModel",
    "load",
    "check_save_path",
    "MODEL_FORMAT",
    "WEIGHTS_FILE",
    "CONFIG_FILE",
]

MODEL_FORMAT = "meanflow_sci.fitted_model/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"

# The config field that carries the data's size for each backbone, and the sample rank it takes.
_SIZE_FIELD = {
    "mlp": "dim",
    "unet1d": "channels",
    "transformer": "channels",
    "unet2d": "in_channels",
}
_SAMPLE_RANK = {"mlp": 1, "unet1d": 2, "transformer": 2, "unet2d": 3}
_RANK_SHAPES = {1: "(D,)", 2: "(T, D)", 3: "(C, H, W)"}
# Named λ schedules that ramp up and so take a warm-up length.
_WARMUP_SCHEDULES = ("linear", "cosine", "step")


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
            batch_size: Samples per network call (bounds memory); None does all at once.

        Returns:
            numpy array, torch tensor, ``xarray.DataArray`` or ``xarray.Dataset`` (as fitted) of
            shape ``(n, *sample_shape)``; xarray outputs keep dims, coords and attrs with a new
            ``sample`` index.
        """
        check_positive_int("steps", steps)
        c, n = self._cond_tensor(cond, n)
        chunk = n if batch_size is None else check_positive_int("batch_size", batch_size)
        if seed is not None:
            check_positive_int("seed", seed, minimum=0)
        gen = torch.Generator()
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        # Noise is drawn on the CPU so that a seed gives the same samples on every device.
        noise = torch.randn((n, *self.sample_shape), generator=gen)
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        self.model.eval()
        out = []
        for i in range(0, n, chunk):
            z = noise[i : i + chunk].to(device)
            ci = None if c is None else c[i : i + chunk].to(device)
            x = core_sample(self.model, z, ci, steps=steps, mode=self.sampling_mode)
            out.append(self.normalizer.denormalize(x.float().cpu()))
        return tensor_to_data(torch.cat(out), self.data_spec)

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
        InputError: ``path`` is a file, or a folder holding anything but a saved model.
    """
    target = Path(path)
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
        net = build_backbone(spec["name"], **spec["config"])
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
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{folder}: inconsistent saved model ({type(exc).__name__}: {exc})"
        ) from exc


# -- fit --------------------------------------------------------------------------------------


def _resolve_backbone(
    backbone: Any,
    backbone_kwargs: dict | None,
    sample_shape: tuple[int, ...],
    cond_spec: dict | None,
) -> nn.Module:
    """Build the network for samples of ``sample_shape`` (or check a given instance)."""
    if isinstance(backbone, nn.Module):
        backbone_spec(backbone)  # fails early if the network could not be saved
        if not any(p.requires_grad for p in backbone.parameters()):
            raise InputError(
                f"backbone: expected a network with trainable parameters, got a frozen "
                f"{type(backbone).__name__} (a FittedModel's network is frozen for sampling: to "
                "train on from it, pass copy.deepcopy(fitted.model).requires_grad_(True))"
            )
        return build_backbone(backbone, **(backbone_kwargs or {}))
    check_choice("backbone", backbone, ["auto", *BACKBONES])
    if backbone == "auto":
        try:
            backbone = auto_backbone(sample_shape)
        except ValueError as exc:
            raise InputError(
                f"data: expected samples of shape (D,), (T, D) or (C, H, W) for backbone='auto', "
                f"got {sample_shape}"
            ) from exc
    rank = _SAMPLE_RANK.get(backbone)
    if rank is not None and len(sample_shape) != rank:
        raise InputError(
            f"backbone: {backbone!r} expects samples of shape {_RANK_SHAPES[rank]}, got data with "
            f"sample shape {sample_shape}"
        )
    if backbone_kwargs is not None and not isinstance(backbone_kwargs, dict):
        raise InputError(
            f"backbone_kwargs: expected a dict or None, got {describe(backbone_kwargs)}"
        )
    derived: dict[str, int] = {}
    if backbone in _SIZE_FIELD:
        derived[_SIZE_FIELD[backbone]] = sample_shape[0 if backbone == "unet2d" else -1]
    if cond_spec is not None and cond_spec["kind"] == "labels":
        derived["num_classes"] = cond_spec["num_classes"]
    elif cond_spec is not None:
        derived["cond_dim"] = cond_spec["dim"]
    kwargs = dict(backbone_kwargs or {})
    if backbone == "unet2d":
        # Nominal size that attn_resolutions refer to; the user may still set it.
        kwargs.setdefault("resolution", sample_shape[1])
    for key, value in derived.items():
        if key in kwargs and kwargs[key] != value and key != "num_classes":
            raise InputError(
                f"backbone_kwargs[{key!r}]: expected {value} (set from the data and cond) or "
                f"nothing, got {kwargs[key]!r}"
            )
    kwargs.update(derived)
    return build_backbone(backbone, **kwargs)


def _resolve_objective(
    objective: Any,
    *,
    lam: Any,
    lam_warmup: int | None,
    max_steps: int,
    time_sampler: Any,
    adaptive_p: float,
    guidance: Any,
    tangent: str = "conditional",
    jvp_backend: str = "auto",
    target_field: str = "conditional",
) -> Any:
    check_target_field(target_field)
    if not isinstance(objective, str):
        if target_field != "conditional":
            raise InputError(
                "target_field: set it on the objective instance (e.g. "
                f"ModularMeanFlow(target_field={target_field!r})), got an instance and "
                f"target_field={target_field!r}"
            )
        return make_objective(objective)
    check_choice("objective", objective, OBJECTIVES)
    if objective == "regression":
        if target_field != "conditional":
            raise InputError(
                f"target_field: regression has no velocity target, got {target_field!r}; "
                "use 'conditional'"
            )
        return make_objective("regression")
    kwargs: dict[str, Any] = {"guidance": guidance, "target_field": target_field}
    if time_sampler is not None:
        kwargs["time_sampler"] = time_sampler
    if objective == "fm":
        return make_objective("fm", **kwargs)
    if lam_warmup is None and isinstance(lam, str) and lam in _WARMUP_SCHEDULES:
        # The curriculum default: λ reaches 1 half-way through training.
        lam_warmup = max(1, max_steps // 2)
    return make_objective(
        "mmf",
        lam=lam,
        lam_warmup=lam_warmup,
        adaptive_p=adaptive_p,
        tangent=tangent,
        jvp_backend=jvp_backend,
        **kwargs,
    )


def _train_config(train_kwargs: dict, **named: Any) -> TrainConfig:
    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(train_kwargs) - valid)
    if unknown:
        raise InputError(
            f"fit: unexpected keyword arguments {unknown}; valid training options are "
            f"{sorted(valid - set(named))}"
        )
    return TrainConfig(**named, **train_kwargs)


def _fit_record(**kwargs: Any) -> dict:
    """The fit arguments that have a JSON form (callables and instances are named by type)."""
    out = {}
    for k, v in kwargs.items():
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            v = dataclasses.asdict(v)
        try:
            json.dumps(v)
            out[k] = v
        except (TypeError, ValueError):
            out[k] = type(v).__name__
    return out


def fit(
    data: Any,
    cond: Any = None,
    *,
    var: str | None = None,
    backbone: str | nn.Module = "auto",
    backbone_kwargs: dict | None = None,
    objective: Any = "mmf",
    max_steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    lam: Any = 0.0,
    lam_warmup: int | None = None,
    time_sampler: Any = None,
    adaptive_p: float = 1.0,
    guidance: Any = None,
    tangent: str = "conditional",
    jvp_backend: str = "auto",
    target_field: str = "conditional",
    device: str = "auto",
    seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    val_fraction: float = 0.0,
    callbacks: Sequence[Any] = (),
    **train_kwargs: Any,
) -> FittedModel:
    """Fit a one-step generator to ``data`` (optionally conditioned on ``cond``).

    Args:
        data: numpy array or torch tensor ``(N, *shape)``, an ``xarray.DataArray`` whose first
            dim is ``sample``, or an ``xarray.Dataset`` with ``var``. Shapes ``(N, D)``,
            ``(N, T, D)`` and ``(N, C, H, W)`` have default backbones.
        cond: Optional conditioning with N rows: integer labels ``(N,)`` or floats ``(N, ...)``.
        var: The data variable of a Dataset.
        backbone: ``"auto"`` (mlp for ``(D,)``, unet1d for ``(T, D)``, unet2d for ``(C, H, W)``),
            a name in ``meanflow_sci.nn.BACKBONES``, or a network instance.
        backbone_kwargs: Config fields of the backbone (e.g. ``{"hidden": 64}``); the data and
            cond sizes are filled in. ``{"prediction": "x"}`` makes the network output a data
            estimate instead of the velocity: much better for data that are a deterministic
            function of ``cond`` (ODE trajectories: one-step error 0.039 -> 0.011); mixed on
            the Lorenz-63 ensemble and worse on digit images (see the README, "Choosing the
            network output").
        objective: ``"mmf"`` (Modular MeanFlow), ``"fm"`` (flow matching, sampled with Euler
            steps), ``"regression"`` (deterministic baseline), or an objective instance (then
            ``lam``, ``lam_warmup``, ``time_sampler``, ``adaptive_p``, ``guidance`` and ``tangent``
            are unused).
        max_steps: Optimizer steps.
        batch_size: Samples per step (capped at the number of training samples).
        lr: Peak learning rate.
        lam: MMF's λ: a number in ``[0, 1]``, a schedule name (``"linear"``, ``"cosine"``,
            ``"step"``, ``"constant"``) or a callable of the step. The default 0 is MeanFlow's
            stop-gradient loss. λ > 0 also descends through the JVP, which for a stochastic
            target (a distribution rather than a map from ``cond``) adds the gradient of the
            conditional-velocity variance term ``tr((I - (t-r)∂u/∂z) Σ (I - (t-r)∂u/∂z)ᵀ)``;
            minimising it contracts the one-step map towards the mean (``examples/
            two_circles_2d.py --lam linear`` shows the collapse), and each step costs more.
            The paper's curriculum is ``lam="linear"``.
        lam_warmup: Warm-up length of a named schedule; default ``max_steps // 2``.
        time_sampler: Time sampler name, config dict or callable; None uses the objective's.
        adaptive_p: Power of MMF's adaptive loss weight ``1 / (||Δ||² + c)^p`` (0 turns it off).
            The default 1 is MeanFlow's; it down-weights hard samples, which helped on
            conditional trajectories but left low-dimensional distributions underfitted here
            (two circles: median distance 0.14 vs 0.08 with p = 0; Reacher action chunks: final
            mse 0.63 vs 0.045 and one elbow branch lost). Try 0 for low-dimensional data.
        guidance: Classifier-free guidance trained into the target (a ``Guidance`` or a dict);
            needs ``cond``.
        tangent: MMF's JVP direction: ``"conditional"`` (MeanFlow's ``eps - x``) or ``"model"``
            (the model's own ``u(z_t, t, t)``, one extra forward on the ``r < t`` samples; see
            :class:`~meanflow_sci.core.ModularMeanFlow`).
        jvp_backend: How MMF computes ``du/dt``: ``"auto"`` (exact forward-mode JVP) or
            ``"fd"`` (a backward difference along the trajectory, λ = 0 only; one plain forward
            on the ``r < t`` samples instead of a dual one, which bought 1.5x the MMF steps in
            the same CPU time on digits; README, "Computing du/dt").
        target_field: The velocity target of ``"mmf"`` and ``"fm"``: ``"conditional"``
            (``eps - x`` of each pair) or ``"stf"``, the stable target field: the marginal
            velocity estimated over the batch and a bank of recent batches, within each class
            label (:mod:`meanflow_sci.core.target_field`). Lower variance at large ``t``; on
            digits it took the one-step FD from about 33 to 22 at equal training time (README,
            "Velocity targets"). Unconditional data or class labels only.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        seed: Seeds the network initialisation, the validation split and the trainer.
        checkpoint_dir: Folder for training checkpoints (None: no checkpoints).
        resume: Continue from the newest checkpoint in ``checkpoint_dir``.
        progress: Show a progress bar.
        val_fraction: Fraction of the samples held out for validation loss (0: none).
        callbacks: Trainer callbacks.
        **train_kwargs: Further :class:`~meanflow_sci.train.TrainConfig` fields
            (``weight_decay``, ``ema_decay``, ``grad_clip``, ``precision``, ...).

    Returns:
        A :class:`FittedModel`.

    Raises:
        InputError: any invalid argument, before training starts or any file is written.

    Example:
        >>> fm = fit(np.random.randn(512, 3), max_steps=200, progress=False)
        >>> fm.sample(10).shape
        (10, 3)
    """
    # Everything is checked before training starts or a file is written.
    x, data_spec = data_to_tensor(data, var=var)
    n_total = x.shape[0]
    c, cond_spec = (None, None)
    if cond is not None:
        num_classes = (backbone_kwargs or {}).get("num_classes") or None
        c, cond_spec = cond_to_tensor(cond, n=n_total, num_classes=num_classes)
    check_positive_int("max_steps", max_steps)
    check_positive_int("batch_size", batch_size)
    check_range("lr", lr, 0.0, None)
    if lr <= 0:
        raise InputError(f"lr: expected a positive number, got {lr!r}")
    check_positive_int("seed", seed, minimum=0)
    check_range("val_fraction", val_fraction, 0.0, 1.0)
    if guidance is not None and cond is None:
        raise InputError("guidance: classifier-free guidance needs cond, got cond=None")
    if (
        checkpoint_dir is not None
        and Path(checkpoint_dir).exists()
        and not Path(checkpoint_dir).is_dir()
    ):
        raise InputError(
            f"checkpoint_dir: expected a folder (existing or new), got the file "
            f"{str(checkpoint_dir)!r}"
        )
    if resume and checkpoint_dir is None:
        raise InputError(
            "resume: expected a checkpoint_dir to resume from, got checkpoint_dir=None"
        )

    n_val = int(round(val_fraction * n_total)) if val_fraction > 0 else 0
    if val_fraction > 0 and not 1 <= n_val < n_total:
        raise InputError(
            f"val_fraction: expected a fraction leaving at least one sample on each side of the "
            f"split of N={n_total}, got {val_fraction!r}"
        )
    gen = torch.Generator().manual_seed(seed)
    if n_val:
        perm = torch.randperm(n_total, generator=gen)
        val_idx, train_idx = perm[:n_val], perm[n_val:]
    else:
        val_idx, train_idx = None, slice(None)
    x_train = x[train_idx]
    c_train = None if c is None else c[train_idx]

    normalizer = Normalizer.fit(x_train)
    cond_normalizer = None
    if cond_spec is not None and cond_spec["kind"] == "vector":
        cond_normalizer = Normalizer.fit(c_train, mode="standard")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # reproducible initial weights without touching the caller's RNG
        net = _resolve_backbone(backbone, backbone_kwargs, tuple(x.shape[1:]), cond_spec)
    obj = _resolve_objective(
        objective,
        lam=lam,
        lam_warmup=lam_warmup,
        max_steps=max_steps,
        time_sampler=time_sampler,
        adaptive_p=adaptive_p,
        guidance=guidance,
        tangent=tangent,
        jvp_backend=jvp_backend,
        target_field=target_field,
    )
    # Options that group a batch by class label: refused before any training step, with the
    # message the step itself would give.
    for need in getattr(obj, "label_needs", list)():
        check_label_cond(*need, c_train)
    config = _train_config(
        train_kwargs,
        max_steps=max_steps,
        batch_size=min(batch_size, x_train.shape[0]),
        lr=float(lr),
        device=device,
        seed=seed,
        progress=progress,
    )

    def prep_cond(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None or cond_normalizer is None:
            return t
        return cond_normalizer.normalize(t)

    fit_record = _fit_record(
        var=var,
        backbone=backbone if isinstance(backbone, str) else type(backbone).__name__,
        backbone_kwargs=backbone_kwargs,
        objective=objective if isinstance(objective, str) else type(objective).__name__,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        lam=lam,
        lam_warmup=lam_warmup,
        time_sampler=time_sampler,
        adaptive_p=adaptive_p,
        guidance=guidance,
        tangent=tangent,
        jvp_backend=jvp_backend,
        target_field=target_field,
        seed=seed,
        val_fraction=val_fraction,
        train=dataclasses.asdict(config),
    )
    trainer = Trainer(
        net,
        obj,
        normalizer.normalize(x_train),
        prep_cond(c_train),
        config=config,
        checkpoint_dir=checkpoint_dir,
        val_data=None if val_idx is None else normalizer.normalize(x[val_idx]),
        val_cond=None if (val_idx is None or c is None) else prep_cond(c[val_idx]),
        callbacks=callbacks,
        metadata={"data_spec": data_spec, "cond_spec": cond_spec, "fit": fit_record},
    )
    result = trainer.train(resume=resume)
    ema = result.ema_model if result.ema_model is not None else result.model
    spec = backbone_spec(ema)
    return FittedModel(
        ema,
        normalizer,
        data_spec,
        backbone=spec,
        objective_config=obj.config() if hasattr(obj, "config") else {"name": type(obj).__name__},
        sampling_mode=str(obj.sampling_mode),
        cond_spec=cond_spec,
        cond_normalizer=cond_normalizer,
        history=result.history,
        train_time_s=result.train_time_s,
        steps_trained=result.step,
        fit_config=fit_record,
    )
