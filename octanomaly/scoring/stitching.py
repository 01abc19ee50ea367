"""From a preprocessed B-scan stack to raw (uncalibrated) per-B-scan maps and patch scores.

Grid patches (stride ``S``) that touch the retina are scored in batches and merged back per
B-scan with :func:`octanomaly.transforms.patches.stitch`: every pixel of the residual map is the
mean residual ``|x - x_hat|`` of the patches covering it (then lightly Gaussian-smoothed against
speckle), every pixel of the score map the mean score of those patches. B-scans are processed in
chunks so memory stays bounded for any volume; each B-scan keeps its ``top_k`` patch scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from octanomaly.models import AnomalyModel
from octanomaly.scoring.patch_scores import score_patches
from octanomaly.transforms.patches import extract, grid_coords, pad_to_patch, stitch


@dataclass
class StackMaps:
    """Raw maps of a preprocessed stack ``(n, d, w)`` and each B-scan's top patch scores.

    ``residual`` / ``score`` are ``None`` when maps were not asked for (B-scan scores only).
    ``coords`` ``(N, 3)`` are the scored patches (B-scan, row, column of the top-left corner);
    ``embedding`` ``(N, dim)`` their embeddings when the model declares ``embeds_patches``.
    """

    residual: np.ndarray | None
    score: np.ndarray | None
    top_scores: list[np.ndarray]
    n_patches: int
    timings: dict[str, float] = field(default_factory=dict)
    coords: np.ndarray | None = None
    embedding: np.ndarray | None = None


def _chunks(bscan_of: np.ndarray, n: int, max_patches: int) -> list[tuple[int, int]]:
    """Consecutive B-scan ranges ``[b0, b1)`` of at most ``max_patches`` patches (>= 1 B-scan)."""
    counts = np.bincount(bscan_of, minlength=n)
    out, b0, acc = [], 0, 0
    for b in range(n):
        if acc and acc + counts[b] > max_patches:
            out.append((b0, b))
            b0, acc = b, 0
        acc += int(counts[b])
    out.append((b0, n))
    return out


def score_stack(
    model: AnomalyModel,
    image: np.ndarray,
    mask: np.ndarray,
    *,
    stride: int,
    top_k: int = 5,
    smooth_sigma: float = 2.0,
    batch_size: int = 256,
    amp: bool = True,
    maps: bool = True,
    chunk_patches: int = 4096,
    progress: Any = None,
    description: str = "scoring patches",
) -> StackMaps:
    """Score grid patches of ``image`` over ``mask`` (both ``(n, d, w)``); stitch raw maps.

    ``progress`` is a started ``rich.progress.Progress`` to add a task to (or ``None``). With
    ``maps=False`` only the per-B-scan top-k patch scores are kept.
    """
    p = model.patch_size
    n, d, w = image.shape
    coords = grid_coords(mask, p, stride)
    on_batch = None
    if progress is not None:
        task = progress.add_task(description, total=len(coords))
        on_batch = lambda k: progress.advance(task, k)  # noqa: E731
    padded = pad_to_patch(np.asarray(image, dtype=np.float32), p, -1.0)
    residual = np.zeros((n, d, w), dtype=np.float32) if maps else None
    score_map = np.zeros((n, d, w), dtype=np.float32) if maps else None
    top: list[np.ndarray] = [np.zeros(0)] * n
    embedding = np.zeros((len(coords), 0), np.float32) if model.embeds_patches else None
    done: list[np.ndarray] = []
    t_score = t_stitch = 0.0
    for b0, b1 in _chunks(coords[:, 0], n, chunk_patches):
        sel = coords[(coords[:, 0] >= b0) & (coords[:, 0] < b1)]
        if len(sel) == 0:
            continue
        t0 = time.perf_counter()
        scored = score_patches(model, extract(padded, sel, p), batch_size, amp, on_batch)
        t1 = time.perf_counter()
        if embedding is not None:
            done.append(scored.embedding)
        for b in range(b0, b1):
            s = scored.score[sel[:, 0] == b]
            top[b] = np.sort(s)[::-1][:top_k]
        if maps:
            local = sel - np.array([b0, 0, 0])
            shape = (b1 - b0, d, w)
            residual[b0:b1] = stitch(scored.residual, local, shape, p)
            score_map[b0:b1] = stitch(scored.score, local, shape, p)
        t_stitch += time.perf_counter() - t1
        t_score += t1 - t0
    t0 = time.perf_counter()
    if maps and smooth_sigma > 0:
        residual = ndimage.gaussian_filter(residual, sigma=(0, smooth_sigma, smooth_sigma))
    t_stitch += time.perf_counter() - t0
    if embedding is not None and done:
        embedding = np.concatenate(done)  # chunks are consecutive B-scan ranges: coords order
    return StackMaps(
        residual=residual,
        score=score_map,
        top_scores=top,
        n_patches=len(coords),
        timings={"score": t_score, "stitch": t_stitch},
        coords=coords,
        embedding=embedding,
    )
