"""Files of one volume's findings: ``STEM_regions.csv`` and the label map ``STEM_regions.nii.gz``.

The label map has the volume's exact shape and affine (like the other overlays); voxel value
``i`` is region ``i`` of the CSV, 0 is background (uint16, or int32 past 65535 regions). Their
names are kinds ``regions_csv`` / ``regions_labels`` of :data:`octanomaly.scoring.outputs.SUFFIXES`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from octanomaly.findings.regions import VolumeFindings
from octanomaly.volume import OCTVolume


def write_findings(
    findings: VolumeFindings,
    volume: OCTVolume,
    csv_path: str | Path,
    labels_path: str | Path,
    protect: tuple[Path, ...] = (),
) -> dict[str, Path]:
    """Write the regions CSV and the label map of ``findings``; their paths by kind."""
    from octanomaly.io import nifti
    from octanomaly.io.atomic import write_text

    labels = findings.labels
    if tuple(labels.shape) != volume.shape:
        raise ValueError(f"label map {labels.shape} does not match volume {volume.shape}")
    dtype = np.uint16 if int(labels.max(initial=0)) <= np.iinfo(np.uint16).max else np.int32
    nifti.write(labels.astype(dtype, copy=False), volume.spacing, labels_path,
                description="octanomaly regions (label = region_id)", protect=protect)  # fmt: skip
    write_text(csv_path, findings.csv_text(), protect=protect)
    return {"regions_csv": Path(csv_path), "regions_labels": Path(labels_path)}
