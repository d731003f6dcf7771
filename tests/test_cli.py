"""The meanflow-sci command: train / sample / info round trips through main([...])."""

import json

import numpy as np
import pytest
import torch
import xarray as xr

from meanflow_sci.cli import build_parser, main

torch.set_num_threads(1)

TINY = [
    "--steps",
    "2",
    "--batch-size",
    "8",
    "--quiet",
    "--backbone",
    '{"hidden": 16, "depth": 1, "emb_dim": 8}',
]


def test_npy_round_trip(tmp_path, capsys):
    data = tmp_path / "points.npy"
    np.save(data, np.random.default_rng(0).normal(size=(32, 3)))
    model = tmp_path / "model"
    assert main(["train", str(data), "--out", str(model), *TINY]) == 0
    assert (model / "model.json").is_file()
    out = tmp_path / "s.npy"
    assert main(["sample", str(model), "--out", str(out), "--n", "5", "--seed", "1"]) == 0
    first = np.load(out)
    assert first.shape == (5, 3) and np.isfinite(first).all()
    main(["sample", str(model), "--out", str(out), "--n", "5", "--seed", "1"])
    np.testing.assert_array_equal(np.load(out), first)
    # .nc output of an array model: a DataArray with a sample dim
    nc = tmp_path / "s.nc"
    assert main(["sample", str(model), "--out", str(nc), "--n", "4"]) == 0
    assert xr.load_dataarray(nc).dims[0] == "sample"
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    text = capsys.readouterr().out
    info = json.loads(text[text.index("{") :])
    assert info["backbone"]["name"] == "mlp" and info["steps_trained"] == 2
    assert info["data_spec"]["shape"] == [3]
    # the resolved recipe is saved with the model and shown first
    assert "recipe: vectors" in text and info["recipe"]["name"] == "vectors"
    assert info["recipe"]["train"]["max_steps"] == 2


def test_nc_conditional_round_trip(tmp_path):
    ds = xr.Dataset(
        {
            "traj": (("sample", "time", "state"), np.random.randn(24, 8, 2)),
            "other": ("sample", np.zeros(24)),
        },
        coords={"time": np.linspace(0, 1, 8), "state": ["q", "p"]},
        attrs={"system": "osc"},
    )
    data = tmp_path / "sims.nc"
    ds.to_netcdf(data)
    cond = tmp_path / "params.npy"
    np.save(cond, np.random.randn(24, 2))
    model = tmp_path / "model"
    args = [
        "train",
        str(data),
        "--var",
        "traj",
        "--cond",
        str(cond),
        "--out",
        str(model),
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--quiet",
        "--backbone",
        '{"name": "unet1d", "down_dims": [8], "n_groups": 4, "emb_dim": 8}',
    ]
    assert main(args) == 0
    new_cond = tmp_path / "new.npy"
    np.save(new_cond, np.random.randn(3, 2))
    out = tmp_path / "new.nc"
    assert main(["sample", str(model), "--cond", str(new_cond), "--out", str(out)]) == 0
    got = xr.load_dataset(out)
    assert got["traj"].dims == ("sample", "time", "state") and got.sizes["sample"] == 3
    assert got.attrs["system"] == "osc" and list(got["state"].values) == ["q", "p"]


def test_errors_exit_2_and_write_nothing(tmp_path, capsys):
    data = tmp_path / "bad.npy"
    np.save(data, np.array([[1.0, np.nan], [0.0, 1.0]]))
    model = tmp_path / "model"
    assert main(["train", str(data), "--out", str(model), *TINY]) == 2
    assert "data: expected finite values" in capsys.readouterr().err
    assert not model.exists()
    assert main(["train", str(tmp_path / "none.npy"), "--out", str(model)]) == 2
    assert main(["train", str(tmp_path / "x.csv"), "--out", str(model)]) == 2
    ds_file = tmp_path / "two.nc"
    xr.Dataset({"a": ("sample", np.zeros(3)), "b": ("sample", np.zeros(3))}).to_netcdf(ds_file)
    assert main(["train", str(ds_file), "--out", str(model)]) == 2
    assert "--var: expected one of the variables ['a', 'b']" in capsys.readouterr().err
    # a folder holding other files is never used as --out
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("k")
    good = tmp_path / "good.npy"
    np.save(good, np.random.randn(16, 2))
    assert main(["train", str(good), "--out", str(other), *TINY]) == 2
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    # sampling: foreign model folder, bad output suffix, missing cond; nothing is written
    assert main(["sample", str(other), "--out", str(tmp_path / "s.npy"), "--n", "2"]) == 2
    assert "CheckpointError" not in capsys.readouterr().err
    assert main(["train", str(good), "--out", str(model), *TINY]) == 0
    assert main(["sample", str(model), "--out", str(tmp_path / "s.txt"), "--n", "2"]) == 2
    assert main(["sample", str(model), "--out", str(tmp_path / "s.npy"), "--n", "0"]) == 2
    assert main(["sample", str(model), "--out", str(tmp_path / "s.npy")]) == 2
    assert not (tmp_path / "s.npy").exists() and not (tmp_path / "s.txt").exists()


def test_help_texts(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "meanflow-sci train" in text and "sample" in text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    assert "--cond" in text and "--steps" in text and "unet1d" in text


def test_nc_and_zarr_are_read_lazily_and_large_samples_are_written_in_pieces(tmp_path):
    from meanflow_sci.api import load
    from meanflow_sci.cli import read_array
    from meanflow_sci.data.stream import is_lazy_xarray

    ds = xr.Dataset({"traj": (("sample", "time"), np.random.default_rng(0).normal(size=(64, 6)))},
                    coords={"time": np.arange(6.0)})  # fmt: skip
    nc = tmp_path / "sims.nc"
    ds.to_netcdf(nc)
    assert is_lazy_xarray(read_array(nc, "traj"))
    model = tmp_path / "model"
    assert main(["train", str(nc), "--var", "traj", "--out", str(model), *TINY]) == 0
    pytest.importorskip("zarr")
    store = tmp_path / "sims.zarr"
    ds.chunk({"sample": 16}).to_zarr(store, consolidated=False)
    assert is_lazy_xarray(read_array(store, "traj"))
    assert main(["train", str(store), "--var", "traj", "--out", str(tmp_path / "m2"), *TINY]) == 0
    # more samples than one noise block: written piece by piece, equal to one sample() call
    want = load(model).sample(5000, seed=3)["traj"].values
    for suffix in (".nc", ".npy"):
        out = tmp_path / f"many{suffix}"
        assert main(["sample", str(model), "--out", str(out), "--n", "5000", "--seed", "3"]) == 0
        if suffix == ".nc":
            got = xr.load_dataset(out)
            np.testing.assert_array_equal(got["sample"].values, np.arange(5000))
            np.testing.assert_allclose(got["time"].values, ds["time"].values)
            got = got["traj"].values
        else:
            got = np.load(out)
        np.testing.assert_array_equal(got, want)
