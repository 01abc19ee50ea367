"""Scoring channels and retina positions of a preprocessed (flattened) B-scan stack.

A channel is a per-pixel map compared with the normative model of healthy retina
(:mod:`octanomaly.scoring.normative`): ``intensity`` (the windowed image, lightly smoothed:
healthy tissue has a consistent brightness at each height above BM, so fluid, elevated RPE or
disrupted layers stand out both ways) and ``residual`` (the model's stitched ``|x - x_hat|``:
only large is anomalous) and, for models with patch embeddings, ``bank`` (each patch's distance
to the healthy feature bank, :mod:`octanomaly.scoring.feature_bank`, spread over its pixels:
only large is anomalous) and ``elevation`` (the height above BM of the top of the outer
hyper-reflective band, RPE + ellipsoid zone, per A-scan: drusen and pigment epithelial
detachments lift it; only high is anomalous). ``elevation`` is a property of the A-scan: its
value fills the column, so every position bin sees the healthy A-scans' distribution, and its
z counts only where it applies, from BM up to the band top (:func:`supports`). The z-scores
are fused into one map by :func:`fuse`.

``bank`` is also measured against the input volume itself (:data:`VOLUME_REFERENCED`): a
device, export or acquisition setting that differs from the calibration data moves the features
of every patch away from the healthy bank (a Spectralis drusen volume sits at a median z of 5),
while a lesion moves its own patches further. Its z is lowered by the volume's median z in the
scoring region when that is above the healthy median (:func:`volume_reference`), in scoring and
in calibration alike; a single B-scan is its own volume.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from octanomaly.scoring.normative import BinSpec, bin_index, retina_coordinates

#: Channels and whether a deviation counts both ways (``True``) or only upwards.
CHANNELS: dict[str, bool] = {
    "intensity": True,
    "residual": False,
    "bank": False,
    "elevation": False,
}
#: Channels whose z is taken relative to the input volume's own median (module doc).
VOLUME_REFERENCED: tuple[str, ...] = ("bank",)
#: The outer band's top is searched up to this height above BM; its peak up to ``BAND_PEAK_UM``.
BAND_SEARCH_UM = 160.0
BAND_PEAK_UM = 100.0
#: Axial smoothing of the profile (µm), about one native Spectralis row; chosen on dev-A over
#: 8 µm (which bridges the dark interdigitation zone more often but blurs the lift).
BAND_SMOOTH_UM = 4.0
#: The elevation channel applies from this far below BM (µm) up to the band top.
BELOW_BM_UM = 8.0


def band_top(image: np.ndarray, mask: np.ndarray, bm_row: int, axial_mm: float) -> np.ndarray:
    """Height above BM (µm) of the top of the outer hyper-reflective band, per A-scan ``(n, w)``.

    In each A-scan of the flattened stack (BM on row ``bm_row``), smoothed (axially by
    ``BAND_SMOOTH_UM``, laterally by one column): the
    brightest row up to ``BAND_PEAK_UM`` above BM (RPE / ellipsoid zone), then the first row
    above it where the intensity falls below half-way between that peak and the darkest row
    up to ``BAND_SEARCH_UM`` (the outer nuclear layer), interpolated between rows. Healthy
    retina: about 60 µm. 0 where the column holds no retina.
    """
    um = float(axial_mm) * 1000.0
    x = ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), (0, BAND_SMOOTH_UM / um, 1.0))
    top = int(min(round(BAND_SEARCH_UM / um), bm_row))
    peak_k = max(1, min(int(round(BAND_PEAK_UM / um)), top))
    prof = x[:, bm_row - np.arange(top + 1), :]  # (n, k, w): k rows above BM
    k = np.arange(top + 1)[None, :, None]
    pk = np.argmax(prof[:, : peak_k + 1], axis=1)
    peak = np.take_along_axis(prof, pk[:, None], 1)[:, 0]
    after = k >= pk[:, None]
    low = np.where(after, prof, np.inf).min(axis=1)
    half = low + 0.5 * (peak - low)
    below = after & (prof < half[:, None])
    first = np.argmax(below, axis=1)
    prev = np.maximum(first - 1, 0)
    a = np.take_along_axis(prof, prev[:, None], 1)[:, 0]
    b = np.take_along_axis(prof, first[:, None], 1)[:, 0]
    frac = np.clip((a - half) / np.maximum(a - b, 1e-6), 0.0, 1.0)
    height = np.where(below.any(axis=1), (prev + frac) * um, top * um)
    return np.where(np.asarray(mask, dtype=bool).any(axis=1), height, 0.0).astype(np.float32)


def channel_maps(
    image: np.ndarray,
    residual: np.ndarray,
    mask: np.ndarray,
    names: tuple[str, ...],
    sigma: float,
    bank: np.ndarray | None = None,
    *,
    bm_row: int | None = None,
    axial_mm: float | None = None,
) -> dict[str, np.ndarray]:
    """Raw channel maps ``(n, d, w)`` float32 (``residual`` / ``bank`` are already stitched).

    ``intensity`` is the smoothed image relative to each B-scan's own retina: minus its median,
    divided by its interquartile range inside ``mask`` (robust to the overall brightness and
    contrast of a device or export, which are not lesions). ``elevation`` (:func:`band_top`)
    needs the flattening row ``bm_row`` and the axial spacing ``axial_mm``.
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
        elif name == "elevation":
            if bm_row is None or axial_mm is None:
                raise ValueError("the elevation channel needs bm_row and axial_mm")
            top = band_top(image, mask, bm_row, axial_mm)
            out[name] = np.repeat(top[:, None, :], image.shape[1], axis=1)
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


def supports(raw: dict[str, np.ndarray], bm_row: int, axial_mm: float) -> dict[str, np.ndarray]:
    """Where each channel of limited extent applies, bool like its map (others: everywhere).

    ``elevation``: from ``BELOW_BM_UM`` below BM up to the band top of the A-scan (the raw
    map's value), the tissue a druse or detachment lifts.
    """
    out = {}
    if "elevation" in raw:
        top = raw["elevation"]
        height = (float(bm_row) - np.arange(top.shape[1], dtype=np.float32)) * axial_mm * 1000.0
        height = height[None, :, None]
        out["elevation"] = (height >= -BELOW_BM_UM) & (height <= top)
    return out


def fuse(
    z: dict[str, np.ndarray],
    weights: dict[str, float] | None = None,
    support: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """One anomaly z-map: weighted mean over channels of ``|z|`` (two-sided) or ``z``.

    A channel with a ``support`` (:func:`supports`) counts as 0 outside it.
    """
    weights = weights or {}
    support = support or {}
    total = sum(weights.get(k, 1.0) for k in z)
    out = np.zeros(next(iter(z.values())).shape, dtype=np.float32)
    for k, v in z.items():
        v = np.abs(v) if CHANNELS[k] else v
        if k in support:
            v = np.where(support[k], v, np.float32(0))
        out += (weights.get(k, 1.0) / total) * v
    return out


def volume_reference(z_values: np.ndarray) -> float:
    """Offset of a :data:`VOLUME_REFERENCED` channel: the median of its z over a volume's scoring
    region when above the healthy median (0), else 0 (also without values)."""
    return max(float(np.median(z_values)), 0.0) if np.size(z_values) else 0.0


def weight_share(weights: dict[str, float], names: tuple[str, ...] | list[str], name: str) -> float:
    """The share of channel ``name`` in :func:`fuse` over channels ``names``: shifting that
    channel's z by ``d`` shifts the fused map by ``share * d`` wherever it counts."""
    return weights.get(name, 1.0) / sum(weights.get(k, 1.0) for k in names)


def bscan_scores(fused: np.ndarray, region: np.ndarray, percentile: float) -> np.ndarray:
    """Raw B-scan scores: the ``percentile`` of the fused map inside ``region`` (NaN: none)."""
    out = np.full(fused.shape[0], np.nan, dtype=np.float64)
    for i in range(fused.shape[0]):
        v = fused[i][region[i]]
        if v.size:
            out[i] = float(np.percentile(v, percentile))
    return out
