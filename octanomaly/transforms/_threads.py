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


def _n_chunks(n: int, per_chunk: int | None) -> int:
    """Chunks for ``n`` B-scans: ``per_chunk`` B-scans each (rounded up), else one per thread."""
    return max(1, min(n, -(-n // per_chunk) if per_chunk else workers(n)))


def per_bscan(
    fn: Callable[[np.ndarray], Any], x: np.ndarray, *more: np.ndarray, per_chunk: int | None = None
) -> Any:
    """``fn`` over chunks of B-scans on a few threads (numpy and scipy.ndimage release the GIL);
    the results concatenated (each element of a tuple result on its own).

    ``more`` arrays are split along with ``x`` and passed too. ``per_chunk`` (default: one
    chunk per thread) bounds the B-scans, so the memory of ``fn``'s temporaries; every B-scan
    is computed on its own, so the result is the same for any split.
    """
    n_threads = workers(len(x))
    n_chunks = _n_chunks(len(x), per_chunk)
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


def per_range(fn: Callable[[slice], Any], n: int, per_chunk: int | None = None) -> list[Any]:
    """``fn(slice)`` for consecutive ranges of ``n`` B-scans (``per_chunk`` each, as
    :func:`per_bscan`) on a few threads; the results in order. For work that writes into a
    preallocated output (no concatenation afterwards)."""
    n_threads = workers(n)
    n_chunks = _n_chunks(n, per_chunk)
    bounds = np.linspace(0, n, n_chunks + 1).round().astype(int)
    ranges = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if n_threads < 2 or n_chunks < 2:
        return [fn(r) for r in ranges]
    with ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(fn, ranges))
