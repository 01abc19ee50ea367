"""Scoring channels and retina positions of a preprocessed (flattened) B-scan stack.

A channel is a per-pixel map compared with the normative model of healthy retina
(:mod:`octanomaly.scoring.normative`): ``intensity`` (the windowed image, lightly smoothed:
healthy tissue has a consistent brightness at each height above BM, so fluid, elevated RPE or
disrupted layers stand out both ways) and ``residual`` (the model's stitched ``|x - x_hat|``:
only large is anomalous) and, for models with patch embeddings, ``bank`` (each patch's distance
to the healthy feature bank, :mod:`octanomaly.scoring.feature_bank`, spread over its pixels:
only large is anomalous). Their z-scores are fused into one map by :func:`fuse`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from octanomaly.scoring.normative import BinSpec, bin_index, retina_coordinates

#: Channels and whether a deviation counts both ways (``True``) or only upwards.
CHANNELS: dict[str, bool] = {"intensity": True, "residual": False, "bank": False}


def channel_maps(
    image: np.ndarray,
    residual: np.ndarray,
    mask: np.ndarray,
    names: tuple[str, ...],
    sigma: float,
    bank: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Raw channel maps ``(n, d, w)`` float32 (``residual`` / ``bank`` are already stitched).

    ``intensity`` is the smoothed image relative to each B-scan's own retina: minus its median,
    divided by its interquartile range inside ``mask`` (robust to the overall brightness and
    contrast of a device or export, which are not lesions).
    """
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "intensity":
            x = np.asarray(image, dtype=np.float32)
            x = ndimage.gaussian_filter(x, (0, sigma, sigma)) if sigma > 0 else x.copy()
            for i in range(x.shape[0]):
                v = x[i][mask[i]]
                if v.size:
                    q25, q50, q75 = np.percentile(v, (25, 50, 75))
                    x[i] = (x[i] - q50) / max(float(q75 - q25), 1e-3)
            out[name] = x
        elif name == "residual":
            out[name] = np.asarray(residual, dtype=np.float32)
        elif name == "bank":
            if bank is None:
                raise ValueError("the bank channel needs a feature bank and patch embeddings")
            out[name] = np.asarray(bank, dtype=np.float32)
        else:
            raise ValueError(f"unknown scoring channel {name!r}")
    return out


def ilm_rows(mask: np.ndarray, margin_px: int) -> np.ndarray:
    """ILM row per column ``(n, w)`` from a retina mask (top of the mask + margin; NaN: none)."""
    m = np.asarray(mask, dtype=bool)
    top = np.argmax(m, axis=1).astype(np.float32) + float(margin_px)
    return np.where(m.any(axis=1), top, np.nan)


def position_bins(
    mask: np.ndarray, bm_row: int, margin_px: int, axial_mm: float, spec: BinSpec
) -> np.ndarray:
    """Normative bin index ``(n, d, w)`` of every pixel of a flattened stack."""
    height, rel = retina_coordinates(mask.shape, bm_row, ilm_rows(mask, margin_px), axial_mm)
    return bin_index(spec, height, rel)


def scoring_region(mask: np.ndarray, edge_px: int) -> np.ndarray:
    """Retina mask without ``edge_px`` columns at each lateral end of every B-scan's retina.

    Patches at the frame edges are padded and reconstructed worse in every eye; those columns
    are neither fitted nor scored.
    """
    m = np.asarray(mask, dtype=bool).copy()
    if edge_px <= 0:
        return m
    cols = m.any(axis=1)  # (n, w)
    for i in range(m.shape[0]):
        c = np.flatnonzero(cols[i])
        if c.size:
            m[i, :, : c[0] + edge_px] = False
            m[i, :, max(c[-1] + 1 - edge_px, 0) :] = False
    return m


def fuse(z: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> np.ndarray:
    """One anomaly z-map: weighted mean over channels of ``|z|`` (two-sided) or ``z``."""
    weights = weights or {}
    total = sum(weights.get(k, 1.0) for k in z)
    out = np.zeros(next(iter(z.values())).shape, dtype=np.float32)
    for k, v in z.items():
        out += (weights.get(k, 1.0) / total) * (np.abs(v) if CHANNELS[k] else v)
    return out


def bscan_scores(fused: np.ndarray, region: np.ndarray, percentile: float) -> np.ndarray:
    """Raw B-scan scores: the ``percentile`` of the fused map inside ``region`` (NaN: none)."""
    out = np.full(fused.shape[0], np.nan, dtype=np.float64)
    for i in range(fused.shape[0]):
        v = fused[i][region[i]]
        if v.size:
            out[i] = float(np.percentile(v, percentile))
    return out
