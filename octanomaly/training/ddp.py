"""DistributedDataParallel under ``torchrun``: process group, rank/device, wrapped networks, and
the few collective calls the loop makes. With one process every call is a no-op."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import Tensor

from octanomaly.models import AnomalyModel


class Distributed:
    """Rank, world size and device of this process; rank 0 is the one that writes."""

    def __init__(self, device: torch.device):
        self.device = device
        self.rank, self.world = 0, 1
        self._own_group = False

    @property
    def is_main(self) -> bool:
        """True on rank 0 (and without DDP)."""
        return self.rank == 0

    @contextlib.contextmanager
    def session(self) -> Iterator[Distributed]:
        """Join (or create, then destroy) the process group when ``WORLD_SIZE`` > 1."""
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
                self._own_group = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            if self.device.type == "cuda":
                local = int(os.environ.get("LOCAL_RANK", self.rank % torch.cuda.device_count()))
                torch.cuda.set_device(local)
                self.device = torch.device("cuda", local)
        try:
            yield self
        finally:
            if self._own_group and dist.is_initialized():
                dist.destroy_process_group()

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.world > 1:
            dist.barrier()

    def mean(self, values: Tensor) -> Tensor:
        """``values`` averaged over ranks (in place)."""
        if self.world > 1:
            dist.all_reduce(values)
            values /= self.world
        return values

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is set on any rank (ranks agree on stopping)."""
        if self.world <= 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def wrap(self, model: AnomalyModel, stage: str) -> None:
        """Route the trained networks of ``stage`` through DDP (gradients averaged)."""
        if self.world <= 1:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        for name in model.trained_nets[stage]:
            model.wrap(name, DDP(getattr(model, name), device_ids=ids, broadcast_buffers=False))
