"""The training loop: devices, bf16/channels-last on CUDA, checkpoints and resume, DDP, progress.

``train(cfg, train_sampler, val_sampler, out_dir)`` trains every stage of the configured model on
patches drawn from ``train_sampler``, then scores patches of ``val_sampler`` (held-out healthy
data) through :func:`octanomaly.scoring.calibrate_run`, as ``octanomaly calibrate`` does.

Reproducibility: weights are initialised from ``training.seed``; batches and model noise come
from two ``torch.Generator`` streams seeded from it (and the DDP rank). Their states, the global
RNG states, weights and optimiser states go into every checkpoint, so a resumed run reaches
bit-identical weights on CPU. Losses stay on the device and are synchronised only every
``log_every`` steps. Under ``torchrun`` each rank draws its own batches and gradients are
averaged by ``DistributedDataParallel``; rank 0 writes the run folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from octanomaly.config import RunConfig, dump_config
from octanomaly.devices import resolve_device
from octanomaly.errors import OctanomalyError
from octanomaly.models import AnomalyModel, build_model, get_model_class
from octanomaly.runs import (
    CHECKPOINT_DIR,
    MODEL_FILE,
    load_checkpoint,
    save_checkpoint,
    save_model,
)

LOG_FILE = "log.jsonl"


@runtime_checkable
class PatchSampler(Protocol):
    """Anything that draws random training patches ``(n, 1, P, P)`` float32 in [-1, 1]."""

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` patches drawn with ``generator`` (whose device matches the sampler's data)."""
        ...


class TensorSampler:
    """A :class:`PatchSampler` over a fixed tensor of patches ``(N, 1, P, P)``."""

    def __init__(self, patches: Tensor):
        self.patches = patches
        self.device = patches.device

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        idx = torch.randint(len(self.patches), (n,), generator=generator, device=self.device)
        return self.patches[idx]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def _sampler_device(sampler: Any) -> torch.device:
    return torch.device(getattr(sampler, "device", "cpu"))


class _Interrupt:
    """SIGINT sets a flag, handled at the next step boundary; a second Ctrl-C raises at once."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Interrupt]:
        try:
            previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: plain KeyboardInterrupt semantics
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


class _Losses:
    """Sums detached loss tensors on the device; :meth:`flush` is the only host sync."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, losses: dict[str, Tensor]) -> None:
        for k, v in losses.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def flush(self, world: int) -> dict[str, float]:
        if not self.sums:
            return {}
        keys = sorted(self.sums)
        means = torch.stack([self.sums[k] / self.counts[k] for k in keys])
        if world > 1:
            dist.all_reduce(means)
            means /= world
        values = means.tolist()
        self.sums, self.counts = {}, {}
        return dict(zip(keys, values, strict=True))


def save_grid(path: Path, rows: dict[str, Tensor], max_cols: int = 16) -> None:
    """A PNG with one row of patches per entry of ``rows`` (values in [-1, 1])."""
    from PIL import Image

    from octanomaly.io.atomic import atomic_path

    strips = []
    for batch in rows.values():
        b = batch[:max_cols].detach().float().cpu().clamp(-1, 1)
        tiles = [np.pad(t[0].numpy(), 1, constant_values=1.0) for t in b]
        strips.append(np.concatenate(tiles, axis=1))
    width = max(s.shape[1] for s in strips)
    strips = [np.pad(s, ((0, 0), (0, width - s.shape[1])), constant_values=1.0) for s in strips]
    img = ((np.concatenate(strips, axis=0) + 1) * 127.5).round().astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def plot_losses(log_path: Path, out_path: Path) -> None:
    """``losses.png``: every logged loss against the global step, one panel per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from octanomaly.io.atomic import atomic_path

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not records:
        return
    stages = list(dict.fromkeys(r["stage"] for r in records))
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.5), squeeze=False)
    for ax, stage in zip(axes[0], stages, strict=True):
        recs = [r for r in records if r["stage"] == stage]
        keys = sorted({k for r in recs for k in r["losses"]})
        for k in keys:
            pts = [(r["global_step"], r["losses"][k]) for r in recs if k in r["losses"]]
            ax.plot(*zip(*pts, strict=True), label=k)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


class Trainer:
    """One training run; :meth:`run` returns the run folder. :attr:`model` is the trained model."""

    def __init__(
        self,
        cfg: RunConfig,
        train_sampler: PatchSampler,
        val_sampler: PatchSampler,
        out_dir: str | Path,
        device: str | torch.device = "auto",
        resume: bool = False,
        max_steps: int | None = None,
        progress: bool = True,
    ):
        self.cfg = cfg
        self.tcfg = cfg.training
        self.train_sampler = train_sampler
        self.val_sampler = val_sampler
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.progress = progress
        self.device = resolve_device(device)
        self.rank, self.world, self._own_pg = 0, 1, False
        stages = get_model_class(cfg.model.name).stages
        self.plan = [
            (s, min(self.tcfg.steps[s], max_steps) if max_steps is not None else self.tcfg.steps[s])
            for s in stages
        ]
        self.model: AnomalyModel | None = None

    # ----------------------------------------------------------------------------- setup
    def _init_distributed(self) -> None:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return
        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
            self._own_pg = True
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if self.device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", self.rank % torch.cuda.device_count()))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _check_out_dir(self) -> None:
        out, ckpt = self.out_dir, self.out_dir / CHECKPOINT_DIR
        if self.resume:
            if not ckpt.is_dir() and not (out / MODEL_FILE).is_file():
                raise OctanomalyError(f"{out}: nothing to resume (no {CHECKPOINT_DIR}/ folder)")
        elif (out / MODEL_FILE).exists() or ckpt.exists():
            raise OctanomalyError(
                f"{out}: already holds a run; pass --resume to continue it or choose another --out"
            )

    def _rng_state(self, data_gen: torch.Generator, noise_gen: torch.Generator) -> dict:
        rng = {
            "data": data_gen.get_state(),
            "noise": noise_gen.get_state(),
            "torch": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    # ------------------------------------------------------------------------------- run
    def run(self) -> Path:
        """Train all stages (from the last checkpoint with ``resume``), calibrate, save."""
        self._init_distributed()
        try:
            return self._run()
        finally:
            if self._own_pg and dist.is_initialized():
                dist.destroy_process_group()

    def _run(self) -> Path:
        cfg, tcfg, dev = self.cfg, self.tcfg, self.device
        self._check_out_dir()
        if self.world > 1:  # every rank has looked at the folder before rank 0 writes to it
            dist.barrier()
        if self.resume and (self.out_dir / MODEL_FILE).is_file():
            return self.out_dir
        torch.manual_seed(tcfg.seed)
        model = build_model(cfg.model).to(dev)
        use_cl = dev.type == "cuda" and tcfg.channels_last
        if use_cl:
            model = model.to(memory_format=torch.channels_last)
        model.configure_optimizers()
        self.model = model
        data_gen = torch.Generator(device=_sampler_device(self.train_sampler))
        data_gen.manual_seed(_seed(tcfg.seed, 1, self.rank))
        noise_gen = torch.Generator(device=dev).manual_seed(_seed(tcfg.seed, 2, self.rank))
        model.generator = noise_gen
        pos = {"stage_index": 0, "step": 0, "global_step": 0}
        ckpt_dir = self.out_dir / CHECKPOINT_DIR
        if self.resume:
            saved_cfg, pos, rng = load_checkpoint(ckpt_dir, model, dev)
            if saved_cfg.model != cfg.model or saved_cfg.training.seed != tcfg.seed:
                raise OctanomalyError(
                    f"{ckpt_dir}: the checkpoint was made with another model config or seed; "
                    "resume with the run's own config"
                )
            data_gen.set_state(rng["data"])
            noise_gen.set_state(rng["noise"])
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and dev.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], dev)
            self._truncate_log(pos["global_step"])
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        preview_x = self._preview_batch()
        model.amp = tcfg.amp
        interrupt = _Interrupt()
        total = sum(n for _, n in self.plan)
        last_good = pos["global_step"] if self.resume else None
        with interrupt.installed(), self._progress(total, pos["global_step"]) as bar:
            for si in range(pos["stage_index"], len(self.plan)):
                stage, n_steps = self.plan[si]
                model.begin_stage(stage)
                self._wrap_ddp(model, stage)
                start = pos["step"] if si == pos["stage_index"] else 0
                losses = _Losses()
                t_last, steps_last = time.perf_counter(), 0
                for step in range(start, n_steps):
                    real = self.train_sampler.sample(tcfg.batch_size, data_gen)
                    real = real.to(dev, non_blocking=True)
                    if use_cl:
                        real = real.contiguous(memory_format=torch.channels_last)
                    out = model.train_step(real, stage, step)  # autocasts its forward passes
                    losses.add(out)
                    done = step + 1
                    pos = {
                        "stage_index": si + (done == n_steps),
                        "step": 0 if done == n_steps else done,
                        "global_step": pos["global_step"] + 1,
                    }
                    steps_last += 1
                    bar.advance(stage)
                    ckpt_now = done % tcfg.checkpoint_every == 0 or done == n_steps
                    log_now = done % tcfg.log_every == 0 or ckpt_now
                    stop = interrupt.requested and self.world == 1
                    if log_now or stop:
                        if self.world > 1:  # ranks agree on stopping at log boundaries only
                            flag = torch.tensor([float(interrupt.requested)], device=dev)
                            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                            stop = bool(flag.item())
                        elapsed = time.perf_counter() - t_last
                        rate = steps_last * tcfg.batch_size * self.world / max(elapsed, 1e-9)
                        values = losses.flush(self.world)
                        self._check_losses(values, stage, pos["global_step"], last_good)
                        self._log(stage, done, pos["global_step"], values, rate)
                        bar.update_losses(values, rate)
                        t_last, steps_last = time.perf_counter(), 0
                    if ckpt_now or stop:
                        self._checkpoint(model, pos, data_gen, noise_gen)
                        last_good = pos["global_step"]
                    sample_every = tcfg.sample_every or tcfg.checkpoint_every
                    if self.is_main and (done % sample_every == 0 or done == n_steps):
                        self._save_samples(model, preview_x, pos["global_step"])
                    if stop:
                        self._plot()
                        raise KeyboardInterrupt
        model.begin_stage(self.plan[-1][0])
        model.eval()
        if self.is_main:
            from octanomaly.scoring.calibration import calibrate_after_training

            self._plot()
            save_model(self.out_dir, model, cfg, {})
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            # the one calibration path (normative model + healthy distributions), as the CLI
            calibrate_after_training(self.out_dir, self.val_sampler, str(dev))
        if self.world > 1:
            dist.barrier()
        return self.out_dir

    # --------------------------------------------------------------------------- helpers
    def _wrap_ddp(self, model: AnomalyModel, stage: str) -> None:
        if self.world <= 1:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        for name in model.trained_nets[stage]:
            model.wrap(name, DDP(getattr(model, name), device_ids=ids, broadcast_buffers=False))

    def _check_losses(
        self, values: dict[str, float], stage: str, global_step: int, last_good: int | None
    ) -> None:
        for k, v in values.items():
            if not math.isfinite(v) or abs(v) > self.tcfg.max_loss:
                kept = (
                    f"the last good checkpoint (step {last_good}) is kept in "
                    f"{self.out_dir / CHECKPOINT_DIR}"
                    if last_good is not None
                    else "no checkpoint was written yet"
                )
                raise OctanomalyError(
                    f"training diverged: loss {k!r} = {v} in stage {stage!r} by step "
                    f"{global_step} (NaN/inf or above training.max_loss = {self.tcfg.max_loss}); "
                    f"{kept}; try a lower learning rate"
                )

    def _log(self, stage: str, step: int, global_step: int, values: dict, rate: float) -> None:
        if not self.is_main or not values:
            return
        rec = {
            "stage": stage,
            "step": step,
            "global_step": global_step,
            "losses": values,
            "patches_per_s": rate,
            "time": time.time(),
        }
        with open(self.out_dir / LOG_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")

    def _truncate_log(self, global_step: int) -> None:
        path = self.out_dir / LOG_FILE
        if not self.is_main or not path.is_file():
            return
        keep = [
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["global_step"] <= global_step
        ]
        from octanomaly.runs import write_text

        write_text(path, "".join(line + "\n" for line in keep))

    def _plot(self) -> None:
        log = self.out_dir / LOG_FILE
        if self.is_main and log.is_file():
            plot_losses(log, self.out_dir / "losses.png")

    def _checkpoint(self, model, pos, data_gen, noise_gen) -> None:
        if self.is_main:
            rng = self._rng_state(data_gen, noise_gen)
            save_checkpoint(self.out_dir / CHECKPOINT_DIR, model, self.cfg, dict(pos), rng)
        if self.world > 1:
            dist.barrier()

    def _preview_batch(self) -> Tensor:
        gen = torch.Generator(device=_sampler_device(self.val_sampler))
        gen.manual_seed(_seed(self.tcfg.seed, 3))
        x = self.val_sampler.sample(self.tcfg.n_samples, gen).to(self.device)
        return x

    def _save_samples(self, model: AnomalyModel, x: Tensor, global_step: int) -> None:
        gen = torch.Generator(device=self.device).manual_seed(_seed(self.tcfg.seed, 4))
        rows = model.preview(x, gen)
        save_grid(self.out_dir / f"samples_step{global_step:07d}.png", rows)

    def _progress(self, total: int, completed: int) -> _Bar:
        return _Bar(total, completed, enabled=self.progress and self.is_main)


class _Bar:
    """A rich progress bar: stage, step, losses, patches/s, ETA (no-op when disabled)."""

    def __init__(self, total: int, completed: int, enabled: bool):
        self.enabled = enabled
        self.total, self.completed = total, completed
        self._progress = None

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[losses]}"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=self.total, completed=self.completed, losses="", rate=""
            )
        return self

    def advance(self, stage: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=stage)

    def update_losses(self, values: dict[str, float], rate: float) -> None:
        if self._progress is not None:
            text = " ".join(f"{k} {v:.4g}" for k, v in values.items())
            self._progress.update(self._task, losses=text, rate=f"{rate:,.0f} patch/s")

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()


def train(
    cfg: RunConfig,
    train_sampler: PatchSampler,
    val_sampler: PatchSampler,
    out_dir: str | Path,
    device: str | torch.device = "auto",
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> Path:
    """Train ``cfg.model`` on ``train_sampler``, calibrate on ``val_sampler``; the run folder.

    ``max_steps`` caps the steps of every stage (quick runs). ``resume`` continues from
    ``out_dir/checkpoint``. Ctrl-C saves a checkpoint at the end of the current step.
    """
    return Trainer(
        cfg, train_sampler, val_sampler, out_dir, device, resume, max_steps, progress
    ).run()


__all__ = ["PatchSampler", "TensorSampler", "Trainer", "dump_config", "train"]
