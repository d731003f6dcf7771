"""Checkpoints: safetensors + JSON, atomic writes, corruption errors, bit-exact resume."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from meanflow_sci.core import FlowMatching, ModularMeanFlow
from meanflow_sci.errors import CheckpointError, InputError
from meanflow_sci.nn import build_backbone
from meanflow_sci.train import TrainConfig, Trainer, latest_checkpoint
from meanflow_sci.train.checkpoint import (
    STATE_FILE,
    WEIGHTS_FILE,
    flatten_optimizer_state,
    list_checkpoints,
    read_checkpoint,
    unflatten_optimizer_state,
    write_checkpoint,
)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def _net():
    torch.manual_seed(0)
    return build_backbone("mlp", dim=2, hidden=16, depth=1, emb_dim=8)


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(128, 2, generator=g) + 1.0


def _cfg(**kw):
    base = dict(max_steps=12, batch_size=16, lr=1e-2, lr_warmup_steps=3, log_every=3)
    return TrainConfig(**{**base, "progress": False, **kw})


def _obj():
    return ModularMeanFlow(lam="linear", lam_warmup=8, ratio_r_neq_t=0.5)


def test_write_read_round_trip_keep_last_and_latest(tmp_path):
    assert latest_checkpoint(tmp_path) is None and latest_checkpoint(tmp_path / "no") is None
    tensors = {"model.w": torch.arange(6.0).view(2, 3).t(), "rng": torch.ones(4, dtype=torch.uint8)}
    for step in (5, 10, 100, 1000):
        write_checkpoint(tmp_path, step, tensors, {"history": [{"step": step}]}, keep_last=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "ckpt_000010",
        "ckpt_000100",
        "ckpt_001000",
    ]
    ckpt = read_checkpoint(tmp_path)  # a checkpoint directory reads its newest checkpoint
    assert ckpt.step == 1000 and ckpt.path == latest_checkpoint(tmp_path)
    assert ckpt.state["history"] == [{"step": 1000}]
    assert torch.equal(ckpt.tensors["model.w"], tensors["model.w"])
    assert ckpt.tensors["rng"].dtype == torch.uint8
    write_checkpoint(tmp_path, 1000, {"model.w": torch.zeros(1)}, {})  # rewrite in place
    assert torch.equal(read_checkpoint(tmp_path).tensors["model.w"], torch.zeros(1))


def test_optimizer_state_flattens_and_restores_exactly():
    net = _net()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.8, 0.9))
    net(torch.randn(4, 2), torch.zeros(4), torch.ones(4)).square().sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer_state(opt.state_dict())
    opt2 = torch.optim.AdamW(_net().parameters(), lr=5.0)
    opt2.load_state_dict(unflatten_optimizer_state(tensors, meta))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 1e-3
    for i, entry in a["state"].items():
        for key, value in entry.items():
            assert torch.equal(value, b["state"][i][key])


def test_refuses_to_write_nonfinite_weights(tmp_path):
    with pytest.raises(CheckpointError, match="model.w"):
        write_checkpoint(
            tmp_path, 1, {"model.w": torch.tensor([float("nan")])}, {}, check_finite=("model.",)
        )
    assert list_checkpoints(tmp_path) == []


def test_checkpoint_dir_that_is_a_file_is_an_input_error(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(InputError, match="checkpoint_dir"):
        write_checkpoint(afile, 1, {}, {})


@pytest.mark.parametrize("damage", ["truncate", "pickle", "bad_json", "foreign_json", "missing"])
def test_damaged_or_foreign_checkpoints_raise_checkpoint_error(tmp_path, damage):
    path = write_checkpoint(tmp_path, 7, {"model.w": torch.ones(100)}, {"a": 1})
    weights, state = path / WEIGHTS_FILE, path / STATE_FILE
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:200])
    elif damage == "pickle":
        weights.write_bytes(pickle.dumps({"model.w": torch.ones(3)}))
    elif damage == "bad_json":
        state.write_text('{"step": 7, "form')
    elif damage == "foreign_json":
        state.write_text('{"step": 7}')
    else:
        weights.unlink()
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_a_torch_pickle_is_not_a_checkpoint(tmp_path):
    torch.save({"model": torch.ones(2)}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_checkpoint(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_checkpoint(tmp_path)


def test_resume_is_bit_exact_against_an_uninterrupted_run(tmp_path):
    straight = Trainer(_net(), _obj(), _data(), config=_cfg()).train()

    def stop_at_6(trainer, record):
        trainer.should_stop = record["step"] >= 6

    first = Trainer(_net(), _obj(), _data(), config=_cfg(), checkpoint_dir=tmp_path)
    first.callbacks = (stop_at_6,)
    assert first.train().step == 6
    assert read_checkpoint(tmp_path).step == 6
    torch.manual_seed(123)  # a different global RNG and different init must not matter
    net = build_backbone("mlp", dim=2, hidden=16, depth=1, emb_dim=8)
    resumed = Trainer(net, _obj(), _data(), config=_cfg(), checkpoint_dir=tmp_path)
    result = resumed.train(resume=True)
    assert result.step == 12
    for name in ("model", "ema_model"):
        sd_a, sd_b = getattr(straight, name).state_dict(), getattr(result, name).state_dict()
        assert sd_a.keys() == sd_b.keys()
        assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    drop_timing = [{k: v for k, v in h.items() if k != "steps_per_s"} for h in result.history]
    assert drop_timing == [
        {k: v for k, v in h.items() if k != "steps_per_s"} for h in straight.history
    ]
    assert (tmp_path / "train_log.jsonl").read_text().count("\n") == 4


def test_resume_with_no_checkpoint_starts_afresh_and_mismatch_is_an_error(tmp_path):
    result = Trainer(_net(), _obj(), _data(), config=_cfg(max_steps=3), checkpoint_dir=tmp_path)
    assert result.train(resume=True).step == 3
    other = build_backbone("mlp", dim=2, hidden=8, depth=1, emb_dim=8)
    with pytest.raises(CheckpointError, match="does not match"):
        Trainer(other, _obj(), _data(), config=_cfg(), checkpoint_dir=tmp_path).train(resume=True)


_CHILD = textwrap.dedent(
    """
    import sys, time, torch
    from pathlib import Path
    from meanflow_sci.core import FlowMatching
    from meanflow_sci.nn import build_backbone
    from meanflow_sci.train import TrainConfig, Trainer, checkpoint

    out = Path(sys.argv[1])
    real_write = checkpoint._write_files

    def slow_write(folder, tensors, state, *args):
        if state["step"] == 4:
            real_write(folder, tensors, state, *args)
        else:  # start writing, then hang until killed
            (folder / checkpoint.WEIGHTS_FILE).write_bytes(b"partial")
            (out.parent / "writing").write_text(str(state["step"]))
            time.sleep(60)

    checkpoint._write_files = slow_write
    torch.manual_seed(0)
    net = build_backbone("mlp", dim=2, hidden=8, depth=1, emb_dim=8)
    cfg = TrainConfig(max_steps=8, batch_size=8, checkpoint_every=4, progress=False)
    Trainer(net, FlowMatching(), torch.randn(32, 2), config=cfg, checkpoint_dir=out).train()
    """
)


def test_sigkill_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(out)], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "writing").exists():
            assert child.poll() is None, "child exited before the second checkpoint"
            assert time.monotonic() < deadline, "child never started the second checkpoint"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert [p.name for p in list_checkpoints(out)] == ["ckpt_000004"]
    ckpt = read_checkpoint(latest_checkpoint(out))
    assert ckpt.step == 4 and all(
        torch.isfinite(v).all() for k, v in ckpt.tensors.items() if k.startswith("model.")
    )
    # the stale temporary folder does not stop a resume, and is cleaned up by the next write
    torch.manual_seed(0)
    net = build_backbone("mlp", dim=2, hidden=8, depth=1, emb_dim=8)
    cfg = TrainConfig(max_steps=8, batch_size=8, checkpoint_every=4, progress=False)
    trainer = Trainer(net, FlowMatching(), torch.randn(32, 2), config=cfg, checkpoint_dir=out)
    assert trainer.train(resume=True).step == 8
    assert sorted(p.name for p in out.iterdir()) == [
        "ckpt_000004",
        "ckpt_000008",
        "train.lock",  # left by the killed run, released by the kernel when it died
        "train_log.jsonl",
    ]
