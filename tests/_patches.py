"""Tiny structured patches for model tests: horizontal layered bands with noise (retina-like)."""

from __future__ import annotations

import torch


def layered_patches(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``(n, 1, size, size)`` in [-1, 1]: sinusoidal depth profiles, random phase, light noise."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(size, dtype=torch.float32)
    phase = torch.rand(n, 1, generator=g) * 6.28
    freq = 0.3 + 0.2 * torch.rand(n, 1, generator=g)
    profile = torch.sin(rows[None] * freq + phase)
    x = profile[:, None, :, None].expand(n, 1, size, size) * 0.8
    x = x + 0.05 * torch.randn(n, 1, size, size, generator=g)
    return x.clamp(-1, 1).contiguous()


def one_thread():
    """Fixture body: run with one torch thread (tiny convs on a shared 2-core box are far
    faster without thread spinning), restoring the previous count after the test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tree_hashes(folder):  # noqa: ANN001, ANN201 - test helper
    """sha256 of every file under ``folder`` (hidden ones included), by relative path."""
    import hashlib

    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
