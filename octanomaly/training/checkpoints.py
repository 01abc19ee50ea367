"""Checkpoints of a run folder: the folder check before training, saving (rank 0, then every
rank waits) and restoring weights, optimiser and RNG states for a bit-identical resume."""

from __future__ import annotations

from pathlib import Path

from octanomaly.config import RunConfig
from octanomaly.errors import OctanomalyError
from octanomaly.models import AnomalyModel
from octanomaly.runs import CHECKPOINT_DIR, MODEL_FILE, load_checkpoint, save_checkpoint
from octanomaly.training.ddp import Distributed
from octanomaly.training.rng import RunRNG


class Checkpoints:
    """``out_dir/checkpoint/`` of one run."""

    def __init__(self, out_dir: Path, cfg: RunConfig, dist: Distributed):
        self.out_dir, self.cfg, self.dist = Path(out_dir), cfg, dist
        self.dir = self.out_dir / CHECKPOINT_DIR

    @property
    def finished(self) -> bool:
        """The run folder already holds the trained model."""
        return (self.out_dir / MODEL_FILE).is_file()

    def check_out_dir(self, resume: bool) -> None:
        """A new run needs a folder without a run; a resume needs a checkpoint (or a result)."""
        if resume:
            if not self.dir.is_dir() and not self.finished:
                raise OctanomalyError(
                    f"{self.out_dir}: nothing to resume (no {CHECKPOINT_DIR}/ folder)"
                )
        elif (self.out_dir / MODEL_FILE).exists() or self.dir.exists():
            raise OctanomalyError(
                f"{self.out_dir}: already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        self.dist.barrier()  # every rank has looked at the folder before rank 0 writes to it

    def restore(self, model: AnomalyModel, rng: RunRNG) -> dict[str, int]:
        """Load weights, optimisers and RNG states; the position to resume from."""
        saved, position, states = load_checkpoint(self.dir, model, self.dist.device)
        if saved.model != self.cfg.model or saved.training.seed != self.cfg.training.seed:
            raise OctanomalyError(
                f"{self.dir}: the checkpoint was made with another model config or seed; "
                "resume with the run's own config"
            )
        rng.load(states)
        return position

    def save(self, model: AnomalyModel, position: dict[str, int], rng: RunRNG) -> None:
        """Write the checkpoint on rank 0; every rank waits for it."""
        if self.dist.is_main:
            save_checkpoint(self.dir, model, self.cfg, dict(position), rng.state())
        self.dist.barrier()
