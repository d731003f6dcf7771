"""Streaming data: lazy NetCDF/zarr, torch Datasets and image folders read in seeded batches."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from meanflow_sci import fit
from meanflow_sci.core import ModularMeanFlow
from meanflow_sci.data import Normalizer
from meanflow_sci.data.folder import ImageFolder
from meanflow_sci.data.stream import ArraySource, DataStream
from meanflow_sci.errors import InputError
from meanflow_sci.nn import build_backbone
from meanflow_sci.train import TrainConfig, Trainer

xr = pytest.importorskip("xarray")
pytest.importorskip("dask")
pytest.importorskip("netCDF4")

TINY = {"name": "mlp", "hidden": 32, "depth": 1}


def _write_nc(path, n=1024, t=16, d=2, chunk=128, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 1, d)) + np.linspace(0, 1, t)[None, :, None]).astype("float32")
    ds = xr.Dataset({"x": (("sample", "time", "state"), x)}, coords={"time": np.arange(t) * 0.1})
    ds.to_netcdf(path, encoding={"x": {"chunksizes": (min(chunk, n), t, d)}})
    return x


def test_lazy_netcdf_fit_reads_blocks_and_keeps_coords(tmp_path):
    _write_nc(tmp_path / "a.nc")
    lazy = xr.open_dataset(tmp_path / "a.nc", chunks={"sample": 128})
    fm = fit(lazy, var="x", backbone=TINY, train={"max_steps": 4, "batch_size": 32},
             progress=False)  # fmt: skip
    out = fm.sample(5, seed=0)
    assert isinstance(out, xr.Dataset) and out["x"].dims == ("sample", "time", "state")
    np.testing.assert_allclose(out["time"].values, lazy["time"].values)
    assert np.isfinite(out["x"].values).all()
    # the same data in memory: the normaliser's one streaming pass gives its statistics
    mem = fit(lazy.load(), var="x", backbone=TINY, train={"max_steps": 1}, progress=False)
    for k, v in mem.normalizer.state_dict().items():
        torch.testing.assert_close(fm.normalizer.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def _stream_trainer(path, ckpt, steps=10):
    lazy = xr.open_dataset(path, chunks={"sample": 128})["x"].isel(time=3)  # (N, 2), still lazy
    source = ArraySource(lazy)
    norm = Normalizer.fit_batches((x for x, _ in source.blocks()), source.sample_shape, "standard")
    stream = DataStream(source, 32, seed=3, transform=lambda b: (norm.normalize(b[0]), b[1]))
    torch.manual_seed(0)
    net = build_backbone("mlp", dim=2, hidden=16, depth=1, emb_dim=8)
    cfg = TrainConfig(max_steps=steps, batch_size=32, log_every=2, progress=False, seed=1)
    objective = ModularMeanFlow(lam="linear", lam_warmup=8, ratio_r_neq_t=0.5)
    return Trainer(net, objective, stream, config=cfg, checkpoint_dir=ckpt), source


def test_stream_reads_only_what_a_step_needs_and_resumes_bit_exact_mid_epoch(tmp_path):
    path = tmp_path / "a.nc"
    _write_nc(path, n=1024)  # 32 batches per epoch: step 40 is in the second epoch
    straight, source = _stream_trainer(path, tmp_path / "s", steps=44)
    result = straight.train()
    # two blocks of 128 rows cached at a time: 44 steps of 32 rows read about 44 * 32 rows
    # (each block once per epoch), never the whole array per step
    assert source.rows_read <= 2 * 1024 + 2 * 128

    def stop_at_40(trainer, record):
        trainer.should_stop = record["step"] >= 40

    first, _ = _stream_trainer(path, tmp_path / "r", steps=44)
    first.callbacks = (stop_at_40,)
    assert first.train().step == 40
    assert first.batches_drawn == 40
    again, _ = _stream_trainer(path, tmp_path / "r", steps=44)
    resumed = again.train(resume=True)
    assert resumed.step == 44
    for a, b in zip(result.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_fit_on_a_file_larger_than_its_memory_cap_streams(tmp_path):
    # A subprocess fits a 512 MiB NetCDF file under a cap of 128 MiB on the growth of its peak
    # resident memory (network, optimiser, dask and HDF5 caches included); loading the file
    # would take all of it, and the growth stays about the same for any file size.
    path = tmp_path / "big.nc"
    n, t, d = 262144, 64, 8  # 262144 * 64 * 8 * 4 B = 512 MiB
    import netCDF4

    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("sample", n)
        nc.createDimension("time", t)
        nc.createDimension("state", d)
        v = nc.createVariable("x", "f4", ("sample", "time", "state"), chunksizes=(512, t, d))
        rng = np.random.default_rng(0)
        for lo in range(0, n, 8192):
            v[lo : lo + 8192] = rng.standard_normal((8192, t, d)).astype("float32")
    size = path.stat().st_size
    script = textwrap.dedent(
        f"""
        import json, resource, xarray as xr, meanflow_sci as mfs

        def rss():
            for line in open("/proc/self/status"):
                if line.startswith(("VmRSS", "VmHWM")):
                    yield int(line.split()[1]) * 1024

        lazy = xr.open_dataset({str(path)!r}, chunks={{"sample": 512}})
        fm = mfs.fit(lazy.isel(sample=slice(0, 64)).load(), var="x", progress=False,
                     backbone={TINY!r}, train={{"max_steps": 1}})  # imports, first allocations
        base, _ = rss()
        fm = mfs.fit(lazy, var="x", progress=False, backbone={TINY!r},
                     train={{"max_steps": 20, "batch_size": 64}}, val_fraction=0.01)
        _, peak = rss()
        print(json.dumps({{"base": base, "peak": peak, "steps": fm.steps_trained}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600, check=True)  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["steps"] == 20
    assert size > 4 * 128 * 2**20
    assert got["peak"] - got["base"] < 128 * 2**20, (got, size)


class _Pairs(Dataset):
    def __init__(self, n=96):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=g)
        self.y = torch.arange(n) % 3

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + self.y[i], int(self.y[i])


class _Stream(IterableDataset):
    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for _ in range(64):
            yield torch.randn(4, generator=g)


def test_fit_on_torch_datasets_labels_and_iterables():
    fm = fit(_Pairs(), backbone=TINY, train={"max_steps": 3, "batch_size": 16}, progress=False)
    assert fm.cond_spec["kind"] == "labels" and fm.cond_spec["num_classes"] == 3
    assert fm.sample(cond=np.array([0, 1, 2])).shape == (3, 3)
    plain = fit(TensorDataset(torch.randn(50, 2)), backbone=TINY, train={"max_steps": 2},
                progress=False)  # fmt: skip
    assert plain.sample(4).shape == (4, 2)
    it = fit(_Stream(), backbone=TINY, train={"max_steps": 3, "batch_size": 8}, val_fraction=0,
             progress=False)  # fmt: skip
    assert it.sample(2, seed=0).shape == (2, 4)


def test_fit_on_an_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(6):
            pixels = rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    folder = ImageFolder(tmp_path, size=8)
    assert len(folder) == 12 and folder[0][0].shape == (3, 8, 8) and folder[11][1] == 1
    fm = fit(folder, train={"max_steps": 2, "batch_size": 4}, progress=False,
             backbone={"base": 8, "channel_mults": [1], "attn_resolutions": []})  # fmt: skip
    assert fm.sample(cond=np.array([0, 1]), seed=0).shape == (2, 3, 8, 8)
    (tmp_path / "dog" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="could not read the image"):
        ImageFolder(tmp_path, size=8)[12]
    with pytest.raises(InputError, match="root"):
        ImageFolder(tmp_path / "missing")


def test_workers_read_the_same_batches_as_the_main_process(tmp_path):
    _write_nc(tmp_path / "a.nc", n=512, chunk=64)
    lazy = xr.open_dataset(tmp_path / "a.nc", chunks={"sample": 64})["x"]
    a = DataStream(ArraySource(lazy), 32, seed=5).batches(3)
    b = DataStream(ArraySource(lazy), 32, seed=5, num_workers=2).batches(3)
    for _ in range(20):  # crosses an epoch
        xa, _ = next(a)
        xb, _ = next(b)
        assert torch.equal(xa, xb)
    del b
    # ranks share each global batch out: their rows together are the single process's batch
    whole = next(DataStream(ArraySource(lazy), 32, seed=5).batches(7))[0]
    parts = [next(DataStream(ArraySource(lazy), 32, seed=5).batches(7, rank=r, world=2))[0]
             for r in (0, 1)]  # fmt: skip
    assert torch.equal(torch.cat(parts), whole)


def test_zarr_store_streams(tmp_path):
    pytest.importorskip("zarr")
    x = _write_nc(tmp_path / "a.nc", n=256)
    store = tmp_path / "a.zarr"
    xr.open_dataset(tmp_path / "a.nc").chunk({"sample": 64}).to_zarr(store, consolidated=False)
    fm = fit(xr.open_zarr(store, consolidated=False), var="x", backbone=TINY,
             train={"max_steps": 2, "batch_size": 16}, progress=False)  # fmt: skip
    assert fm.sample(3)["x"].shape == (3, *x.shape[1:])


def test_streaming_bad_input_is_refused_clearly(tmp_path):
    _write_nc(tmp_path / "a.nc", n=64, chunk=16)
    lazy = xr.open_dataset(tmp_path / "a.nc", chunks={"sample": 16})
    with pytest.raises(InputError, match="num_workers.*in memory"):
        fit(np.zeros((8, 2)), train={"num_workers": 2}, progress=False)
    with pytest.raises(InputError, match="cond: a Dataset gives its condition"):
        fit(_Pairs(), np.zeros(96), progress=False)
    with pytest.raises(InputError, match="num_workers.*IterableDataset"):
        fit(_Stream(), train={"num_workers": 2}, progress=False)
    with pytest.raises(InputError, match="val_fraction: an IterableDataset"):
        fit(_Stream(), val_fraction=0.1, progress=False)
    with pytest.raises(InputError, match="batch_size"):
        DataStream(ArraySource(lazy["x"]), 1000).check()
    bad = lazy["x"].where(lazy["sample"] != 40)  # a NaN row, found in the statistics pass
    with pytest.raises(InputError, match="samples"):
        fit(bad, backbone=TINY, train={"max_steps": 1}, progress=False, val_fraction=0)
