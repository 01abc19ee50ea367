"""Devices: one place that turns ``auto``/``cpu``/``cuda`` into a ``torch.device``."""

from __future__ import annotations

import torch

from octanomaly.errors import OctanomalyError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise OctanomalyError(
            f"--device {device}: unknown device (use auto, cpu or cuda)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OctanomalyError("--device cuda was asked but no CUDA GPU is available")
    return dev


def tune_malloc() -> bool:
    """glibc allocator settings for the CLI's numpy-heavy, threaded work; True when applied.

    - one heap arena for all threads (``M_ARENA_MAX`` 1): by default each thread gets its own,
      whose freed blocks others do not reuse (~150 MiB more peak for ``map``);
    - large arrays from the heap, kept for reuse (``M_MMAP_THRESHOLD`` / ``M_TRIM_THRESHOLD``
      2 GiB): otherwise every large temporary is a fresh ``mmap`` whose pages fault in one by
      one, about 10 % of ``map``'s time on the 145-B-scan volume; the peak stays the same (it
      is set by the largest set of live arrays either way), memory goes back when the process
      ends.

    Linux with glibc only; elsewhere nothing changes (False).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        return False
    big = 2**31 - 1
    # malloc.h: M_ARENA_MAX -8, M_MMAP_THRESHOLD -3, M_TRIM_THRESHOLD -1
    return all(bool(mallopt(opt, value)) for opt, value in ((-8, 1), (-3, big), (-1, big)))
