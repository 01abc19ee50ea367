"""Divergence check: a NaN/inf loss, or one above ``training.max_loss``, stops training with a
one-line error that says which checkpoint is kept."""

from __future__ import annotations

import math
from pathlib import Path

from octanomaly.errors import OctanomalyError
from octanomaly.training.callbacks import Callback, LoopState


class DivergenceCheck(Callback):
    """Raises :class:`OctanomalyError` at the first log step with a diverged loss."""

    def __init__(self, max_loss: float, checkpoint_dir: Path):
        self.max_loss, self.checkpoint_dir = max_loss, checkpoint_dir

    def on_log(self, state: LoopState, values: dict[str, float], rate: float) -> None:
        for k, v in values.items():
            if math.isfinite(v) and abs(v) <= self.max_loss:
                continue
            kept = (
                f"the last good checkpoint (step {state.last_checkpoint}) is kept in "
                f"{self.checkpoint_dir}"
                if state.last_checkpoint is not None
                else "no checkpoint was written yet"
            )
            raise OctanomalyError(
                f"training diverged: loss {k!r} = {v} in stage {state.stage!r} by step "
                f"{state.global_step} (NaN/inf or above training.max_loss = {self.max_loss}); "
                f"{kept}; try a lower learning rate"
            )
