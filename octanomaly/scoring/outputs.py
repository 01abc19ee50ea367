"""Files of one mapped volume: NIfTI volume/anomaly/mask, en-face PNG, B-scan overlays, JSON
summary and (for a DICOM source with a Frame of Reference) a DICOM Parametric Map.

Every file appears atomically (the report and NIfTI writers rename finished temporaries into
place; the overlay folder is built aside and renamed as a whole); no file is written over an input.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from octanomaly.errors import OctanomalyError
from octanomaly.scoring.pipeline import MapResult
from octanomaly.volume import OCTVolume

#: Suffixes after ``<stem>`` of every output (the overlay folder is ``<stem>_bscans``).
SUFFIXES: dict[str, str] = {
    "volume": "_volume.nii.gz",
    "anomaly": "_anomaly.nii.gz",
    "mask": "_mask.nii.gz",
    "enface": "_enface.png",
    "bscans": "_bscans",
    "summary": "_summary.json",
    "parametric_map": "_anomaly_pm.dcm",
}


def output_stem(path: str | Path) -> str:
    """``scan.nii.gz`` -> ``scan``, ``scan.dcm`` -> ``scan``, folder ``scans/`` -> ``scans``."""
    path = Path(path)
    name = path.name
    if path.is_dir():
        return name
    for ext in (".nii.gz", ".ome.tif", ".ome.tiff"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem or name


def _dicom_pm_possible(volume: OCTVolume) -> bool:
    src = volume.source_path
    return volume.source_format.startswith("dicom") and src is not None and src.is_file()


def _input_label(volume: OCTVolume) -> str:
    from octanomaly.report import assert_no_phi

    name = volume.source_path.name if volume.source_path else "<array>"
    try:
        assert_no_phi(name, volume.phi)
    except OctanomalyError:
        return "<name withheld: contains patient data>"
    return name


def write_outputs(
    result: MapResult,
    volume: OCTVolume,
    out_dir: str | Path,
    stem: str,
    all_bscans: bool = False,
    phi: bool = False,
    timings: dict[str, float] | None = None,
) -> dict[str, Path]:
    """Write every output of ``result`` for ``volume`` into ``out_dir``; their paths by kind.

    ``phi`` keeps patient fields in the DICOM parametric map (never in the summary).
    ``timings`` (e.g. ``read``) are added to the summary's ``timings_s``.
    """
    from octanomaly.io import nifti
    from octanomaly.io.atomic import atomic_dir
    from octanomaly.report import (
        anomalous_volume_mm3,
        save_bscan_overlay,
        save_enface,
        write_parametric_map,
        write_summary,
    )

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    protect = (volume.source_path,) if volume.source_path else ()
    paths = {k: out_dir / f"{stem}{s}" for k, s in SUFFIXES.items()}
    written: dict[str, Path] = {}
    notes: dict[str, str] = {}

    written["volume"] = nifti.write_volume(volume, paths["volume"])
    written["anomaly"] = nifti.write_map(
        result.anomaly, volume, paths["anomaly"], "octanomaly anomaly z-score"
    )
    written["mask"] = nifti.write_map(result.mask, volume, paths["mask"], "octanomaly mask")
    vmax = max(float(result.anomaly.max(initial=0.0)), 2.0 * max(result.threshold, 0.5))
    written["enface"] = save_enface(
        volume.data, result.anomaly, volume.spacing, paths["enface"],
        threshold=result.threshold, flagged=result.flagged, vmax=vmax, protect=protect,
    )  # fmt: skip
    show = range(volume.n_bscans) if all_bscans else result.flagged
    if show:
        with atomic_dir(paths["bscans"]) as tmp:
            for i in show:
                score = result.bscan_scores[i]
                title = f"B-scan {i}" + (f"  score {score:.2f}" if np.isfinite(score) else "")
                if i in result.flagged:
                    title += "  FLAGGED"
                save_bscan_overlay(
                    volume.data[i], result.anomaly[i], result.mask[i], volume.spacing[1:],
                    tmp / f"bscan_{i:04d}.png", title=title, vmax=vmax,
                )  # fmt: skip
        written["bscans"] = paths["bscans"]
    if _dicom_pm_possible(volume):
        try:
            written["parametric_map"] = write_parametric_map(
                volume.source_path, result.anomaly, paths["parametric_map"],
                keep_patient=phi, protect=protect,
            )  # fmt: skip
        except OctanomalyError as exc:
            notes["parametric_map"] = " ".join(str(exc).split())

    all_timings = {**(timings or {}), **result.timings}
    all_timings["write"] = time.perf_counter() - t_start
    summary = {
        "input": _input_label(volume),
        "shape": list(volume.shape),
        "spacing_mm": list(volume.spacing),
        "model": result.model,
        "threshold": result.threshold,
        "threshold_percentile": result.percentile,
        "bscan_threshold": result.bscan_threshold,
        "volume_score": result.volume_score,
        "bscan_scores": [float(s) if np.isfinite(s) else None for s in result.bscan_scores],
        "flagged_bscans": list(result.flagged),
        "anomalous_volume_mm3": anomalous_volume_mm3(result.mask, volume.spacing),
        "stride": result.stride,
        "n_patches": result.n_patches,
        "timings_s": {k: round(float(v), 4) for k, v in all_timings.items()},
        "outputs": {k: p.name for k, p in written.items()},
        **({"notes": notes} if notes else {}),
    }
    written["summary"] = write_summary(paths["summary"], summary, phi=volume.phi, protect=protect)
    return written
