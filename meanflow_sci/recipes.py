"""Recipes: the tuned settings of the library, one per kind of data.

A :class:`Recipe` holds everything a tuned setting is: the backbone (:class:`BackboneConfig`), the
objective (:class:`ObjectiveConfig`) and the trainer options (:class:`~meanflow_sci.train.
TrainConfig`). :data:`RECIPES` names the presets; ``fit(data, cond, recipe="auto")`` picks one
from the data by :func:`choose_recipe` and saves the resolved recipe with the model.

Change one field with ``dataclasses.replace`` or pass a dict for one group to ``fit``:

Example:
    >>> from dataclasses import replace
    >>> from meanflow_sci.recipes import RECIPES, resolve_recipe
    >>> r = resolve_recipe(RECIPES["vectors"], train={"max_steps": 500})
    >>> r.train.max_steps
    500
    >>> r2 = replace(r, objective=replace(r.objective, lam="linear"))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from meanflow_sci.core import Guidance, make_objective
from meanflow_sci.errors import InputError, check_choice, describe
from meanflow_sci.nn.wrappers import PREDICTIONS
from meanflow_sci.train import TrainConfig

__all__ = [
    "BackboneConfig",
    "ObjectiveConfig",
    "Recipe",
    "RECIPES",
    "choose_recipe",
    "resolve_recipe",
]

# Named λ schedules that ramp up and so take a warm-up length (default: half of training).
_RAMPS = ("linear", "cosine", "step")
# fit's own arguments: refused inside the train group so that there is one way to set each.
_FIT_OWNED = ("device", "seed", "progress")


@dataclass(frozen=True)
class BackboneConfig:
    """Which network and how its output is read.

    Attributes:
        name: A key of :data:`meanflow_sci.nn.BACKBONES` (``"mlp"``, ``"unet1d"``,
            ``"transformer"``, ``"unet2d"``). An MLP on ``(N, T, D)`` trajectories sees each
            trajectory flattened (``fit`` reshapes in and out).
        prediction: ``"u"`` (the network outputs the average velocity) or ``"x"`` (a data
            estimate ``F`` with ``u = (z_t - F) / max(t, 0.05)``; see
            :class:`meanflow_sci.nn.DataEstimate`).
        options: Fields of the backbone's config dataclass (e.g. ``{"hidden": 512}``); the data
            and condition sizes are filled in by ``fit``.
    """

    name: str = "mlp"
    prediction: str = "u"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from meanflow_sci.nn import BACKBONES

        check_choice("backbone name", self.name, BACKBONES)
        check_choice("prediction", self.prediction, PREDICTIONS)
        if not isinstance(self.options, Mapping):
            raise InputError(
                f"backbone options: expected a dict of config fields, got {describe(self.options)}"
            )
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "prediction": self.prediction, "options": _plain(self.options)}


# Which objective each optional field applies to.
_APPLIES = {
    "lam": ("mmf",),
    "lam_warmup": ("mmf",),
    "tangent": ("mmf",),
    "jvp_backend": ("mmf",),
    "time_sampler": ("mmf", "fm"),
    "adaptive_p": ("mmf", "fm"),
    "adaptive_c": ("mmf", "fm"),
    "target_field": ("mmf", "fm"),
    "guidance": ("mmf", "fm"),
}


@dataclass(frozen=True)
class ObjectiveConfig:
    """The training objective; a field left at None takes that objective's own default.

    Attributes:
        name: ``"mmf"`` (Modular MeanFlow, sampled in one step), ``"fm"`` (flow matching, Euler
            steps) or ``"regression"`` (deterministic baseline on the same backbone).
        lam: MMF's λ: a number in ``[0, 1]``, a schedule name (``"linear"`` is the paper's
            curriculum, ``"cosine"``, ``"step"``, ``"constant"``). 0 is MeanFlow's stop-gradient
            loss; see ``docs/choosing-lambda.md``.
        lam_warmup: Warm-up length of a ramp schedule (default: half of ``max_steps``).
        time_sampler: ``"uniform"``, ``"logit_normal"`` or a dict such as ``{"name":
            "logit_normal", "mu": 0.0, "sigma": 1.0, "ratio_r_neq_t": 0.25}``.
        adaptive_p, adaptive_c: The adaptive loss weight ``1 / (||Δ||² + c)^p`` (p = 0: off).
        tangent: MMF's JVP direction, ``"conditional"`` (``eps - x``) or ``"model"``.
        jvp_backend: MMF's ``du/dt``: ``"auto"`` (exact forward mode) or ``"fd"`` (a finite
            difference, λ = 0 only; cheaper on CPU).
        target_field: ``"conditional"`` or ``"stf"`` (the stable target field; labels or no
            condition only).
        guidance: Classifier-free guidance trained into the target, e.g. ``{"omega": 2.0}``.
    """

    name: str = "mmf"
    lam: float | str | None = None
    lam_warmup: int | None = None
    time_sampler: str | Mapping[str, Any] | None = None
    adaptive_p: float | None = None
    adaptive_c: float | None = None
    tangent: str | None = None
    jvp_backend: str | None = None
    target_field: str | None = None
    guidance: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        from meanflow_sci.core import OBJECTIVES

        check_choice("objective name", self.name, OBJECTIVES)
        wrong = [k for k in self.set_fields() if self.name not in _APPLIES[k]]
        if wrong:
            where = ", ".join(f"{k!r} (applies to {'/'.join(_APPLIES[k])})" for k in wrong)
            raise InputError(f"objective: {where} do not apply to objective {self.name!r}")
        # Options that would be silently ignored are refused.
        default_p = 1.0 if self.name == "mmf" else 0.0
        p = default_p if self.adaptive_p is None else self.adaptive_p
        if self.adaptive_c is not None and p == 0:
            raise InputError(
                "objective: 'adaptive_c' has no effect with adaptive_p = 0 (the adaptive weight "
                f"is off), got adaptive_c={self.adaptive_c!r}"
            )
        if self.lam_warmup is not None and not (isinstance(self.lam, str) and self.lam in _RAMPS):
            raise InputError(
                f"objective: 'lam_warmup' needs a ramp schedule lam in {list(_RAMPS)}, got "
                f"lam={self.lam!r}"
            )
        for key in ("time_sampler", "guidance"):
            value = getattr(self, key)
            if isinstance(value, Mapping):
                object.__setattr__(self, key, MappingProxyType(dict(value)))
        # Build once so that a bad value fails here, naming its field, not at the first step.
        self.build(max_steps=2)

    def set_fields(self) -> list[str]:
        """The optional fields given a value (not None)."""
        return [k for k in _APPLIES if getattr(self, k) is not None]

    def build(self, *, max_steps: int) -> Any:
        """The objective instance (``ModularMeanFlow``, ``FlowMatching`` or ``Regression``)."""
        kwargs = {k: _plain(getattr(self, k)) for k in self.set_fields()}
        if "guidance" in kwargs:
            kwargs["guidance"] = Guidance(**kwargs["guidance"])
        if self.name == "mmf" and isinstance(self.lam, str) and self.lam in _RAMPS:
            kwargs.setdefault("lam_warmup", max(1, max_steps // 2))
        return make_objective(self.name, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{k: _plain(getattr(self, k)) for k in self.set_fields()}}


@dataclass(frozen=True)
class Recipe:
    """A named, tuned setting: backbone, objective and trainer options.

    Attributes:
        name: The preset's name (``"custom"`` for a user's own).
        summary: One line: which data it is for and what it was tuned on.
        backbone: A :class:`BackboneConfig`.
        objective: An :class:`ObjectiveConfig`.
        train: A :class:`~meanflow_sci.train.TrainConfig` (``device``, ``seed`` and ``progress``
            come from ``fit``'s own arguments).
    """

    name: str
    summary: str
    backbone: BackboneConfig
    objective: ObjectiveConfig
    train: TrainConfig

    def __post_init__(self) -> None:
        for key, cls in (
            ("backbone", BackboneConfig),
            ("objective", ObjectiveConfig),
            ("train", TrainConfig),
        ):
            if not isinstance(getattr(self, key), cls):
                raise InputError(
                    f"recipe.{key}: expected a {cls.__name__}, got {describe(getattr(self, key))}"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON form; :meth:`from_dict` reads it back."""
        train = {k: v for k, v in self.train.to_dict().items() if k not in _FIT_OWNED}
        return {
            "name": self.name,
            "summary": self.summary,
            "backbone": self.backbone.to_dict(),
            "objective": self.objective.to_dict(),
            "train": _plain(train),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """Rebuild a recipe from :meth:`to_dict`."""
        try:
            train = dict(data["train"])
            if "betas" in train:
                train["betas"] = tuple(train["betas"])
            return cls(
                name=str(data["name"]),
                summary=str(data.get("summary", "")),
                backbone=BackboneConfig(**data["backbone"]),
                objective=ObjectiveConfig(**data["objective"]),
                train=TrainConfig(**train),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"recipe: expected the form of Recipe.to_dict(), got {exc}") from exc


def _plain(value: Any) -> Any:
    """Mappings and tuples as plain JSON-able dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _logit_normal(mu: float, sigma: float, ratio: float) -> dict[str, Any]:
    return {"name": "logit_normal", "mu": mu, "sigma": sigma, "ratio_r_neq_t": ratio}


# The two trajectory-distribution recipes differ only in the network's output.
_ENSEMBLE_OBJECTIVE = ObjectiveConfig(
    "mmf", lam=0.0, time_sampler=_logit_normal(0.0, 1.0, 0.25), adaptive_p=1.0
)
_ENSEMBLE_TRAIN = TrainConfig(max_steps=2000, batch_size=256, lr=3e-3, ema_decay=0.99)

RECIPES: dict[str, Recipe] = {
    "vectors": Recipe(
        name="vectors",
        summary="plain vectors (N, D), e.g. low-dimensional distributions",
        backbone=BackboneConfig("mlp", options={"hidden": 256, "depth": 3}),
        # p = 0: with MeanFlow's p = 1 low-dimensional distributions stayed underfitted
        # (two circles: median distance 0.14 against 0.08, docs/choosing-lambda.md).
        objective=ObjectiveConfig(
            "mmf",
            lam=0.0,
            time_sampler={"name": "uniform", "ratio_r_neq_t": 0.25},
            adaptive_p=0.0,
        ),
        train=TrainConfig(max_steps=2000, batch_size=256, lr=2e-3, ema_decay=0.999),
    ),
    "trajectory_map": Recipe(
        name="trajectory_map",
        summary="trajectories (N, T, D) that are a deterministic map of a float condition "
        "(ODE initial state and parameters -> trajectory)",
        # A wide MLP on the flattened trajectory with a data-estimate output: for a
        # deterministic map the network then learns x(cond) instead of carrying the noise
        # through (benchmarks/NOTES.md, "ODE"). Uniform times: 0.0145 against 0.0172 for
        # logit-normal(0, 1) on the damped oscillator at 1000 steps (benchmarks/defaults.py).
        backbone=BackboneConfig("mlp", prediction="x", options={"hidden": 512, "depth": 2}),
        objective=ObjectiveConfig(
            "mmf", lam=0.0, time_sampler={"name": "uniform", "ratio_r_neq_t": 0.25}, adaptive_p=1.0
        ),
        train=TrainConfig(max_steps=3000, batch_size=256, lr=6e-3, ema_decay=0.99),
    ),
    "trajectory_ensemble": Recipe(
        name="trajectory_ensemble",
        summary="distributions of trajectories (N, T, D): ensembles, attractors, no condition "
        "or class labels",
        # The data-estimate output: Lorenz-63 on its attractor (2000 trajectories, 1500 steps)
        # one-step SW / floor 1.14 against 1.42 and dynamics residual 0.18 against 0.69 with the
        # velocity output (solver 0.011), two steps 1.01 / 0.035 (benchmarks/NOTES.md, "Chaos").
        backbone=BackboneConfig("mlp", prediction="x", options={"hidden": 512, "depth": 2}),
        objective=_ENSEMBLE_OBJECTIVE,
        train=_ENSEMBLE_TRAIN,
    ),
    "trajectory_forecast": Recipe(
        name="trajectory_forecast",
        summary="distributions of trajectories (N, T, D) given a float condition: forecast "
        "ensembles from an observed window (tasks.ode.ForecastSetting picks it)",
        # The velocity output: given a condition the data-estimate output collapses the ensemble
        # onto its mean (dysts Rossler forecasts: one-step spread-skill 0.23, 90 % coverage
        # 0.46 against 1.85 / 0.98 here and 1.01 / 0.92 for the solver; benchmarks/NOTES.md).
        backbone=BackboneConfig("mlp", options={"hidden": 512, "depth": 2}),
        objective=_ENSEMBLE_OBJECTIVE,
        train=_ENSEMBLE_TRAIN,
    ),
    "policy": Recipe(
        name="policy",
        summary="action chunks (N, horizon, act_dim) given an observation history "
        "(tasks.control picks it)",
        # The data-estimate output: on Meta-World reach (10 scripted demos, 2000 steps) one-step
        # chunks succeeded on 1.0 of the training goals against 0.1 with the velocity output
        # (behaviour cloning 1.0), 0.2 against 0.0 on held-out goals (benchmarks/NOTES.md).
        backbone=BackboneConfig(
            "unet1d", prediction="x", options={"down_dims": (32,), "emb_dim": 64}
        ),
        # p = 0: on Reacher chunks p = 1 left the network far from the data (final mse 0.63
        # against 0.045 after 1500 steps) and its one-step chunks averaged the elbow branches.
        # The finite-difference du/dt: on Meta-World reach, hammer, push and drawer-open (10
        # demos, 20 held-out goals, seed 0) it fitted in 50.9 s against 77.2 s (medians) with
        # the same held-out success, 0.74 against 0.75 (benchmarks/NOTES.md).
        objective=ObjectiveConfig("mmf", lam=0.0, adaptive_p=0.0, jvp_backend="fd"),
        # From 50 demonstrations tasks.control trains 6000 steps (policy.recipe_train).
        train=TrainConfig(max_steps=2000, batch_size=128, lr=1e-3),
    ),
    "images": Recipe(
        name="images",
        summary="images (N, C, H, W), unconditional or class-conditional; CPU-sized UNet2D",
        backbone=BackboneConfig("unet2d", options={"base": 16}),
        # The images benchmark's tuned setting: the stable target field, the finite-difference
        # du/dt (1.1x a flow-matching step instead of 1.6-1.9x), half the batch with r != t,
        # a wide logit-normal, p = 0.5 (docs/velocity-targets.md, docs/computing-dudt.md).
        objective=ObjectiveConfig(
            "mmf",
            lam=0.0,
            time_sampler=_logit_normal(-0.4, 1.6, 0.5),
            adaptive_p=0.5,
            jvp_backend="fd",
            target_field="stf",
        ),
        train=TrainConfig(
            max_steps=4000, batch_size=64, lr=4e-3, lr_warmup_steps=20, ema_decay=0.995
        ),
    ),
    "images_large": Recipe(
        name="images_large",
        summary="images on a GPU (CIFAR-10 scale): MeanFlow's CIFAR-10 time sampler and "
        "weighting on a DDPM-sized UNet2D (base 128); a starting point, not benchmarked here",
        backbone=BackboneConfig("unet2d", options={"base": 128, "dropout": 0.1}),
        objective=ObjectiveConfig(
            "mmf", lam=0.0, time_sampler=_logit_normal(-2.0, 2.0, 0.75), adaptive_p=0.75
        ),
        train=TrainConfig(max_steps=200_000, batch_size=128, lr=2e-4, ema_decay=0.9999),
    ),
}


def choose_recipe(sample_shape: tuple[int, ...], cond_kind: str | None) -> tuple[str, str]:
    """The preset ``recipe="auto"`` picks, and why.

    The rule: a sample of rank 3 ``(C, H, W)`` is an image (``"images"``); rank 1 ``(D,)`` a
    vector (``"vectors"``); rank 2 ``(T, D)`` a trajectory, which with float condition vectors is
    taken as a deterministic map of the condition (``"trajectory_map"``) and otherwise (no
    condition, or class labels) as a distribution (``"trajectory_ensemble"``); a distribution
    given a float condition (a forecast) is ``"trajectory_forecast"``, by name. Action-chunk
    policies are trajectories too; :mod:`meanflow_sci.tasks.control` asks for ``"policy"``.

    Args:
        sample_shape: The shape of one sample.
        cond_kind: ``None`` (no condition), ``"labels"`` or ``"vector"``.

    Returns:
        ``(name, reason)``.
    """
    rank = len(sample_shape)
    shape = tuple(sample_shape)
    if rank == 3:
        return "images", f"samples of shape {shape} are images (C, H, W)"
    if rank == 1:
        return "vectors", f"samples of shape {shape} are vectors (D,)"
    if rank == 2:
        if cond_kind == "vector":
            return (
                "trajectory_map",
                f"samples of shape {shape} are trajectories (T, D) with a float condition: "
                "taken as a deterministic map of the condition (pass "
                "recipe='trajectory_forecast' for a distribution given the condition)",
            )
        what = "no condition" if cond_kind is None else "class labels"
        return (
            "trajectory_ensemble",
            f"samples of shape {shape} are trajectories (T, D) with {what}: a distribution",
        )
    raise InputError(
        f"data: expected samples of rank 1 (D,), 2 (T, D) or 3 (C, H, W) for recipe='auto', "
        f"got {shape}"
    )


def _group_dict(group: str, value: Mapping[str, Any], valid: list[str]) -> dict[str, Any]:
    unknown = sorted(set(value) - set(valid))
    if unknown:
        raise InputError(f"{group}: unknown options {unknown}; valid options are {sorted(valid)}")
    return dict(value)


def _merge_backbone(base: BackboneConfig, value: Any) -> BackboneConfig:
    if value is None:
        return base
    if isinstance(value, BackboneConfig):
        return value
    if isinstance(value, str):
        # Another network: its own defaults (the recipe's options belong to the recipe's
        # network); the output parametrisation is the recipe's.
        if value == base.name:
            return base
        return BackboneConfig(value, prediction=base.prediction)
    if isinstance(value, Mapping):
        from meanflow_sci.nn import BACKBONES

        d = dict(value)
        name = d.pop("name", base.name)
        check_choice("backbone name", name, BACKBONES)
        prediction = d.pop("prediction", base.prediction)
        fields = [f.name for f in dataclasses.fields(BACKBONES[name].config_class)]
        _group_dict(f"backbone ({name!r})", d, fields)
        options = {**(base.options if name == base.name else {}), **d}
        return BackboneConfig(name, prediction=prediction, options=options)
    raise InputError(
        f"backbone: expected None, a name, a dict, a BackboneConfig or an nn.Module, "
        f"got {describe(value)}"
    )


def _merge_objective(base: ObjectiveConfig, value: Any) -> ObjectiveConfig:
    if value is None:
        return base
    if isinstance(value, ObjectiveConfig):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, Mapping):
        fields = [f.name for f in dataclasses.fields(ObjectiveConfig)]
        d = _group_dict("objective", value, fields)
        name = d.pop("name", base.name)
        # Another objective starts from its own defaults: the recipe's fields were set for the
        # recipe's objective, and some would not apply.
        start = base if name == base.name else ObjectiveConfig(name)
        return dataclasses.replace(start, name=name, **d)
    raise InputError(
        f"objective: expected None, a name, a dict, an ObjectiveConfig or an objective "
        f"instance, got {describe(value)}"
    )


def _merge_train(base: TrainConfig, value: Any) -> TrainConfig:
    if value is None:
        return base
    if isinstance(value, TrainConfig):
        return value
    if isinstance(value, Mapping):
        owned = sorted(set(value) & set(_FIT_OWNED))
        if owned:
            raise InputError(
                f"train: {owned} are fit's own arguments (fit(..., {owned[0]}=...)), not train "
                "options"
            )
        fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in _FIT_OWNED]
        return dataclasses.replace(base, **_group_dict("train", value, fields))
    raise InputError(f"train: expected None, a dict or a TrainConfig, got {describe(value)}")


def resolve_recipe(
    recipe: str | Recipe, *, backbone: Any = None, objective: Any = None, train: Any = None
) -> Recipe:
    """Apply one override per group to a recipe (a name in :data:`RECIPES` or an instance).

    ``backbone``: a name (that network with its own defaults, keeping the recipe's
    ``prediction``), a dict merged into the recipe's (``"name"``, ``"prediction"`` and config
    fields), or a :class:`BackboneConfig`. ``objective``: a name or a dict merged into the
    recipe's; another ``"name"`` starts from that objective's defaults. ``train``: a dict merged
    into the recipe's :class:`TrainConfig`, or a ``TrainConfig``.

    Raises:
        InputError: an unknown recipe, group key or field value, naming it.
    """
    if isinstance(recipe, str):
        base = RECIPES[check_choice("recipe", recipe, RECIPES)]
    elif isinstance(recipe, Recipe):
        base = recipe
    else:
        raise InputError(
            f"recipe: expected 'auto', a name in {sorted(RECIPES)} or a Recipe, got "
            f"{describe(recipe)}"
        )
    merged = Recipe(
        name=base.name,
        summary=base.summary,
        backbone=_merge_backbone(base.backbone, backbone),
        objective=_merge_objective(base.objective, objective),
        train=_merge_train(base.train, train),
    )
    return merged
