"""Outputs of ``octanomaly map``: PNG overlays, en-face map, JSON summary, DICOM parametric map.

Every writer takes the destination ``path`` last among its positional arguments, writes
atomically (:func:`octanomaly.io.atomic.atomic_path`) and returns the path it wrote.
"""

from __future__ import annotations

from octanomaly.report.dicom_pm import write_parametric_map
from octanomaly.report.enface import enface_intensity, enface_projection, save_enface
from octanomaly.report.overlays import overlay_rgb, save_bscan_overlay, save_bscan_overlays
from octanomaly.report.summary import (
    MapSummary,
    ModelInfo,
    anomalous_volume_mm3,
    assert_no_phi,
    write_summary,
)

__all__ = [
    "MapSummary",
    "ModelInfo",
    "anomalous_volume_mm3",
    "assert_no_phi",
    "enface_intensity",
    "enface_projection",
    "overlay_rgb",
    "save_bscan_overlay",
    "save_bscan_overlays",
    "save_enface",
    "write_parametric_map",
    "write_summary",
]
