"""Cohort pictures: a montage of B-scan crops per cluster, the 2-D map of all regions coloured by
cluster, and the ETDRS burden map (mean anomalous volume per sector over the cohort)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from octanomaly.io.atomic import atomic_path

#: Regions shown per montage (the ones with the highest max z first).
MONTAGE_MAX: int = 24
_COLS = 4


def _figure(w: float, h: float):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _colour(c: int) -> tuple[float, float, float]:
    import matplotlib

    return matplotlib.colormaps["tab10"](c % 10)[:3]


def save_montage(
    crops: np.ndarray,
    regions: Sequence[dict[str, Any]],
    index: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    cluster: int,
    line: dict[str, Any],
) -> Path:
    """Montage PNG of cluster ``cluster``: crops ``crops[index]`` with the region outlined."""
    from scipy import ndimage

    order = sorted(range(len(regions)), key=lambda i: -float(regions[i]["max_z"]))[:MONTAGE_MAX]
    rows = max(1, int(np.ceil(len(order) / _COLS)))
    fig = _figure(_COLS * 2.6, rows * 1.25 + 0.9)
    axes = np.atleast_1d(fig.subplots(rows, _COLS)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, order, strict=False):
        img, mask = crops[index[i], 0], crops[index[i], 1] > 0
        rgb = np.repeat(img[..., None], 3, axis=2).astype(np.float32) / 255
        edge = mask & ~ndimage.binary_erosion(mask)
        rgb[edge] = _colour(cluster)
        ax.imshow(rgb, interpolation="nearest", aspect="auto")
        r = regions[i]
        ax.set_title(f"{r['volume']} #{r['region_id']}  {r['volume_mm3'] * 1000:.2g} nl",
                     fontsize=6.5)  # fmt: skip
    fig.suptitle(
        f"cluster {cluster}: {line['n_regions']} regions in {line['n_volumes']} volumes; "
        f"{line['band']} ({line['band_fraction']:.0%}), {line['reflectivity']}"
        f" ({line['reflectivity_fraction']:.0%}); median {line['median_volume_mm3'] * 1000:.2g} nl,"
        f" {line['median_height_above_bm_um']:.0f} µm above BM",
        fontsize=8.5,
    )
    return _save(fig, Path(path))


def save_cluster_map(xy: np.ndarray, labels: np.ndarray, path: str | Path) -> Path:
    """Scatter PNG of the 2-D map (t-SNE) of all regions, one colour per cluster."""
    fig = _figure(5.5, 4.8)
    ax = fig.subplots()
    for c in range(int(labels.max(initial=-1)) + 1):
        sel = labels == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=_colour(c), label=f"cluster {c}",
                   alpha=0.8, linewidths=0)  # fmt: skip
    if len(labels):
        ax.legend(fontsize=7, markerscale=1.5, loc="best")
    ax.set_title(f"{len(labels)} regions (t-SNE of the region embedding)", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, Path(path))


def save_burden_map(volume_rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """ETDRS grid PNG: mean anomalous volume (nl) per sector over the volumes that scanned it
    (grey "n/a": no volume reaches the sector)."""
    import matplotlib
    from matplotlib.patches import Wedge

    from octanomaly.findings.etdrs import RADII_MM

    ok = [r for r in volume_rows if r.get("status") == "ok"]
    sectors = ("superior", "nasal", "inferior", "temporal")
    mean = {}
    for s in ("central", *(f"{ring}_{q}" for ring in ("inner", "outer") for q in sectors)):
        vals = [r.get(f"burden_{s}_mm3") for r in ok]
        vals = [float(v) for v in vals if v not in (None, "")]
        mean[s] = 1000 * float(np.mean(vals)) if vals else float("nan")
    fig = _figure(4.6, 4.4)
    ax = fig.subplots()
    finite = [v for v in mean.values() if np.isfinite(v)]
    top = max(finite) if finite and max(finite) > 0 else 1.0
    cmap = matplotlib.colormaps["magma"]
    # drawn as a right eye: nasal to the right (left eyes are mirrored into this layout)
    angle = {"superior": 90, "nasal": 0, "inferior": 270, "temporal": 180}
    for ring, (r0, r1) in (("inner", RADII_MM[:2]), ("outer", RADII_MM[1:])):
        for q in sectors:
            v = mean[f"{ring}_{q}"]
            colour = cmap(v / top) if np.isfinite(v) else (0.85, 0.85, 0.85)
            a = angle[q]
            ax.add_patch(Wedge((0, 0), r1, a - 45, a + 45, width=r1 - r0, facecolor=colour,
                               edgecolor="white"))  # fmt: skip
            rm = (r0 + r1) / 2
            dark = np.isfinite(v) and v < 0.6 * top
            ax.text(rm * np.cos(np.deg2rad(a)), rm * np.sin(np.deg2rad(a)),
                    "n/a" if not np.isfinite(v) else f"{v:.3g}", ha="center", va="center",
                    fontsize=8, color="white" if dark else "black")  # fmt: skip
    v = mean["central"]
    ax.add_patch(Wedge((0, 0), RADII_MM[0], 0, 360,
                       facecolor=cmap(v / top) if np.isfinite(v) else (0.85,) * 3,
                       edgecolor="white"))  # fmt: skip
    ax.text(0, 0, "n/a" if not np.isfinite(v) else f"{v:.3g}", ha="center", va="center",
            fontsize=8, color="white" if np.isfinite(v) and v < 0.6 * top else "black")  # fmt: skip
    ax.set_xlim(-3.3, 3.3)
    ax.set_ylim(-3.3, 3.3)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.text(3.15, 0, "N", ha="center", va="center", fontweight="bold")
    ax.text(-3.15, 0, "T", ha="center", va="center", fontweight="bold")
    ax.text(0, 3.15, "S", ha="center", va="center", fontweight="bold")
    ax.set_title(f"mean anomalous volume per ETDRS sector (nl), {len(ok)} volumes", fontsize=9)
    return _save(fig, Path(path))
