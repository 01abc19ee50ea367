"""Flattening (integer shift of each A-scan so BM lies on one row) and resampling, both with
exact inverses so that a map made in processed space returns to the original geometry.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, Transform

from octanomaly.transforms._threads import per_range


def target_row(row: float, depth: int) -> int:
    """The row BM is flattened to: ``row`` as a fraction of ``depth`` when below 1, else a row."""
    return int(round(row * depth)) if row < 1 else int(row)


def flatten_shifts(bm: np.ndarray, target_row: int) -> np.ndarray:
    """Integer shifts ``(n, width)`` moving BM to ``target_row``; gaps interpolated, NaN -> 0."""
    bm = np.atleast_2d(np.asarray(bm, dtype=np.float64))
    out = np.zeros(bm.shape, dtype=np.int64)
    cols = np.arange(bm.shape[1])
    for i, row in enumerate(bm):
        ok = np.isfinite(row)
        if not ok.any():
            continue
        filled = np.interp(cols, cols[ok], row[ok])
        out[i] = target_row - np.round(filled).astype(np.int64)
    return out


def shift_columns(x: np.ndarray, shifts: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Move column ``(b, :, c)`` of ``x`` (n, depth, width) down by ``shifts[b, c]`` rows."""
    x = np.asarray(x)
    n, depth, width = x.shape
    rows = np.arange(depth)[None, :, None] - shifts[:, None, :]
    inside = (rows >= 0) & (rows < depth)
    src = np.take_along_axis(x, np.clip(rows, 0, depth - 1), axis=1)
    return np.where(inside, src, np.asarray(fill, dtype=x.dtype)).astype(x.dtype, copy=False)


class Flatten(Transform):
    """Array transform: shift A-scans by ``shifts`` (from :func:`flatten_shifts`)."""

    def __init__(self, fill: float = -1.0) -> None:
        self.fill = fill

    def __call__(self, img: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        return shift_columns(img, shifts, self.fill)


class Unflatten(Transform):
    """Array transform: exact inverse of :class:`Flatten` for the same ``shifts``."""

    def __init__(self, fill: float = 0.0) -> None:
        self.fill = fill

    def __call__(self, img: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        return shift_columns(img, -np.asarray(shifts), self.fill)


class Flattend(MapTransform):
    """Dictionary form: shifts from ``bm_key`` (rows ``(n, width)``), applied to ``keys``.

    ``target_row`` is a fraction of the depth when below 1, else a row (:func:`target_row`).
    The shifts go to ``shifts_key`` so :meth:`inverse` (:class:`Unflattend`) can undo them;
    boolean keys (masks) are padded with False, others with ``fill``. The boundary rows in
    ``bm_key`` and ``rows_keys`` move with the image (BM then lies on the target row).
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        bm_key: str = "bm",
        target_row: float = 0.7,
        fill: float = -1.0,
        shifts_key: str = "flatten_shifts",
        rows_keys: Sequence[str] = (),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.bm_key, self.target_row, self.fill = bm_key, target_row, fill
        self.shifts_key, self.rows_keys = shifts_key, tuple(rows_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        depth = np.asarray(d[self.first_key(d)]).shape[-2]
        shifts = flatten_shifts(d[self.bm_key], target_row(self.target_row, depth))
        for key in self.key_iterator(d):
            arr = np.asarray(d[key])
            d[key] = shift_columns(arr, shifts, False if arr.dtype == bool else self.fill)
        for key in (self.bm_key, *self.rows_keys):
            d[key] = np.asarray(d[key]) + shifts
        d[self.shifts_key] = shifts
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Undo the shifts on ``keys`` and the rows (pixels shifted in are 0 / False)."""
        return Unflattend(self.keys, self.shifts_key, rows_keys=(self.bm_key, *self.rows_keys))(
            data
        )


class Unflattend(MapTransform):
    """Dictionary form of :class:`Unflatten` reading shifts from ``shifts_key``; rows in
    ``rows_keys`` move back too."""

    def __init__(
        self,
        keys: str | Sequence[str],
        shifts_key: str = "flatten_shifts",
        fill: float = 0.0,
        rows_keys: Sequence[str] = (),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.shifts_key, self.fill, self.rows_keys = shifts_key, fill, tuple(rows_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        shifts = np.asarray(d[self.shifts_key])
        for key in self.key_iterator(d):
            arr = np.asarray(d[key])
            d[key] = shift_columns(arr, -shifts, False if arr.dtype == bool else self.fill)
        for key in self.rows_keys:
            if key in d:
                d[key] = np.asarray(d[key]) - shifts
        return d


def resample_shape(
    shape: tuple[int, int], spacing: tuple[float, float], target: tuple[float, float]
) -> tuple[int, int]:
    """``(depth, width)`` after resampling from ``spacing`` to ``target`` (axial, lateral) mm."""
    d = max(1, int(round(shape[0] * spacing[0] / target[0])))
    w = max(1, int(round(shape[1] * spacing[1] / target[1])))
    return d, w


def resize_bscans(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize every B-scan of ``x`` (n, depth, width) to ``shape`` (depth, width) exactly.

    Bilinear on pixel centres with edge clamping (torch ``interpolate``, ``align_corners=False``;
    the same values as ``scipy.ndimage.zoom(order=1, grid_mode=True, mode="nearest")``, ~15x
    faster). Boolean masks are resized as fractions and thresholded at 0.5. Chunks of B-scans
    run on threads.
    """
    x = np.asarray(x)
    if tuple(x.shape[1:]) == tuple(shape):
        return x
    out = np.empty((len(x), *shape), dtype=bool if x.dtype == bool else np.float32)

    def part(b: slice) -> None:  # ~16 B-scans at a time: float32 copies of a chunk only
        t = torch.from_numpy(np.ascontiguousarray(x[b], dtype=np.float32))[:, None]
        r = F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[:, 0]
        if out.dtype == bool:
            np.greater_equal(r.numpy(), 0.5, out=out[b])
        else:
            out[b] = r.numpy()

    per_range(part, len(x), per_chunk=16)
    return out


def rows_to_grid(rows: np.ndarray, old: tuple[int, int], new: tuple[int, int]) -> np.ndarray:
    """Boundary rows ``(n, old_w)`` in an ``old`` (depth, width) grid -> the ``new`` grid.

    Pixel-centre mapping as :func:`resize_bscans`; columns far from any finite row stay NaN.
    """
    if old == new:
        return rows
    fz, fx = new[0] / old[0], new[1] / old[1]
    src_cols = (np.arange(new[1]) + 0.5) / fx - 0.5
    cols = np.arange(old[1])
    out = np.full((rows.shape[0], new[1]), np.nan)
    for i, r in enumerate(rows):
        ok = np.isfinite(r)
        if ok.sum() >= 2:
            v = np.interp(src_cols, cols[ok], r[ok])
            far = np.interp(src_cols, cols, (~ok).astype(float)) > 0.5
            out[i] = np.where(far, np.nan, (v + 0.5) * fz - 0.5)
    return out


class Resample(Transform):
    """Array transform: B-scans from ``spacing`` to ``target`` (axial, lateral) mm pixels."""

    def __init__(self, spacing: tuple[float, float], target: tuple[float, float]) -> None:
        self.spacing, self.target = spacing, target

    def __call__(self, img: np.ndarray) -> np.ndarray:
        img = np.asarray(img)
        return resize_bscans(img, resample_shape(img.shape[1:], self.spacing, self.target))


class Resampled(MapTransform):
    """Dictionary form of :class:`Resample`, invertible for maps.

    The pixel spacing is read from ``spacing_key`` (``(bscan, axial, lateral)`` mm) and set to
    ``target``; the input shape ``(n, depth, width)`` is kept in ``shape_key`` (unless already
    there). Boundary rows in ``rows_keys`` (``(n, width)``) move to the new grid
    (:func:`rows_to_grid`). :meth:`inverse` resizes ``keys`` back to ``shape_key`` exactly.
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        target: tuple[float, float],
        spacing_key: str = "spacing",
        shape_key: str = "original_shape",
        rows_keys: Sequence[str] = (),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.target, self.spacing_key, self.shape_key = tuple(target), spacing_key, shape_key
        self.rows_keys = tuple(rows_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        shape = tuple(np.asarray(d[self.first_key(d)]).shape)
        d.setdefault(self.shape_key, shape)
        spacing = tuple(d[self.spacing_key])
        transform = Resample(spacing[-2:], self.target)
        for key in self.key_iterator(d):
            d[key] = transform(d[key])
        new = resample_shape(shape[-2:], spacing[-2:], self.target)
        for key in self.rows_keys:
            d[key] = rows_to_grid(np.asarray(d[key]), shape[-2:], new)
        d[self.spacing_key] = (*spacing[:-2], *self.target)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """``keys`` resized back to the ``(depth, width)`` stored in ``shape_key``."""
        d = dict(data)
        shape = tuple(d[self.shape_key])[-2:]
        for key in self.key_iterator(d):
            d[key] = resize_bscans(d[key], shape)
        return d
