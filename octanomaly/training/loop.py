"""The training loop: every stage of the model, one batch per step; the rest is callbacks.

Weights come from ``training.seed``, batches and noise from :class:`RunRNG`; checkpoints hold
all states (bit-identical resume on CPU). ``model.train_step`` autocasts forward passes only."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from octanomaly.config import RunConfig
from octanomaly.devices import resolve_device
from octanomaly.models import AnomalyModel, build_model, get_model_class
from octanomaly.runs import save_model
from octanomaly.scoring.calibration import calibrate_after_training
from octanomaly.training.callbacks import Callback, LoopState, call
from octanomaly.training.checkpoints import Checkpoints
from octanomaly.training.ddp import Distributed
from octanomaly.training.divergence import DivergenceCheck
from octanomaly.training.interrupt import Interrupt
from octanomaly.training.log import JsonlLog, LossMeter
from octanomaly.training.progress import ProgressBar
from octanomaly.training.rng import RunRNG
from octanomaly.training.samplers import PatchSource, source_device
from octanomaly.training.visuals import LossPlot, SampleGrids
from octanomaly.transforms.augment import augment


class Trainer:
    """One training run; :meth:`run` returns the run folder. :attr:`model` is the trained model."""

    def __init__(
        self,
        cfg: RunConfig,
        train_sampler: PatchSource,
        val_sampler: PatchSource,
        out_dir: str | Path,
        device: str | torch.device = "auto",
        resume: bool = False,
        max_steps: int | None = None,
        progress: bool = True,
    ):
        self.cfg, self.train_sampler, self.val_sampler = cfg, train_sampler, val_sampler
        self.out_dir, self.resume, self.progress = Path(out_dir), resume, progress
        self.dist = Distributed(resolve_device(device))
        n = cfg.training.steps
        cap = max_steps if max_steps is not None else max(n.values(), default=0)
        self.plan = [(s, min(n[s], cap)) for s in get_model_class(cfg.model.name).stages]
        self.model: AnomalyModel | None = None

    def run(self) -> Path:
        """Train all stages (from the last checkpoint with ``resume``), save, calibrate."""
        with self.dist.session():
            self.ckpts = Checkpoints(self.out_dir, self.cfg, self.dist)
            self.ckpts.check_out_dir(self.resume)
            if self.resume and self.ckpts.finished:
                return self.out_dir
            self.model = self._build_model()
            data_device = source_device(self.train_sampler)
            self.rng = RunRNG(self.cfg.training.seed, self.dist.rank, data_device, self.dist.device)
            self.model.generator = self.rng.noise
            state = LoopState(self.model)
            if self.resume:
                state.resume_at = self.ckpts.restore(self.model, self.rng)
                state.global_step = state.last_checkpoint = state.resume_at["global_step"]
            if self.dist.is_main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
            self._train(state)
            self._finish()
        return self.out_dir

    def _build_model(self) -> AnomalyModel:
        tcfg, dev = self.cfg.training, self.dist.device
        torch.manual_seed(tcfg.seed)
        model = build_model(self.cfg.model).to(dev)
        if dev.type == "cuda" and tcfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.configure_optimizers()
        model.amp = tcfg.amp  # bf16 autocast of the forward passes, on CUDA only
        return model

    def _callbacks(self) -> list[Callback]:
        tcfg, out, dev = self.cfg.training, self.out_dir, self.dist.device
        cbs: list[Callback] = [DivergenceCheck(tcfg.max_loss, self.ckpts.dir)]
        if self.dist.is_main:
            every = tcfg.sample_every or tcfg.checkpoint_every
            grids = SampleGrids(out, self.val_sampler, tcfg.n_samples, every, tcfg.seed, dev)
            cbs += [JsonlLog(out, self.resume), LossPlot(out), grids]
            if self.progress:
                cbs.append(ProgressBar(sum(n for _, n in self.plan)))
        return cbs

    def _train(self, state: LoopState) -> None:
        self.callbacks, self.interrupt = self._callbacks(), Interrupt()
        start = state.resume_at
        try:
            call(self.callbacks, "on_start", state)
            with self.interrupt.installed():
                for si in range(start["stage_index"], len(self.plan)):
                    self._stage(state, si, start["step"] if si == start["stage_index"] else 0)
            state.model.begin_stage(self.plan[-1][0])
            state.model.eval()
            call(self.callbacks, "on_end", state)
        finally:
            call(self.callbacks, "close")

    def _stage(self, state: LoopState, si: int, first: int) -> None:
        tcfg, model, cbs = self.cfg.training, state.model, self.callbacks
        (state.stage, state.n_steps), state.step = self.plan[si], first
        model.begin_stage(state.stage)
        self.dist.wrap(model, state.stage)
        meter = LossMeter(self.dist, tcfg.batch_size)
        for step in range(first, state.n_steps):
            meter.add(model.train_step(self._batch(), state.stage, step))
            ends = state.advance(si)
            call(cbs, "on_step", state)
            ckpt_now = state.step % tcfg.checkpoint_every == 0 or ends
            stop = self.interrupt.requested and self.dist.world == 1
            if state.step % tcfg.log_every == 0 or ckpt_now or stop:
                stop = self.dist.any(self.interrupt.requested)  # ranks agree here only
                call(cbs, "on_log", state, *meter.flush())
            if ckpt_now or stop:
                self.ckpts.save(model, state.resume_at, self.rng)
                state.last_checkpoint = state.global_step
                call(cbs, "on_checkpoint", state)
            call(cbs, "on_step_end", state)
            if stop:
                call(cbs, "on_end", state)
                raise KeyboardInterrupt

    def _batch(self) -> torch.Tensor:
        dev = self.dist.device
        real = self.train_sampler.sample(self.cfg.training.batch_size, self.rng.data)
        real = augment(real, self.cfg.training.augment, self.rng.data)
        real = real.to(dev, non_blocking=True)
        if dev.type == "cuda" and self.cfg.training.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        return real

    def _finish(self) -> None:
        """Rank 0 saves the model, drops the checkpoint and calibrates; every rank waits."""
        if self.dist.is_main:
            save_model(self.out_dir, self.model, self.cfg, {})
            shutil.rmtree(self.ckpts.dir, ignore_errors=True)
            calibrate_after_training(self.out_dir, self.val_sampler, str(self.dist.device))
        self.dist.barrier()
