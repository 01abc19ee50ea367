"""Random streams of a run: batches and model noise, seeded from ``training.seed`` and the rank.

Their states and the global torch (and CUDA) states go into every checkpoint, so a resumed run
draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def derive_seed(*parts: int) -> int:
    """A 32-bit seed mixed from ``parts`` (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class RunRNG:
    """``data`` (on the sampler's device) and ``noise`` (on the model's device) generators."""

    def __init__(self, seed: int, rank: int, data_device: torch.device, device: torch.device):
        self.device = device
        self.data = torch.Generator(device=data_device).manual_seed(derive_seed(seed, 1, rank))
        self.noise = torch.Generator(device=device).manual_seed(derive_seed(seed, 2, rank))

    def state(self) -> dict[str, Tensor]:
        """Every RNG state a checkpoint needs."""
        rng = {
            "data": self.data.get_state(),
            "noise": self.noise.get_state(),
            "torch": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def load(self, rng: dict[str, Tensor]) -> None:
        """Restore the states saved by :meth:`state`."""
        self.data.set_state(rng["data"])
        self.noise.set_state(rng["noise"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
