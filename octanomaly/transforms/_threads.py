"""Per-B-scan work on a few threads: numpy and scipy.ndimage release the GIL, so chunks of
B-scans computed on their own threads use the cores, with the same values as one call."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from octanomaly.cpus import available_cpus


def workers(n: int) -> int:
    """Threads for ``n`` B-scans: one per core, at most 8."""
    return min(n, available_cpus(), 8)


def per_bscan(
    fn: Callable[[np.ndarray], Any], x: np.ndarray, *more: np.ndarray, chunks: int | None = None
) -> Any:
    """``fn`` over chunks of B-scans on a few threads (numpy and scipy.ndimage release the GIL);
    the results concatenated (each element of a tuple result on its own).

    ``more`` arrays are split along with ``x`` and passed too. ``chunks`` (default: one per
    thread) may be larger to bound the memory of ``fn``'s temporaries; every B-scan is
    computed on its own, so the result is the same for any split.
    """
    n_threads = workers(len(x))
    n_chunks = max(1, min(len(x), chunks or n_threads))
    if n_chunks < 2:
        return fn(x, *more)
    parts = zip(*(np.array_split(a, n_chunks) for a in (x, *more)), strict=True)
    if n_threads < 2:
        out = [fn(*part) for part in parts]
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            out = list(pool.map(lambda part: fn(*part), parts))
    if isinstance(out[0], tuple):
        return tuple(np.concatenate(col) for col in zip(*out, strict=True))
    return np.concatenate(out)


def per_range(fn: Callable[[slice], Any], n: int, chunks: int | None = None) -> list[Any]:
    """``fn(slice)`` for consecutive ranges of ``n`` B-scans on a few threads; the results in
    order. For work that writes into a preallocated output (no concatenation afterwards)."""
    n_threads = workers(n)
    n_chunks = max(1, min(n, chunks or n_threads))
    bounds = np.linspace(0, n, n_chunks + 1).round().astype(int)
    ranges = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if n_threads < 2 or n_chunks < 2:
        return [fn(r) for r in ranges]
    with ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(fn, ranges))
