"""En-face PNG: mean-intensity fundus-like image beside the en-face projection of the anomaly map
and, when layer lines are known, the retinal thickness map (ILM to BM) with the ETDRS grid.

All panels are drawn at physical aspect (x: width x lateral mm, y: n_bscans x bscan spacing mm,
B-scan 0 at the top). The anomaly projection is the maximum over depth (the strongest z-score of
each A-scan), so a focal lesion of any depth shows at full strength. The ETDRS circles (1, 3 and
6 mm) are centred on the fovea, with the sector spokes and N/T letters when laterality is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from octanomaly.findings.etdrs import RADII_MM
from octanomaly.io.atomic import atomic_path
from octanomaly.report.overlays import CONTOUR_RGB, UNIT_LABEL, _lut

#: Label of the projection panel (what :func:`enface_projection` computes).
PROJECTION_LABEL: str = "max over depth"


def enface_projection(anomaly: np.ndarray) -> np.ndarray:
    """En-face projection ``(n_bscans, width)`` of an ``(n, depth, width)`` map: max over depth."""
    a = np.asarray(anomaly)
    if a.ndim != 3:
        raise ValueError(f"anomaly map must be 3-D (n_bscans, depth, width), got {a.shape}")
    return np.nanmax(a, axis=1).astype(np.float32)


def enface_intensity(volume: np.ndarray) -> np.ndarray:
    """Mean-intensity en-face image ``(n_bscans, width)``: mean over depth."""
    v = np.asarray(volume)
    if v.ndim != 3:
        raise ValueError(f"volume must be 3-D (n_bscans, depth, width), got {v.shape}")
    return v.mean(axis=1, dtype=np.float64).astype(np.float32)


def enface_figure(
    volume: np.ndarray,
    anomaly: np.ndarray,
    spacing: Sequence[float],
    *,
    threshold: float | None = None,
    title: str = "",
    flagged: Sequence[int] = (),
    vmax: float | None = None,
    thickness: np.ndarray | None = None,
    fovea: tuple[float, float] | None = None,
    laterality: str | None = None,
):  # -> matplotlib.figure.Figure
    """The en-face matplotlib figure (Agg) that :func:`save_enface` writes.

    ``thickness`` (µm, ``(n_bscans, width)``) adds a third panel; ``fovea`` ``(bscan, column)``
    (fractional voxels) draws the ETDRS grid on every panel.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    volume, anomaly = np.asarray(volume), np.asarray(anomaly)
    if volume.shape != anomaly.shape or volume.ndim != 3:
        raise ValueError(f"volume {volume.shape} and anomaly {anomaly.shape} must be one 3-D shape")
    n, _, width = volume.shape
    bscan_mm, _, lateral_mm = (float(s) for s in spacing)
    w_mm, h_mm = width * lateral_mm, n * bscan_mm
    extent = (0.0, w_mm, h_mm, 0.0)

    intensity = enface_intensity(volume)
    proj = enface_projection(anomaly)
    lo, hi = np.percentile(intensity, (0.5, 99.5))
    top = float(vmax) if vmax is not None else max(float(np.nanmax(proj)), 1.0)
    ratio = h_mm / w_mm
    aspect = "equal" if 0.1 <= ratio <= 10 else "auto"
    panel_w = 4.6
    panel_h = float(np.clip(panel_w * ratio, 1.2, 7.0))
    n_panels = 2 if thickness is None else 3
    fig = Figure(
        figsize=(n_panels * panel_w + 0.8 * n_panels, panel_h + 1.2), dpi=110, layout="constrained"
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, sharex=True, sharey=True)
    ax_i, ax_a = axes[0], axes[1]

    ax_i.imshow(intensity, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, extent=extent,
                aspect=aspect, interpolation="nearest")  # fmt: skip
    ax_i.set_title("mean intensity (mean over depth)", fontsize=10)
    cmap = ListedColormap(_lut() / 255.0)
    im = ax_a.imshow(proj, cmap=cmap, vmin=0.0, vmax=top, extent=extent, aspect=aspect,
                     interpolation="nearest")  # fmt: skip
    note = f"\n{len(flagged)} flagged B-scans (red ticks)" if len(flagged) else ""
    ax_a.set_title(f"anomaly ({PROJECTION_LABEL}){note}", fontsize=10)
    if threshold is not None and n > 1 and np.nanmax(proj) >= threshold > np.nanmin(proj):
        ys = (np.arange(n) + 0.5) * bscan_mm
        xs = (np.arange(width) + 0.5) * lateral_mm
        ax_a.contour(xs, ys, proj, levels=[float(threshold)], colors=[np.array(CONTOUR_RGB) / 255],
                     linewidths=0.8)  # fmt: skip
    cb = fig.colorbar(im, ax=ax_a, shrink=0.9)
    cb.set_label(UNIT_LABEL + (f" (threshold {threshold:g})" if threshold is not None else ""))
    if threshold is not None:
        cb.ax.axhline(float(threshold), color=np.array(CONTOUR_RGB) / 255, linewidth=1.5)

    if thickness is not None:
        t = np.asarray(thickness, dtype=np.float32)
        if t.shape != (n, width):
            raise ValueError(f"thickness map {t.shape} must be (n_bscans, width) = {(n, width)}")
        finite = t[np.isfinite(t)]
        t_lo, t_hi = np.percentile(finite, (1, 99)) if finite.size else (0.0, 1.0)
        im_t = axes[2].imshow(t, cmap="viridis", vmin=t_lo, vmax=max(t_hi, t_lo + 1), extent=extent,
                              aspect=aspect, interpolation="nearest")  # fmt: skip
        axes[2].set_title("retinal thickness ILM-BM (µm)", fontsize=10)
        fig.colorbar(im_t, ax=axes[2], shrink=0.9).set_label("thickness (µm)")
    if fovea is not None:
        for ax in axes:
            _draw_etdrs(ax, fovea, bscan_mm, lateral_mm, laterality)
    # one line per panel for all ticks (NaN-separated segments): one artist to lay out, not one
    # per flagged B-scan
    ys = (np.asarray(flagged, dtype=np.float64).reshape(-1, 1) + 0.5) * bscan_mm
    tick_y = np.hstack([ys, ys, np.full_like(ys, np.nan)]).ravel()
    tick_x = np.tile([w_mm, w_mm * 1.025, np.nan], len(ys))
    for ax in axes:
        ax.set_xlabel("lateral (mm)")
        if len(ys):
            ax.plot(tick_x, tick_y, color="red", lw=1.5, clip_on=False, antialiased=False)
    ax_i.set_ylabel("B-scan position (mm, B-scan 0 at top)")
    ax_a.set_xlim(0.0, w_mm)
    ax_a.set_ylim(h_mm, 0.0)
    if title:
        fig.suptitle(title, fontsize=11)

    return fig


def _draw_etdrs(ax, fovea, bscan_mm: float, lateral_mm: float, laterality: str | None) -> None:
    """ETDRS circles and spokes (between the 1 and 6 mm circles) centred on ``fovea``."""
    from matplotlib.patches import Circle

    cy, cx = (float(fovea[0]) + 0.5) * bscan_mm, (float(fovea[1]) + 0.5) * lateral_mm
    style = {"color": "white", "lw": 0.9, "alpha": 0.9}
    for r in RADII_MM:
        ax.add_patch(Circle((cx, cy), r, fill=False, **style))
    for a in np.deg2rad([45, 135, 225, 315]):
        r0, r1 = RADII_MM[0], RADII_MM[2]
        ax.plot([cx + r0 * np.cos(a), cx + r1 * np.cos(a)],
                [cy + r0 * np.sin(a), cy + r1 * np.sin(a)], **style)  # fmt: skip
    ax.plot([cx], [cy], marker="+", color="white", ms=8)
    if laterality in ("OD", "OS"):
        right, left = ("N", "T") if laterality == "OD" else ("T", "N")
        for dx, letter in ((1, right), (-1, left)):
            ax.text(cx + dx * 2.25, cy, letter, color="white", ha="center", va="center",
                    fontsize=9, fontweight="bold", clip_on=True)  # fmt: skip


def save_enface(
    volume: np.ndarray,
    anomaly: np.ndarray,
    spacing: Sequence[float],
    path: str | Path,
    *,
    protect: tuple[Path, ...] = (),
    **options: Any,
) -> Path:
    """Write the two-panel en-face PNG (axes in mm, colour bar; ``threshold`` drawn as contour).

    ``spacing`` is ``(bscan, axial, lateral)`` mm; ``options`` are :func:`enface_figure`'s
    keywords (``threshold``, ``title``, ``flagged`` B-scan indices ticked on both panels' right
    edge, ``vmax``, ``thickness``, ``fovea``, ``laterality``). Written atomically, never over a
    ``protect`` path.
    """
    fig = enface_figure(volume, anomaly, spacing, **options)
    path = Path(path)
    with atomic_path(path, protect=protect) as tmp:
        fig.savefig(tmp, format="png")
    return path
