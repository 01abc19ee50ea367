"""Findings: regions of anomaly with their descriptors, fovea and ETDRS grid, cohort clustering.

``volume_findings(result, volume)`` turns one volume's :class:`~octanomaly.scoring.MapResult`
into regions and ETDRS statistics; ``octanomaly.findings.cohort`` maps many volumes and
clusters their regions. Sits at the report level: it imports io, transforms, models, scoring.
"""

from __future__ import annotations

from octanomaly.findings.etdrs import Fovea, find_fovea, sector_map, thickness_map
from octanomaly.findings.regions import (
    COLUMNS,
    VolumeFindings,
    find_regions,
    label_regions,
    volume_findings,
    volume_layers,
)

__all__ = [
    "COLUMNS",
    "Fovea",
    "VolumeFindings",
    "find_fovea",
    "find_regions",
    "label_regions",
    "sector_map",
    "thickness_map",
    "volume_findings",
    "volume_layers",
]
