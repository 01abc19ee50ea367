"""The anomaly map as a DICOM Parametric Map (highdicom) referencing its source OPT instance.

highdicom takes the multi-frame Ophthalmic Tomography source as it is: the map inherits its
Frame of Reference, pixel measures, plane orientation and per-frame plane positions, and each
map frame references its source frame (``DerivationImageSequence`` -> ``SourceImageSequence``
with ``ReferencedFrameNumber``). highdicom orders the map's frames by plane position (for an
octanomaly OPT that is the reverse of the B-scan order); readers must follow the per-frame
references or positions, never assume frame k = B-scan k. Values are float32 z-scores with an
identity Real World Value Mapping (unit: no units).

Patient and study identifiers of the source are blanked in the map unless ``keep_patient=True``
(the CLI's ``--phi``); only then can a PACS file it under the right patient.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from octanomaly.errors import InputError, OctanomalyError
from octanomaly.io.atomic import atomic_path
from octanomaly.io.dicom import PHI_KEYWORDS, frame_order, laterality

#: Content label of the map (DICOM CS: upper case, at most 16 characters).
CONTENT_LABEL: str = "ANOMALY"
#: Label of the real world value mapping (at most 16 characters).
LUT_LABEL: str = "ZSCORE"
#: General Series Laterality (R/L) from the reader's OD/OS; empty (type 2C) when unknown.
_SERIES_LATERALITY = {"OD": "R", "OS": "L"}
#: Identifying attributes the map must carry (DICOM type 2): emptied unless ``keep_patient``.
_TYPE2_IDENTIFIERS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
)


def _read_source(source_path: Path):  # -> pydicom.Dataset
    import pydicom
    from pydicom.errors import InvalidDicomError

    if source_path.is_dir():
        raise OctanomalyError(
            f"{source_path}: a parametric map needs one multi-frame DICOM source file, "
            "not a folder of single-frame images"
        )
    try:
        return pydicom.dcmread(source_path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InputError(source_path, f"not a readable DICOM file ({exc})") from exc


def _identifier_keywords() -> tuple[str, ...]:
    return tuple(dict.fromkeys((*_TYPE2_IDENTIFIERS, *PHI_KEYWORDS)))


def _short_ds(value: float) -> str:
    """``value`` in at most 16 characters, trailing zeros dropped (4.2299999999999995 -> 4.23)."""
    from pydicom.valuerep import format_number_as_ds

    text = format_number_as_ds(value)
    if "." in text and "e" not in text.lower():
        text = text.rstrip("0").rstrip(".")
    return text


def _fit_decimal_strings(ds) -> None:  # ds: pydicom.Dataset
    """Rewrite every DS value longer than the 16 characters DICOM allows (e.g. a source's raw
    float reprs copied into the map) as the closest number that fits."""
    from pydicom.valuerep import DSfloat

    for elem in ds.iterall():
        if elem.VR != "DS" or elem.value is None or elem.value == "":
            continue
        many = elem.VM > 1
        values = list(elem.value) if many else [elem.value]
        if all(len(str(v)) <= 16 for v in values):
            continue
        fitted = [DSfloat(_short_ds(float(v))) for v in values]
        elem.value = fitted if many else fitted[0]


def _prepared_source(ds, keep_patient: bool):  # -> pydicom.Dataset
    """A copy of ``ds`` with type-2 identifiers present, and blanked unless ``keep_patient``."""
    import copy

    out = copy.deepcopy(ds)
    for keyword in _TYPE2_IDENTIFIERS:
        if keep_patient and keyword in out:
            continue
        setattr(out, keyword, "")
    if not keep_patient:
        for keyword in _identifier_keywords():
            if keyword not in _TYPE2_IDENTIFIERS and keyword in out:
                delattr(out, keyword)
    _share_constant_groups(out)
    return out


def _share_constant_groups(ds) -> None:  # ds: pydicom.Dataset
    """Move pixel measures and plane orientation that every frame repeats into the shared
    functional groups, where highdicom looks for them (devices may store them per frame)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    if not per:
        return
    if not ds.get("SharedFunctionalGroupsSequence"):
        ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
    shared = ds.SharedFunctionalGroupsSequence[0]
    for keyword in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        if keyword in shared or not all(keyword in frame for frame in per):
            continue
        first = per[0][keyword]
        if all(frame[keyword] == first for frame in per):
            shared[keyword] = first
            for frame in per:
                del frame[keyword]


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[hashlib.sha256("|".join(parts).encode()).hexdigest()])


def write_parametric_map(
    source_path: str | Path,
    anomaly: np.ndarray,
    path: str | Path,
    *,
    description: str = "octanomaly anomaly z-score",
    keep_patient: bool = False,
    series_number: int = 9001,
    protect: tuple[Path, ...] = (),
) -> Path:
    """Write ``anomaly`` ``(n_bscans, depth, width)`` as a DICOM Parametric Map of ``source_path``.

    The source must be one multi-frame DICOM image with a FrameOfReferenceUID and one frame per
    B-scan of the map's shape; otherwise :class:`OctanomalyError` (the caller then skips the map).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source_path, path = Path(source_path), Path(path)
    src = _read_source(source_path)
    if "FrameOfReferenceUID" not in src or not str(src.FrameOfReferenceUID):
        raise OctanomalyError(
            f"{source_path}: DICOM source has no Frame of Reference; no parametric map written"
        )
    order = frame_order(source_path, src)  # B-scan k is stored frame order[k] of the source
    expected = (len(order), int(src.Rows), int(src.Columns))
    values = np.asarray(anomaly, dtype=np.float32)
    if values.shape != expected:
        raise OctanomalyError(
            f"{source_path}: map shape {values.shape} does not match the DICOM source "
            f"(frames, rows, columns) {expected}"
        )
    if not np.isfinite(values).all():
        raise OctanomalyError("anomaly map holds NaN or infinite values; no parametric map written")

    lo, hi = float(values.min()), float(values.max())
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=LUT_LABEL,
        lut_explanation="z-score vs healthy",
        unit=codes.UCUM.NoUnits,
        value_range=(lo, hi),
        slope=1.0,
        intercept=0.0,
    )
    top = max(float(np.percentile(values, 99.9)), 1.0)
    stored = np.empty_like(values)
    stored[order] = (
        values  # the map's frames in the source's storage order, as highdicom pairs them
    )
    try:
        pm = _parametric_map(
            src,
            stored,
            mapping,
            window_top=top,
            description=description,
            keep_patient=keep_patient,
            series_number=series_number,
        )
    except (ValueError, AttributeError) as exc:  # source geometry highdicom cannot use
        raise OctanomalyError(
            f"{source_path}: cannot derive a parametric map from this DICOM source ({exc})"
        ) from exc
    pm.SeriesDescription = description[:64]
    pm.Laterality = _SERIES_LATERALITY.get(laterality(src) or "", "")
    _fit_decimal_strings(pm)
    with atomic_path(path, protect=(source_path, *protect)) as tmp:
        pm.save_as(tmp, enforce_file_format=True)
    return path


def _parametric_map(
    src,
    values: np.ndarray,
    mapping,
    *,
    window_top: float,
    description: str,
    keep_patient: bool,
    series_number: int,
):  # -> highdicom.pm.ParametricMap
    import highdicom as hd

    from octanomaly import __version__

    sop_uid = str(src.SOPInstanceUID)
    digest = hashlib.sha256(values.tobytes()).hexdigest()
    return hd.pm.ParametricMap(
        source_images=[_prepared_source(src, keep_patient)],
        pixel_array=values,
        series_instance_uid=_uid("pm-series", sop_uid, digest),
        series_number=series_number,
        sop_instance_uid=_uid("pm-instance", sop_uid, digest),
        instance_number=1,
        manufacturer="octanomaly",
        manufacturer_model_name="octanomaly",
        software_versions=__version__,
        device_serial_number="none",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            hd.VOILUTTransformation(window_center=window_top / 2, window_width=window_top)
        ],
        content_label=CONTENT_LABEL,
        content_description=description[:64],
    )
