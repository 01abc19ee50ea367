"""Write an :class:`OCTVolume` as one multi-frame DICOM Ophthalmic Tomography (OPT) instance.

Frames are B-scans ``(depth, width)`` in spatial order. Geometry lives in the functional groups:
shared ``PixelMeasuresSequence`` (PixelSpacing = [axial, lateral], SliceThickness = B-scan
spacing), shared ``PlaneOrientationSequence`` and per-frame ``PlanePositionSequence`` (only with a
Frame of Reference, as the standard ties them to it) and per-frame ``FrameContentSequence``
(stack position). Patient fields stay empty unless ``patient`` is given.

Patient axes (LPS): rows of a B-scan run left (+x, lateral), columns run posterior (+y, depth),
B-scans are stacked superior (+z), which matches the NIfTI layout of :mod:`octanomaly.volume`.
UIDs are derived from the voxels and geometry, so writing the same volume twice gives the same
instance (a lossy transfer syntax gets its own UIDs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from octanomaly.io.atomic import atomic_path
from octanomaly.io.dicom import PHI_KEYWORDS
from octanomaly.volume import OCTVolume

#: SOP Class UID of Ophthalmic Tomography Image Storage.
OPT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
#: Transfer syntaxes ``write_opt`` accepts.
TRANSFER_SYNTAXES: tuple[str, ...] = ("explicit-le", "jpeg2000-lossless", "jpeg-baseline")
#: Keywords ``patient=`` may set: the identifiers the reader keeps in ``phi``, less those the
#: writer stamps itself (equipment and acquisition time).
PATIENT_KEYWORDS: tuple[str, ...] = tuple(
    k for k in PHI_KEYWORDS if k not in ("DeviceSerialNumber", "AcquisitionDateTime", "ContentDate")
)
ROW_DIRECTION = (1.0, 0.0, 0.0)  # along a row = lateral, patient left
COLUMN_DIRECTION = (0.0, 1.0, 0.0)  # down a column = depth, posterior
STACK_DIRECTION = (0.0, 0.0, 1.0)  # B-scan index = superior (row x column)
_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for generated UIDs
_LATERALITY = {"OD": "R", "OS": "L"}


def write_opt(
    volume: OCTVolume,
    path: str | Path,
    *,
    transfer_syntax: str = "explicit-le",
    frame_of_reference: bool = True,
    patient: Mapping[str, Any] | None = None,
    timestamp: datetime | None = None,
) -> Path:
    """Write ``volume`` atomically as a multi-frame DICOM OPT file and return its path.

    ``transfer_syntax``: "explicit-le", "jpeg2000-lossless" or "jpeg-baseline" (8-bit, lossy,
    via Pillow). ``patient``: DICOM patient keywords (``PATIENT_KEYWORDS``); none written otherwise.
    ``frame_of_reference=False`` leaves out the Frame of Reference and with it the plane position
    and orientation groups the OPT IOD requires: not conformant, it only stands in for device
    exports that lack them (octanomaly's commands always write a Frame of Reference). A volume
    without ``laterality`` gets no Image Laterality: DICOM OPT has no value for an unknown eye.
    """
    from pydicom.uid import JPEG2000Lossless

    path = Path(path)
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(
            f"transfer_syntax must be one of {TRANSFER_SYNTAXES}, not {transfer_syntax!r}"
        )
    data = _pixel_array(volume.data)
    if transfer_syntax == "jpeg-baseline" and data.dtype != np.uint8:
        raise ValueError("jpeg-baseline needs 8-bit voxels; use jpeg2000-lossless for 16-bit")
    if transfer_syntax == "jpeg2000-lossless" and min(data.shape[1:]) < 32:
        raise ValueError("jpeg2000-lossless (openjpeg, 6 resolutions) needs B-scans >= 32x32")
    ds = _dataset(volume, data, transfer_syntax, frame_of_reference, patient, timestamp)
    if transfer_syntax == "jpeg2000-lossless":
        ds.compress(JPEG2000Lossless, data, generate_instance_uid=False)
    elif transfer_syntax == "jpeg-baseline":
        _compress_jpeg_baseline(ds, data)
    source = Path(volume.source_path) if volume.source_path is not None else None
    if source is not None and source.is_dir():  # a folder of B-scan files: protect each
        protect = tuple(p for p in source.iterdir() if p.is_file())
    else:
        protect = (source,) if source is not None and source.is_file() else ()
    with atomic_path(path, protect=protect) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def _pixel_array(data: np.ndarray) -> np.ndarray:
    """Voxels as uint8 (1-byte integers) or uint16 (wider integers in range)."""
    if data.ndim != 3 or min(data.shape) < 1:
        raise ValueError(f"expected a non-empty (n_bscans, depth, width) array, got {data.shape}")
    if data.dtype == bool:
        return data.astype(np.uint8)
    if not np.issubdtype(data.dtype, np.integer):
        raise ValueError(
            f"DICOM OPT needs integer voxels, got {data.dtype}; scale to uint8/uint16 first"
        )
    lo, hi = int(data.min()), int(data.max())
    if lo < 0 or hi > 65535:
        raise ValueError(f"voxel range [{lo}, {hi}] does not fit unsigned 16-bit DICOM pixels")
    dtype = np.uint8 if data.dtype.itemsize == 1 else np.uint16
    return np.ascontiguousarray(data, dtype=dtype)


def _uids(volume: OCTVolume, data: np.ndarray, salt: str) -> dict[str, str]:
    """Deterministic UIDs for study, series, instance, frame of reference and dimensions."""
    from pydicom.uid import generate_uid

    digest = hashlib.sha256(data.tobytes())
    digest.update(repr((volume.spacing, volume.laterality, salt)).encode())
    seed = digest.hexdigest()
    roles = ("study", "series", "instance", "frame_of_reference", "dimension_organization")
    return {r: generate_uid(prefix=_UID_ROOT, entropy_srcs=[seed, r]) for r in roles}


def _ds_number(value: float) -> Any:
    from pydicom.valuerep import DSfloat

    return DSfloat(float(value), auto_format=True)


def _code(code: Any) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _item(**elements: Any) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _dataset(
    volume: OCTVolume,
    data: np.ndarray,
    transfer_syntax: str,
    frame_of_reference: bool,
    patient: Mapping[str, Any] | None,
    timestamp: datetime | None,
) -> Any:
    """The OPT dataset with native pixel data (explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.sr.codedict import codes
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    from octanomaly import __version__

    n, rows, cols = data.shape
    bscan, axial, lateral = volume.spacing
    lossy = transfer_syntax == "jpeg-baseline"
    uid = _uids(volume, data, "lossy-jpeg" if lossy else "")
    when = timestamp or datetime.now()
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    laterality = _LATERALITY.get(volume.laterality or "")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = OPT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = uid["instance"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"OCTANOMALY_{__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = OPT_SOP_CLASS
    ds.SOPInstanceUID = uid["instance"]
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time

    # Patient and study (type 2: empty unless given).
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        setattr(ds, keyword, "")
    ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    for keyword, value in (patient or {}).items():
        if keyword not in PATIENT_KEYWORDS:
            raise ValueError(f"unknown patient field {keyword!r}; use one of {PATIENT_KEYWORDS}")
        setattr(ds, keyword, value)
    ds.StudyInstanceUID = uid["study"]

    # Series and equipment.
    ds.Modality = "OPT"
    ds.SeriesInstanceUID = uid["series"]
    ds.SeriesNumber = 1
    ds.SeriesDescription = "octanomaly OCT volume"
    ds.Manufacturer = str(volume.metadata.get("Manufacturer") or "octanomaly")
    ds.ManufacturerModelName = str(volume.metadata.get("ManufacturerModelName") or "octanomaly")
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = f"octanomaly {__version__}"
    if frame_of_reference:
        ds.FrameOfReferenceUID = uid["frame_of_reference"]
        ds.PositionReferenceIndicator = ""

    # Ophthalmic Tomography Image and Acquisition Parameters modules.
    ds.InstanceNumber = 1
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDuration = 0.0
    if laterality:
        ds.ImageLaterality = laterality
    ds.BurnedInAnnotation = "NO"
    # Fixed by the OPT image module (PS3.3 C.8.17.7): OPT instances are never concatenations
    # (C.8.17.16.3), and the multi-frame module lets an IOD enumerate these values to say so.
    ds.ConcatenationFrameOffsetNumber = 0
    ds.InConcatenationNumber = 1
    ds.InConcatenationTotalNumber = 1
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.AcquisitionDeviceTypeCodeSequence = Sequence(
        [_code(codes.SCT.OpticalCoherenceTomographyScanner)]
    )
    ds.AnatomicRegionSequence = Sequence([_code(codes.SCT.Retina)])
    ds.DetectorType = "CCD"
    for keyword in (
        "AxialLengthOfTheEye",
        "HorizontalFieldOfView",
        "EmmetropicMagnification",
        "IntraOcularPressure",
        "PupilDilated",
    ):
        setattr(ds, keyword, None)
    ds.RefractiveStateSequence = Sequence()
    ds.LightPathFilterTypeStackCodeSequence = Sequence()
    ds.AcquisitionContextSequence = Sequence()

    # Image pixel.
    bits = 8 * data.dtype.itemsize
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = n

    # Multi-frame dimension: one stack, frames indexed by their in-stack position.
    ds.DimensionOrganizationType = "3D"
    ds.DimensionOrganizationSequence = Sequence(
        [_item(DimensionOrganizationUID=uid["dimension_organization"])]
    )
    ds.DimensionIndexSequence = Sequence(
        [
            _item(
                DimensionOrganizationUID=uid["dimension_organization"],
                DimensionIndexPointer=0x00209056,  # StackID
                FunctionalGroupPointer=0x00209111,  # FrameContentSequence
                DimensionDescriptionLabel="Stack ID",
            ),
            _item(
                DimensionOrganizationUID=uid["dimension_organization"],
                DimensionIndexPointer=0x00209057,  # InStackPositionNumber
                FunctionalGroupPointer=0x00209111,
                DimensionDescriptionLabel="In-Stack Position Number",
            ),
        ]
    )

    # Functional groups.
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence(
        [
            _item(
                PixelSpacing=[_ds_number(axial), _ds_number(lateral)],
                SliceThickness=_ds_number(bscan),
            )
        ]
    )
    anatomy = _item(
        AnatomicRegionSequence=Sequence([_code(codes.SCT.Retina)]),
        FrameLaterality=laterality or "U",
    )
    shared.FrameAnatomySequence = Sequence([anatomy])
    if frame_of_reference:
        orientation = [_ds_number(v) for v in (*ROW_DIRECTION, *COLUMN_DIRECTION)]
        shared.PlaneOrientationSequence = Sequence([_item(ImageOrientationPatient=orientation)])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for i in range(n):
        frame = Dataset()
        frame.FrameContentSequence = Sequence(
            [
                _item(
                    StackID="1",
                    InStackPositionNumber=i + 1,
                    DimensionIndexValues=[1, i + 1],
                    FrameAcquisitionNumber=1,
                )
            ]
        )
        if frame_of_reference:
            position = np.asarray(STACK_DIRECTION) * (i * bscan)
            frame.PlanePositionSequence = Sequence(
                [_item(ImagePositionPatient=[_ds_number(v) for v in position])]
            )
        per_frame.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)

    ds.PixelData = data.tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    return ds


def _compress_jpeg_baseline(ds: Any, data: np.ndarray, quality: int = 95) -> None:
    """Encode each 8-bit frame as baseline JPEG with Pillow and encapsulate it (lossy)."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    frames = []
    for frame in data:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
        frames.append(buf.getvalue())
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ratio = data.nbytes / max(1, sum(len(f) for f in frames))
    ds.LossyImageCompressionRatio = _ds_number(round(ratio, 2))
