"""The rich progress bar of a run: stage, steps, latest losses, patches/s, time left."""

from __future__ import annotations

from octanomaly.training.callbacks import Callback, LoopState


class ProgressBar(Callback):
    """Starts at the run's first step (or the resumed one) and stops however training ends."""

    def __init__(self, total: int):
        self.total = total
        self._progress = None

    def on_start(self, state: LoopState) -> None:
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
            "train", total=self.total, completed=state.global_step, losses="", rate=""
        )

    def on_step(self, state: LoopState) -> None:
        self._progress.update(self._task, advance=1, description=state.stage)

    def on_log(self, state: LoopState, values: dict[str, float], rate: float) -> None:
        text = " ".join(f"{k} {v:.4g}" for k, v in values.items())
        self._progress.update(self._task, losses=text, rate=f"{rate:,.0f} patch/s")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
