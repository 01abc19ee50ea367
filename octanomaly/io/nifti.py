"""NIfTI reading (octanomaly's own layout and others') and writing in the octanomaly layout."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

from octanomaly.errors import InputError, MissingSpacing
from octanomaly.io.atomic import atomic_path
from octanomaly.volume import DEFAULT_SPACING, NIFTI_AXCODES, OCTVolume, nifti_affine

FORMAT = "nifti"
SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
_N1_MAGIC = (b"n+1\x00", b"ni1\x00")
_N2_MAGIC = (b"n+2\x00", b"ni2\x00")
#: gzip level of written ``.nii.gz`` files (ISA-L levels 0-3; 1 is nibabel's own default).
GZIP_LEVEL = 1


def sniff(path: Path) -> bool:
    """True if ``path`` is a NIfTI-1/2 file (gzipped or not), judged by its header magic."""
    if not path.is_file():
        return False
    import gzip

    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            hdr = f.read(544)
    except (OSError, EOFError):
        return False
    return (len(hdr) >= 348 and hdr[344:348] in _N1_MAGIC) or (
        len(hdr) >= 540 and hdr[4:8] in _N2_MAGIC
    )


def read(path: Path) -> OCTVolume:
    """Read a NIfTI volume, reorienting by its affine into ``(n_bscans, depth, width)``.

    A degenerate affine (a zero or non-finite axis) raises
    :class:`~octanomaly.errors.MissingSpacing` holding the array as stored in the octanomaly
    layout ``(width, depth, n_bscans)``: :func:`~octanomaly.io.load_volume` uses it when the
    user gives ``--spacing``.
    """
    try:
        img = _load(path)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(path, f"not a readable NIfTI file ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"expected a 3-D NIfTI volume, got {data.ndim}-D {data.shape}")
    if img.header.get_xyzt_units()[0] == "meter":
        scale = 1000.0
    elif img.header.get_xyzt_units()[0] == "micron":
        scale = 1e-3
    else:
        scale = 1.0
    affine = np.asarray(img.affine, dtype=np.float64)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0)) if np.isfinite(affine).all() else None
    degenerate = (
        zooms is None or not (zooms > 0).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-30
    )
    if degenerate:
        affine = nifti_affine(DEFAULT_SPACING)  # the octanomaly layout, as stored
    ornt = ornt_transform(io_orientation(affine), axcodes2ornt(NIFTI_AXCODES))
    data = nib.orientations.apply_orientation(data, ornt)
    zooms = _reorder_zooms(nib.affines.voxel_sizes(affine), ornt)
    lateral, axial, bscan = (float(z) * scale for z in zooms)
    volume = OCTVolume(
        data=np.ascontiguousarray(np.transpose(data, (2, 1, 0))),
        spacing=(bscan, axial, lateral),
        source_format=FORMAT,
        source_path=path,
        metadata={"description": _descrip(img)},
        spacing_is_default=degenerate,
    )
    if degenerate:
        raise MissingSpacing(
            path,
            "its affine has a zero or non-finite axis (no usable voxel spacing); pass "
            "--spacing BSCAN AXIAL LATERAL in mm (the array is then read as stored)",
            volume,
        )
    return volume


def _load(path: Path) -> nib.Nifti1Image:
    """nibabel load; files without a NIfTI extension are parsed from their bytes."""
    if path.name.endswith(SUFFIXES):
        return nib.load(str(path))
    import gzip

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    klass = nib.Nifti2Image if raw[4:8] in _N2_MAGIC else nib.Nifti1Image
    return klass.from_bytes(raw)


def _reorder_zooms(zooms: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Voxel sizes of the reoriented array: output axis ``ornt[i, 0]`` takes input axis ``i``'s."""
    out = np.empty(3)
    for i, (axis, _flip) in enumerate(ornt):
        out[int(axis)] = zooms[i]
    return out


def _descrip(img: nib.Nifti1Image) -> str:
    try:
        return bytes(img.header["descrip"]).split(b"\x00", 1)[0].decode("ascii", "replace")
    except Exception:
        return ""


def to_nifti_image(
    array: np.ndarray, spacing: tuple[float, float, float], description: str = ""
) -> nib.Nifti1Image:
    """A NIfTI image of ``array`` ``(n_bscans, depth, width)`` in the octanomaly layout."""
    if array.ndim != 3:
        raise ValueError(f"expected (n_bscans, depth, width), got shape {array.shape}")
    affine = nifti_affine(spacing)
    # a C-ordered (n, depth, width) array is the Fortran-ordered (width, depth, n) NIfTI
    # array: the transposed view is written without a copy
    img = nib.Nifti1Image(np.transpose(array, (2, 1, 0)), affine)
    img.header.set_xyzt_units("mm")
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header["descrip"] = description[:79].encode("ascii", "replace")
    return img


def write(
    array: np.ndarray,
    spacing: tuple[float, float, float],
    path: str | Path,
    description: str = "octanomaly",
    protect: tuple[Path, ...] = (),
) -> Path:
    """Write ``array`` ``(n_bscans, depth, width)`` atomically as NIfTI in the octanomaly layout."""
    path = Path(path)
    img = to_nifti_image(array, spacing, description)
    with atomic_path(path, protect=protect) as tmp:
        if path.name.lower().endswith(".gz"):  # ISA-L gzip: ~5-20x faster than zlib, same format
            with igzip.open(tmp, "wb", compresslevel=GZIP_LEVEL) as f:
                img.to_stream(f)
        else:
            nib.save(img, str(tmp))
    return path


def write_volume(volume: OCTVolume, path: str | Path) -> Path:
    """Write the voxels of ``volume`` as NIfTI (no patient fields); never over its source."""
    protect = (volume.source_path,) if volume.source_path else ()
    return write(
        volume.data, volume.spacing, path, description="octanomaly volume", protect=protect
    )


def write_map(
    values: np.ndarray, volume: OCTVolume, path: str | Path, description: str = "octanomaly map"
) -> Path:
    """Write a map over ``volume`` with exactly its shape and affine (float32, or uint8 masks)."""
    if tuple(values.shape) != volume.shape:
        raise ValueError(f"map shape {values.shape} does not match volume {volume.shape}")
    if values.dtype == bool:
        values = values.astype(np.uint8)
    elif values.dtype != np.uint8:
        values = values.astype(np.float32, copy=False)  # float32 maps are written as they are
    protect = (volume.source_path,) if volume.source_path else ()
    return write(values, volume.spacing, path, description=description, protect=protect)
