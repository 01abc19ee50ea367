"""Training: the loop (:mod:`.loop`) and one small module per concern around it.

``train(cfg, train_sampler, val_sampler, out_dir)`` trains every stage of the configured model
on patches drawn from ``train_sampler``, saves the run folder and calibrates it on
``val_sampler`` (held-out healthy data). Around the loop: :mod:`.checkpoints` (resume),
:mod:`.rng` (random streams), :mod:`.log` (losses, ``log.jsonl``), :mod:`.divergence`,
:mod:`.visuals` (sample grids, ``losses.png``), :mod:`.progress`, :mod:`.interrupt` (Ctrl-C)
and :mod:`.ddp` (``torchrun``), the last five as :class:`~.callbacks.Callback` objects or
helpers the loop calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from octanomaly.config import RunConfig
from octanomaly.training.callbacks import Callback, LoopState
from octanomaly.training.loop import Trainer
from octanomaly.training.samplers import PatchSource, TensorSampler


def train(
    cfg: RunConfig,
    train_sampler: PatchSource,
    val_sampler: PatchSource,
    out_dir: str | Path,
    **options: Any,
) -> Path:
    """Train ``cfg.model`` on ``train_sampler``, calibrate on ``val_sampler``; the run folder.

    ``options`` are :class:`Trainer`'s: ``device`` (``auto``), ``resume`` (continue from
    ``out_dir/checkpoint``), ``max_steps`` (cap every stage, quick runs), ``progress``. Ctrl-C
    saves a checkpoint at the end of the current step.
    """
    return Trainer(cfg, train_sampler, val_sampler, out_dir, **options).run()


__all__ = ["Callback", "LoopState", "PatchSource", "TensorSampler", "Trainer", "train"]
