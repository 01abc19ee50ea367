"""Pictures of a run: sample grids (real / generated / reconstructed patches) at checkpoints
and ``losses.png`` from ``log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from octanomaly.training.callbacks import Callback, LoopState
from octanomaly.training.log import LOG_FILE
from octanomaly.training.rng import derive_seed
from octanomaly.training.samplers import PatchSource, source_device


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


class SampleGrids(Callback):
    """``samples_stepNNNNNNN.png`` every ``every`` steps and at the end of each stage, always of
    the same ``n`` held-out patches and the same noise."""

    def __init__(
        self, out_dir: Path, source: PatchSource, n: int, every: int, seed: int, device
    ) -> None:
        self.out_dir, self.source, self.n, self.every = Path(out_dir), source, n, every
        self.seed, self.device = seed, torch.device(device)
        self.x: Tensor | None = None

    def on_start(self, state: LoopState) -> None:
        gen = torch.Generator(device=source_device(self.source))
        gen.manual_seed(derive_seed(self.seed, 3))
        self.x = self.source.sample(self.n, gen).to(self.device)

    def on_step_end(self, state: LoopState) -> None:
        if state.step % self.every and state.step != state.n_steps:
            return
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, 4))
        rows = state.model.preview(self.x, gen)
        save_grid(self.out_dir / f"samples_step{state.global_step:07d}.png", rows)


class LossPlot(Callback):
    """``losses.png`` when training ends or is interrupted."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)

    def on_end(self, state: LoopState) -> None:
        if (self.out_dir / LOG_FILE).is_file():
            plot_losses(self.out_dir / LOG_FILE, self.out_dir / "losses.png")
