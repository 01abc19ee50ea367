"""Where training batches come from: the :class:`PatchSource` protocol and a tensor-backed one."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class PatchSource(Protocol):
    """Anything that draws random training patches ``(n, 1, P, P)`` float32 in [-1, 1]
    (e.g. :class:`octanomaly.data.healthy.PatchSampler`)."""

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` patches drawn with ``generator`` (whose device matches the source's data)."""
        ...


class TensorSampler:
    """A :class:`PatchSource` over a fixed tensor of patches ``(N, 1, P, P)``."""

    def __init__(self, patches: Tensor):
        self.patches = patches
        self.device = patches.device

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` patches drawn uniformly with replacement."""
        idx = torch.randint(len(self.patches), (n,), generator=generator, device=self.device)
        return self.patches[idx]


def source_device(source: object) -> torch.device:
    """The device a source's generator must live on (its ``device``, else CPU)."""
    return torch.device(getattr(source, "device", "cpu"))
