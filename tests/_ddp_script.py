"""Train a tiny stand-in model with the Trainer, in one process or under torchrun.

Usage: ``python tests/_ddp_script.py OUT [stream]`` or
``python -m torch.distributed.run --standalone --nproc_per_node=2 tests/_ddp_script.py OUT``
(``stream``: the data goes through a ``DataStream`` read in blocks, each rank its own rows).
Each rank writes its final weights to ``OUT/rank<k>.safetensors`` and its history to
``OUT/history<k>.json``; checkpoints go to ``OUT/ckpt`` (rank 0 only). Used by
tests/test_train_distributed.py; not collected by pytest.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from meanflow_sci.core import Objective
from meanflow_sci.core.target_field import ReferenceBank
from meanflow_sci.data.stream import ArraySource, DataStream
from meanflow_sci.train import TrainConfig, Trainer
from meanflow_sci.train.distributed import cleanup_distributed, dist_info


class TinyNet(nn.Module):
    def __init__(self, dim: int = 3, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 2, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x, r, t, cond=None):
        return self.net(torch.cat([x, r[:, None], t[:, None]], dim=-1))


@dataclass
class Out:
    loss: torch.Tensor
    mse: torch.Tensor
    lam: float


class NoiseTimedFM(Objective):
    """Flow matching whose time is a function of the noise the trainer passes, so a sample's
    loss does not depend on which rank computes it. Keeps a reference bank of the batches it
    sees, as the stable target field does (the trainer shares it across ranks)."""

    name = "noise-timed-fm"
    sampling_mode = "flow"

    def __init__(self) -> None:
        self.bank = ReferenceBank(40)

    def config(self):
        return {"name": self.name}

    def share_across_ranks(self, all_gather):
        self.bank.gather = all_gather

    def __call__(self, model, x, cond=None, *, step=0, t=None, r=None, noise=None):
        self.bank.push(x, cond)
        t = torch.sigmoid(noise[:, 0])
        z = (1 - t[:, None]) * x + t[:, None] * noise
        mse = ((model(z, t, t, cond) - (noise - x)) ** 2).mean(dim=1)
        return Out(mse, mse.detach(), 0.0)


def main(out: Path, stream: bool = False) -> None:
    torch.set_num_threads(1)
    info = dist_info()
    torch.manual_seed(info.rank)  # ranks start from different weights: the broadcast aligns them
    net = TinyNet()
    data = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    if stream:
        data = DataStream(ArraySource(data.numpy(), block=8), 16, seed=0)
    cfg = TrainConfig(
        max_steps=6,
        batch_size=16,
        lr=1e-2,
        lr_warmup_steps=2,
        ema_decay=0.9,
        log_every=3,
        device="cpu",
        progress=False,
    )
    objective = NoiseTimedFM()
    result = Trainer(net, objective, data, config=cfg, checkpoint_dir=out / "ckpt").train()
    tensors = {f"model.{k}": v for k, v in result.model.state_dict().items()}
    tensors["bank.x"] = objective.bank.x
    tensors.update({f"ema.{k}": v for k, v in result.ema_model.state_dict().items()})
    save_file(tensors, str(out / f"rank{info.rank}.safetensors"))
    (out / f"history{info.rank}.json").write_text(json.dumps(result.history))
    cleanup_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]), stream=sys.argv[2:] == ["stream"])
