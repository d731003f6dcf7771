"""Faults that must lose nothing: a full disk, two runs in one folder, bad paths, bad files."""

import errno
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import meanflow_sci.train.checkpoint as checkpoint
from meanflow_sci import fit
from meanflow_sci.cli import main
from meanflow_sci.core import ModularMeanFlow
from meanflow_sci.errors import CheckpointError, InputError
from meanflow_sci.nn import build_backbone
from meanflow_sci.train import TrainConfig, Trainer
from meanflow_sci.train.checkpoint import list_checkpoints, lock_checkpoint_dir, read_checkpoint

TINY = {"name": "mlp", "hidden": 16, "depth": 1, "emb_dim": 8}


def _trainer(folder, steps=12):
    torch.manual_seed(0)
    net = build_backbone("mlp", dim=2, hidden=16, depth=1, emb_dim=8)
    data = torch.randn(128, 2, generator=torch.Generator().manual_seed(0)) + 1.0
    cfg = TrainConfig(max_steps=steps, batch_size=16, lr=1e-2, log_every=3, checkpoint_every=4,
                      progress=False)  # fmt: skip
    objective = ModularMeanFlow(lam="linear", lam_warmup=8, ratio_r_neq_t=0.5)
    return Trainer(net, objective, data, config=cfg, checkpoint_dir=folder)


def test_a_full_disk_ends_the_run_clearly_and_the_last_good_checkpoint_resumes(
    tmp_path, monkeypatch
):
    straight = _trainer(tmp_path / "straight").train()
    real_save = checkpoint.save_file
    calls = []

    def fill_up(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint (step 8) meets a full disk halfway
            with open(path, "wb") as fh:
                fh.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", fill_up)
    run = tmp_path / "run"
    with pytest.raises(CheckpointError) as info:
        _trainer(run).train()
    message = str(info.value)
    assert "step 8" in message and "No space left on device" in message
    good = run / "ckpt_000004"
    assert str(good) in message and "resume" in message
    # nothing half-written is left, and the last good checkpoint loads
    assert list_checkpoints(run) == [good]
    assert [p.name for p in run.iterdir() if p.name.startswith(".tmp")] == []
    assert read_checkpoint(good).step == 4
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    # resumed elsewhere (a copy of the folder), it reproduces the uninterrupted run
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run, elsewhere)
    resumed = _trainer(elsewhere).train(resume=True)
    assert resumed.step == 12
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    held = lock_checkpoint_dir(folder)  # as a running trainer holds it
    try:
        with pytest.raises(CheckpointError, match="in use by a run that is still training"):
            _trainer(folder).train()
        assert list_checkpoints(folder) == []
    finally:
        held.close()
    assert _trainer(folder, steps=4).train().step == 4  # free again once the holder ends


def test_the_lock_holds_across_processes_and_dies_with_its_holder(tmp_path):
    folder = tmp_path / "ckpt"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from meanflow_sci.train.checkpoint import lock_checkpoint_dir
            lock = lock_checkpoint_dir({str(folder)!r})
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match=f"pid {holder.pid}"):
            _trainer(folder, steps=4).train()
    finally:
        holder.kill()
        holder.wait()
    assert _trainer(folder, steps=4).train().step == 4


def test_paths_under_a_plain_file_are_refused_naming_the_argument(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("keep me")
    fm = fit(np.random.default_rng(0).normal(size=(64, 2)), backbone=TINY,
             train={"max_steps": 1}, progress=False)  # fmt: skip
    with pytest.raises(InputError, match=r"^path: .*lies under the file"):
        fm.save(plain / "sub" / "model")
    with pytest.raises(InputError, match=r"^checkpoint_dir: .*lies under the file"):
        fit(np.zeros((8, 2)), checkpoint_dir=plain / "ckpt", progress=False)
    assert plain.read_text() == "keep me"


def test_cli_bad_files_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"CDF\x01 this is not a netCDF file" * 10)
    out = tmp_path / "model"
    assert main(["train", str(bad), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "could not read" in err and str(bad) in err
    xr = pytest.importorskip("xarray")
    good = tmp_path / "good.nc"
    xr.Dataset({"a": (("sample", "d"), np.zeros((8, 2)))}).to_netcdf(good)
    assert main(["train", str(good), "--var", "x", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--var: expected one of the variables ['a']" in err
    assert not out.exists()
