"""The trainer loop: config checks, LR schedule, EMA, precision, callbacks, non-finite guard."""

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from meanflow_sci.core import Objective
from meanflow_sci.errors import InputError, TrainingDivergedError
from meanflow_sci.train import EMA, TrainConfig, Trainer, get_lr, resolve_device
from meanflow_sci.train.checkpoint import list_checkpoints, read_checkpoint
from meanflow_sci.train.config import make_optimizer
from meanflow_sci.train.device import resolve_autocast_dtype

torch.set_num_threads(1)


class TinyNet(nn.Module):
    """Stand-in backbone of the contract ``forward(x, r, t, cond=None)`` for (B, D) samples."""

    def __init__(self, dim: int = 2, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 2, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x, r, t, cond=None):
        return self.net(torch.cat([x, r[:, None], t[:, None]], dim=-1))


@dataclass
class Out:
    loss: torch.Tensor
    mse: torch.Tensor
    lam: float


class StandInFM(Objective):
    """Stand-in objective of the protocol: flow matching with t drawn from the global RNG."""

    name = "stand-in"
    sampling_mode = "flow"

    def __init__(self, poison=lambda call: False) -> None:
        self.calls = 0
        self.poison = poison  # call index -> return a NaN loss
        self.autocast_seen = []
        self.evaluating_seen = []

    def __call__(self, model, x, cond=None, *, step=0, t=None, r=None, noise=None):
        self.autocast_seen.append(torch.is_autocast_enabled("cpu"))
        noise = torch.randn_like(x) if noise is None else noise
        t = torch.rand(x.shape[0]) if t is None else t
        z = (1 - t[:, None]) * x + t[:, None] * noise
        u = model(z, t, t, cond)
        mse = ((u.float() - (noise - x)) ** 2).mean(dim=1)
        loss = mse * math.nan if self.poison(self.calls) else mse
        self.calls += 1
        self.evaluating_seen.append(self.in_evaluation)
        return Out(loss, mse.detach(), min(1.0, step / 10))

    in_evaluation = False

    @contextmanager
    def evaluating(self):
        self.in_evaluation = True
        try:
            yield self
        finally:
            self.in_evaluation = False

    def config(self):
        return {"name": "stand-in"}


class _Unjsonable(StandInFM):
    def config(self):
        return {"name": "stand-in", "schedule": object()}


def _data(n=256, dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g) * 0.5 + 2.0


def _cfg(**kw):
    base = dict(
        max_steps=20, batch_size=32, lr=1e-2, lr_warmup_steps=2, log_every=5, progress=False
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_steps", 0),
        ("batch_size", 2.5),
        ("lr", 0.0),
        ("lr", -1.0),
        ("min_lr_ratio", 1.5),
        ("grad_clip", -1.0),
        ("betas", (0.9, 1.0)),
        ("betas", 0.9),
        ("ema_decay", 1.0),
        ("precision", "fp16"),
        ("device", "gpu7"),
        ("log_every", 0),
        ("keep_last", 0),
        ("max_rollbacks", -1),
        ("progress", "yes"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(InputError, match=field):
        TrainConfig(**{field: value})


def test_config_round_trips_through_json():
    cfg = _cfg(seed=3, betas=(0.9, 0.95))
    assert TrainConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert make_optimizer(torch.nn.Linear(2, 2), cfg).defaults["betas"] == (0.9, 0.95)


def test_optimizer_is_fused_and_steps_like_the_per_tensor_loop():
    torch.manual_seed(0)
    net, twin = TinyNet(), TinyNet()
    twin.load_state_dict(net.state_dict())
    start = net.net[0].weight.detach().clone()
    cfg = _cfg(lr=1e-2, weight_decay=0.1)
    opt = make_optimizer(net, cfg)
    assert opt.defaults["fused"] is True
    split = [
        {"params": [p for p in twin.parameters() if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in twin.parameters() if p.dim() < 2], "weight_decay": 0.0},
    ]
    ref = torch.optim.AdamW(split, lr=1e-2, betas=cfg.betas, foreach=False)
    x, t = torch.randn(16, 2), torch.rand(16)
    for _ in range(5):
        for model, o in ((net, opt), (twin, ref)):
            o.zero_grad()
            model(x, t, t).square().mean().backward()
            o.step()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert (net.net[0].weight - start).abs().max() > 1e-3


def test_lr_warms_up_linearly_then_decays_to_min_ratio():
    cfg = TrainConfig(max_steps=110, lr=1.0, lr_warmup_steps=10, min_lr_ratio=0.1)
    assert get_lr(0, cfg) == pytest.approx(0.1)
    assert get_lr(4, cfg) == pytest.approx(0.5)
    assert get_lr(10, cfg) == pytest.approx(1.0)
    assert get_lr(60, cfg) == pytest.approx(0.55)  # half-way down the cosine
    assert get_lr(110, cfg) == pytest.approx(0.1)
    lrs = [get_lr(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_device_and_precision_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")
    cpu = torch.device("cpu")
    assert resolve_autocast_dtype("auto", cpu) is None
    assert resolve_autocast_dtype("fp32", torch.device("cuda")) is None
    assert resolve_autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16
    assert resolve_autocast_dtype("bf16", cpu) is torch.bfloat16


def test_ema_warms_up_and_tracks_the_model():
    net = nn.Linear(3, 3)
    ema = EMA(net, decay=0.9)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)  # first decay is min(0.9, 1/10) = 0.1
    expected = 0.1 * (net.weight - 1.0) + 0.9 * net.weight
    assert torch.allclose(ema.module.weight, expected)
    assert not ema.module.weight.requires_grad
    exact = EMA(net, decay=0.0)
    exact.update(net)
    assert torch.equal(exact.module.weight, net.weight)


def test_ema_averages_float_buffers_copies_counters_and_refuses_another_network():
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = EMA(net, decay=0.0)
    with torch.no_grad():
        net[1].running_mean.fill_(2.0)
    net[1].num_batches_tracked.fill_(7)
    ema.update(net)
    assert torch.equal(ema.module[1].running_mean, net[1].running_mean)
    assert int(ema.module[1].num_batches_tracked) == 7
    with pytest.raises(InputError, match="model: expected the averaged network's 4 parameter"):
        ema.update(nn.Linear(3, 3))


def test_training_reduces_loss_and_records_history(tmp_path, capsys):
    torch.manual_seed(0)
    net = TinyNet()
    cfg = _cfg(max_steps=60, log_every=10)
    result = Trainer(net, StandInFM(), _data(), config=cfg, checkpoint_dir=tmp_path).train()
    assert result.step == 60 and result.model is net
    assert [h["step"] for h in result.history] == [10, 20, 30, 40, 50, 60]
    keys = {"step", "loss", "mse", "lam", "lr", "grad_norm", "steps_per_s"}
    assert all(keys <= set(h) for h in result.history)
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]
    assert result.history[-1]["lam"] == 1.0 and result.history[0]["lam"] == pytest.approx(0.9)
    lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.history
    assert not torch.equal(result.ema_model.net[0].weight, net.net[0].weight)
    assert result.checkpoint == list_checkpoints(tmp_path)[-1]
    assert read_checkpoint(result.checkpoint).step == 60
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # progress=False is silent


def test_bf16_precision_runs_the_objective_under_cpu_autocast():
    torch.manual_seed(0)
    obj = StandInFM()
    result = Trainer(TinyNet(), obj, _data(), config=_cfg(precision="bf16", max_steps=10)).train()
    assert all(obj.autocast_seen)
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert math.isfinite(result.history[-1]["loss"])
    obj32 = StandInFM()
    Trainer(TinyNet(), obj32, _data(), config=_cfg(max_steps=2)).train()
    assert not any(obj32.autocast_seen)


def test_callbacks_see_each_record_and_can_stop_training():
    seen = []

    def stop_at_15(trainer, record):
        seen.append(record["step"])
        if record["step"] >= 15:
            trainer.should_stop = True

    trainer = Trainer(TinyNet(), StandInFM(), _data(), config=_cfg(), callbacks=[stop_at_15])
    result = trainer.train()
    assert seen == [5, 10, 15] and result.step == 15


def test_validation_mse_is_recorded_and_deterministic():
    val = _data(64, seed=1)
    cfg = _cfg(max_steps=10, val_every=5)
    trainer = Trainer(TinyNet(), StandInFM(), _data(), config=cfg, val_data=val)
    result = trainer.train()
    assert [("val_mse" in h) for h in result.history] == [True, True]
    rng = torch.get_rng_state()
    obj = trainer.objective
    seen = len(obj.evaluating_seen)
    assert trainer.evaluate() == trainer.evaluate() == result.history[-1]["val_mse"]
    assert all(obj.evaluating_seen[seen:]) and not any(obj.evaluating_seen[:5])
    assert torch.equal(rng, torch.get_rng_state())  # validation leaves the RNG alone


def test_nonfinite_step_leaves_weights_and_ema_untouched():
    trainer = Trainer(TinyNet(), StandInFM(poison=lambda call: True), _data(), config=_cfg())
    before = [p.clone() for p in trainer.model.parameters()]
    out = trainer.train_step(*trainer.next_batch())
    assert not out["finite"] and trainer.ema.updates == 0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_short_nonfinite_burst_is_skipped_without_losing_steps():
    torch.manual_seed(0)
    obj = StandInFM(poison=lambda call: call in (3, 4, 5))
    trainer = Trainer(TinyNet(), obj, _data(), config=_cfg(max_steps=8, max_nonfinite=5))
    result = trainer.train()
    assert result.step == 8 and obj.calls == 11 and trainer.rollbacks == 0
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_persistent_nonfinite_rolls_back_then_raises_and_never_saves_nan(tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    obj = StandInFM(poison=lambda call: call >= 12)
    cfg = _cfg(max_steps=50, max_nonfinite=3, max_rollbacks=2, checkpoint_every=5)
    trainer = Trainer(net, obj, _data(), config=cfg, checkpoint_dir=tmp_path)
    with pytest.warns(UserWarning, match="rolled back"):
        with pytest.raises(TrainingDivergedError, match="max_rollbacks=2"):
            trainer.train()
    assert trainer.rollbacks == 2 and trainer.lr_scale == 0.25
    assert trainer.step == 10  # back at the last snapshot
    for path in list_checkpoints(tmp_path):
        ckpt = read_checkpoint(path)
        assert all(torch.isfinite(v).all() for v in ckpt.tensors.values() if v.is_floating_point())


def test_huge_lr_diverges_cleanly_or_recovers_and_saves_only_finite_weights(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(max_steps=30, lr=1e6, lr_warmup_steps=0, grad_clip=0.0, checkpoint_every=2)
    trainer = Trainer(TinyNet(), StandInFM(), _data(), config=cfg, checkpoint_dir=tmp_path)
    try:
        with pytest.warns(UserWarning):
            trainer.train()
    except TrainingDivergedError as exc:
        assert "diverged" in str(exc)
    for path in list_checkpoints(tmp_path):
        tensors = read_checkpoint(path).tensors
        assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(data=[[1.0, 2.0]]), "data"),
        (dict(data=torch.ones(4, 2, dtype=torch.long)), "data"),
        (dict(data=torch.full((4, 2), math.nan)), "data"),
        (dict(cond=torch.ones(3, 1)), "cond"),
        (dict(cond=torch.ones(4, 1, 1)), "cond"),
        (dict(val_data=torch.ones(4, 3)), "val_data"),
        (dict(metadata={"f": object()}), "metadata"),
        (dict(callbacks=[1]), "callbacks"),
        (dict(model=lambda x, r, t, c=None: x), "model"),
        (dict(objective=lambda model, x, cond=None, **kw: None), "objective: expected a"),
        (dict(objective=_Unjsonable()), "objective: expected config"),
        (dict(config={"max_steps": 3}), "config"),
    ],
)
def test_trainer_rejects_bad_inputs(kwargs, match):
    args = dict(model=TinyNet(), objective=StandInFM(), data=torch.ones(4, 2), config=_cfg())
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        Trainer(**args)


def test_checkpoint_dir_that_is_a_file_and_resume_without_dir_are_rejected(tmp_path):
    afile = tmp_path / "f"
    afile.write_text("x")
    with pytest.raises(InputError, match="checkpoint_dir"):
        Trainer(TinyNet(), StandInFM(), _data(), config=_cfg(), checkpoint_dir=afile)
    with pytest.raises(InputError, match="resume"):
        Trainer(TinyNet(), StandInFM(), _data(), config=_cfg()).train(resume=True)


def test_with_the_real_objective_and_backbone():
    core = pytest.importorskip("meanflow_sci.core")
    nn_mod = pytest.importorskip("meanflow_sci.nn")
    torch.manual_seed(0)
    net = nn_mod.build_backbone("mlp", dim=2, hidden=32, depth=1, emb_dim=16, num_classes=3)
    obj = core.ModularMeanFlow(lam="linear", lam_warmup=10)
    labels = torch.arange(256) % 3
    cfg = _cfg(max_steps=20, precision="bf16")
    result = Trainer(
        net, obj, _data(), labels, config=cfg, val_data=_data(32), val_cond=labels[:32]
    )
    result = result.train()
    lams = [h["lam"] for h in result.history]
    assert lams == sorted(lams) and lams[0] < 1.0 and lams[-1] == 1.0
    assert all(math.isfinite(h["mse"]) for h in result.history)
    assert math.isfinite(result.history[-1]["val_mse"])
    out = core.sample(result.ema_model, torch.randn(5, 2), labels[:5])
    assert out.shape == (5, 2) and torch.isfinite(out).all()


def test_progress_bar_shows_loss_mse_lambda_and_speed(capsys):
    Trainer(TinyNet(), StandInFM(), _data(), config=_cfg(max_steps=5, progress=True)).train()
    err = capsys.readouterr().err
    assert all(key in err for key in ("loss=", "mse=", "lam=", "sps="))
