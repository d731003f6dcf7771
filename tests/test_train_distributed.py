"""Data-parallel training under torchrun (2 CPU processes, gloo) against a single process."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from meanflow_sci.core import Objective
from meanflow_sci.train import TrainConfig, Trainer
from meanflow_sci.train.checkpoint import list_checkpoints
from meanflow_sci.train.distributed import DistInfo, dist_info

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "_ddp_script.py"


class _NotCalled(Objective):
    name = "unused"
    sampling_mode = "flow"

    def __call__(self, model, x, cond=None, *, step=0, t=None, r=None, noise=None):
        raise AssertionError("not called")

    def config(self):
        return {"name": self.name}


@pytest.mark.slow
@pytest.mark.parametrize("data", ["tensor", "stream"])
def test_two_gloo_ranks_stay_identical_and_match_one_process(tmp_path, data):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir()
    single.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.Popen(
        [*cmd, str(SCRIPT), str(ddp), *(["stream"] if data == "stream" else [])],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # the single-process reference runs here while the two ranks start up
        runpy.run_path(str(SCRIPT), run_name="ddp_script")["main"](single, data == "stream")
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    rank0 = load_file(str(ddp / "rank0.safetensors"))
    rank1 = load_file(str(ddp / "rank1.safetensors"))
    ref = load_file(str(single / "rank0.safetensors"))
    assert rank0.keys() == rank1.keys() == ref.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"replicas differ in {key}"
        torch.testing.assert_close(rank0[key], ref[key], rtol=1e-5, atol=1e-6)
    # the reference bank holds the global batches on every rank: the newest 40 of 6 x 16 rows
    assert rank0["bank.x"].shape == (40, 3)
    assert torch.equal(rank0["bank.x"], ref["bank.x"])
    # the model moved away from rank 0's initial weights (training happened)
    torch.manual_seed(0)
    init = torch.nn.Linear(5, 16).weight
    assert not torch.allclose(rank0["model.net.0.weight"], init)
    # logged loss is the global-batch mean, the same on every rank and as in one process
    h0, h1, hs = (
        json.loads((d / n).read_text())
        for d, n in [(ddp, "history0.json"), (ddp, "history1.json"), (single, "history0.json")]
    )
    assert [h["loss"] for h in h0] == [h["loss"] for h in h1]
    assert [h["loss"] for h in h0] == pytest.approx([h["loss"] for h in hs], rel=1e-5)
    # only rank 0 writes: one checkpoint folder, one log
    assert [p.name for p in list_checkpoints(ddp / "ckpt")] == ["ckpt_000006"]
    assert len((ddp / "ckpt" / "train_log.jsonl").read_text().splitlines()) == 2


def test_dist_info_and_rank_shards_union_to_the_single_process_batch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    info = dist_info()
    assert (info.rank, info.world_size, info.enabled, info.is_main) == (0, 1, False, True)
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    assert dist_info().rank == 2 and not dist_info().is_main
    # sharding: rank k's rows are the k-th slice of the batch one process would draw
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    cfg = TrainConfig(max_steps=1, batch_size=6, progress=False, device="cpu")
    data = torch.arange(40.0).view(20, 2)
    net = torch.nn.Linear(2, 2)
    single = Trainer(net, _NotCalled(), data, config=cfg)
    x_all, _, noise_all = single.next_batch()
    shards = []
    for rank in range(3):
        tr = Trainer(net, _NotCalled(), data, config=cfg)
        tr.dist = DistInfo(rank=rank, world_size=3)
        shards.append(tr.next_batch())
    assert torch.equal(torch.cat([s[0] for s in shards]), x_all)
    assert torch.equal(torch.cat([s[2] for s in shards]), noise_all)
