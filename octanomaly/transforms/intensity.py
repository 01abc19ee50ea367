"""Intensity: export padding, log mapping of linear data, speckle median, percentile window.

Array transforms (``monai.transforms.Transform``) and dictionary twins ending in ``d``. The
window maps the ``lower``..``upper`` percentile of a whole volume to [-1, 1] (clipped), the
scale the GANs see, identical at training and scoring time.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.transforms import MapTransform, Transform
from scipy import ndimage


def padding_mask(bscans: np.ndarray, min_border: int = 16, min_area: int = 200) -> np.ndarray:
    """True on uniform saturated export padding touching the image border (Kermany wedges).

    ``bscans`` is ``(n, depth, width)``. Pixels within 10 % of the maximum, cleaned by a 5x5
    closing and a 3x3 opening, whose connected region touches the border on ``min_border``
    pixels, covers ``min_area`` pixels and is >= 80 % saturated, counts as padding.
    """
    from octanomaly.transforms._threads import per_bscan

    x = np.asarray(bscans)
    return per_bscan(lambda xc: _padding_mask(xc, min_border, min_area), x)


def _padding_mask(x: np.ndarray, min_border: int, min_area: int) -> np.ndarray:
    """:func:`padding_mask` of the B-scans ``x``, one after the other."""
    out = np.zeros(x.shape, dtype=bool)
    for i, img in enumerate(x):
        hi, lo = float(img.max()), float(img.min())
        if hi - lo <= 0:
            continue
        raw = img >= hi - 0.1 * (hi - lo)
        if not _may_hold_padding(raw, min_border, min_area):
            continue
        # binary morphology with square elements as separable max/min filters (the same
        # result as binary_dilation/erosion; the border counts as 0 for dilation, 1 for
        # erosion): 5x5 closing with the border kept, then a 3x3 opening
        sat = ndimage.maximum_filter(raw.view(np.uint8), size=5, mode="constant", cval=0)
        sat = ndimage.minimum_filter(sat, size=5, mode="constant", cval=1)
        sat = ndimage.minimum_filter(sat, size=3, mode="constant", cval=1)
        sat = ndimage.maximum_filter(sat, size=3, mode="constant", cval=0).view(bool)
        if not sat.any():
            continue
        lab, n = ndimage.label(sat)
        border = np.zeros_like(sat)
        border[[0, -1], :] = True
        border[:, [0, -1]] = True
        on_border = np.bincount(lab[border], minlength=n + 1)
        area = np.bincount(lab.ravel(), minlength=n + 1)
        solid = np.bincount(lab.ravel(), weights=raw.ravel(), minlength=n + 1)
        keep = (on_border >= min_border) & (area >= min_area) & (solid >= 0.8 * area)
        keep[0] = False
        if keep.any():
            out[i] = ndimage.binary_dilation(keep[lab], iterations=3)
    return out


def _may_hold_padding(raw: np.ndarray, min_border: int, min_area: int) -> bool:
    """False when no region of :func:`padding_mask` can qualify (a cheap, exact pre-check).

    The cleaned mask lies inside the 5x5 dilation of ``raw`` (closing, then an opening, which
    only removes), so a qualifying region needs >= ``0.8 * min_area`` saturated pixels and
    >= ``min_border`` border pixels within 2 px of a saturated pixel in the outer 3-px frame.
    """
    if raw.sum() < 0.8 * min_area:
        return False
    strips = (
        raw[:3].any(axis=0),
        raw[-3:].any(axis=0),
        raw[:, :3].any(axis=1),
        raw[:, -3:].any(axis=1),
    )
    near = sum(int(ndimage.maximum_filter1d(s.view(np.uint8), 5).sum()) for s in strips)
    return near >= min_border


def fill_padding(bscans: np.ndarray, pad: np.ndarray) -> np.ndarray:
    """Copy of ``bscans`` with padded pixels replaced by the nearest non-padded pixel."""
    x = np.array(bscans, copy=True)
    for i in np.nonzero(pad.reshape(len(pad), -1).any(axis=1))[0]:
        if pad[i].all():
            continue
        idx = ndimage.distance_transform_edt(pad[i], return_distances=False, return_indices=True)
        x[i] = x[i][tuple(idx)]
    return x


def log_map(x: np.ndarray) -> np.ndarray:
    """``log`` of linear OCT intensity (vendor float data), offset by a small positive floor."""
    x = np.asarray(x, dtype=np.float32)
    pos = x[x > 0]
    floor = float(np.percentile(pos, 1)) if pos.size else 1.0
    return np.log(np.maximum(x, 0) + max(floor, 1e-12)).astype(np.float32)


def percentile_window(
    x: np.ndarray,
    lower: float = 1.0,
    upper: float = 99.5,
    valid: np.ndarray | None = None,
    in_place: bool = False,
) -> np.ndarray:
    """Map the ``lower``..``upper`` percentile of ``x`` (over ``valid`` pixels) to [-1, 1];
    ``in_place``: into ``x`` itself when it is float32 (the same values, no second array)."""
    x = np.asarray(x, dtype=np.float32)
    lo, hi = np.percentile(_every_kth_valid(x, valid), [lower, upper])
    out = x if in_place and x.flags.writeable else np.empty(x.shape, dtype=np.float32)
    if not np.isfinite(hi - lo) or hi - lo <= 0:
        out.fill(-1.0)
        return out
    from octanomaly.transforms._threads import per_range

    scale = np.float32(2.0 / (hi - lo))

    def window(b: slice | tuple) -> None:
        # in place, chunk by chunk: the values of ``clip((x - lo) * scale - 1, -1, 1)``
        y = x[b] - lo
        y *= scale
        y -= 1.0
        out[b] = np.clip(y, -1.0, 1.0, out=y)

    if x.ndim == 3:
        per_range(window, len(x), per_chunk=16)
    else:
        window(())
    return out


def _every_kth_valid(x: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Every k-th of ``x``'s ``valid`` pixels in raster order (all pixels when none is valid),
    k chosen for ~2 million values: ``x[valid][::k]``, gathered B-scan by B-scan so the valid
    pixels are never copied all at once."""
    if valid is None or not valid.any():
        return x.ravel()[:: max(1, x.size // 2_000_000)]
    valid = np.asarray(valid, dtype=bool)
    step = max(1, int(np.count_nonzero(valid)) // 2_000_000)
    if x.ndim < 3:
        return x[valid][::step]
    parts, seen = [], 0
    for xb, vb in zip(x, valid, strict=True):
        vals = xb[vb]
        parts.append(vals[(-seen) % step :: step].copy())  # a view would keep all of vals
        seen += vals.size
    return np.concatenate(parts)


def median_denoise(x: np.ndarray, size: int = 3) -> np.ndarray:
    """Per-B-scan 2-D median filter of ``size`` x ``size`` (speckle); ``size <= 1`` is a no-op."""
    if size <= 1:
        return np.asarray(x)
    x = np.asarray(x)
    return ndimage.median_filter(x, size=(1, size, size) if x.ndim == 3 else size)


class LogIntensity(Transform):
    """Array transform: :func:`log_map`."""

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return log_map(img)


class MedianDenoise(Transform):
    """Array transform: :func:`median_denoise` with a fixed ``size``."""

    def __init__(self, size: int = 3) -> None:
        self.size = size

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return median_denoise(img, self.size)


class FillPadding(Transform):
    """Array transform: ``img`` -> ``(filled, pad)``; :func:`padding_mask`, then
    :func:`fill_padding` (padded pixels take the nearest tissue value) when there is any."""

    def __call__(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img = np.asarray(img)
        pad = padding_mask(img)
        return (fill_padding(img, pad) if pad.any() else img), pad


class PercentileWindow(Transform):
    """Array transform: :func:`percentile_window` to [-1, 1], ignoring export padding.

    The padding is ``pad`` when given (e.g. from :class:`FillPadding`, whose filled image no
    longer shows it), else detected on ``img`` when ``ignore_padding``.
    """

    def __init__(
        self,
        lower: float = 1.0,
        upper: float = 99.5,
        ignore_padding: bool = True,
        in_place: bool = False,
    ):
        self.lower, self.upper, self.ignore_padding = lower, upper, ignore_padding
        self.in_place = in_place

    def __call__(self, img: np.ndarray, pad: np.ndarray | None = None) -> np.ndarray:
        img = np.asarray(img)
        if pad is None and self.ignore_padding and img.ndim == 3:
            pad = padding_mask(img)
        valid = None if pad is None else ~pad
        return percentile_window(img, self.lower, self.upper, valid, self.in_place)


class _Mapd(MapTransform):
    """Apply an array transform to every key."""

    transform: Transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class LogIntensityd(_Mapd):
    """Dictionary twin of :class:`LogIntensity`."""

    def __init__(self, keys: str | Sequence[str], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = LogIntensity()


class MedianDenoised(_Mapd):
    """Dictionary twin of :class:`MedianDenoise`."""

    def __init__(
        self, keys: str | Sequence[str], size: int = 3, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = MedianDenoise(size)


class FillPaddingd(MapTransform):
    """Dictionary twin of :class:`FillPadding`: fills ``keys``, their padding goes to
    ``pad_key`` (one key; the last one's padding with several)."""

    def __init__(
        self, keys: str | Sequence[str], pad_key: str = "pad", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform, self.pad_key = FillPadding(), pad_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key], d[self.pad_key] = self.transform(d[key])
        return d


class PercentileWindowd(MapTransform):
    """Dictionary twin of :class:`PercentileWindow`; the padding mask is read from ``pad_key``
    when the data holds it (as :class:`FillPaddingd` leaves it), else detected. ``in_place``
    only where the image is the pipeline's own array (after
    :class:`~octanomaly.transforms.preprocess.OwnFloat32d`'s copy)."""

    def __init__(
        self,
        keys: str | Sequence[str],
        lower: float = 1.0,
        upper: float = 99.5,
        ignore_padding: bool = True,
        pad_key: str = "pad",
        allow_missing_keys: bool = False,
        in_place: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = PercentileWindow(lower, upper, ignore_padding, in_place)
        self.pad_key = pad_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        pad = d.get(self.pad_key) if self.transform.ignore_padding else None
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], pad)
        return d
