"""B-scan PNG overlays: grayscale B-scan, semi-transparent heat map of the anomaly, mask contour.

Composited in numpy and written with Pillow (about 10x faster than a matplotlib figure per
B-scan); only the colour bar is drawn by matplotlib (Agg), once per ``(height, vmax)`` and cached.

Display geometry: OCT B-scans are physically very flat (Spectralis: 1.9 mm deep x 5.7 mm wide),
so, like the scanners' own viewers, the axial axis is shown stretched: displayed height / width
= :data:`AXIAL_EXAGGERATION` x the physical ratio. With 3x a Spectralis B-scan shows at nearly
its pixel aspect. Scale bars (lateral and axial, in mm) make the stretch explicit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from octanomaly.cpus import available_cpus
from octanomaly.io.atomic import atomic_path

#: Displayed height/width divided by the physical height/width of a B-scan.
AXIAL_EXAGGERATION: float = 3.0
#: Colour map of the heat map (matplotlib name) and the part of it used (skips near-black).
CMAP_NAME: str = "inferno"
CMAP_RANGE: tuple[float, float] = (0.3, 1.0)
#: Heat-map opacity at the lowest and at the highest positive value.
ALPHA_RANGE: tuple[float, float] = (0.2, 0.85)
#: Contour colour (RGB) of the binary mask.
CONTOUR_RGB: tuple[int, int, int] = (0, 230, 255)
#: Unit shown on the colour bars.
UNIT_LABEL: str = "z-score vs healthy"
#: Fixed layout of the PNG around the B-scan panel, in pixels.
TITLE_HEIGHT: int = 26
COLORBAR_WIDTH: int = 88
MIN_DISPLAY_WIDTH: int = 256
#: Largest side of the B-scan panel (px); a larger display is scaled down to fit, keeping the
#: aspect. Smallest panel height, so the colour bar and title always fit.
MAX_DISPLAY_SIDE: int = 4096
MIN_DISPLAY_HEIGHT: int = 32


@functools.lru_cache(maxsize=4)
def _lut(name: str = CMAP_NAME, lo: float = CMAP_RANGE[0], hi: float = CMAP_RANGE[1]) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return (cmap(np.linspace(lo, hi, 256))[:, :3] * 255).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from matplotlib import font_manager

    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except OSError:  # pragma: no cover - matplotlib always ships DejaVu
        return ImageFont.load_default(size)


def grayscale_u8(bscan: np.ndarray) -> np.ndarray:
    """B-scan as uint8 for display: uint8 as is, anything else windowed to its 0.5-99.9 pct."""
    bscan = np.asarray(bscan)
    if bscan.dtype == np.uint8:
        return bscan
    b = bscan.astype(np.float32)
    step = max(1, int(np.sqrt(b.size / 65536)))  # percentiles of a subsample: same window
    lo, hi = np.percentile(b[::step, ::step], (0.5, 99.9))
    if not hi > lo:
        hi = lo + 1.0
    return (np.clip((b - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (the contour, drawn inside the region)."""
    m = np.asarray(mask, dtype=bool)
    p = np.pad(m, 1, mode="constant", constant_values=False)
    interior = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~interior


def default_vmax(anomaly: np.ndarray) -> float:
    """Top of the colour scale when none is given: the largest value (at least 1)."""
    a = np.asarray(anomaly)
    top = float(np.nanmax(a)) if a.size else 0.0
    return max(top, 1.0)


def display_size(
    shape: tuple[int, int],
    spacing: tuple[float, float],
    axial_exaggeration: float = AXIAL_EXAGGERATION,
) -> tuple[int, int]:
    """``(height, width)`` in pixels of a ``(depth, width)`` B-scan of ``(axial, lateral)`` mm:
    at least :data:`MIN_DISPLAY_WIDTH` wide, :data:`MIN_DISPLAY_HEIGHT` high, and at most
    :data:`MAX_DISPLAY_SIDE` either way (scaled down as a whole)."""
    depth, width = int(shape[0]), int(shape[1])
    axial, lateral = float(spacing[0]), float(spacing[1])
    out_w = float(max(width, MIN_DISPLAY_WIDTH))
    out_h = out_w * (depth * axial * axial_exaggeration) / (width * lateral)
    scale = min(1.0, MAX_DISPLAY_SIDE / max(out_h, out_w))
    h = min(MAX_DISPLAY_SIDE, max(MIN_DISPLAY_HEIGHT, round(out_h * scale)))
    return h, max(1, round(out_w * scale))


def overlay_rgb(
    bscan: np.ndarray,
    anomaly: np.ndarray,
    mask: np.ndarray,
    *,
    vmax: float | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The composited ``(height, width, 3)`` uint8 overlay, at native size or resized to ``size``.

    Heat map only where ``anomaly > 0`` (opacity grows with the value); mask contour drawn
    on the inner boundary of ``mask``. Elsewhere the pixels equal the plain grayscale B-scan.
    """
    bscan, anomaly, mask = np.asarray(bscan), np.asarray(anomaly), np.asarray(mask, dtype=bool)
    if not (bscan.ndim == 2 and bscan.shape == anomaly.shape == mask.shape):
        raise ValueError(
            f"bscan, anomaly and mask must be 2-D of one shape, got "
            f"{bscan.shape}, {anomaly.shape}, {mask.shape}"
        )
    vmax = default_vmax(anomaly) if vmax is None else float(vmax)
    gray = grayscale_u8(bscan)
    a = np.asarray(anomaly, dtype=np.float32)
    if not np.isfinite(a).all():  # copies only when there is something to replace
        a = np.nan_to_num(a, nan=0.0, posinf=vmax, neginf=0.0)
    if size is not None and tuple(size) != gray.shape:
        h, w = int(size[0]), int(size[1])
        gray = np.asarray(Image.fromarray(gray).resize((w, h), Image.Resampling.BILINEAR))
        a = np.asarray(Image.fromarray(a, mode="F").resize((w, h), Image.Resampling.BILINEAR))
        m8 = Image.fromarray(mask.astype(np.uint8) * 255)
        mask = np.asarray(m8.resize((w, h), Image.Resampling.NEAREST)) > 127
    out = np.repeat(gray[..., None], 3, axis=2)
    hot = a > 0  # blend only where there is heat: elsewhere the pixel is the gray value
    if hot.any():
        t = np.clip(a[hot] * (1.0 / vmax), 0.0, 1.0)
        alpha = ALPHA_RANGE[0] + (ALPHA_RANGE[1] - ALPHA_RANGE[0]) * t
        colour = _lut()[np.rint(t * 255).astype(np.intp)]
        rgb = out[hot].astype(np.float32)
        rgb += alpha.astype(np.float32)[:, None] * (colour - rgb)
        out[hot] = np.rint(rgb).astype(np.uint8)
    out[inner_boundary(mask)] = CONTOUR_RGB
    return out


@functools.lru_cache(maxsize=8)
def colorbar_strip(
    height: int, vmax: float, width: int = COLORBAR_WIDTH, label: str = UNIT_LABEL
) -> np.ndarray:
    """A ``(height, width, 3)`` uint8 colour bar (0..vmax) with ticks and ``label``, cached."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    top = 6 / height
    ax = fig.add_axes((0.08, top, 0.16, 1 - 2 * top))
    cmap = ListedColormap(_lut() / 255.0)
    cb = ColorbarBase(ax, cmap=cmap, norm=Normalize(0.0, vmax), orientation="vertical")
    cb.ax.tick_params(labelsize=8, length=3)
    cb.set_label(label, fontsize=8)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _nice_length(target: float) -> float:
    """A round length (1, 2, 5 x 10^k) not larger than ``target``."""
    if target <= 0:
        return 0.0
    exp = np.floor(np.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * 10**exp <= target:
            return float(m * 10**exp)
    return float(10**exp)


def _draw_scale_bars(
    draw: ImageDraw.ImageDraw,
    origin: tuple[int, int],
    px_per_mm: tuple[float, float],
    panel: tuple[int, int],
) -> None:
    """Lateral and axial scale bars in the panel's lower-left corner (mm labels)."""
    font = _font(11)
    x0, y0 = origin[0] + 10, origin[1] + panel[0] - 10
    lat_mm = _nice_length(0.25 * panel[1] / px_per_mm[1])
    ax_mm = _nice_length(0.25 * panel[0] / px_per_mm[0])
    lat_px, ax_px = round(lat_mm * px_per_mm[1]), round(ax_mm * px_per_mm[0])
    for xy, fill in (((0, 0), (0, 0, 0)), ((-1, -1), (255, 255, 255))):
        dx, dy = xy
        draw.line([(x0 + dx, y0 + dy), (x0 + lat_px + dx, y0 + dy)], fill=fill, width=2)
        draw.line([(x0 + dx, y0 + dy), (x0 + dx, y0 - ax_px + dy)], fill=fill, width=2)
    for text, pos in (
        (f"{lat_mm:g} mm", (x0 + 4, y0 - 15)),
        (f"{ax_mm:g} mm", (x0 + 5, y0 - ax_px)),
    ):
        draw.text(pos, text, font=font, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))


def save_bscan_overlay(
    bscan: np.ndarray,
    anomaly: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float],
    path: str | Path,
    *,
    title: str = "",
    vmax: float | None = None,
    axial_exaggeration: float = AXIAL_EXAGGERATION,
    protect: tuple[Path, ...] = (),
) -> Path:
    """Write a PNG: B-scan at display aspect with heat map, mask contour, colour bar, scale bars.

    ``spacing`` is ``(axial, lateral)`` mm; ``vmax`` tops the colour scale (pass one value per
    volume so B-scans compare); the file appears atomically and never over a ``protect`` path.
    """
    vmax = default_vmax(anomaly) if vmax is None else float(vmax)
    h, w = display_size(np.shape(bscan), (spacing[0], spacing[1]), axial_exaggeration)
    panel = overlay_rgb(bscan, anomaly, mask, vmax=vmax, size=(h, w))
    canvas = Image.new("RGB", (w + COLORBAR_WIDTH, h + TITLE_HEIGHT), (255, 255, 255))
    canvas.paste(Image.fromarray(panel), (0, TITLE_HEIGHT))
    canvas.paste(Image.fromarray(colorbar_strip(h, round(vmax, 6))), (w, TITLE_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((6, 5), title, font=_font(13), fill=(0, 0, 0))
    depth, width = np.shape(bscan)
    px_per_mm = (h / (depth * float(spacing[0])), w / (width * float(spacing[1])))
    _draw_scale_bars(draw, (0, TITLE_HEIGHT), px_per_mm, (h, w))
    path = Path(path)
    with atomic_path(path, protect=protect) as tmp:
        canvas.save(tmp, format="PNG", compress_level=1)
    return path


def prepare_overlays(
    items: Sequence[tuple[np.ndarray, ...]], spacing: Sequence[float], *, vmax: float
) -> None:
    """Draw and cache what :func:`save_bscan_overlays` shares between its threads (the colour
    bar, with matplotlib; the fonts), on the calling thread."""
    for b, *_ in items[:1]:
        colorbar_strip(display_size(np.shape(b), (spacing[0], spacing[1]))[0], round(vmax, 6))
    _font(11), _font(13)


def save_bscan_overlays(
    items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str | Path, str]],
    spacing: Sequence[float],
    *,
    vmax: float,
    workers: int | None = None,
) -> list[Path]:
    """:func:`save_bscan_overlay` for many ``(bscan, anomaly, mask, path, title)`` on threads.

    Pillow's PNG encoder and numpy release the GIL, so the files come about ``workers`` times
    faster; each file is the same as one written alone. Returns the paths in ``items`` order.
    """
    from concurrent.futures import ThreadPoolExecutor

    vmax = float(vmax)
    prepare_overlays(items, spacing, vmax=vmax)

    def one(item: tuple[np.ndarray, np.ndarray, np.ndarray, str | Path, str]) -> Path:
        bscan, anomaly, mask, path, title = item
        return save_bscan_overlay(bscan, anomaly, mask, spacing, path, title=title, vmax=vmax)

    n = min(len(items), workers or available_cpus())
    if n < 2:
        return [one(item) for item in items]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, items))
