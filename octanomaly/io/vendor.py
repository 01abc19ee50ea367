"""Vendor OCT files through maintained libraries (the ``vendor`` extra: eyepy, oct-converter).

Covered, each recognised by content:

- Heidelberg Heyex raw ``.vol`` (magic ``HSF-OCT-``), parsed by eyepy's file parser, so single
  line and circular scans (scan patterns 1 and 2, which eyepy's volume object refuses) load as
  1-B-scan volumes. Spacing from the file header (ScaleX, ScaleZ, Distance). Heyex stores
  linear float intensities: kept as float32, ``metadata["intensity"] = "linear"``.
- Heyex ``.vol`` fields saved by MATLAB (v5 ``.mat`` with ``B0``, ``SizeX``, ``ScaleX``, ...),
  read with scipy.
- Heidelberg ``.e2e`` (magic ``CMDb``, or ``E2EMultipleVolumeFile``) with eyepy; eyepy gives no
  mm spacing for E2E (placeholder 1 px), so defaults are used and flagged.
- Topcon ``.fda``/``.fds`` (magic ``FOCT`` + ``FDA``/``FAA``/``FDS``) with oct-converter,
  spacing from its PARAM_SCAN chunk when present.
- Zeiss Cirrus ``.img`` (no magic: the extension plus a size of 1024 x 512 x 128 or
  1024 x 200 x 200 bytes) with oct-converter; the file has no spacing.

Not covered: Bioptigen and Optovue ``.oct`` (oct-converter reads them but they need
format-specific checks we have no sample for). Patient fields go only into ``volume.phi``.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np

from octanomaly.errors import InputError
from octanomaly.volume import DEFAULT_SPACING, FileSpacing, OCTVolume, file_volume

FORMAT = "vendor"
SUFFIXES: tuple[str, ...] = (".vol", ".mat", ".e2e", ".fda", ".fds", ".img")
INSTALL_HINT = "pip install 'octanomaly[vendor]'"

#: Heyex scan patterns (file header ``ScanPattern``).
SCAN_PATTERNS = {
    0: "unknown",
    1: "single line",
    2: "circular",
    3: "volume (ART)",
    4: "fast volume",
    5: "radial",
}
#: Zeiss Cirrus raw cubes: (depth, width, n_bscans) of uint8.
ZEISS_SHAPES: tuple[tuple[int, int, int], ...] = ((1024, 512, 128), (1024, 200, 200))
_MAT_MAGIC = b"MATLAB 5.0 MAT-file"
_MAT_FIELDS = {"B0", "SizeX", "SizeZ", "ScaleX", "ScaleZ"}
#: Heyex marks invalid B-scan pixels with values near FLT_MAX.
_HEYEX_INVALID = 3.0e38


def kind(path: Path) -> str | None:
    """``"heyex-vol"``, ``"heyex-mat"``, ``"heyex-e2e"``, ``"topcon"``, ``"zeiss-img"`` or None."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(128)
        size = path.stat().st_size
    except OSError:
        return None
    if head.startswith(b"HSF-OCT-"):
        return "heyex-vol"
    if head.startswith(b"CMDb") or head.startswith(b"E2EMultipleVolumeFile"):
        return "heyex-e2e"
    if head[:4] == b"FOCT" and head[4:7] in (b"FDA", b"FAA", b"FDS"):
        return "topcon"
    if head.startswith(_MAT_MAGIC) and _is_heyex_mat(path):
        return "heyex-mat"
    if path.suffix.lower() == ".img" and any(a * b * c == size for a, b, c in ZEISS_SHAPES):
        return "zeiss-img"
    return None


def sniff(path: Path) -> bool:
    """True for a vendor OCT file this module reads (judged by content, see :func:`kind`)."""
    return kind(path) is not None


def read(path: Path) -> OCTVolume:
    """Read a vendor OCT file as ``(n_bscans, depth, width)``."""
    path = Path(path)
    which = kind(path)
    readers = {
        "heyex-vol": _read_heyex_vol,
        "heyex-mat": _read_heyex_mat,
        "heyex-e2e": _read_e2e,
        "topcon": _read_topcon,
        "zeiss-img": _read_zeiss,
    }
    if which is None:
        raise InputError(path, "not a recognised vendor OCT file")
    return readers[which](path)


def _need(module: str, path: Path) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(path, f"reading this file needs {module}: {INSTALL_HINT}") from exc


def _vendor_spacing(
    bscan: float | None, axial: float | None, lateral: float | None, n_bscans: int
) -> FileSpacing:
    """``(spacing, is_default, notes)`` from file values; defaults (flagged) for any that are
    missing or not positive."""
    notes: dict[str, Any] = {}

    def ok(v: float | None) -> bool:
        return v is not None and bool(np.isfinite(v)) and v > 0

    if not (ok(axial) and ok(lateral)):
        notes["spacing_source"] = "default (the file carries no usable spacing; pass --spacing)"
        return DEFAULT_SPACING, True, notes
    notes["spacing_source"] = "file header"
    if not ok(bscan):
        bscan = DEFAULT_SPACING[0]
        if n_bscans == 1:
            notes["bscan_spacing"] = "not applicable (single B-scan); placeholder default"
        else:
            notes["bscan_spacing"] = "missing in the file; default used"
            return (bscan, float(axial), float(lateral)), True, notes  # type: ignore[arg-type]
    return (float(bscan), float(axial), float(lateral)), False, notes  # type: ignore[arg-type]


def _clean_heyex(data: np.ndarray, metadata: dict[str, Any]) -> np.ndarray:
    """float32 copy with Heyex's invalid-pixel markers (~FLT_MAX, NaN) set to 0 and counted."""
    data = np.array(data, dtype=np.float32)
    bad = ~np.isfinite(data) | (data >= _HEYEX_INVALID)
    if bad.any():
        metadata["invalid_pixels_zeroed"] = int(bad.sum())
        data[bad] = 0.0
    return data


def _read_heyex_vol(path: Path) -> OCTVolume:
    """Heyex raw ``.vol`` through eyepy's file parser (works for every scan pattern)."""
    vol_reader = _need("eyepy.io.he.vol_reader", path)
    try:
        parsed = vol_reader.vol_format.parse_file(str(path))
        frames = [np.asarray(b.data) for b in parsed.bscans]
    except Exception as exc:  # construct raises its own error types for damaged files
        raise InputError(path, f"damaged Heidelberg .vol file ({type(exc).__name__})") from exc
    if not frames:
        raise InputError(path, "Heidelberg .vol file holds no B-scans")
    n = len(frames)
    bscan = float(parsed.distance)
    from_coords = n > 1 and not bscan > 0
    if from_coords:
        starts = np.array([(b.start_x, b.start_y) for b in parsed.bscans], dtype=float)
        bscan = float(np.linalg.norm(np.diff(starts, axis=0), axis=1).mean())
    spacing = _vendor_spacing(bscan, parsed.scale_y, parsed.scale_x, n)
    if from_coords and not spacing[1]:
        spacing[2]["bscan_spacing"] = (
            "Distance is 0 in the header; mean step of B-scan start points"
        )
    pattern = int(parsed.scan_pattern)
    metadata: dict[str, Any] = {
        "vendor": "Heidelberg Engineering",
        "file_version": str(parsed.version),
        "scan_pattern": f"{pattern} ({SCAN_PATTERNS.get(pattern, 'unknown')})",
        "intensity": "linear",
    }
    data = _clean_heyex(np.stack(frames), metadata)
    phi = {
        "patient_id": str(parsed.patient_id).strip(),
        "internal_patient_id": int(parsed.pid),
        "birth_date": str(parsed.dob),
        "exam_time": str(parsed.exam_time),
        "visit_date": str(parsed.visit_date),
    }
    return file_volume(path, "heyex-vol", data, spacing, parsed.scan_position, metadata, phi)


def _is_heyex_mat(path: Path) -> bool:
    from scipy.io import whosmat

    try:
        names = {name for name, _shape, _cls in whosmat(str(path))}
    except Exception:  # not a readable MAT file
        return False
    return _MAT_FIELDS <= names


def _mat_scalar(mat: dict[str, Any], key: str) -> Any:
    value = mat.get(key)
    if value is None or np.size(value) == 0:
        return None
    item = np.asarray(value).ravel()[0]
    return item.strip() if isinstance(item, str) else item.item()


def _read_heyex_mat(path: Path) -> OCTVolume:
    """Heyex ``.vol`` fields saved by MATLAB: ``B0``, ``B1``, ... plus header scalars."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for damaged MAT files
        raise InputError(path, f"damaged MATLAB file ({exc})") from exc
    n = int(_mat_scalar(mat, "NumBScans") or 1)
    missing = [f"B{i}" for i in range(n) if f"B{i}" not in mat]
    if missing:
        raise InputError(path, f"NumBScans is {n} but {', '.join(missing[:3])} missing")
    frames = [np.asarray(mat[f"B{i}"]) for i in range(n)]
    if any(f.ndim != 2 or f.shape != frames[0].shape for f in frames):
        raise InputError(path, "B-scans are not 2-D images of one size")
    spacing = _vendor_spacing(
        _mat_scalar(mat, "Distance"), _mat_scalar(mat, "ScaleZ"), _mat_scalar(mat, "ScaleX"), n
    )
    pattern = _mat_scalar(mat, "ScanPattern")
    metadata: dict[str, Any] = {
        "vendor": "Heidelberg Engineering (Heyex .vol fields in a MATLAB file)",
        "intensity": "linear",
    }
    if pattern is not None:
        metadata["scan_pattern"] = f"{int(pattern)} ({SCAN_PATTERNS.get(int(pattern), 'unknown')})"
    data = _clean_heyex(np.stack(frames), metadata)
    phi = {
        key: _mat_scalar(mat, field)
        for key, field in (
            ("patient_id", "PatientID"),
            ("internal_patient_id", "PID"),
            ("birth_date", "DOB"),
            ("visit_date", "VisitDate"),
            ("exam_time", "ExamTime"),
        )
        if _mat_scalar(mat, field) not in (None, "")
    }
    laterality = _mat_scalar(mat, "ScanPosition")
    return file_volume(path, "heyex-mat", data, spacing, laterality, metadata, phi)


def _read_e2e(path: Path) -> OCTVolume:
    """Heidelberg ``.e2e``: the first volume eyepy can build; spacing defaults (flagged)."""
    eyepy_io = _need("eyepy.io", path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ev = eyepy_io.HeE2eReader(str(path)).volume
        data = np.asarray(ev.data, dtype=np.float32)
    except Exception as exc:  # eyepy raises many types for files it cannot parse
        raise InputError(path, f"unreadable Heidelberg .e2e file ({exc})") from exc
    if data.ndim != 3:
        raise InputError(path, f"expected a stack of B-scans, got shape {data.shape}")
    spacing = (DEFAULT_SPACING, True, {
        "spacing_source": "default (eyepy gives no mm spacing for .e2e; pass --spacing)"
    })  # fmt: skip
    laterality = getattr(ev, "laterality", None)
    metadata = {"vendor": "Heidelberg Engineering"}
    return file_volume(path, "heyex-e2e", data, spacing, laterality, metadata)


def _from_oct_converter(path: Path, vol: Any, fmt: str, vendor: str) -> OCTVolume:
    """An OCTVolume from oct-converter's ``OCTVolumeWithMetaData`` (slices are depth x width)."""
    slices = [np.asarray(s) for s in (vol.volume if vol is not None else [])]
    if not slices:
        raise InputError(path, "no OCT B-scans found in the file")
    if any(s.ndim != 2 or s.shape != slices[0].shape for s in slices):
        raise InputError(path, "B-scans are not 2-D images of one size")
    ps = getattr(vol, "pixel_spacing", None)
    if ps is not None and len(ps) == 3:
        lateral, bscan, axial = (float(v) for v in ps)
        spacing = _vendor_spacing(bscan, axial, lateral, len(slices))
    else:
        spacing = _vendor_spacing(None, None, None, len(slices))
    phi = {
        key: str(value)
        for key, value in (
            ("patient_id", getattr(vol, "patient_id", None)),
            ("first_name", getattr(vol, "first_name", None)),
            ("surname", getattr(vol, "surname", None)),
            ("birth_date", getattr(vol, "DOB", None) or getattr(vol, "patient_dob", None)),
            ("acquisition_date", getattr(vol, "acquisition_date", None)),
        )
        if value not in (None, "")
    }
    laterality = getattr(vol, "laterality", None)
    return file_volume(path, fmt, np.stack(slices), spacing, laterality, {"vendor": vendor}, phi)


def _read_topcon(path: Path) -> OCTVolume:
    """Topcon ``.fda``/``.fds`` through oct-converter."""
    readers = _need("oct_converter.readers", path)
    with open(path, "rb") as f:
        subtype = f.read(7)[4:7]
    cls = readers.FDS if subtype == b"FDS" else readers.FDA
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # oct-converter prints progress
            vol = cls(str(path)).read_oct_volume()
    except Exception as exc:  # oct-converter raises many types for damaged files
        raise InputError(path, f"unreadable Topcon file ({type(exc).__name__}: {exc})") from exc
    return _from_oct_converter(path, vol, "topcon", "Topcon")


def _read_zeiss(path: Path) -> OCTVolume:
    """Zeiss Cirrus raw ``.img`` cube through oct-converter (no spacing in the file)."""
    readers = _need("oct_converter.readers", path)
    size = path.stat().st_size
    depth, width, _n = next(s for s in ZEISS_SHAPES if s[0] * s[1] * s[2] == size)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            vol = readers.IMG(str(path)).read_oct_volume(rows=depth, cols=width)
    except Exception as exc:  # oct-converter raises many types for damaged files
        raise InputError(path, f"unreadable Zeiss .img file ({type(exc).__name__})") from exc
    out = _from_oct_converter(path, vol, "zeiss-img", "Carl Zeiss Meditec (Cirrus)")
    out.metadata["orientation"] = "as oct-converter reads it; not checked on a real Cirrus file"
    return out
