"""Regions of an anomaly mask: 3-D connected components, and the hysteresis that keeps only the
regions with a core (:func:`keep_cored_regions`). The findings describe the same regions."""

from __future__ import annotations

import cc3d
import numpy as np
from scipy import ndimage


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """3-D connected components of ``mask`` ``(n, depth, width)``: labels and their count.

    cc3d numbers components in raster order of their first voxel, as ``scipy.ndimage.label``
    does with a 3x3x3 structure (the same labels, ~8x faster on a mapped volume). Labelled
    within the mask's bounding box (the same order of first voxels), and stored as uint16 when
    the count allows (int32 otherwise): a retina-wide mask of a 256 x 1024 x 512 volume costs
    0.25 GiB of labels instead of 0.5 plus cc3d's temporaries over the whole volume.
    """
    mask = np.asarray(mask)
    sub, n, box = _label_box(mask)
    labels = np.zeros(mask.shape, np.uint16 if n <= np.iinfo(np.uint16).max else np.int32)
    if box is not None:
        labels[box] = sub  # n < 2**31: the same values
    return labels, n


def _label_box(mask: np.ndarray) -> tuple[np.ndarray | None, int, tuple[slice, ...] | None]:
    """Labels of ``mask`` within its bounding box: ``(labels of the box, count, box)``."""
    box = _bounding_box(mask)
    if box is None:
        return None, 0, None
    crop = mask[box].astype(bool, copy=False)
    try:
        sub, n = cc3d.connected_components(
            crop, connectivity=26, return_N=True, out_dtype=np.uint32
        )
    except RuntimeError:  # cc3d 4.1 under-sizes its union-find for some odd shapes
        sub, n = ndimage.label(crop, structure=np.ones((3, 3, 3), bool))
    return sub, int(n), box


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every nonzero voxel of ``mask`` (None: empty)."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=other))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def core_percentile(percentile: float) -> float:
    """The healthy percentile a region's core must pass: ten times rarer than the mask's
    (99 -> 99.9)."""
    return 100.0 - (100.0 - float(percentile)) / 10.0


def keep_cored_regions(mask: np.ndarray, anomaly: np.ndarray, core: float) -> np.ndarray:
    """Hysteresis in 3-D, in place: keep the regions of ``mask`` (:func:`label_regions`) that
    hold a voxel of ``anomaly`` above ``core``; the others are cleared. Works within the
    mask's bounding box (nothing outside it is set)."""
    sub, n, box = _label_box(mask)
    if box is None:
        return mask
    keep = np.zeros(n + 1, dtype=bool)
    keep[sub[anomaly[box] > core]] = True
    keep[0] = False
    if not keep[1:].all():
        view = mask[box]  # a view: cleared in place
        np.multiply(view, keep[sub], out=view)
    return mask
