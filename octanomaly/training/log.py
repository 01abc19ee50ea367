"""Loss bookkeeping: device-side sums synchronised only at log time, and ``log.jsonl``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import Tensor

from octanomaly.training.callbacks import Callback, LoopState
from octanomaly.training.ddp import Distributed

LOG_FILE = "log.jsonl"


class LossMeter:
    """Sums detached loss tensors on the device; :meth:`flush` is the only host sync."""

    def __init__(self, dist: Distributed, batch_size: int):
        self.dist, self.batch_size = dist, batch_size
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        self.steps, self.t0 = 0, time.perf_counter()

    def add(self, losses: dict[str, Tensor]) -> None:
        """Accumulate one step's losses."""
        for k, v in losses.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1
        self.steps += 1

    def flush(self) -> tuple[dict[str, float], float]:
        """Mean of each loss since the last flush (over ranks) and patches per second."""
        elapsed = time.perf_counter() - self.t0
        rate = self.steps * self.batch_size * self.dist.world / max(elapsed, 1e-9)
        values: dict[str, float] = {}
        if self.sums:
            keys = sorted(self.sums)
            means = self.dist.mean(torch.stack([self.sums[k] / self.counts[k] for k in keys]))
            values = dict(zip(keys, means.tolist(), strict=True))
        self.sums, self.counts = {}, {}
        self.steps, self.t0 = 0, time.perf_counter()
        return values, rate


class JsonlLog(Callback):
    """One JSON line per log step in ``out_dir/log.jsonl``; a resume drops lines past the
    checkpoint so the log never repeats a step."""

    def __init__(self, out_dir: Path, resume: bool):
        self.path, self.resume = Path(out_dir) / LOG_FILE, resume

    def on_start(self, state: LoopState) -> None:
        if not (self.resume and self.path.is_file()):
            return
        from octanomaly.runs import write_text

        lines = self.path.read_text(encoding="utf-8").splitlines()
        step = state.global_step
        keep = [x for x in lines if x.strip() and json.loads(x)["global_step"] <= step]
        write_text(self.path, "".join(line + "\n" for line in keep))

    def on_log(self, state: LoopState, values: dict[str, float], rate: float) -> None:
        if not values:
            return
        rec = {
            "stage": state.stage,
            "step": state.step,
            "global_step": state.global_step,
            "losses": values,
            "patches_per_s": rate,
            "time": time.time(),
        }
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
