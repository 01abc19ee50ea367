"""Fovea and ETDRS grid of one volume, from its ILM and BM lines.

En-face coordinates: an A-scan ``(b, c)`` (B-scan ``b``, column ``c``) sits at
``x = (c - c_fovea) * lateral`` mm (to the right on the en-face image) and
``y = (b - b_fovea) * bscan`` mm (towards later B-scans). Conventions, stated once: B-scans
run from inferior to superior, as in Heidelberg Spectralis volume exports (the drusen volume's
OCT-Info.xml puts B-scan 1 at SLO y = 6.441 mm and each next one 0.03 mm higher on the fundus),
so larger ``y`` is superior (the en-face PNG draws B-scan 0 at the top: inferior up); columns run
left to right as on a fundus photograph, so nasal is to the right for a right eye (OD) and to
the left for a left eye (OS). Without laterality the two horizontal quadrants are ``unknown``.

Fovea: the thinnest point of the smoothed retinal thickness map (ILM to BM) within the central
part of the scan, accepted when it is a pit (at least :data:`MIN_PIT_UM` thinner than the ring
0.75-1.5 mm around it). Otherwise (volume too small, pit absent or outside the scan) the scan
centre is used and the summary says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

#: ETDRS circle radii in mm (diameters 1, 3 and 6 mm).
RADII_MM: tuple[float, float, float] = (0.5, 1.5, 3.0)
#: Sector names in ETDRS order (central, inner ring, outer ring; S, N, I, T in each ring).
QUADRANTS: tuple[str, ...] = ("superior", "nasal", "inferior", "temporal")
SECTORS: tuple[str, ...] = (
    "central",
    *(f"inner_{q}" for q in QUADRANTS),
    *(f"outer_{q}" for q in QUADRANTS),
)
#: A thinnest point is a fovea when the ring 0.75-1.5 mm around it is this much thicker (µm).
MIN_PIT_UM: float = 30.0
#: The fovea is searched within this fraction of the scanned field around its centre.
SEARCH_FRACTION: float = 0.6


@dataclass
class Fovea:
    """Fovea position in voxel coordinates (fractional) and how it was found.

    Attributes:
        bscan: B-scan index (fractional) of the fovea.
        column: A-scan column (fractional) of the fovea.
        method: ``"thickness-pit"`` or ``"scan-centre"`` (the fallback).
        note: why the fallback was used, or the pit depth.
        pit_um: ring-minus-centre thickness in µm (None when not measurable).
    """

    bscan: float
    column: float
    method: str
    note: str
    pit_um: float | None = None

    @property
    def position(self) -> tuple[float, float]:
        """``(bscan, column)`` in fractional voxels."""
        return (float(self.bscan), float(self.column))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "bscan": round(float(self.bscan), 2),
            "column": round(float(self.column), 2),
            "method": self.method,
            "note": self.note,
            "pit_um": None if self.pit_um is None else round(float(self.pit_um), 1),
        }


def thickness_map(ilm: np.ndarray, bm: np.ndarray, axial_mm: float) -> np.ndarray:
    """Retinal thickness ILM to BM in µm, ``(n_bscans, width)``; NaN where a line is missing."""
    t = (np.atleast_2d(bm) - np.atleast_2d(ilm)) * float(axial_mm) * 1000.0
    return np.where(np.isfinite(t) & (t > 0), t, np.nan).astype(np.float32)


def _nan_smooth(t: np.ndarray, sigma: tuple[float, float]) -> np.ndarray:
    ok = np.isfinite(t)
    num = ndimage.gaussian_filter(np.where(ok, t, 0.0), sigma, mode="nearest")
    den = ndimage.gaussian_filter(ok.astype(np.float64), sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0.2, num / den, np.nan)


def en_face_mm(
    shape: tuple[int, int], spacing: tuple[float, float, float], fovea: Fovea
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` mm of every A-scan ``(n_bscans, width)`` relative to the fovea."""
    n, w = shape
    sb, _, sl = spacing
    y = (np.arange(n) - fovea.bscan) * sb
    x = (np.arange(w) - fovea.column) * sl
    return np.meshgrid(x, y)


def find_fovea(
    ilm: np.ndarray, bm: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[Fovea, np.ndarray]:
    """The fovea of a volume and its thickness map (µm); falls back to the scan centre."""
    t = thickness_map(ilm, bm, spacing[1])
    n, w = t.shape
    sb, _, sl = spacing
    centre = Fovea((n - 1) / 2, (w - 1) / 2, "scan-centre", "")
    if np.isfinite(t).mean() < 0.5:
        centre.note = "retina found in under half of the A-scans"
        return centre, t
    if w * sl < 2.0:
        centre.note = f"scan only {w * sl:.1f} mm wide (need 2 mm to see a foveal pit)"
        return centre, t
    # smooth over ~0.15 mm so speckle and vessels do not make the minimum
    sigma = (0.15 / sb if n > 1 else 0.0, 0.15 / sl)
    ts = _nan_smooth(t, sigma)
    rows = np.arange(n)[:, None] - (n - 1) / 2
    cols = np.arange(w)[None, :] - (w - 1) / 2
    inside = (np.abs(cols) <= SEARCH_FRACTION * w / 2) & (
        np.abs(rows) <= max(SEARCH_FRACTION * n / 2, 0.5)
    )
    cand = np.where(inside & np.isfinite(ts), ts, np.inf)
    if not np.isfinite(cand).any():
        centre.note = "no thickness inside the central search window"
        return centre, t
    b, c = np.unravel_index(int(np.argmin(cand)), cand.shape)
    pit = Fovea(float(b), float(c), "thickness-pit", "")
    x, y = en_face_mm((n, w), spacing, pit)
    r = np.hypot(x, y)
    ring = (r >= 0.75) & (r <= 1.5) & np.isfinite(ts)
    if ring.sum() < 10:
        centre.note = "too little of the 0.75-1.5 mm ring around the thinnest point is scanned"
        return centre, t
    depth = float(np.median(ts[ring]) - ts[b, c])
    if depth < MIN_PIT_UM:
        centre.note = (
            f"no foveal pit: the thinnest point is only {depth:.0f} µm thinner than the ring "
            f"around it (need {MIN_PIT_UM:g})"
        )
        centre.pit_um = depth
        return centre, t
    pit.note = f"thinnest point {depth:.0f} µm below the 0.75-1.5 mm ring"
    pit.pit_um = depth
    return pit, t


def sector_map(x: np.ndarray, y: np.ndarray, laterality: str | None) -> np.ndarray:
    """ETDRS sector name of every point (``"outside"`` beyond 6 mm); ``x``, ``y`` in mm."""
    r = np.hypot(x, y)
    up = np.asarray(y)  # later B-scans are superior
    nasal = np.asarray(x) if laterality == "OD" else -np.asarray(x)
    horizontal = np.abs(nasal) > np.abs(up)
    quad = np.where(
        horizontal,
        np.where(nasal > 0, "nasal", "temporal"),
        np.where(up >= 0, "superior", "inferior"),
    )
    if laterality not in ("OD", "OS"):
        quad = np.where(horizontal, "unknown", quad)
    ring = np.where(r <= RADII_MM[1], "inner_", "outer_")
    out = np.char.add(ring.astype("U6"), quad.astype("U9")).astype(object)
    out[r <= RADII_MM[0]] = "central"
    out[r > RADII_MM[2]] = "outside"
    return out


def sector_names(laterality: str | None) -> list[str]:
    """The ETDRS sector names that apply for ``laterality`` (nasal/temporal need one)."""
    if laterality in ("OD", "OS"):
        return list(SECTORS)
    quads = ("superior", "inferior", "unknown")
    return ["central", *(f"inner_{q}" for q in quads), *(f"outer_{q}" for q in quads)]


def sector_stats(
    sectors: np.ndarray,
    thickness: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    laterality: str | None,
) -> dict[str, dict[str, float | None]]:
    """Per ETDRS sector: scanned area, mean thickness (µm) and anomalous volume (mm³).

    ``sectors`` and ``thickness`` are ``(n_bscans, width)``; ``mask`` ``(n, depth, width)``.
    ``area_mm2`` is the scanned area of the sector (part of a sector may lie off the scan); a
    sector the scan does not reach has None for thickness and anomalous volume.
    """
    sb, sa, sl = spacing
    columns = np.asarray(mask, dtype=bool).sum(axis=1)  # anomalous voxels per A-scan
    voxel = sb * sa * sl
    out: dict[str, dict[str, float | None]] = {}
    for name in sector_names(laterality):
        sel = sectors == name
        if not sel.any():
            out[name] = {"area_mm2": 0.0, "mean_thickness_um": None, "anomalous_volume_mm3": None}
            continue
        t = thickness[sel]
        t = t[np.isfinite(t)]
        out[name] = {
            "area_mm2": round(float(sel.sum() * sb * sl), 4),
            "mean_thickness_um": round(float(t.mean()), 1) if t.size else None,
            "anomalous_volume_mm3": round(float(columns[sel].sum() * voxel), 6),
        }
    return out
