"""Regions of an anomaly mask: 3-D connected components, and the hysteresis that keeps only the
regions with a core (:func:`keep_cored_regions`). The findings describe the same regions."""

from __future__ import annotations

import cc3d
import numpy as np


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """3-D connected components of ``mask`` ``(n, depth, width)``: int32 labels and their count.

    cc3d numbers components in raster order of their first voxel, as ``scipy.ndimage.label``
    does with a 3x3x3 structure (the same labels, ~8x faster on a mapped volume).
    """
    labels, n = cc3d.connected_components(
        np.asarray(mask, dtype=bool), connectivity=26, return_N=True, out_dtype=np.uint32
    )
    return labels.view(np.int32), int(n)  # n < 2**31: the same values, no copy


def core_percentile(percentile: float) -> float:
    """The healthy percentile a region's core must pass: ten times rarer than the mask's
    (99 -> 99.9)."""
    return 100.0 - (100.0 - float(percentile)) / 10.0


def keep_cored_regions(mask: np.ndarray, anomaly: np.ndarray, core: float) -> np.ndarray:
    """Hysteresis in 3-D, in place: keep the regions of ``mask`` (:func:`label_regions`) that
    hold a voxel of ``anomaly`` above ``core``; the others are cleared."""
    labels, n = label_regions(mask)
    keep = np.zeros(n + 1, dtype=bool)
    keep[labels[anomaly > core]] = True
    keep[0] = False
    if not keep[1:].all():
        np.multiply(mask, keep[labels], out=mask)
    return mask
