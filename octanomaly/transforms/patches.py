"""Patches: random training patches inside the retina mask, a scoring grid with coordinates,
and :func:`stitch` that averages patch values back into B-scan maps.

Array transforms work on stacks of B-scans ``(n, depth, width)`` with a bool retina mask of
the same shape; patches come out as ``(N, 1, P, P)`` float32 and coordinates as ``(N, 3)``
int64 rows ``(bscan, row, col)`` of each patch's top-left corner.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.transforms import MapTransform, Randomizable, Transform


def _starts(size: int, patch: int, stride: int) -> np.ndarray:
    """Top-left positions ``0, stride, ...`` plus the last one flush with the border."""
    if size <= patch:
        return np.zeros(1, dtype=np.int64)
    s = np.arange(0, size - patch + 1, stride, dtype=np.int64)
    return s if s[-1] == size - patch else np.append(s, size - patch)


def coverage(mask: np.ndarray, patch: int) -> np.ndarray:
    """Fraction of mask pixels in every ``patch`` x ``patch`` window: ``(n, d-P+1, w-P+1)``."""
    m = np.asarray(mask, dtype=np.float64)
    n, d, w = m.shape
    ii = np.zeros((n, d + 1, w + 1))
    ii[:, 1:, 1:] = m.cumsum(1).cumsum(2)
    s = ii[:, patch:, patch:] - ii[:, :-patch, patch:] - ii[:, patch:, :-patch]
    s = s + ii[:, :-patch, :-patch]
    return s / float(patch * patch)


def pad_to_patch(img: np.ndarray, patch: int, fill: float) -> np.ndarray:
    """Pad ``(n, d, w)`` at the bottom/right so both sizes are at least ``patch``."""
    n, d, w = img.shape
    if d >= patch and w >= patch:
        return img
    return np.pad(
        img, ((0, 0), (0, max(0, patch - d)), (0, max(0, patch - w))), constant_values=fill
    )


def extract(img: np.ndarray, coords: np.ndarray, patch: int) -> np.ndarray:
    """Patches ``(N, 1, P, P)`` float32 at top-left ``coords`` ``(N, 3)`` of ``img``."""
    img = np.asarray(img, dtype=np.float32)
    if len(coords) == 0:
        return np.zeros((0, 1, patch, patch), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(img, (patch, patch), axis=(1, 2))
    return view[coords[:, 0], coords[:, 1], coords[:, 2]][:, None].copy()


def grid_coords(mask: np.ndarray, patch: int = 64, stride: int = 32) -> np.ndarray:
    """``(N, 3)`` grid positions whose window holds at least one retina pixel."""
    mask = pad_to_patch(np.asarray(mask, dtype=bool), patch, False)
    n, d, w = mask.shape
    rows, cols = _starts(d, patch, stride), _starts(w, patch, stride)
    # mask pixels per window from an integer integral image, read at the grid positions only
    ii = np.zeros((n, d + 1, w + 1), dtype=np.int32)
    np.cumsum(np.cumsum(mask, axis=1, dtype=np.int32), axis=2, out=ii[:, 1:, 1:])
    r0, c0 = rows[:, None], cols[None, :]
    count = ii[:, r0 + patch, c0 + patch] - ii[:, r0, c0 + patch] - ii[:, r0 + patch, c0]
    count += ii[:, r0, c0]
    b, r, c = np.meshgrid(np.arange(n), rows, cols, indexing="ij")
    keep = count > 0
    return np.stack([b[keep], r[keep], c[keep]], axis=1).astype(np.int64)


def stitch(
    patch_values: np.ndarray,
    coords: np.ndarray,
    shape: tuple[int, int, int],
    patch_size: int = 64,
    fill: float = 0.0,
) -> np.ndarray:
    """Average per-patch values (``(N,)`` scalars or ``(N, [1,] P, P)`` maps) into ``shape``.

    Pixels no patch covers get ``fill`` (default 0, so maps stay NaN-free). Accumulated in
    float64 one B-scan at a time (the patches of a B-scan in their given order), so the
    temporaries are those of one B-scan; float32 out.
    """
    n, d, w = shape
    vals = np.asarray(patch_values, dtype=np.float64)
    if vals.ndim == 4:
        vals = vals[:, 0]
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
    dp, wp = max(d, patch_size), max(w, patch_size)
    out = np.full((n, d, w), fill, dtype=np.float32)
    acc, cnt, avg = np.zeros((dp, wp)), np.zeros((dp, wp)), np.empty((dp, wp))
    order = np.argsort(coords[:, 0], kind="stable")
    bounds = np.searchsorted(coords[order, 0], np.arange(n + 1))
    for b in range(n):
        ks = order[bounds[b] : bounds[b + 1]]
        if ks.size == 0:
            continue
        acc.fill(0.0)
        cnt.fill(0.0)
        for k in ks:
            r, c = coords[k, 1], coords[k, 2]
            acc[r : r + patch_size, c : c + patch_size] += vals[k]
            cnt[r : r + patch_size, c : c + patch_size] += 1
        avg.fill(fill)
        np.divide(acc, cnt, out=avg, where=cnt > 0)
        out[b] = avg[:d, :w]
    return out


class GridPatches(Transform):
    """Array transform: ``(img, mask)`` -> ``(patches (N,1,P,P), coords (N,3))`` on a grid."""

    def __init__(self, patch_size: int = 64, stride: int = 32) -> None:
        self.patch_size, self.stride = patch_size, stride

    def __call__(self, img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img = np.asarray(img)
        coords = grid_coords(mask, self.patch_size, self.stride)
        padded = pad_to_patch(img, self.patch_size, -1.0)
        return extract(padded, coords, self.patch_size), coords


class RandRetinaPatches(Randomizable, Transform):
    """Array transform: ``num_samples`` random patches with retina coverage >= ``min_coverage``.

    Candidate top-left corners lie on a grid of ``stride``; returns ``(patches, coords)``.
    With no valid position the result is empty (``(0, 1, P, P)``), never an error.
    """

    def __init__(
        self,
        num_samples: int = 64,
        patch_size: int = 64,
        min_coverage: float = 0.5,
        stride: int = 1,
    ) -> None:
        self.num_samples, self.patch_size = num_samples, patch_size
        self.min_coverage, self.stride = min_coverage, stride
        self._pick: np.ndarray | None = None

    def randomize(self, n_valid: int) -> None:
        size = self.num_samples if n_valid else 0
        self._pick = self.R.randint(0, max(n_valid, 1), size=size)

    def __call__(self, img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = valid_positions(mask, self.patch_size, self.min_coverage, self.stride)
        self.randomize(len(valid))
        coords = valid[self._pick]
        padded = pad_to_patch(np.asarray(img), self.patch_size, -1.0)
        return extract(padded, coords, self.patch_size), coords


def valid_positions(
    mask: np.ndarray, patch: int = 64, min_coverage: float = 0.5, stride: int = 1
) -> np.ndarray:
    """``(N, 3)`` top-left corners on a ``stride`` grid with retina coverage >= ``min_coverage``.

    A window needs at least one retina pixel even when ``min_coverage`` is 0.
    """
    mask = np.asarray(mask, dtype=bool)
    cov = coverage(pad_to_patch(mask, patch, False), patch)[:, ::stride, ::stride]
    b, r, c = np.nonzero((cov >= min_coverage - 1e-9) & (cov > 0))
    return np.stack([b, r * stride, c * stride], axis=1).astype(np.int64)


class _Patchesd(MapTransform):
    """Dictionary form of a ``(img, mask) -> (patches, coords)`` array transform ``op``."""

    op: Transform

    def __init__(self, keys: str, mask_key: str, patches_key: str, coords_key: str) -> None:
        MapTransform.__init__(self, keys)
        self.mask_key, self.patches_key, self.coords_key = mask_key, patches_key, coords_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d[self.patches_key], d[self.coords_key] = self.op(d[self.keys[0]], d[self.mask_key])
        return d


class GridPatchesd(_Patchesd):
    """Dictionary form of :class:`GridPatches`: adds ``patches`` and ``coords``."""

    def __init__(
        self,
        keys: str = "image",
        mask_key: str = "mask",
        patch_size: int = 64,
        stride: int = 32,
        patches_key: str = "patches",
        coords_key: str = "coords",
    ) -> None:
        super().__init__(keys, mask_key, patches_key, coords_key)
        self.op = GridPatches(patch_size, stride)


class RandRetinaPatchesd(Randomizable, _Patchesd):
    """Dictionary form of :class:`RandRetinaPatches`: adds ``patches`` and ``coords``."""

    def __init__(
        self,
        keys: str = "image",
        mask_key: str = "mask",
        num_samples: int = 64,
        patch_size: int = 64,
        min_coverage: float = 0.5,
        stride: int = 1,
        patches_key: str = "patches",
        coords_key: str = "coords",
    ) -> None:
        _Patchesd.__init__(self, keys, mask_key, patches_key, coords_key)
        self.op = RandRetinaPatches(num_samples, patch_size, min_coverage, stride)

    def set_random_state(self, seed: int | None = None, state: Any = None) -> RandRetinaPatchesd:
        super().set_random_state(seed, state)
        self.op.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:  # the array transform draws
        pass
