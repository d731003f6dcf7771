"""Recipes: the auto rule, one override per group, refusals, and that every option acts."""

import dataclasses
import logging

import numpy as np
import pytest
import torch

from meanflow_sci import RECIPES, InputError, ObjectiveConfig, Recipe, TrainConfig, fit, load
from meanflow_sci.recipes import choose_recipe, resolve_recipe

torch.set_num_threads(1)

TINY = {"name": "mlp", "hidden": 16, "depth": 1, "emb_dim": 8}
FEW = {"max_steps": 4, "batch_size": 16, "lr_warmup_steps": 1, "log_every": 2}


def _data(seed=0, n=48, shape=(3,)):
    g = np.random.default_rng(seed)
    return g.normal(size=(n, *shape)).astype(np.float32)


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.model.parameters()])


@pytest.mark.parametrize(
    "shape, cond, expected",
    [
        ((5,), None, "vectors"),
        ((16, 2), "vector", "trajectory_map"),
        ((16, 2), None, "trajectory_ensemble"),
        ((16, 2), "labels", "trajectory_ensemble"),
        ((1, 8, 8), "labels", "images"),
    ],
)
def test_auto_rule(shape, cond, expected):
    name, reason = choose_recipe(shape, cond)
    assert name == expected and str(shape) in reason
    with pytest.raises(InputError, match="rank"):
        choose_recipe((2, 3, 4, 5), None)


def test_fit_logs_and_saves_the_resolved_recipe(tmp_path, caplog):
    x, c = _data(shape=(8, 2)), _data(1, shape=(3,))
    with caplog.at_level(logging.INFO, logger="meanflow_sci"):
        fm = fit(x, c, backbone={"hidden": 16, "depth": 1}, train=FEW, progress=False)
    assert "trajectory_map" in caplog.text and "deterministic map" in caplog.text
    assert fm.recipe.name == "trajectory_map" and fm.recipe.train.max_steps == 4
    assert fm.recipe.backbone.options["hidden"] == 16 and fm.recipe.backbone.prediction == "x"
    # an MLP on (N, T, D) sees each trajectory flattened; samples come back as (T, D)
    assert fm.backbone["flatten"] == [8, 2] and fm.backbone["config"]["dim"] == 16
    assert fm.sample(cond=c[:3], seed=0).shape == (3, 8, 2)
    fm.save(tmp_path / "m")
    again = load(tmp_path / "m")
    assert again.recipe == fm.recipe
    assert Recipe.from_dict(fm.recipe.to_dict()) == fm.recipe
    np.testing.assert_array_equal(again.sample(cond=c[:3], seed=0), fm.sample(cond=c[:3], seed=0))


def test_one_field_changes_and_the_rest_stays():
    base = RECIPES["trajectory_map"]
    r = resolve_recipe(base, objective={"lam": "linear"}, train={"lr": 1e-3})
    assert r.objective.lam == "linear" and r.objective.adaptive_p == base.objective.adaptive_p
    assert r.train.lr == 1e-3 and r.train.batch_size == base.train.batch_size
    assert r.backbone == base.backbone
    # another network starts from its defaults but keeps the output parametrisation
    r = resolve_recipe(base, backbone="unet1d")
    assert r.backbone.name == "unet1d" and not r.backbone.options
    assert r.backbone.prediction == "x"
    # another objective starts from its own defaults: the recipe's MMF fields are dropped
    r = resolve_recipe(base, objective="fm")
    assert r.objective == ObjectiveConfig("fm")
    r = resolve_recipe(base, objective={"name": "fm", "adaptive_p": 0.5})
    assert r.objective.adaptive_p == 0.5
    # dataclasses.replace works on the frozen groups
    r = dataclasses.replace(base, train=dataclasses.replace(base.train, max_steps=10))
    assert r.train.max_steps == 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"objective": {"name": "fm", "lam": 0.5}}, "'lam'"),
        ({"objective": {"name": "regression", "adaptive_p": 1.0}}, "'adaptive_p'"),
        ({"objective": {"lamda": 0.5}}, "lamda"),
        ({"objective": {"tangent": "sideways"}}, "tangent"),
        ({"objective": "gan"}, "gan"),
        ({"backbone": {"hiden": 4}}, "hiden"),
        ({"backbone": {"name": "unet1d"}}, "unet1d"),
        ({"backbone": {"dim": 7}}, "dim"),
        ({"backbone": {"prediction": "eps"}}, "prediction"),
        ({"train": {"max_step": 3}}, "max_step"),
        ({"train": {"device": "cpu"}}, "device"),
        ({"train": {"lr": -1.0}}, "lr"),
        ({"train": {"checkpoint_every": 2}}, "checkpoint_dir"),
        ({"train": {"val_every": 2}}, "val_fraction"),
        ({"recipe": "pictures"}, "pictures"),
        ({"objective": {"guidance": {"omega": 2.0}}}, "guidance"),
    ],
)
def test_bad_or_inapplicable_options_are_refused(kwargs, match, tmp_path):
    with pytest.raises(InputError, match=match):
        fit(_data(), **{"train": FEW, **kwargs}, progress=False)


# A non-default value for every documented option of the objective, backbone and train groups;
# each must change what training produces (weights or the log) or raise InputError.
OBJECTIVE_VALUES = {
    "lam": 0.5,
    "lam_warmup": 2,
    "time_sampler": "logit_normal",
    "adaptive_p": 1.0,
    "adaptive_c": 0.5,
    "tangent": "model",
    "jvp_backend": "fd",
    "target_field": "stf",
    "guidance": {"omega": 2.0},
}
TRAIN_VALUES = {
    "max_steps": 5,
    "batch_size": 8,
    "lr": 1e-2,
    "weight_decay": 0.5,
    "betas": (0.5, 0.9),
    "lr_warmup_steps": 3,
    "min_lr_ratio": 0.9,
    "grad_clip": 1e-3,
    "ema_decay": 0.5,
    "precision": "bf16",
    "log_every": 1,
}


def test_every_objective_field_acts_or_raises():
    assert set(OBJECTIVE_VALUES) == {f.name for f in dataclasses.fields(ObjectiveConfig)} - {"name"}
    x = _data()
    base = _weights(fit(x, backbone=TINY, train=FEW, progress=False, seed=1))
    for key, value in OBJECTIVE_VALUES.items():
        change = {key: value}
        if key == "lam_warmup":
            change["lam"] = "linear"
        try:
            fm = fit(x, backbone=TINY, objective=change, train=FEW, progress=False, seed=1)
        except InputError as exc:
            assert key in str(exc), (key, exc)
            continue
        if key == "lam_warmup":
            ref = fit(x, backbone=TINY, objective={"lam": "linear"}, train=FEW, progress=False)
            assert not torch.equal(_weights(fm), _weights(ref)), key
        else:
            assert not torch.equal(_weights(fm), base), key


def test_every_backbone_and_train_field_acts_or_raises():
    assert set(TRAIN_VALUES) | {
        "checkpoint_every",
        "keep_last",
        "val_every",
        "num_workers",
        "max_nonfinite",
        "max_rollbacks",
        "device",
        "seed",
        "progress",
    } == {f.name for f in dataclasses.fields(TrainConfig)}
    x = _data()
    ref = fit(x, backbone=TINY, train=FEW, progress=False, seed=1)
    for key, value in TRAIN_VALUES.items():
        # The EMA's decay is warmed up over its first updates: give it a few more steps.
        base = {**FEW, "max_steps": 40} if key == "ema_decay" else FEW
        if base is not FEW:
            ref = fit(x, backbone=TINY, train=base, progress=False, seed=1)
        fm = fit(x, backbone=TINY, train={**base, key: value}, progress=False, seed=1)
        changed = len(fm.history) != len(ref.history) or not torch.equal(
            _weights(fm), _weights(ref)
        )
        assert changed, key
        ref = fit(x, backbone=TINY, train=FEW, progress=False, seed=1) if base is not FEW else ref
    for key, value in {"hidden": 8, "depth": 2, "emb_dim": 4, "prediction": "x"}.items():
        fm = fit(x, backbone={**TINY, key: value}, train=FEW, progress=False, seed=1)
        assert not torch.equal(_weights(fm), _weights(ref)) or fm.backbone != ref.backbone, key
