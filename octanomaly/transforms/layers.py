"""Retina boundaries per B-scan: inner limiting membrane (ILM) and Bruch's membrane (BM).

Both are minimum-cost paths across the B-scan (one row per A-scan) found by dynamic
programming over columns with a bounded jump per column:

* ILM: the first strong dark-to-bright edge seen from the vitreous. Cost = minus the
  positive vertical gradient plus a penalty for every bright pixel *above* the candidate row,
  so the path stays on top of the retina (not on the IS/OS or RPE edges) and ignores small
  vitreous floaters.
* BM: the bright-to-dark edge at the bottom of the hyper-reflective RPE band. Cost = minus the
  negative vertical gradient weighted by how bright the band just above is, restricted to rows
  below the ILM. Drusen and PEDs lift the RPE but not BM, so the path is replaced by its lower
  envelope (a morphological closing of the row curve) where the RPE bulges up.

Coarse paths on a downsampled, smoothed image are refined by a second DP in a narrow band at
full resolution. B-scans without a detectable retina (blank, pure noise) get NaN boundaries and
a warning naming the B-scan.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

import numpy as np
from monai.transforms import MapTransform, Transform
from scipy import ndimage

from octanomaly.transforms._threads import per_bscan as _per_bscan
from octanomaly.transforms._threads import per_range as _per_range
from octanomaly.transforms.intensity import fill_padding, padding_mask

#: Pixels of the B-scans one layer-detection chunk holds (48 B-scans of 496 x 512): bounds the
#: chunk's full-resolution temporaries whatever the B-scan size.
CHUNK_PIXELS: int = 48 * 496 * 512


@dataclass(frozen=True)
class LayerParams:
    """Tuning of the boundary search (pixels of the input B-scan unless stated)."""

    ilm_max_slope: float = 3.0  #: largest ILM row change per A-scan
    bm_max_slope: float = 0.75  #: largest BM row change per A-scan
    min_thickness: int = 8  #: rows between ILM and BM at least
    bm_envelope_width: int = 31  #: lateral width of the closing that removes RPE bulges
    min_contrast: float = 4.0  #: retina-vs-vitreous contrast in noise units to accept a B-scan
    bm_below_weight: float = 0.05  #: penalty per strong RPE-like edge pixel below a BM candidate
    ilm_tissue_frac: float = 0.25  #: tissue threshold, 50th..99th percentile fraction
    coarse_width: int = 128  #: approximate number of columns of the coarse search


class BScanWarning(UserWarning):
    """A B-scan in which no retina could be found (boundaries NaN, mask empty)."""


def _dp_path(cost: np.ndarray, max_jump: int, jump_penalty: float) -> np.ndarray:
    """Minimum-cost left-to-right path through ``cost`` (n, rows, cols); rows (n, cols)."""
    n, rows, cols = cost.shape
    acc = cost[:, :, 0].astype(np.float32, copy=True)
    back = np.zeros((n, rows, cols), dtype=np.int8)
    big = np.float32(1e30)
    for c in range(1, cols):
        best = np.full((n, rows), big, dtype=np.float32)
        arg = np.zeros((n, rows), dtype=np.int8)
        for d in range(-max_jump, max_jump + 1):
            shifted = np.full((n, rows), big, dtype=np.float32)
            if d >= 0:
                shifted[:, d:] = acc[:, : rows - d] if d else acc
            else:
                shifted[:, :d] = acc[:, -d:]
            val = shifted + np.float32(jump_penalty * abs(d))
            better = val < best
            best = np.where(better, val, best)
            arg = np.where(better, np.int8(d), arg)
        acc = cost[:, :, c] + best
        back[:, :, c] = arg
    path = np.zeros((n, cols), dtype=np.int64)
    path[:, -1] = np.argmin(acc, axis=1)
    idx = np.arange(n)
    for c in range(cols - 1, 0, -1):
        path[:, c - 1] = path[:, c] - back[idx, path[:, c], c]
    return path


def _band(arr: np.ndarray, center: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``center-half .. center+half`` of ``arr`` (n, rows, cols) per column, clipped."""
    n, rows, cols = arr.shape
    offs = np.arange(-half, half + 1)
    r = np.clip(np.round(center)[:, None, :].astype(np.int64) + offs[None, :, None], 0, rows - 1)
    return np.take_along_axis(arr, r, axis=1), r


def _subpixel(
    score: Callable[[np.ndarray], np.ndarray], grad: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Parabolic sub-pixel peak of ``score(grad)`` (n, rows, cols) around integer ``rows``."""
    n, nr, _ = grad.shape
    r0 = np.clip(rows, 1, nr - 2)
    three = np.take_along_axis(grad, (r0[:, None] + np.arange(-1, 2)[None, :, None]), 1)
    gm, g0, gp = np.moveaxis(score(three), 1, 0)
    den = gm - 2 * g0 + gp
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(den < 0, 0.5 * (gm - gp) / den, 0.0)
    return rows + np.clip(off, -0.5, 0.5)


def _normalise(bscans: np.ndarray) -> np.ndarray:
    """Per-B-scan robust scaling to about [0, 1] (1st..99.5th percentile of a subsample)."""
    x = bscans.astype(np.float32)
    sub = x[:, ::3, ::3]
    lo = np.percentile(sub, 1, axis=(1, 2), keepdims=True)
    hi = np.percentile(sub, 99.5, axis=(1, 2), keepdims=True)
    x -= lo  # in place: same values as ``clip((x - lo) / scale)`` without temporaries
    x /= np.maximum(hi - lo, 1e-6)
    return np.clip(x, 0, 1.5, out=x)


def _row_gradient(f: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``np.gradient(f, axis=1)`` (unit spacing, first-order edges) written into ``out``:
    the same operations, without the temporary the size of ``f``."""
    if f.shape[1] < 2:
        out[...] = np.gradient(f, axis=1)
        return out
    np.subtract(f[:, 2:], f[:, :-2], out=out[:, 1:-1])
    out[:, 1:-1] /= 2.0
    np.subtract(f[:, 1], f[:, 0], out=out[:, 0])
    np.subtract(f[:, -1], f[:, -2], out=out[:, -1])
    return out


def _abs_p99(g: np.ndarray) -> np.ndarray:
    """99th percentile of ``|g|`` per B-scan, ``(n, 1, 1)``."""
    # |g| is a temporary: partitioned in place rather than copied first (the same value)
    return np.percentile(np.abs(g), 99, axis=(1, 2), keepdims=True, overwrite_input=True)


def detect_layers(
    bscans: np.ndarray, params: LayerParams | None = None, pad: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """ILM and BM rows (float, NaN where absent), each ``(n_bscans, width)``.

    ``bscans`` is ``(n_bscans, depth, width)`` or one ``(depth, width)`` B-scan, any intensity
    scale; row 0 is the vitreous side. ``pad`` is ``padding_mask(bscans)`` when the caller
    knows it (computed here when None).
    """
    p = params or LayerParams()
    single = bscans.ndim == 2
    raw = np.asarray(bscans[None] if single else bscans)
    pad = padding_mask(raw) if pad is None else np.asarray(pad, dtype=bool).reshape(raw.shape)
    n, depth, width = raw.shape
    # ---- coarse grid: average A-scans laterally, halve axially
    fx = max(1, int(round(width / p.coarse_width)))
    fz = 2 if depth >= 128 else 1
    wc, dc = width // fx, depth // fz

    jump_ilm = max(1, int(np.ceil(p.ilm_max_slope * fx / fz)))
    jump_bm = max(1, int(np.ceil(p.bm_max_slope * fx / fz)))

    def coarse_paths(coarse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ILM and BM rows on the coarse grid for a chunk of B-scans (each on its own)."""
        coarse = ndimage.gaussian_filter(coarse, sigma=(0, 1.0, 1.5))
        bright = ndimage.gaussian_filter(coarse, sigma=(0, 2.0, 2.0))
        grad = np.gradient(coarse, axis=1)
        # ---- ILM (coarse): positive edge, penalise bright tissue above the candidate
        thr = _bright_threshold(bright, p.ilm_tissue_frac)
        above = np.cumsum(bright > thr, axis=1) - (bright > thr)
        gscale = np.maximum(np.percentile(np.abs(grad), 99, axis=(1, 2), keepdims=True), 1e-6)
        cost_ilm = -np.clip(grad, 0, None) / gscale + 0.15 * above
        ilm_c = _dp_path(cost_ilm.astype(np.float32), jump_ilm, 0.02)
        # ---- BM (coarse): negative edge under a bright band, below the ILM
        neg = np.clip(-grad, 0, None) / gscale
        band_above = _mean_above(coarse, max(3, 8 // fz))
        # a strong edge under a bright band further down means this is not the bottom
        edge = neg * band_above
        strong = edge > 0.5 * np.percentile(edge, 99.5, axis=(1, 2), keepdims=True)
        strong = strong.astype(np.float32)
        win, gap = max(4, depth // (5 * fz)), max(2, 12 // fz)
        cs = np.cumsum(strong[:, ::-1], axis=1)[:, ::-1]  # strong edges at this row or deeper
        cs = np.concatenate([cs, np.zeros_like(cs[:, : win + gap])], axis=1)
        below_strong = cs[:, gap : dc + gap] - cs[:, win + gap :]
        cost_bm = -edge + p.bm_below_weight * below_strong
        rows = np.arange(dc)[None, :, None]
        below = rows < (ilm_c[:, None, :] + max(2, p.min_thickness // fz))
        cost_bm = np.where(below, 5.0, cost_bm)
        return ilm_c, _dp_path(cost_bm.astype(np.float32), jump_bm, 0.05)

    cols_c = (np.arange(wc) + 0.5) * fx - 0.5
    cols = np.arange(width)
    half = 2 * fz + 3

    def one_chunk(b: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Refined ILM and BM rows (BM before its envelope) and retina presence of B-scans
        ``b``: the coarse search on a downsampled copy, then a second search in a band at full
        resolution. Every step is per B-scan, so chunks give the same rows as one call; the
        full-resolution gradient exists for one chunk at a time."""
        r, pd = raw[b], pad[b]
        x = _normalise(fill_padding(r, pd) if pd.any() else r)
        xs = ndimage.gaussian_filter(x, sigma=(0, 1.0, 1.0))
        # ---- coarse grid: average A-scans laterally, halve axially
        coarse = xs[:, : dc * fz, : wc * fx].reshape(len(x), dc, fz, wc, fx).mean(axis=(2, 4))
        del xs
        ok = _retina_present_chunk(x, p)
        fine = ndimage.gaussian_filter(x, sigma=(0, 1.5, 2.0))
        del x
        gfine = _row_gradient(fine, out=np.empty(fine.shape, dtype=np.float32))
        del fine
        gs = np.maximum(_abs_p99(gfine), 1e-6)
        ilm_c, bm_c = coarse_paths(coarse)
        # ---- back to full resolution: interpolate columns, refine in a band
        ilm0 = np.stack([np.interp(cols, cols_c, (q + 0.5) * fz - 0.5) for q in ilm_c])
        bm0 = np.stack([np.interp(cols, cols_c, (q + 0.5) * fz - 0.5) for q in bm_c])
        ilm = _refine(lambda g: np.clip(g, 0, None) / gs, gfine, ilm0, half, p.ilm_max_slope)
        bm = _refine(lambda g: np.clip(-g, 0, None) / gs, gfine, bm0, half, p.bm_max_slope)
        return ilm, bm, ok

    # chunks of ~48 B-scans of 496 x 512 on threads (fewer when B-scans are larger): the
    # temporaries of a chunk (a few full-resolution arrays) instead of a whole-volume gradient,
    # and few enough DP loops (Python per column, once per chunk and boundary)
    per_chunk = max(1, min(48, CHUNK_PIXELS // max(depth * width, 1)))
    parts = _per_range(one_chunk, n, per_chunk=per_chunk)
    ilm, bm, ok = (np.concatenate(col) for col in zip(*parts, strict=True))
    bm = _lower_envelope(bm, p.bm_envelope_width)
    bm = np.maximum(bm, ilm + p.min_thickness)
    bm = np.minimum(bm, depth - 1)
    for i in np.nonzero(~ok)[0]:
        warnings.warn(
            f"B-scan {i}: no retina detected (blank, noise or no tissue); "
            "boundaries set to NaN and its retina mask left empty",
            BScanWarning,
            stacklevel=2,
        )
    ilm[~ok] = np.nan
    bm[~ok] = np.nan
    for b in (ilm, bm):  # boundaries that fall on export padding are not seen
        r = np.clip(np.nan_to_num(np.round(b)).astype(np.int64), 0, depth - 1)
        b[np.take_along_axis(pad, r[:, None], 1)[:, 0]] = np.nan
    if single:
        return ilm[0], bm[0]
    return ilm, bm


def _refine(
    score: Callable[[np.ndarray], np.ndarray],
    grad: np.ndarray,
    start: np.ndarray,
    half: int,
    max_slope: float,
) -> np.ndarray:
    """Best path of ``score(grad)`` within ``start ± half`` rows at full resolution (sub-pixel).

    ``score`` is elementwise (rows (n, 1, 1) broadcast), so it is applied to the band only.
    """
    band, rows = _band(grad, start, half)
    band = score(band)
    jump = max(1, int(np.ceil(max_slope)))
    path = _dp_path(-band.astype(np.float32), jump, 0.02)
    r_int = np.take_along_axis(rows, path[:, None], 1)[:, 0]
    return _subpixel(score, grad, r_int)


def _mean_above(img: np.ndarray, k: int) -> np.ndarray:
    """Mean of the ``k`` rows just above each row (axis 1), edge-padded."""
    pad = np.concatenate([np.repeat(img[:, :1], k + 1, axis=1), img], axis=1)
    cs = np.cumsum(pad, axis=1)
    return (cs[:, k:-1] - cs[:, : -k - 1]) / k


def _lower_envelope(rows: np.ndarray, width: int) -> np.ndarray:
    """Remove upward bulges (smaller rows) narrower than ``width`` columns, then smooth."""
    if width <= 1:
        return rows
    rows = ndimage.median_filter(rows, size=(1, 9), mode="nearest")  # no single-column spikes
    closed = ndimage.grey_closing(rows, size=(1, width), mode="nearest")
    # keep the detected row where it already lies on the envelope (within 1.5 px)
    out = np.where(closed - rows > 1.5, closed, rows)
    return ndimage.uniform_filter1d(out, size=5, axis=1, mode="nearest")


def _bright_threshold(img: np.ndarray, frac: float = 0.4) -> np.ndarray:
    """Per-B-scan threshold ``frac`` of the way from the 50th to the 99th percentile."""
    lo = np.percentile(img, 50, axis=(1, 2), keepdims=True)
    hi = np.percentile(img, 99, axis=(1, 2), keepdims=True)
    return lo + frac * (hi - lo)


def _retina_present_chunk(x: np.ndarray, p: LayerParams) -> np.ndarray:
    """Per B-scan: True when it holds a bright, laterally coherent band (not blank or noise)."""
    ok = np.zeros(len(x), dtype=bool)
    for i, img in enumerate(x):
        if float(img.max() - img.min()) < 1e-3:
            continue
        # noise level: pixel-to-pixel differences; structure: lateral mean profile contrast
        noise = float(np.median(np.abs(np.diff(img, axis=1)), overwrite_input=True)) / 0.954 + 1e-6
        prof = ndimage.uniform_filter1d(img.mean(axis=1), 5)
        contrast = float(prof.max() - np.median(prof))
        ok[i] = contrast / noise * np.sqrt(img.shape[1]) / 10 > p.min_contrast
    return ok


def _retina_present(x: np.ndarray, p: LayerParams) -> np.ndarray:
    """:func:`_retina_present_chunk` of every B-scan of ``x`` on a few threads."""
    return _per_bscan(lambda xc: _retina_present_chunk(xc, p), x)


def retina_mask(ilm: np.ndarray, bm: np.ndarray, depth: int, margin_px: int = 8) -> np.ndarray:
    """Boolean ``(n_bscans, depth, width)``: rows ``ilm - margin .. bm + margin``; NaN -> empty."""
    ilm = np.atleast_2d(ilm)
    bm = np.atleast_2d(bm)
    rows = np.arange(depth)[None, :, None]
    valid = np.isfinite(ilm) & np.isfinite(bm)
    top = np.where(valid, ilm, np.inf)[:, None, :] - margin_px
    bot = np.where(valid, bm, -np.inf)[:, None, :] + margin_px
    return (rows >= np.floor(top)) & (rows <= np.ceil(bot))


class DetectLayers(Transform):
    """Array transform: ``(n, depth, width)`` -> ``(ilm, bm)`` rows, NaN where absent."""

    def __init__(self, params: LayerParams | None = None) -> None:
        self.params = params or LayerParams()

    def __call__(
        self, img: np.ndarray, pad: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return detect_layers(np.asarray(img), self.params, pad)


def refilled_padding(img: np.ndarray, source_pad: np.ndarray) -> np.ndarray:
    """``padding_mask(img)`` for ``img`` = ``fill_padding(src, source_pad)``: B-scans without
    padding in ``source_pad`` were not changed by the filling, so they have none in ``img``
    either; only the others are searched again."""
    img = np.asarray(img)
    had = np.asarray(source_pad, dtype=bool).reshape(len(img), -1).any(axis=1)
    pad = np.zeros(img.shape, dtype=bool)
    if had.any():
        pad[had] = padding_mask(img[had])
    return pad


class DetectLayersd(MapTransform):
    """Dictionary transform: adds ``ilm``, ``bm`` and a retina ``mask`` for ``keys[0]``.

    ``source_pad_key`` names the padding mask ``keys[0]`` was filled with (``FillPaddingd``
    right before, nothing in between): then the padding search of :func:`detect_layers` runs
    only on the B-scans that had padding (:func:`refilled_padding`, the same mask).
    """

    def __init__(
        self,
        keys: str = "image",
        margin_px: int = 8,
        params: LayerParams | None = None,
        ilm_key: str = "ilm",
        bm_key: str = "bm",
        mask_key: str = "mask",
        source_pad_key: str | None = None,
    ) -> None:
        super().__init__(keys)
        self.detector = DetectLayers(params)
        self.margin_px = margin_px
        self.ilm_key, self.bm_key, self.mask_key = ilm_key, bm_key, mask_key
        self.source_pad_key = source_pad_key

    def __call__(self, data: Mapping[Hashable, np.ndarray]) -> dict[Hashable, np.ndarray]:
        d = dict(data)
        img = np.asarray(d[self.keys[0]])
        pad = None
        if self.source_pad_key is not None and self.source_pad_key in d and img.ndim == 3:
            pad = refilled_padding(img, d[self.source_pad_key])
        ilm, bm = self.detector(img, pad)
        d[self.ilm_key], d[self.bm_key] = ilm, bm
        d[self.mask_key] = retina_mask(ilm, bm, img.shape[-2], self.margin_px)
        return d
