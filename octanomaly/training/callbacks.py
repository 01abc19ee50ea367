"""Hooks the training loop calls; each concern (log file, divergence, pictures, progress) is one
:class:`Callback`, run in list order on the ranks it concerns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from octanomaly.models import AnomalyModel


@dataclass
class LoopState:
    """Where the loop stands: ``stage`` and ``step`` (steps done in it) of ``n_steps``, the
    ``global_step`` over all stages, and the position a checkpoint resumes from."""

    model: AnomalyModel
    stage: str = ""
    step: int = 0
    n_steps: int = 0
    global_step: int = 0
    resume_at: dict[str, int] = field(
        default_factory=lambda: {"stage_index": 0, "step": 0, "global_step": 0}
    )
    last_checkpoint: int | None = None
    """Global step of the last checkpoint written (``None`` before the first)."""

    def advance(self, stage_index: int) -> bool:
        """Count one step of stage ``stage_index``; True when it was the stage's last."""
        self.step, self.global_step = self.step + 1, self.global_step + 1
        ends = self.step == self.n_steps
        self.resume_at = {
            "stage_index": stage_index + ends,
            "step": 0 if ends else self.step,
            "global_step": self.global_step,
        }
        return ends


class Callback:
    """No-op hooks; subclasses override the ones they need."""

    def on_start(self, state: LoopState) -> None:
        """Before the first step (after a resume restored the state)."""

    def on_step(self, state: LoopState) -> None:
        """After every optimisation step."""

    def on_log(self, state: LoopState, values: dict[str, float], rate: float) -> None:
        """Every ``log_every`` steps: mean losses since the last call, patches per second."""

    def on_checkpoint(self, state: LoopState) -> None:
        """After a checkpoint was written."""

    def on_step_end(self, state: LoopState) -> None:
        """After logging and checkpointing of a step."""

    def on_end(self, state: LoopState) -> None:
        """Training finished or was interrupted (Ctrl-C), before the run is saved."""

    def close(self) -> None:
        """Always, last (also after an error)."""


def call(callbacks: list[Callback], hook: str, *args: Any) -> None:
    """Run ``hook`` of every callback in order."""
    for cb in callbacks:
        getattr(cb, hook)(*args)
