"""fit() on small synthetic data: vectors, sequences, images, conditioning, output types."""

import numpy as np
import torch
import xarray as xr

from meanflow_sci.api import FittedModel, fit

torch.set_num_threads(1)

MLP_TINY = {"name": "mlp", "hidden": 32, "depth": 1, "emb_dim": 16}
UNET1D_TINY = {"name": "unet1d", "down_dims": [8, 16], "n_groups": 4, "emb_dim": 16}
UNET2D_TINY = {"base": 8, "channel_mults": [1, 2]}
QUIET = {"progress": False}


def steps(n, batch, **more):
    return {"max_steps": n, "batch_size": batch, "log_every": 5, **more}


def test_vectors_loss_falls_with_regression():
    # x = A c exactly: regression must drive its mse far down in a few steps.
    g = np.random.default_rng(0)
    c = g.normal(size=(256, 3))
    x = c @ g.normal(size=(3, 4))
    fm = fit(
        x,
        c,
        objective="regression",
        train=steps(80, 64, lr=1e-2, lr_warmup_steps=5),
        backbone=MLP_TINY,
        **QUIET,
    )
    mse = [row["mse"] for row in fm.history]
    assert fm.sampling_mode == "regression"
    assert np.mean(mse[-3:]) < 0.3 * np.mean(mse[:2]), mse
    pred = fm.sample(cond=c[:32])
    assert isinstance(pred, np.ndarray) and pred.shape == (32, 4)
    # regression is deterministic: the seed does not matter
    np.testing.assert_allclose(fm.sample(cond=c[:4], seed=1), fm.sample(cond=c[:4], seed=2))


def test_vectors_mmf_lambda_curriculum_and_samples():
    g = np.random.default_rng(1)
    x = g.normal(size=(200, 2)) * [1.0, 5.0] + [10.0, -3.0]
    fm = fit(x, objective={"lam": "linear"}, train=steps(20, 50), backbone=MLP_TINY, **QUIET)
    assert fm.recipe.name == "vectors" and fm.recipe.objective.lam == "linear"
    assert isinstance(fm, FittedModel) and fm.backbone["name"] == "mlp"
    assert fm.sampling_mode == "mean" and fm.objective_config["name"] == "mmf"
    assert fm.steps_trained == 20 and fm.train_time_s > 0
    lam = {row["step"]: row["lam"] for row in fm.history}
    # a named schedule warms up over the first half of training unless lam_warmup is given
    assert fm.objective_config["lam"] == {"name": "linear", "warmup_steps": 10}
    assert min(lam.values()) < 1.0 and lam[max(lam)] == 1.0
    s = fm.sample(64, seed=0)
    assert s.shape == (64, 2) and s.dtype == np.float64 and np.isfinite(s).all()
    # samples come back in data units (denormalised), not around zero
    assert abs(s[:, 0].mean() - 10.0) < 3.0
    np.testing.assert_array_equal(fm.sample(8, seed=3), fm.sample(8, seed=3))
    assert not np.allclose(fm.sample(8, seed=3), fm.sample(8, seed=4))
    assert fm.sample(5, steps=3, seed=0).shape == (5, 2)
    assert fm.sample(10, seed=0, batch_size=3).shape == (10, 2)
    text = repr(fm)
    assert "mlp" in text and "steps=20" in text and "(2,)" in text


def test_sequences_unet1d_torch_and_val():
    x = torch.sin(torch.linspace(0, 6, 16))[None, :, None] * torch.randn(64, 1, 2)
    x = x.double()
    fm = fit(
        x,
        train=steps(6, 16),
        backbone=UNET1D_TINY,
        val_fraction=0.25,
        objective="fm",
        **QUIET,
    )
    assert fm.backbone["name"] == "unet1d" and fm.backbone["config"]["channels"] == 2
    assert fm.sampling_mode == "flow"
    assert any("val_mse" in row for row in fm.history)
    s = fm.sample(3, seed=0, steps=2)
    assert isinstance(s, torch.Tensor) and s.shape == (3, 16, 2) and s.dtype == torch.float64


def test_images_unet2d_dataarray_keeps_metadata():
    imgs = np.random.default_rng(2).uniform(0, 255, size=(24, 1, 8, 8)).astype(np.float32)
    da = xr.DataArray(
        imgs,
        dims=("sample", "channel", "y", "x"),
        coords={"y": np.arange(8) * 0.5, "x": np.arange(8) * 0.5, "channel": ["gray"]},
        attrs={"units": "counts"},
        name="image",
    )
    fm = fit(da, train=steps(3, 8), backbone=UNET2D_TINY, **QUIET)
    assert fm.recipe.name == "images"
    assert fm.backbone["name"] == "unet2d" and fm.normalizer.mode == "minmax"
    out = fm.sample(4, seed=0)
    assert isinstance(out, xr.DataArray) and out.dtype == np.float32
    assert out.dims == da.dims and out.shape == (4, 1, 8, 8)
    assert out.attrs == {"units": "counts"} and out.name == "image"
    np.testing.assert_array_equal(out["y"].values, da["y"].values)
    assert list(out["sample"].values) == [0, 1, 2, 3]


def test_dataset_var_returns_dataset():
    ds = xr.Dataset(
        {"traj": (("sample", "time", "state"), np.random.randn(32, 8, 2))},
        coords={"time": np.linspace(0, 1, 8), "state": ["q", "p"]},
        attrs={"system": "oscillator"},
    )
    fm = fit(
        ds,
        var="traj",
        train=steps(3, 8),
        backbone={"name": "transformer", "width": 16, "depth": 1, "heads": 2},
        **QUIET,
    )
    out = fm.sample(2, seed=0)
    assert isinstance(out, xr.Dataset) and list(out.data_vars) == ["traj"]
    assert out["traj"].dims == ("sample", "time", "state") and out.attrs == ds.attrs
    assert list(out["state"].values) == ["q", "p"]


def test_conditional_labels():
    g = np.random.default_rng(3)
    labels = g.integers(0, 3, size=120)
    x = labels[:, None] * 4.0 + g.normal(size=(120, 2))
    fm = fit(
        x,
        labels,
        train=steps(5, 40),
        backbone=MLP_TINY,
        objective={"guidance": {"omega": 1.5, "drop_prob": 0.2}},
        **QUIET,
    )
    assert fm.cond_spec["kind"] == "labels" and fm.backbone["config"]["num_classes"] == 3
    out = fm.sample(cond=np.array([0, 2, 2, -1]), seed=0)
    assert out.shape == (4, 2)
    assert fm.sample(4, cond=torch.tensor([1, 1, 1, 1])).shape == (4, 2)
    assert "3 classes" in repr(fm)


def test_conditional_vector_dataarray():
    g = np.random.default_rng(4)
    c = xr.DataArray(g.normal(size=(80, 2)) * 100, dims=("sample", "param"))
    x = np.concatenate([c.values / 100, -c.values / 100], axis=1)
    fm = fit(x, c, train=steps(5, 20), backbone=MLP_TINY, **QUIET)
    assert fm.cond_spec["kind"] == "vector" and fm.backbone["config"]["cond_dim"] == 2
    # the float cond is normalised inside the model
    assert fm.cond_normalizer is not None and fm.cond_normalizer.scale.min() > 10
    out = fm.sample(cond=c[:5].values, seed=0)
    assert out.shape == (5, 4)


def test_objective_instance_constant_lam_and_resume(tmp_path):
    from meanflow_sci.core import FlowMatching

    x = np.random.default_rng(5).normal(size=(40, 2))
    fm = fit(x, objective=FlowMatching(), train=steps(2, 8), backbone=MLP_TINY, **QUIET)
    assert fm.sampling_mode == "flow" and fm.objective_config["name"] == "fm"
    fm = fit(x, objective={"lam": 0.0}, train=steps(2, 8), backbone=MLP_TINY, **QUIET)
    assert fm.objective_config["lam"] == {"name": "constant", "value": 0.0}
    # checkpoints written during fit let a longer run resume from them
    ckpt = tmp_path / "ckpt"
    fit(
        x,
        train=steps(4, 8, checkpoint_every=2),
        backbone=MLP_TINY,
        objective={"lam": "linear", "lam_warmup": 4},
        checkpoint_dir=ckpt,
        **QUIET,
    )
    assert any(p.name.startswith("ckpt_") for p in ckpt.iterdir())
    resumed = fit(
        x,
        train=steps(6, 8, checkpoint_every=2),
        backbone=MLP_TINY,
        objective={"lam": "linear", "lam_warmup": 4},
        checkpoint_dir=ckpt,
        resume=True,
        **QUIET,
    )
    assert resumed.steps_trained == 6
    assert resumed.history[0]["step"] <= 4 and resumed.history[-1]["step"] >= 5


def test_x_prediction_and_model_tangent_through_fit_and_save(tmp_path):
    import pytest

    from meanflow_sci.api import load
    from meanflow_sci.errors import InputError

    g = np.random.default_rng(2)
    c = g.normal(size=(128, 2))
    x = c @ g.normal(size=(2, 6))
    kw = {**MLP_TINY, "prediction": "x"}
    fm = fit(x, c, objective={"tangent": "model"}, train=steps(6, 32), backbone=kw, **QUIET)
    assert fm.objective_config["tangent"] == "model"
    assert fm.backbone["prediction"] == "x"
    fm.save(tmp_path / "m")
    again = load(tmp_path / "m")
    assert again.objective_config == fm.objective_config
    assert again.backbone == fm.backbone and type(again.model) is type(fm.model)
    np.testing.assert_array_equal(again.sample(cond=c[:4], seed=0), fm.sample(cond=c[:4], seed=0))
    with pytest.raises(InputError, match="tangent"):
        fit(x, c, objective={"tangent": "marginal"}, train=steps(2, 8), backbone=MLP_TINY, **QUIET)
    fd = fit(x, c, objective={"jvp_backend": "fd"}, train=steps(4, 32), backbone=kw, **QUIET)
    assert fd.objective_config["jvp_backend"] == "fd"
    assert np.isfinite(fd.history[-1]["loss"])
    with pytest.raises(InputError, match="jvp_backend"):
        fit(
            x,
            c,
            objective={"jvp_backend": "fd", "lam": "linear"},
            train=steps(2, 8),
            backbone=MLP_TINY,
            **QUIET,
        )
