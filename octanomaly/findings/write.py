"""Files of one volume's findings: ``STEM_regions.csv`` and the label map ``STEM_regions.nii.gz``.

The label map has the volume's exact shape and affine (like the other overlays); voxel value
``i`` is region ``i`` of the CSV, 0 is background (uint16, or int32 past 65535 regions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from octanomaly.findings.regions import VolumeFindings
from octanomaly.volume import OCTVolume

#: Suffixes after ``<stem>`` of the findings files.
FINDINGS_SUFFIXES: dict[str, str] = {
    "regions_csv": "_regions.csv",
    "regions_labels": "_regions.nii.gz",
}


def write_findings(
    findings: VolumeFindings,
    volume: OCTVolume,
    out_dir: str | Path,
    stem: str,
    protect: tuple[Path, ...] = (),
) -> dict[str, Path]:
    """Write the regions CSV and label map of ``findings`` into ``out_dir``; paths by kind."""
    from octanomaly.io import nifti
    from octanomaly.io.atomic import write_text

    out_dir = Path(out_dir)
    paths = {k: out_dir / f"{stem}{s}" for k, s in FINDINGS_SUFFIXES.items()}
    labels = findings.labels
    if tuple(labels.shape) != volume.shape:
        raise ValueError(f"label map {labels.shape} does not match volume {volume.shape}")
    dtype = np.uint16 if int(labels.max(initial=0)) <= np.iinfo(np.uint16).max else np.int32
    nifti.write(labels.astype(dtype), volume.spacing, paths["regions_labels"],
                description="octanomaly regions (label = region_id)", protect=protect)  # fmt: skip
    write_text(paths["regions_csv"], findings.csv_text(), protect=protect)
    return paths
