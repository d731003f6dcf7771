"""The one trainer: iteration-based, AdamW, warm-up + cosine LR, EMA, checkpoints, DDP.

Every task (ODE, control, images) hands its data and objective to this loop; nobody copies it.

Example:
    >>> cfg = TrainConfig(max_steps=500, batch_size=128, progress=False)
    >>> result = Trainer(net, ModularMeanFlow(lam="linear"), data, config=cfg).train()
    >>> result.ema_model(noise, torch.zeros(n), torch.ones(n))
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from meanflow_sci.core.protocol import Objective
from meanflow_sci.data.stream import DataStream
from meanflow_sci.errors import CheckpointError, InputError, TrainingDivergedError, describe
from meanflow_sci.train.checkpoint import (
    flatten_optimizer_state,
    latest_checkpoint,
    lock_checkpoint_dir,
    prepare_checkpoint_dir,
    read_checkpoint,
    unflatten_optimizer_state,
    write_checkpoint,
)
from meanflow_sci.train.config import TrainConfig, check_trainer_inputs, get_lr, make_optimizer
from meanflow_sci.train.device import autocast, join_devices, resolve_autocast_dtype, to_device
from meanflow_sci.train.distributed import (
    all_gather_cat,
    all_reduce_grads,
    all_reduce_max,
    broadcast_module,
)
from meanflow_sci.train.ema import EMA

__all__ = ["Trainer", "TrainResult"]

LOG_FILE = "train_log.jsonl"
Callback = Callable[["Trainer", dict[str, Any]], None]


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns.

    Attributes:
        model: the trained network (the same module that was passed in).
        ema_model: the EMA copy of the network (usually the one to sample with).
        history: one dict per logged step (step, loss, mse, lam, lr, grad_norm, steps_per_s,
            and val_mse when validated).
        step: optimizer steps done.
        train_time_s: wall time of this ``train`` call.
        checkpoint: the last checkpoint written, if any.
    """

    model: nn.Module
    ema_model: nn.Module
    history: list[dict[str, Any]]
    step: int
    train_time_s: float = 0.0
    checkpoint: Path | None = None


def _all_finite(module: nn.Module) -> bool:
    return all(
        bool(torch.isfinite(p).all()) for p in module.state_dict().values() if p.is_floating_point()
    )


class Trainer:
    """Train ``model`` on ``data`` with ``objective``.

    Args:
        model: a backbone ``forward(x, r, t, cond=None)``; trained in place, moved to the device.
        objective: a :class:`meanflow_sci.core.Objective`: ``objective(model, x, cond, *, step,
            noise) -> LossOutput`` with per-sample ``loss`` and ``mse`` of shape (B,) and the
            ``lam`` used.
        data: float tensor (N, *sample_shape), already normalised, or a
            :class:`~meanflow_sci.data.stream.DataStream` (data read from disk batch by batch,
            normalised by its transform; it carries its own condition).
        cond: None, float (N, C) or integer labels (N,); None with a stream.
        config: a :class:`TrainConfig`.
        checkpoint_dir: folder for checkpoints and ``train_log.jsonl`` (None: nothing written).
        val_data: optional float tensor (M, *sample_shape) or stream scored with the EMA model.
        val_cond: its conditions, like ``cond``.
        callbacks: callables ``cb(trainer, record)`` run after each logged step; one may set
            ``trainer.should_stop = True`` to end training (a checkpoint is still written).
        metadata: JSON-able dict stored in every checkpoint.

    Under ``torchrun`` every rank builds the same Trainer; rank 0's initial weights are broadcast,
    each rank trains on its shard of the global batch and only rank 0 writes files.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        data: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        config: TrainConfig,
        checkpoint_dir: str | os.PathLike | None = None,
        val_data: torch.Tensor | None = None,
        val_cond: torch.Tensor | None = None,
        callbacks: Sequence[Callback] = (),
        metadata: dict[str, Any] | None = None,
    ) -> None:
        callbacks, metadata = tuple(callbacks), dict(metadata or {})
        check_trainer_inputs(model, objective, data, cond, val_data, val_cond, callbacks, metadata)
        if not isinstance(config, TrainConfig):
            raise InputError(f"config: expected a TrainConfig, got {describe(config)}")
        self.device, self.dist = join_devices(config.device)
        if config.batch_size % self.dist.world_size:
            raise InputError(
                f"batch_size: expected a multiple of the world size {self.dist.world_size}, "
                f"got {config.batch_size}"
            )
        self.config = config
        self.objective = objective
        if self.dist.enabled:
            objective.share_across_ranks(all_gather_cat)  # e.g. the stable target field's bank
        self.autocast_dtype = resolve_autocast_dtype(config.precision, self.device)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        if self.checkpoint_dir is not None and self.dist.is_main:
            prepare_checkpoint_dir(self.checkpoint_dir)
        elif self.checkpoint_dir is not None and self.checkpoint_dir.is_file():
            prepare_checkpoint_dir(self.checkpoint_dir)  # raises the same error on every rank

        self.model = model.to(self.device)
        broadcast_module(self.model)
        dtype = next(p for p in self.model.parameters() if p.is_floating_point()).dtype
        self.stream = data if isinstance(data, DataStream) else None
        self.val_stream = val_data if isinstance(val_data, DataStream) else None
        if self.stream is not None:
            data = None
        if self.val_stream is not None:
            val_data = None
        self.data, self.cond, self.val_data, self.val_cond = (
            to_device(v, self.device, dtype) for v in (data, cond, val_data, val_cond)
        )
        self.sample_shape = (
            self.stream.sample_shape if self.stream is not None else tuple(self.data.shape[1:])
        )
        self._dtype = dtype
        self._batches: Any = None  # the stream's DataLoader iterator while training
        self.callbacks = callbacks
        self.metadata = metadata

        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.model, config)
        self.ema = EMA(self.model, config.ema_decay)
        # Own generators (same seed on every rank): every rank draws the same global batch and
        # keeps its shard, and their states go into checkpoints so a resume is bit-exact.
        self.generator = torch.Generator().manual_seed(config.seed)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.step = 0
        self.batches_drawn = 0  # global batches read from a stream (its position on resume)
        self.history: list[dict[str, Any]] = []
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.should_stop = False
        self.last_checkpoint: Path | None = None
        self._snapshot: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None

    # ----------------------------------------------------------------------------------------
    # state: one flat dict of tensors plus one JSON dict, shared by checkpoints and snapshots

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything resumable as tensors: model, EMA, optimizer state and RNG states."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.module.state_dict().items()})
        optim_tensors, _ = flatten_optimizer_state(self.optimizer.state_dict())
        tensors.update(optim_tensors)
        tensors["rng.batch"] = self.generator.get_state()
        tensors["rng.noise"] = self.noise_generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return tensors

    def state_json(self) -> dict[str, Any]:
        """The JSON part of the state (config, counters, history, metadata)."""
        _, optim_meta = flatten_optimizer_state(self.optimizer.state_dict())
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "history": list(self.history),  # records are never changed once logged
            "metadata": self.metadata,
            "optimizer": optim_meta,
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "ema_updates": self.ema.updates,
            "batches_drawn": self.batches_drawn,
            "world_size": self.dist.world_size,
            "objective": self.objective.config(),  # for reference only
            "model_class": type(self.model).__name__,
        }

    def load_state(
        self, tensors: dict[str, torch.Tensor], state: dict[str, Any], *, restore_rng: bool = True
    ) -> None:
        """Restore a state written by :meth:`state_tensors` / :meth:`state_json`.

        Raises:
            CheckpointError: if the tensors do not fit this model or optimizer.
        """
        try:
            for prefix, module in (("model.", self.model), ("ema.", self.ema.module)):
                sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                module.load_state_dict(sub)
            self.optimizer.load_state_dict(unflatten_optimizer_state(tensors, state["optimizer"]))
        except (RuntimeError, KeyError, ValueError, IndexError) as exc:
            raise CheckpointError(
                f"checkpoint does not match this model/optimizer ({type(self.model).__name__}): "
                f"{exc}"
            ) from exc
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.lr_scale = float(state["lr_scale"])
        self.ema.updates = int(state["ema_updates"])
        if restore_rng:
            self.batches_drawn = int(state.get("batches_drawn", 0))
            self.generator.set_state(tensors["rng.batch"])
            self.noise_generator.set_state(tensors["rng.noise"])
            torch.set_rng_state(tensors["rng.torch"])
            if self.device.type == "cuda" and "rng.cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
            if self.dist.rank > 0:
                # Only rank 0's global RNG state is saved: give other ranks their own stream.
                torch.manual_seed(self.config.seed + 7919 * self.dist.rank + self.step)

    # ----------------------------------------------------------------------------------------
    # small named helpers of the loop

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """This rank's shard of the next global batch: ``(x, cond, noise)``.

        The global batch (indices and noise) is drawn identically on every rank; rank k keeps
        rows ``[k * b, (k + 1) * b)`` with ``b = batch_size // world_size``, so the shards' union
        is exactly the batch a single process would draw.
        """
        batch, world, rank = self.config.batch_size, self.dist.world_size, self.dist.rank
        share = batch // world
        rows = slice(rank * share, (rank + 1) * share)
        if self.stream is None:
            idx = torch.randint(self.data.shape[0], (batch,), generator=self.generator)
        noise = torch.randn(
            (batch, *self.sample_shape),
            generator=self.noise_generator,
            device=self.device,
            dtype=self._dtype,
        )
        if self.stream is not None:
            x, cond = next(self._batches)  # this rank's rows of the next global batch
            self.batches_drawn += 1
            x, cond = (to_device(v, self.device, self._dtype) for v in (x, cond))
            return x, cond, noise[rows]
        idx = idx[rows].to(self.device)
        cond = None if self.cond is None else self.cond[idx]
        return self.data[idx], cond, noise[rows]

    def train_step(self, x: torch.Tensor, cond: torch.Tensor | None, noise: torch.Tensor) -> dict:
        """One forward/backward; updates weights and EMA only if loss and gradients are finite.

        Returns:
            dict with ``finite`` (bool), ``loss``, ``mse``, ``grad_norm``, ``lam``, ``lr``.
        """
        lr = get_lr(self.step, self.config) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.autocast_dtype):
            out = self.objective(self.model, x, cond, step=self.step, noise=noise)
        loss = out.loss.float().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stats = torch.stack([loss.detach(), out.mse.detach().float().mean()])
        if self.dist.enabled:
            stats = all_reduce_grads(self.params, self.dist.world_size, extra=stats)
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        # One host sync per step: the guard needs to know before touching the weights.
        values = torch.cat([stats.float(), grad_norm.float().reshape(1)]).tolist()
        finite = all(math.isfinite(v) for v in values)
        if finite:
            self.optimizer.step()
            self.ema.update(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        lam = out.lam
        lam = float(lam.detach().float().mean()) if isinstance(lam, torch.Tensor) else float(lam)
        return dict(
            zip(("loss", "mse", "grad_norm"), values, strict=True), finite=finite, lam=lam, lr=lr
        )

    @torch.no_grad()
    def evaluate(self, model: nn.Module | None = None) -> float:
        """Mean unweighted ``mse`` of the objective on ``val_data`` (EMA model by default).

        Uses fixed seeds and leaves the training RNG streams untouched, so successive
        validations are comparable and training is unaffected.
        """
        if self.val_data is None and self.val_stream is None:
            raise InputError("val_data: evaluate() needs val_data, got None")
        model = self.ema.module if model is None else model
        devices = [self.device] if self.device.type == "cuda" else []
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed + 2)
        total, count = 0.0, 0
        with torch.random.fork_rng(devices=devices), self.objective.evaluating():
            torch.manual_seed(self.config.seed + 3)
            for x, cond in self._val_batches():
                noise = torch.randn(x.shape, generator=gen, device=self.device, dtype=x.dtype)
                with autocast(self.device, self.autocast_dtype):
                    out = self.objective(model, x, cond, step=self.step, noise=noise)
                total += float(out.mse.float().sum())
                count += x.shape[0]
        return total / count

    def _val_batches(self):
        size = self.config.batch_size
        if self.val_stream is not None:
            for x, cond in self.val_stream.sequential(size):
                yield (to_device(v, self.device, self._dtype) for v in (x, cond))
            return
        for start in range(0, self.val_data.shape[0], size):
            x = self.val_data[start : start + size]
            yield x, None if self.val_cond is None else self.val_cond[start : start + len(x)]

    def save_checkpoint(self) -> Path | None:
        """Checkpoint the current step (rank 0 only); skipped if the weights are not finite."""
        if self.checkpoint_dir is None or not self.dist.is_main:
            return None
        if not (_all_finite(self.model) and _all_finite(self.ema.module)):
            warnings.warn(
                f"step {self.step}: weights hold NaN/Inf, checkpoint not written", stacklevel=2
            )
            return None
        try:
            self.last_checkpoint = write_checkpoint(
                self.checkpoint_dir,
                self.step,
                self.state_tensors(),
                self.state_json(),
                keep_last=self.config.keep_last,
                check_finite=("model.", "ema."),
            )
        except OSError as exc:  # the disk is full, the folder went away, ...
            good = self.last_checkpoint or latest_checkpoint(self.checkpoint_dir)
            where = (
                f"the last good checkpoint is {str(good)!r} (resume from it with resume=True)"
                if good is not None
                else "no checkpoint was written before"
            )
            raise CheckpointError(
                f"could not write the checkpoint of step {self.step} into "
                f"{str(self.checkpoint_dir)!r}: {exc.strerror or exc}; nothing of it was kept, "
                f"and {where}"
            ) from exc
        return self.last_checkpoint

    def _take_snapshot(self) -> None:
        # The in-memory copy of the last good state that a rollback returns to (on CPU, so large
        # models do not double their GPU memory). Held on every rank, so rollbacks stay in step.
        if _all_finite(self.model) and _all_finite(self.ema.module):
            tensors = {k: v.detach().to("cpu", copy=True) for k, v in self.state_tensors().items()}
            self._snapshot = (tensors, self.state_json())

    def _rollback(self, bad_steps: int) -> None:
        if self.rollbacks >= self.config.max_rollbacks:
            raise TrainingDivergedError(
                f"training diverged: {bad_steps} non-finite steps in a row at step {self.step} "
                f"after {self.rollbacks} rollbacks (max_rollbacks={self.config.max_rollbacks}, "
                f"LR scale {self.lr_scale:g}); try a lower lr, a longer lr_warmup_steps, "
                f"grad_clip, or a slower lambda schedule"
            )
        tensors, state = self._snapshot
        # Keep drawing fresh batches: replaying the ones that diverged would not help.
        batch_state, noise_state = self.generator.get_state(), self.noise_generator.get_state()
        lr_scale, rollbacks = self.lr_scale, self.rollbacks
        self.load_state(tensors, state, restore_rng=False)
        self.generator.set_state(batch_state)
        self.noise_generator.set_state(noise_state)
        self.lr_scale, self.rollbacks = 0.5 * lr_scale, rollbacks + 1
        warnings.warn(
            f"{bad_steps} non-finite steps in a row: rolled back to step {self.step} with the LR "
            f"scaled by {self.lr_scale:g} (rollback {self.rollbacks}/{self.config.max_rollbacks})",
            stacklevel=3,
        )

    def _make_record(self, window: list[dict], since: tuple[int, float]) -> dict[str, Any]:
        # loss, mse and grad_norm are averaged over the steps since the last record.
        def mean(key: str) -> float:
            return sum(out[key] for out in window) / len(window)

        elapsed = max(time.perf_counter() - since[1], 1e-9)
        return {
            "step": self.step,
            "loss": mean("loss"),
            "mse": mean("mse"),
            "lam": window[-1]["lam"],
            "lr": window[-1]["lr"],
            "grad_norm": mean("grad_norm"),
            "steps_per_s": (self.step - since[0]) / elapsed,
        }

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.checkpoint_dir is not None and self.dist.is_main:
            with open(self.checkpoint_dir / LOG_FILE, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        for cb in self.callbacks:
            cb(self, record)

    # ----------------------------------------------------------------------------------------

    def train(self, resume: bool = False) -> TrainResult:
        """Run until ``config.max_steps`` (or a callback stops it); return a :class:`TrainResult`.

        Args:
            resume: continue from the newest checkpoint in ``checkpoint_dir`` (starts afresh if
                there is none). On CPU the result is bit-identical to an uninterrupted run.

        Raises:
            TrainingDivergedError: if non-finite steps persist through ``max_rollbacks`` rollbacks.
            CheckpointError: if the checkpoint to resume from cannot be read or does not fit;
                if another process is training into ``checkpoint_dir`` (its ``train.lock`` is
                held); if a checkpoint cannot be written (e.g. the disk is full: the message
                names the last good checkpoint, which stays intact).
        """
        if resume and self.checkpoint_dir is None:
            raise InputError("resume: resume=True needs a checkpoint_dir, got checkpoint_dir=None")
        lock = None
        if self.checkpoint_dir is not None and self.dist.is_main:
            lock = lock_checkpoint_dir(self.checkpoint_dir)
        try:
            return self._train(resume)
        finally:
            if lock is not None:
                lock.close()

    def _train(self, resume: bool) -> TrainResult:
        cfg = self.config
        newest = latest_checkpoint(self.checkpoint_dir) if resume else None
        if newest is not None:
            ckpt = read_checkpoint(newest)
            self.load_state(ckpt.tensors, ckpt.state)
            self.last_checkpoint = newest
        else:
            # Seeds the objective's own draws (t, r, label dropout); per rank so shards differ.
            torch.manual_seed(cfg.seed + 7919 * self.dist.rank)
        self._take_snapshot()
        snapshot_every = cfg.checkpoint_every or cfg.log_every
        self.should_stop = False
        self.model.train()
        started = time.perf_counter()
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            disable=not (cfg.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        window, bad, since = [], 0, (self.step, time.perf_counter())
        saved_at = self.step if newest is not None else -1
        if self.stream is not None:
            self._batches = self.stream.batches(
                self.batches_drawn,
                rank=self.dist.rank,
                world=self.dist.world_size,
                pin_memory=self.device.type == "cuda",
            )
        try:
            while self.step < cfg.max_steps and not self.should_stop:
                out = self.train_step(*self.next_batch())
                if not out["finite"]:
                    bad += 1
                    if bad >= cfg.max_nonfinite:
                        self._rollback(bad)
                        window, bad, since = [], 0, (self.step, time.perf_counter())
                        bar.n = self.step
                        bar.refresh()
                    continue
                bad = 0
                self.step += 1
                bar.update(1)
                window.append(out)
                last = self.step == cfg.max_steps
                val_due = (self.val_data is not None or self.val_stream is not None) and (
                    last or (cfg.val_every > 0 and self.step % cfg.val_every == 0)
                )
                if self.step % cfg.log_every == 0 or val_due or last:
                    record = self._make_record(window, since)
                    if val_due:
                        record["val_mse"] = self.evaluate()
                    window, since = [], (self.step, time.perf_counter())
                    shown = {k: f"{record[k]:.4g}" for k in ("loss", "mse", "lam")}
                    bar.set_postfix(shown, sps=f"{record['steps_per_s']:.1f}")
                    self._log(record)
                    self.should_stop = all_reduce_max(self.should_stop, self.device)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    saved_at = self.step
                if self.step % snapshot_every == 0:
                    self._take_snapshot()
        finally:
            bar.close()
            self._batches = None  # ends the DataLoader's workers
        if saved_at != self.step:
            self.save_checkpoint()
        return TrainResult(
            model=self.model,
            ema_model=self.ema.module,
            history=self.history,
            step=self.step,
            train_time_s=time.perf_counter() - started,
            checkpoint=self.last_checkpoint,
        )
