"""Files of one mapped volume: NIfTI volume/anomaly/mask, en-face PNG, B-scan overlays, JSON
summary and (for a DICOM source with a Frame of Reference) a DICOM Parametric Map.

Safety rules (see README, "Outputs and errors"):

- The summary is the manifest (:mod:`octanomaly.io.manifest`): it lists every file of the set
  with its hash and the input it belongs to. A rerun replaces exactly its own earlier files;
  any other file with an output name (a stranger's, one edited since, or another input's) is
  refused by :func:`check_outputs` before any work, and no input of the batch is written over.
- Whole set or nothing: the files are written into a hidden temporary folder beside the
  destination and moved into place as one transaction (:func:`~octanomaly.io.atomic.
  commit_entries`); stale files of the previous set (e.g. an old ``STEM_bscans/``) go with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from octanomaly.errors import InputError, OctanomalyError
from octanomaly.scoring.pipeline import MapResult
from octanomaly.volume import OCTVolume

#: Suffixes after ``<stem>`` of every output (the overlay folder is ``<stem>_bscans``).
SUFFIXES: dict[str, str] = {
    "volume": "_volume.nii.gz",
    "anomaly": "_anomaly.nii.gz",
    "mask": "_mask.nii.gz",
    "enface": "_enface.png",
    "bscans": "_bscans",
    "regions_csv": "_regions.csv",
    "regions_labels": "_regions.nii.gz",
    "summary": "_summary.json",
    "parametric_map": "_anomaly_pm.dcm",
}
#: Summary keys not searched for patient data: the user's own file names, and the findings
#: (numbers and a fixed vocabulary such as "inner retina" that a patient name could contain).
_OWN_NAMES = ("input", "outputs", "manifest", "findings")
#: How many alternative stems (``stem-2``, ``stem-3``, ...) :func:`choose_stem` tries.
MAX_ALTERNATIVES = 99


def output_stem(path: str | Path) -> str:
    """``scan.nii.gz`` -> ``scan``, ``scan.dcm`` -> ``scan``, folder ``scans/`` -> ``scans``.

    A suffix a reader claims (:func:`octanomaly.io.volume_suffix`) goes whole; any other file
    loses its last suffix."""
    from octanomaly.io import volume_stem, volume_suffix

    path = Path(path)
    if path.is_dir():
        return path.name
    return volume_stem(path) if volume_suffix(path) else path.stem or path.name


def output_names(stem: str) -> dict[str, str]:
    """File name of every possible output of ``stem`` by kind."""
    return {k: f"{stem}{s}" for k, s in SUFFIXES.items()}


def _generator() -> str:
    from octanomaly import __version__

    return f"octanomaly {__version__}"


def _existing(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _out_dir_problem(out_dir: Path, inputs: Sequence[str | Path]) -> str | None:
    """Why outputs cannot go into ``out_dir`` (a file, inside an input folder, not writable)."""
    if _existing(out_dir) and not out_dir.is_dir():
        return f"output folder {out_dir} is not a folder"
    real_out = out_dir.resolve()
    for inp in (Path(p).resolve() for p in inputs):
        if inp.is_dir() and _inside(real_out, inp):
            return (
                f"output folder {out_dir} is inside the input folder {inp}; its outputs would "
                "become B-scans of that input"
            )
    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"output folder {out_dir}: {probe} is not a folder"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".octanomaly-probe-", dir=probe)
    except OSError as exc:
        return f"cannot write to output folder {out_dir} ({exc.strerror or type(exc).__name__})"
    os.close(fd)
    os.unlink(tmp)
    return None


def check_out_dir(out_dir: str | Path, inputs: Sequence[str | Path] = ()) -> None:
    """Refuse an output folder (``--out``) that is a file, not writable, or equal to or inside
    an input folder of ``inputs``, before any work (:class:`InputError`)."""
    problem = _out_dir_problem(Path(out_dir), inputs)
    if problem is not None:
        raise InputError(None, f"--out {out_dir}: {problem}")


def owner_of(out_dir: Path, stem: str, source: str | Path) -> str:
    """Who holds the output names of ``stem`` in ``out_dir``: ``"none"`` (no such files),
    ``"self"`` (octanomaly, for ``source``), ``"other"`` (octanomaly, for another input) or
    ``"stranger"`` (anything else)."""
    from octanomaly.io.manifest import read_manifest, source_id

    names = output_names(stem)
    if not any(_existing(out_dir / n) for n in names.values()):
        return "none"
    manifest = read_manifest(out_dir / names["summary"])
    if manifest is None:
        return "stranger"
    return "self" if manifest.get("source_id") == source_id(source) else "other"


def choose_stem(out_dir: Path, stem: str, source: str | Path, taken: set[tuple[str, str]]) -> str:
    """``stem``, or the first of ``stem-2``, ``stem-3``, ... not ``taken`` by an earlier input
    of the batch and not holding octanomaly outputs of another input; adds it to ``taken``.

    Deterministic for one batch and one folder state; a stranger's files do not move the name
    (:func:`check_outputs` refuses them instead).
    """
    key = str(Path(out_dir).resolve())
    for n in range(1, MAX_ALTERNATIVES + 2):
        cand = stem if n == 1 else f"{stem}-{n}"
        if (key, cand.casefold()) in taken:
            continue
        if n <= MAX_ALTERNATIVES and owner_of(Path(out_dir), cand, source) == "other":
            continue
        taken.add((key, cand.casefold()))
        return cand
    raise InputError(source, f"no free output name for {stem!r} in {out_dir} (choose --out)")


def check_outputs(
    out_dir: str | Path,
    stem: str,
    source: str | Path,
    inputs: Sequence[str | Path] = (),
) -> dict[str, Any] | None:
    """Refuse (:class:`InputError` naming ``source``) unless the outputs of ``stem`` may be
    written into ``out_dir``; returns the manifest of the earlier set there, if any.

    Refused: an output folder that is not a folder, not writable, or inside an input folder of
    the batch; an existing output that is an input of the batch (or holds one); an existing
    output that octanomaly did not write for ``source`` (a stranger's file, one edited since,
    or another input's result).
    """
    from octanomaly.io.manifest import is_listed, read_manifest, source_id

    out_dir = Path(out_dir)
    problem = _out_dir_problem(out_dir, inputs)
    if problem is not None:
        raise InputError(source, f"{problem} (choose --out)")
    resolved = [Path(p).resolve() for p in inputs]
    names = output_names(stem)
    manifest = read_manifest(out_dir / names["summary"])
    mine = manifest is not None and manifest.get("source_id") == source_id(source)
    for kind, name in names.items():
        path = out_dir / name
        if not _existing(path):
            continue
        real = path.resolve()
        if any(real == inp or _inside(inp, real) for inp in resolved):
            raise InputError(
                source, f"its output {name} would overwrite an input of this batch (choose --out)"
            )
        if manifest is not None and not mine:
            raise InputError(
                source,
                f"{name} exists and holds octanomaly results of another input; refusing to "
                "overwrite it (choose --out)",
            )
        if manifest is None or (kind != "summary" and not is_listed(out_dir, name, manifest)):
            raise InputError(
                source,
                f"{name} exists and was not written by octanomaly (or was changed since); "
                "refusing to overwrite it (choose --out)",
            )
    return manifest


def _dicom_pm_possible(volume: OCTVolume) -> bool:
    src = volume.source_path
    return volume.source_format.startswith("dicom") and src is not None and src.is_file()


def _note(exc: OctanomalyError, volume: OCTVolume) -> str:
    """A summary note from ``exc``: without the file's path, withheld if it holds patient data."""
    from octanomaly.report import assert_no_phi

    text = " ".join((exc.problem if isinstance(exc, InputError) else str(exc)).split())
    try:
        assert_no_phi(text, volume.phi, numbers=False)
    except OctanomalyError:
        return "not written (the reason is withheld: it contains patient data)"
    return text


def _input_label(volume: OCTVolume) -> str:
    """The input's file name, withheld if it contains a patient field (the summary stays
    PHI-free by construction: no other field comes from the patient data)."""
    from octanomaly.report import assert_no_phi

    name = volume.source_path.name if volume.source_path else "<array>"
    try:
        assert_no_phi(name, volume.phi, numbers=False)
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
    inputs: Sequence[str | Path] = (),
    findings: Any = None,
) -> dict[str, Path]:
    """Write every output of ``result`` for ``volume`` into ``out_dir`` as one set; their paths.

    ``findings`` (:class:`octanomaly.findings.VolumeFindings`) are computed from ``result`` when
    not given (regions CSV and label map, fovea, ETDRS grid on the en-face PNG and in the summary).

    The set appears whole or not at all, replacing only this input's earlier set (see the
    module docstring); :func:`check_outputs` runs first with ``inputs`` (every input of the
    batch) protected. ``phi`` keeps patient fields in the DICOM parametric map (never in the
    summary). ``timings`` (e.g. ``read``) are added to the summary's ``timings_s``.
    """
    from octanomaly.io.atomic import commit_entries

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    source = volume.source_path if volume.source_path is not None else out_dir / stem
    protect = [*inputs, *([volume.source_path] if volume.source_path else [])]
    check_outputs(out_dir, stem, source, protect)
    names = output_names(stem)
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.octanomaly-", suffix=".tmp", dir=out_dir))
    try:
        written = _write_set(
            result, volume, tmp, names, all_bscans, phi, timings, source, t_start, findings
        )
        stale = [n for k, n in names.items() if k not in written and _existing(out_dir / n)]
        commit_entries(tmp, out_dir, [names[k] for k in written], remove=stale)
        created = []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # folders made for a set that did not appear: gone again
            with contextlib.suppress(OSError):
                folder.rmdir()
    return {k: out_dir / names[k] for k in written}


def _start_overlays(
    result: MapResult, volume: OCTVolume, folder: Path, all_bscans: bool, vmax: float
) -> tuple[Any, Any] | None:
    """Start writing the B-scan overlay PNGs into ``folder`` on a background thread:
    ``(pool, future)``, or None when there are none to write."""
    from concurrent.futures import ThreadPoolExecutor

    from octanomaly.report import save_bscan_overlays
    from octanomaly.report.overlays import prepare_overlays

    show = range(volume.n_bscans) if all_bscans else result.flagged
    if not show:
        return None
    folder.mkdir()
    flagged = set(result.flagged)
    items = []
    for i in show:
        score = result.bscan_scores[i]
        title = f"B-scan {i}" + (f"  score {score:.2f}" if np.isfinite(score) else "")
        if i in flagged:
            title += "  FLAGGED"
        png = folder / f"bscan_{i:04d}.png"
        items.append((volume.data[i], result.anomaly[i], result.mask[i], png, title))
    prepare_overlays(items, volume.spacing[1:], vmax=vmax)  # matplotlib and fonts: this thread
    pool = ThreadPoolExecutor(1)
    return pool, pool.submit(save_bscan_overlays, items, volume.spacing[1:], vmax=vmax)


def _write_set(
    result: MapResult,
    volume: OCTVolume,
    tmp: Path,
    names: dict[str, str],
    all_bscans: bool,
    phi: bool,
    timings: dict[str, float] | None,
    source: Path,
    t_start: float,
    findings: Any = None,
) -> dict[str, Path]:
    """Write the files of one set into the empty folder ``tmp``; the summary (manifest) last."""
    from octanomaly.findings import volume_findings
    from octanomaly.findings.write import write_findings
    from octanomaly.io import nifti
    from octanomaly.io.atomic import write_text
    from octanomaly.io.manifest import empty_manifest, file_records, seal
    from octanomaly.report import anomalous_volume_mm3, save_enface, write_parametric_map
    from octanomaly.report.summary import summary_text

    paths = {k: tmp / n for k, n in names.items()}
    written: dict[str, Path] = {}
    notes: dict[str, str] = {}

    # the B-scan overlays (the largest part: one PNG per flagged B-scan, on threads of their
    # own) are drawn while this thread writes the NIfTI files, the findings and the en-face
    # PNG; every file is the same as when they are written one after the other
    vmax = max(float(result.anomaly.max(initial=0.0)), 2.0 * max(result.threshold, 0.5))
    overlays = _start_overlays(result, volume, paths["bscans"], all_bscans, vmax)
    try:
        written["volume"] = nifti.write_volume(volume, paths["volume"])
        written["anomaly"] = nifti.write_map(
            result.anomaly, volume, paths["anomaly"], "octanomaly anomaly z-score"
        )
        written["mask"] = nifti.write_map(result.mask, volume, paths["mask"], "octanomaly mask")
        if findings is None:
            findings = volume_findings(result, volume)
        written.update(
            write_findings(findings, volume, paths["regions_csv"], paths["regions_labels"])
        )
        written["enface"] = save_enface(
            volume.data, result.anomaly, volume.spacing, paths["enface"],
            threshold=result.threshold, flagged=result.flagged, vmax=vmax,
            thickness=findings.thickness, fovea=findings.fovea.position,
            laterality=volume.laterality,
        )  # fmt: skip
    finally:
        if overlays is not None:
            overlays[0].shutdown(wait=True)  # never leave it writing into the folder
    if overlays is not None:
        overlays[1].result()  # the overlays' error, if any
        written["bscans"] = paths["bscans"]
    if _dicom_pm_possible(volume):
        try:
            written["parametric_map"] = write_parametric_map(
                volume.source_path, result.anomaly, paths["parametric_map"], keep_patient=phi,
            )  # fmt: skip
        except OctanomalyError as exc:
            notes["parametric_map"] = _note(exc, volume)

    all_timings = {**(timings or {}), **result.timings}
    all_timings["write"] = time.perf_counter() - t_start
    files = file_records(tmp, [names[k] for k in written])
    written["summary"] = paths["summary"]
    summary = {
        "input": _input_label(volume),
        "shape": list(volume.shape),
        "spacing_mm": list(volume.spacing),
        "model": result.model,
        "threshold": result.threshold,
        "threshold_percentile": result.percentile,
        "core_threshold": result.core_threshold,
        "bscan_threshold": result.bscan_threshold,
        "volume_score": result.volume_score,
        "bscan_scores": [float(s) if np.isfinite(s) else None for s in result.bscan_scores],
        "flagged_bscans": list(result.flagged),
        "anomalous_volume_mm3": anomalous_volume_mm3(result.mask, volume.spacing),
        "stride": result.stride,
        "n_patches": result.n_patches,
        "findings": findings.summary(),
        "timings_s": {k: round(float(v), 4) for k, v in all_timings.items()},
        "outputs": {k: p.name for k, p in written.items()},
        "manifest": empty_manifest(_generator(), source, files),
        **({"notes": notes} if notes else {}),
    }
    text = summary_text(summary, phi=volume.phi, exempt=_OWN_NAMES)
    write_text(paths["summary"], seal(text))
    return written
