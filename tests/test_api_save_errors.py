"""FittedModel.save / load round trips, and every input error of fit / sample / load."""

import json

import numpy as np
import pytest
import torch
import xarray as xr

from meanflow_sci.api import CONFIG_FILE, WEIGHTS_FILE, fit, load
from meanflow_sci.errors import CheckpointError, InputError

torch.set_num_threads(1)

MLP_TINY = {"name": "mlp", "hidden": 16, "depth": 1, "emb_dim": 8}
TWO_STEPS = {"max_steps": 2, "batch_size": 16}
FAST = {"train": TWO_STEPS, "backbone": MLP_TINY, "progress": False}


@pytest.fixture(scope="module")
def vec_model():
    x = np.random.default_rng(0).normal(size=(40, 3))
    return fit(x, **FAST)


@pytest.fixture(scope="module")
def label_model():
    g = np.random.default_rng(1)
    return fit(g.normal(size=(40, 2)), g.integers(0, 4, size=40), **FAST)


def test_save_load_round_trip(vec_model, tmp_path):
    path = vec_model.save(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == sorted([WEIGHTS_FILE, CONFIG_FILE])
    back = load(path)
    np.testing.assert_array_equal(back.sample(6, seed=5), vec_model.sample(6, seed=5))
    assert back.history == vec_model.history and back.steps_trained == 2
    assert repr(back) == repr(vec_model)
    # saving again over a saved model is allowed and leaves no temporary folders
    vec_model.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_save_load_conditional_xarray(tmp_path):
    da = xr.DataArray(
        np.random.randn(30, 4, 2),
        dims=("sample", "time", "state"),
        coords={"state": ["a", "b"]},
        attrs={"note": "x"},
    )
    cond = np.random.randn(30, 3)
    fm = fit(
        da,
        cond,
        train={"max_steps": 2, "batch_size": 10},
        progress=False,
        backbone={"name": "unet1d", "down_dims": [8], "n_groups": 4, "emb_dim": 8},
    )
    back = load(fm.save(tmp_path / "m"))
    a, b = fm.sample(cond=cond[:3], seed=0), back.sample(cond=cond[:3], seed=0)
    xr.testing.assert_identical(a, b)
    assert b.attrs == {"note": "x"} and list(b["state"].values) == ["a", "b"]


def test_save_refuses_foreign_targets(vec_model, tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("keep me")
    with pytest.raises(InputError, match="path.*existing file"):
        vec_model.save(file)
    assert file.read_text() == "keep me"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="refusing to overwrite"):
        vec_model.save(other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    vec_model.save(empty)
    assert (empty / CONFIG_FILE).is_file()


def test_load_truncated_and_foreign(vec_model, tmp_path):
    path = vec_model.save(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no saved model at .*expected a folder with"):
        load(tmp_path / "missing")
    weights = path / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="safetensors"):
        load(path)
    weights.write_bytes(data)
    config = path / CONFIG_FILE
    text = config.read_text()
    config.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="JSON"):
        load(path)
    config.write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(CheckpointError, match="format"):
        load(path)
    # a pickle posing as the weights is refused, never unpickled
    config.write_text(text)
    torch.save({"w": torch.ones(1)}, weights)
    with pytest.raises(CheckpointError):
        load(path)
    # weights of a different architecture
    other = fit(np.random.randn(20, 5), **FAST)
    other.save(tmp_path / "o")
    (path / WEIGHTS_FILE).write_bytes((tmp_path / "o" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="inconsistent"):
        load(path)


X = np.random.default_rng(2).normal(size=(20, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"data": np.where(np.eye(20, 3) > 0, np.nan, X)}, r"^data: .*NaN"),
        ({"data": np.zeros((0, 3))}, r"^data: .*non-empty"),
        ({"cond": np.full((20, 2), np.inf)}, r"^cond: .*NaN/Inf"),
        ({"cond": np.zeros((19, 2))}, r"^cond: expected 20 rows"),
        (
            {"data": xr.Dataset({"a": (("sample", "d"), X), "b": ("sample", X[:, 0])})},
            r"^var: .*\['a', 'b'\]",
        ),
        ({"data": xr.DataArray(X, dims=("d", "sample"))}, r"first dim is 'sample'"),
        ({"backbone": "resnet"}, r"^backbone name: .*'mlp'.*'resnet'"),
        ({"backbone": "unet2d"}, r"^backbone: 'unet2d' expects"),
        ({"objective": "ddpm"}, r"^objective name: .*'fm'.*'mmf'.*'regression'"),
        ({"train": {"max_steps": 0}}, r"^max_steps"),
        ({"train": {"batch_size": -1}}, r"^batch_size"),
        ({"train": {"lr": 0.0}}, r"^lr"),
        ({"objective": {"lam": 2.0}}, r"^lam"),
        ({"objective": {"guidance": {"omega": 2.0}}}, r"^objective\['guidance'\]: .*needs cond"),
        ({"val_fraction": 0.99}, r"^val_fraction"),
        ({"backbone": {"widht": 3}}, r"^backbone \('mlp'\): unknown options \['widht'\]"),
        ({"backbone": {"dim": 7}}, r"^backbone\['dim'\]"),
        ({"train": {"warmup": 3}}, r"^train: unknown options \['warmup'\]"),
        ({"recipe": "poems"}, r"^recipe: .*'vectors'.*'poems'"),
        ({"resume": True}, r"^resume"),
    ],
)
def test_fit_errors(kwargs, match, tmp_path):
    args = {"data": X, **FAST, "checkpoint_dir": tmp_path / "ckpt", **kwargs}
    data = args.pop("data")
    if kwargs.get("resume"):
        args.pop("checkpoint_dir")
    with pytest.raises(InputError, match=match):
        fit(data, **args)
    assert not (tmp_path / "ckpt").exists()  # nothing written on a failed call


def test_fit_checkpoint_dir_is_file(tmp_path):
    file = tmp_path / "ckpt"
    file.write_text("x")
    with pytest.raises(InputError, match="^checkpoint_dir: .*file"):
        fit(X, **FAST, checkpoint_dir=file)
    assert file.read_text() == "x"


def test_sample_errors(vec_model, label_model):
    with pytest.raises(InputError, match="^cond: .*without conditioning"):
        vec_model.sample(3, cond=np.array([0, 1, 2]))
    with pytest.raises(InputError, match="^n: .*unconditional"):
        vec_model.sample()
    with pytest.raises(InputError, match="^n: expected an integer >= 1"):
        vec_model.sample(0)
    with pytest.raises(InputError, match="^steps: expected an integer >= 1"):
        vec_model.sample(2, steps=0)
    with pytest.raises(InputError, match=r"^cond: this model is conditional.*\[0, 4\)"):
        label_model.sample(3)
    with pytest.raises(InputError, match="^n: expected 2 to match"):
        label_model.sample(3, cond=np.array([0, 1]))
    with pytest.raises(InputError, match=r"^cond: expected class labels in \[0, 4\)"):
        label_model.sample(cond=np.array([0, 9]))
    with pytest.raises(InputError, match="^cond: .*integer class labels"):
        label_model.sample(cond=np.zeros((2, 3)))


def test_fit_from_a_fitted_network(vec_model):
    """A FittedModel's network is frozen: fit names the fix, and the fix trains on from it."""
    import copy

    x = np.random.default_rng(2).normal(size=(40, 3))
    with pytest.raises(InputError, match="backbone: expected a network with trainable"):
        fit(x, backbone=vec_model.model, train=TWO_STEPS, progress=False)
    net = copy.deepcopy(vec_model.model).requires_grad_(True)
    again = fit(x, backbone=net, train=TWO_STEPS, progress=False)
    assert again.steps_trained == 2
    assert all(not p.requires_grad for p in vec_model.model.parameters())  # untouched
