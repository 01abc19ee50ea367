"""DICOM reader: multi-frame Ophthalmic Tomography (OPT) files and folders of single-frame B-scans.

Read with pydicom directly (MONAI's ``PydicomReader`` ignores the functional groups). Frames are
B-scans ``(depth=Rows, width=Columns)``; geometry comes from the functional groups
(``PixelMeasuresSequence``: PixelSpacing = [axial, lateral]; B-scan spacing from per-frame
``PlanePositionSequence`` positions, else SpacingBetweenSlices / SliceThickness) and frames are
put in spatial order (position along the stack normal, else in-stack position, dimension index,
instance number). Accepted: the OPT SOP class, and any other image SOP class whose Modality is
``OPT`` (e.g. secondary capture B-scans exported by devices); everything else is refused.
Patient-identifying fields go only to ``OCTVolume.phi``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octanomaly.errors import InputError
from octanomaly.io import images
from octanomaly.io.images import natural_key
from octanomaly.volume import DEFAULT_SPACING, FileSpacing, OCTVolume, eye, file_volume

FORMAT = "dicom-opt"
SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
OPT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
#: Keywords that identify a patient: kept in ``OCTVolume.phi`` only.
PHI_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientAddress",
    "IssuerOfPatientID",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AcquisitionDateTime",
    "ContentDate",
    "InstitutionName",
    "ReferringPhysicianName",
    "OperatorsName",
    "DeviceSerialNumber",
)
#: Non-identifying facts copied to ``OCTVolume.metadata`` when present.
META_KEYWORDS: tuple[str, ...] = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "SeriesDescription",
    "BitsStored",
)
#: JPEG start-of-frame markers (baseline, extended, progressive, lossless, JPEG-LS) with the size.
_SOF_MARKERS = frozenset(
    (*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), 0xCD, 0xCE, 0xCF, 0xF7)
)
_J2K_HINT = "pip install pylibjpeg pylibjpeg-openjpeg"
_JPEG_HINT = "pip install pylibjpeg pylibjpeg-libjpeg"


# --------------------------------------------------------------------------- sniffing


def _is_dicom_file(path: Path) -> bool:
    """``DICM`` at byte 128, or a preamble-less dataset that starts with group 0002/0008 tags."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
            return any(
                tag.group == 0x0008 and ds[tag].keyword in ("SOPClassUID", "Modality", "ImageType")
                for tag in ds.keys()
            )
    except Exception:
        return False


def _folder_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted((p for p in files if p.name.upper() != "DICOMDIR"), key=natural_key)


def sniff(path: Path) -> bool:
    """True for a DICOM file, or a folder (non-recursive) of DICOM files and no B-scan images."""
    if path.is_file():
        return _is_dicom_file(path)
    if not path.is_dir():
        return False
    files = _folder_files(path)
    if any(p.suffix.lower() in images.SUFFIXES for p in files):
        return False
    return any(_is_dicom_file(p) for p in files)


# --------------------------------------------------------------------------- parsing


def _dcmread(path: Path) -> Any:
    """The dataset of ``path`` with large values (pixel data) left on disk; truncation refused."""
    import warnings

    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, force=True, defer_size="256 KB")
        except (InvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError) as exc:
            raise InputError(
                path, f"not a readable DICOM file (truncated or corrupt: {exc})"
            ) from exc
        except Exception as exc:  # pydicom raises assorted errors on damaged files
            raise InputError(
                path, f"not a readable DICOM file ({type(exc).__name__}: {exc})"
            ) from exc
    if any("end of file" in str(w.message).lower() for w in caught):
        raise InputError(path, "DICOM file is truncated (it ends inside a data element)")
    _check_complete(path, ds)
    return ds


def _check_complete(path: Path, ds: Any) -> None:
    """Refuse a file whose last data element runs past the end of the file (pydicom is lenient)."""
    from pydicom.dataelem import RawDataElement

    tags = [t for t in ds.keys() if t.group != 0x0002]
    if not tags:
        raise InputError(path, "DICOM file holds no data set (truncated or empty)")
    last = ds.get_item(tags[-1], keep_deferred=True)
    if not isinstance(last, RawDataElement) or last.length == 0xFFFFFFFF:
        return
    size = path.stat().st_size
    if last.value is None:  # deferred: the value was not read, compare with the file size
        missing = last.value_tell + last.length - size
    else:
        missing = last.length - len(last.value)
    if missing > 0:
        raise InputError(path, f"DICOM file is truncated ({missing} bytes missing at the end)")
    end = last.value_tell + last.length
    tail = size - end
    if 0 < tail < 8:  # part of a further element header: cut inside the next element
        with open(path, "rb") as f:
            f.seek(end)
            if f.read(tail).strip(b"\x00"):
                raise InputError(path, "DICOM file is truncated (it ends inside an element header)")


def _transfer_syntax(ds: Any) -> Any:
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts:
        return ts
    implicit = getattr(ds, "is_implicit_VR", None)
    if implicit is None:
        implicit = getattr(ds, "original_encoding", (True, True))[0]
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _check_kind(path: Path, ds: Any) -> None:
    """Refuse non-OCT DICOM (say what it is), files without pixels and colour layouts."""
    from pydicom.uid import UID

    try:
        sop = str(ds.get("SOPClassUID", "") or "")
        modality = str(ds.get("Modality", "") or "").upper()
    except Exception as exc:
        raise InputError(path, f"not a readable DICOM file (corrupt header: {exc})") from exc
    if sop != OPT_SOP_CLASS and modality != "OPT":
        what = UID(sop).name if sop else "DICOM object of unknown SOP class"
        raise InputError(
            path,
            f"is a {what} (modality {modality or 'unknown'}); octanomaly expects OCT: "
            "DICOM Ophthalmic Tomography (modality OPT)",
        )
    if "PixelData" not in ds:
        raise InputError(path, "DICOM file has no pixel data")
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        if keyword not in ds:
            raise InputError(path, f"DICOM image lacks {keyword}; cannot read its pixels")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if samples not in (1, 3) or (samples == 3 and not photometric.startswith(("RGB", "YBR"))):
        raise InputError(
            path, f"unsupported pixel layout ({samples} samples, {photometric}); need gray B-scans"
        )


def _check_decoder(path: Path, ds: Any) -> None:
    """Raise when the transfer syntax needs a decoder plugin that is not installed."""
    from pydicom.pixels import get_decoder

    ts = _transfer_syntax(ds)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise InputError(path, f"pixel data in {ts.name}, which pydicom cannot decode") from exc
    if decoder.is_available:
        return
    if "2000" in ts.name or "HTJ2K" in ts.name:
        hint = _J2K_HINT
    elif "JPEG" in ts.name and "LS" not in ts.name:
        hint = _JPEG_HINT
    else:
        hint = "pip install " + " ".join(
            dep.split(" ", 1)[0] for dep in decoder.missing_dependencies
        )
    raise InputError(path, f"pixel data in {ts.name} needs a decoder that is not installed: {hint}")


# --------------------------------------------------------------------------- pixel data size


def _n_frames(path: Path, ds: Any) -> int:
    """NumberOfFrames (1 when absent); anything but a whole number >= 1 is refused."""
    import warnings

    with warnings.catch_warnings():  # pydicom warns on an invalid IS; the error says it
        warnings.simplefilter("ignore")
        value = ds.get("NumberOfFrames")
    if value is None or value == "":
        return 1
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise InputError(path, f"NumberOfFrames is {str(value)!r}; it must be a whole number >= 1")
    return n


def _frame_bytes(path: Path, ds: Any) -> int:
    """Bytes of one uncompressed frame from Rows, Columns, SamplesPerPixel and BitsAllocated."""
    sizes = {}
    for keyword in ("Rows", "Columns"):
        value = ds.get(keyword)
        if not isinstance(value, int) or value < 1:
            raise InputError(path, f"{keyword} is {value!r}; it must be >= 1")
        sizes[keyword] = value
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    size = sizes["Rows"] * sizes["Columns"] * samples * _out_dtype(ds, path).itemsize
    if str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422":
        size = size // 3 * 2
    return size


def _pixel_element(ds: Any) -> Any:
    return ds.get_item("PixelData", keep_deferred=True)


def _fragment_starts(path: Path, ds: Any) -> tuple[int, int, int, tuple[int, int] | None]:
    """Offset table entries, fragments, fragments that open a JPEG / JPEG 2000 codestream, and
    the (rows, columns) of the first codestream when its header says.

    Reads only the item headers (and the start of each fragment) of the encapsulated pixel data,
    from the file when pydicom left the value there.
    """
    import io
    import struct

    elem = _pixel_element(ds)
    value = getattr(elem, "value", None)
    if value is not None:
        stream, end = io.BytesIO(bytes(value)), len(value)
    else:
        stream, end = open(path, "rb"), None  # closed below
        stream.seek(elem.value_tell)
    starts = (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  ", b"\xff\xd8", b"\xff\x0a")
    table, fragments, opened, size = 0, 0, 0, None
    try:
        first = True
        while end is None or stream.tell() + 8 <= end:
            header = stream.read(8)
            if len(header) < 8:
                raise InputError(path, "encapsulated pixel data is truncated (no end marker)")
            group, element, length = struct.unpack("<HHI", header)
            if (group, element) == (0xFFFE, 0xE0DD):  # sequence delimiter
                break
            if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
                raise InputError(path, "encapsulated pixel data is corrupt (bad item header)")
            if first:
                table, first = length // 4, False
                stream.seek(length, 1)
                continue
            head = stream.read(min(length, 65536 if fragments == 0 else 12))
            if fragments == 0:
                size = _codestream_size(head)
            fragments += 1
            opened += head.startswith(starts)
            stream.seek(length - len(head), 1)
    finally:
        stream.close()
    return table, fragments, opened, size


def _codestream_size(head: bytes) -> tuple[int, int] | None:
    """(rows, columns) from the start of a JPEG 2000 (SIZ) or JPEG / JPEG-LS (SOF) codestream."""
    import struct

    siz = head.find(b"\xff\x4f\xff\x51")
    if siz >= 0 and len(head) >= siz + 24:
        width, height, x0, y0 = struct.unpack(">4I", head[siz + 8 : siz + 24])
        return height - y0, width - x0
    if not head.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(head) and head[pos] == 0xFF:
        marker, length = head[pos + 1], struct.unpack(">H", head[pos + 2 : pos + 4])[0]
        if marker in _SOF_MARKERS:
            if pos + 9 > len(head):
                return None
            rows, cols = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return (rows, cols) if rows else None  # 0 rows: height given later (DNL)
        pos += 2 + length
    return None


def _check_pixel_data(path: Path, ds: Any, n: int) -> None:
    """Refuse pixel data whose size disagrees with Rows x Columns x frames x bytes per pixel.

    Native data must hold exactly that many bytes (plus one pad byte); encapsulated data must
    hold NumberOfFrames frames (offset table, else codestream starts, else fragments).
    """
    frame = _frame_bytes(path, ds)
    rows, cols = int(ds.Rows), int(ds.Columns)
    if not _transfer_syntax(ds).is_encapsulated:
        elem = _pixel_element(ds)
        length = elem.length if elem.value is None else len(elem.value)
        if length == 0xFFFFFFFF:
            raise InputError(path, "uncompressed pixel data of undefined length (corrupt)")
        if length - n * frame in (0, 1):
            return
        if length % frame in (0, 1):
            raise InputError(
                path,
                f"pixel data holds {length // frame} frames of {rows} x {cols} pixels "
                f"but NumberOfFrames is {n}",
            )
        raise InputError(
            path,
            f"pixel data is {length} bytes, but Rows x Columns x frames x bytes per pixel = "
            f"{rows} x {cols} x {n} x {frame // (rows * cols) or 1} = {n * frame}; "
            "Rows or Columns do not match the pixels",
        )
    table, fragments, opened, size = _fragment_starts(path, ds)
    if size is not None and size != (rows, cols):
        raise InputError(
            path,
            f"its compressed frames are {size[0]} x {size[1]} pixels but Rows x Columns = "
            f"{rows} x {cols}",
        )
    found = table or opened or fragments
    if found != n and not (n == 1 and not table and not opened and fragments >= 1):
        raise InputError(
            path, f"encapsulated pixel data holds {found} frames but NumberOfFrames is {n}"
        )


# --------------------------------------------------------------------------- geometry


@dataclass
class _Frame:
    """Geometry facts about one frame (B-scan)."""

    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    thickness: float | None = None
    between: float | None = None
    stack_id: str | None = None
    stack_position: int | None = None
    dimension_index: tuple[int, ...] | None = None
    instance: int | None = None


def _first(seq_owner: Any, sequence: str) -> Any:
    seq = seq_owner.get(sequence) if seq_owner is not None else None
    return seq[0] if seq else None


def _group_value(ds: Any, per_frame: Any, sequence: str, keyword: str) -> Any:
    """``keyword`` of functional group ``sequence``: per-frame item, then shared, else None."""
    for owner in (per_frame, _first(ds, "SharedFunctionalGroupsSequence")):
        item = _first(owner, sequence)
        if item is not None and item.get(keyword) not in (None, ""):
            return item.get(keyword)
    return None


def _values(value: Any) -> list[Any]:
    """A DICOM value as a list (single values, lists and pydicom ``MultiValue`` alike)."""
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in _values(value))
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _ints(value: Any) -> tuple[int, ...] | None:
    try:
        out = tuple(int(v) for v in _values(value))
    except (TypeError, ValueError):
        return None
    return out or None


def _scalar(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) and out > 0 else None


def _frames(ds: Any, n_frames: int) -> list[_Frame]:
    """Geometry of each frame from the functional groups, falling back to top-level elements."""
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    if per and len(per) != n_frames:
        raise InputError(
            ds.filename,
            f"PerFrameFunctionalGroupsSequence has {len(per)} items for {n_frames} frames",
        )
    per = per or [None] * n_frames
    instance = _ints(ds.get("InstanceNumber"))
    out = []
    for item in per:

        def get(sequence: str, keyword: str, top: bool = False, _item: Any = item) -> Any:
            value = _group_value(ds, _item, sequence, keyword)
            return ds.get(keyword) if value is None and top else value

        stack_id = get("FrameContentSequence", "StackID")
        stack_pos = _ints(get("FrameContentSequence", "InStackPositionNumber"))
        position = get("PlanePositionSequence", "ImagePositionPatient", top=n_frames == 1)
        out.append(
            _Frame(
                position=_floats(position, 3),
                orientation=_floats(
                    get("PlaneOrientationSequence", "ImageOrientationPatient", True), 6
                ),
                pixel_spacing=_floats(get("PixelMeasuresSequence", "PixelSpacing", True), 2),
                thickness=_scalar(get("PixelMeasuresSequence", "SliceThickness", True)),
                between=_scalar(get("PixelMeasuresSequence", "SpacingBetweenSlices", True)),
                stack_id=None if stack_id is None else str(stack_id),
                stack_position=stack_pos[0] if stack_pos else None,
                dimension_index=_ints(get("FrameContentSequence", "DimensionIndexValues")),
                instance=instance[0] if instance else None,
            )
        )
    return out


def _dimension_component(ds: Any) -> int | None:
    """Which DimensionIndexValues component is the in-stack position or image position."""
    seq = ds.get("DimensionIndexSequence") or []
    wanted = (0x00209057, 0x00200032)  # InStackPositionNumber, ImagePositionPatient
    for i, item in enumerate(seq):
        if int(item.get("DimensionIndexPointer", 0) or 0) in wanted:
            return i
    return len(seq) - 1 if seq else None


def _position_order(
    where: Path, pos: np.ndarray, orientation: tuple[float, ...] | None, rank_hint: np.ndarray
) -> tuple[np.ndarray, float]:
    """Order along the stack normal and the median B-scan step (mm) from frame positions.

    The normal is row x column direction; without a usable orientation (or one the positions
    contradict) it is the main direction of the positions, signed to agree with ``rank_hint``
    (in-stack positions, else storage order).
    """
    centred = pos - pos.mean(axis=0)
    principal = np.linalg.svd(centred, full_matrices=False)[2][0]
    agree = np.dot(centred @ principal, rank_hint - rank_hint.mean())
    principal = principal if agree >= 0 else -principal
    normal = np.cross(orientation[:3], orientation[3:]) if orientation else principal
    if np.linalg.norm(normal) < 1e-6:
        normal = principal
    normal = normal / np.linalg.norm(normal)
    for direction in (normal, principal):
        order = np.argsort(pos @ direction, kind="stable")
        steps = np.diff(pos[order] @ direction)
        distances = np.linalg.norm(np.diff(pos[order], axis=0), axis=1)
        if distances.min() < 1e-6:
            raise InputError(where, "several B-scans share one position (more than one stack?)")
        if np.median(steps) >= 0.5 * np.median(distances):  # positions follow this direction
            return order, float(np.median(steps))
    return order, float(np.median(distances))


def _order_and_spacing(
    where: Path, frames: list[_Frame], dim_component: int | None
) -> tuple[np.ndarray, float | None, str]:
    """Spatial order of the frames, B-scan spacing (mm or None) and what the order came from."""
    n = len(frames)
    stacks = {f.stack_id for f in frames if f.stack_id is not None}
    if len(stacks) > 1:
        raise InputError(
            where, f"holds {len(stacks)} stacks of B-scans (4-D data); need a single stack"
        )
    fallback = next((f.between for f in frames if f.between), None) or next(
        (f.thickness for f in frames if f.thickness), None
    )
    if n == 1:
        return np.zeros(1, dtype=int), fallback, "single frame"
    if all(f.position is not None for f in frames):
        pos = np.array([f.position for f in frames], dtype=float)
        if np.ptp(pos, axis=0).max() > 1e-9:
            orient = next((f.orientation for f in frames if f.orientation), None)
            hint = [f.stack_position for f in frames]
            hint = np.array(hint if None not in hint else range(n), dtype=float)
            return (*_position_order(where, pos, orient, hint), "ImagePositionPatient")
    if all(f.stack_position is not None for f in frames):
        order = np.argsort([f.stack_position for f in frames], kind="stable")
        return order, fallback, "InStackPositionNumber"
    if dim_component is not None and all(
        f.dimension_index is not None and len(f.dimension_index) > dim_component for f in frames
    ):
        order = np.argsort([f.dimension_index[dim_component] for f in frames], kind="stable")
        return order, fallback, "DimensionIndexValues"
    if all(f.instance is not None for f in frames) and len({f.instance for f in frames}) == n:
        order = np.argsort([f.instance for f in frames], kind="stable")
        return order, fallback, "InstanceNumber"
    return np.arange(n), fallback, "file order"


def frame_order(path: str | Path, ds: Any) -> np.ndarray:
    """Stored frame index (0-based) of each B-scan in the order the reader puts them.

    B-scan ``k`` of the volume read from ``path`` is frame ``order[k]`` of the file (header
    ``ds``); writers of derived objects use it to reference the source's own frames.
    """
    path = Path(path)
    frames = _frames(ds, _n_frames(path, ds))
    return _order_and_spacing(path, frames, _dimension_component(ds))[0]


# --------------------------------------------------------------------------- pixels


def _gray_frame(path: Path, frame: np.ndarray, ds: Any) -> np.ndarray:
    """A 2-D frame; colour frames only when they are gray (equal channels, or at most 3 apart
    after lossy YCbCr coding: :func:`~octanomaly.io.images.gray_channel`)."""
    if frame.ndim == 2:
        return frame
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    lossy = photometric.startswith("YBR") or str(ds.get("LossyImageCompression", "")) == "01"
    gray = images.gray_channel(frame, tolerance=3 if lossy else 0)
    if gray is None:
        raise InputError(path, "holds colour images; octanomaly needs gray-scale OCT B-scans")
    return gray


def _decoded_frames(path: Path, ds: Any, n: int) -> Iterator[np.ndarray]:
    """The ``n`` frames of ``path`` as 2-D arrays, decoded one at a time (never all encoded)."""
    from pydicom.pixels import iter_pixels

    has_meta = bool(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None))
    count = 0
    try:
        if has_meta:  # stream frames from disk: the encoded pixel data is never all in memory
            source = iter_pixels(path)
        else:
            ds.file_meta = getattr(ds, "file_meta", None) or _empty_meta()
            ds.file_meta.TransferSyntaxUID = _transfer_syntax(ds)
            source = iter_pixels(ds)
        for frame in source:
            if count == n:
                break
            count += 1
            yield _gray_frame(path, frame, ds)
    except InputError:
        raise
    except Exception as exc:
        ts = _transfer_syntax(ds)
        if "reshape" in str(exc):
            raise InputError(
                path,
                f"frame {count + 1} of its {ts.name} pixel data does not have "
                f"Rows x Columns = {ds.Rows} x {ds.Columns} pixels",
            ) from exc
        raise InputError(
            path, f"cannot decode its pixel data ({ts.name}; truncated or corrupt?): {exc}"
        ) from exc
    if count < n:
        raise InputError(path, f"pixel data holds {count} of {n} frames (truncated?)")


def _allocate(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    try:
        return np.empty(shape, dtype=dtype)
    except MemoryError as exc:
        size = np.prod(shape, dtype=float) * dtype.itemsize / 1e9
        raise InputError(
            path, f"{' x '.join(map(str, shape))} voxels need {size:.1f} GB; not enough memory"
        ) from exc


def _read_pixels(path: Path, ds: Any, rank: np.ndarray) -> np.ndarray:
    """All frames of ``path`` put at ``rank[i]`` (frame ``i`` of the file).

    Call after :func:`_check_pixel_data`; the output is allocated only once the first frame
    decoded at Rows x Columns.
    """
    n = len(rank)
    frames = _decoded_frames(path, ds, n)
    first = next(frames)
    data = _allocate(path, (n, *first.shape), _out_dtype(ds, path))
    data[rank[0]] = first
    for i, frame in enumerate(frames, start=1):
        data[rank[i]] = frame
    return _invert_monochrome1(data, ds)


def _empty_meta() -> Any:
    from pydicom.dataset import FileMetaDataset

    return FileMetaDataset()


def _out_dtype(ds: Any, path: Path | None = None) -> np.dtype:
    bits = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if bits not in (8, 16, 32):
        raise InputError(path or ds.filename, f"unsupported BitsAllocated {bits}")
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def _invert_monochrome1(data: np.ndarray, ds: Any) -> np.ndarray:
    if str(ds.get("PhotometricInterpretation", "")).upper() != "MONOCHROME1":
        return data
    if np.issubdtype(data.dtype, np.signedinteger):
        return (data.max() + data.min() - data).astype(data.dtype)
    top = (1 << int(ds.get("BitsStored", ds.BitsAllocated))) - 1
    return (top - data.astype(np.int64)).clip(0, top).astype(data.dtype)


# --------------------------------------------------------------------------- metadata


def laterality(ds: Any) -> str | None:
    """The eye ("OD" or "OS") from (Image) Laterality or the frame anatomy of ``ds``, else None."""
    values = [ds.get("ImageLaterality"), ds.get("Laterality")]
    values.append(_group_value(ds, None, "FrameAnatomySequence", "FrameLaterality"))
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    if per:
        values.append(_group_value(ds, per[0], "FrameAnatomySequence", "FrameLaterality"))
    return next((eye(v) for v in values if eye(v)), None)


def _metadata(ds: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Non-identifying metadata and the patient-identifying fields, kept apart."""
    from pydicom.uid import UID

    meta: dict[str, Any] = {}
    for keyword in META_KEYWORDS:
        value = ds.get(keyword)
        if value not in (None, ""):
            meta[keyword] = int(value) if keyword == "BitsStored" else str(value)
    if "SOPClassUID" in meta:
        meta["SOPClassName"] = UID(meta["SOPClassUID"]).name
    ts = _transfer_syntax(ds)
    meta["TransferSyntax"] = ts.name
    meta["TransferSyntaxUID"] = str(ts)
    phi = {k: str(ds.get(k)) for k in PHI_KEYWORDS if ds.get(k) not in (None, "")}
    return meta, phi


# --------------------------------------------------------------------------- reading


def read(path: Path) -> OCTVolume:
    """Read a DICOM OPT file or a folder of single-frame DICOM B-scans of one series."""
    path = Path(path)
    return _read_folder(path) if path.is_dir() else _read_file(path)


def _header_spacing(frames: list[_Frame], bscan: float | None, n: int) -> FileSpacing:
    """``(bscan, axial, lateral)`` mm, whether defaults filled gaps, and a note saying which."""
    pixel = next((f.pixel_spacing for f in frames if f.pixel_spacing), None)
    axial, lateral = pixel if pixel and min(pixel) > 0 else (None, None)
    missing = []
    if axial is None:
        axial, lateral = DEFAULT_SPACING[1], DEFAULT_SPACING[2]
        missing.append("PixelSpacing")
    if bscan is None:
        bscan = DEFAULT_SPACING[0]
        if n > 1:
            missing.append("B-scan spacing")
    notes = {"spacing_note": f"default spacing for missing {', '.join(missing)}"} if missing else {}
    return (float(bscan), float(axial), float(lateral)), bool(missing), notes


def _read_file(path: Path) -> OCTVolume:
    ds = _dcmread(path)
    _check_kind(path, ds)
    _check_decoder(path, ds)
    n = _n_frames(path, ds)
    _check_pixel_data(path, ds, n)
    frames = _frames(ds, n)
    order, bscan, source = _order_and_spacing(path, frames, _dimension_component(ds))
    rank = np.empty(n, dtype=int)
    rank[order] = np.arange(n)
    data = _read_pixels(path, ds, rank)
    return _volume(path, data, ds, FORMAT, frames, bscan, source)


def _read_folder(folder: Path) -> OCTVolume:
    files = [p for p in _folder_files(folder) if _is_dicom_file(p)]
    if not files:
        raise InputError(folder, "folder holds no DICOM files")
    headers = [_dcmread(p) for p in files]
    series = {str(ds.get("SeriesInstanceUID", "") or "") for ds in headers}
    if len(series) > 1:
        raise InputError(
            folder,
            f"folder holds DICOM files of {len(series)} series; put one series per folder",
        )
    for p, ds in zip(files, headers, strict=True):
        _check_kind(p, ds)
    if len(files) == 1:
        return _read_file(files[0])
    multi = [p.name for p, ds in zip(files, headers, strict=True) if _n_frames(p, ds) > 1]
    if multi:
        raise InputError(
            folder,
            f"folder mixes multi-frame DICOM ({multi[0]}) with other files; open it directly",
        )
    sizes = {(int(ds.Rows), int(ds.Columns)) for ds in headers}
    if len(sizes) > 1:
        raise InputError(folder, f"B-scans of mixed sizes {sorted(sizes)} (rows, columns)")
    dtypes = {_out_dtype(ds) for ds in headers}
    if len(dtypes) > 1:
        raise InputError(folder, f"B-scans of mixed bit depths {sorted(map(str, dtypes))}")
    frames = [_frames(ds, 1)[0] for ds in headers]
    order, bscan, source = _order_and_spacing(folder, frames, None)
    rank = np.empty(len(files), dtype=int)
    rank[order] = np.arange(len(files))
    for p, ds in zip(files, headers, strict=True):
        _check_decoder(p, ds)
        _check_pixel_data(p, ds, 1)
    data = np.empty(0)
    for i, (p, ds) in enumerate(zip(files, headers, strict=True)):
        pixels = _read_pixels(p, ds, np.zeros(1, dtype=int))[0]
        if i == 0:  # allocated once the first B-scan decoded at its header's size
            data = _allocate(folder, (len(files), *pixels.shape), pixels.dtype)
        data[rank[i]] = pixels
    vol = _volume(folder, data, headers[order[0]], "dicom-series", frames, bscan, source)
    vol.metadata.pop("SOPInstanceUID", None)
    vol.metadata["n_files"] = len(files)
    return vol


def _volume(
    path: Path,
    data: np.ndarray,
    ds: Any,
    source_format: str,
    frames: list[_Frame],
    bscan: float | None,
    source: str,
) -> OCTVolume:
    """The ``OCTVolume`` of decoded ``data`` with ``ds``'s spacing, metadata and laterality."""
    spacing = _header_spacing(frames, bscan, len(data))
    meta, phi = _metadata(ds)
    meta["frame_order_from"] = source
    return file_volume(path, source_format, data, spacing, laterality(ds), meta, phi)
