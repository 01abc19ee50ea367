"""Readers and writers. ``load_volume`` picks the reader by content, not by extension alone.

Each reader module has ``FORMAT``, ``sniff(path) -> bool`` and ``read(path, **options) ->
OCTVolume``. They are tried in ``READERS`` order; the first whose ``sniff`` says yes reads.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import numpy as np

from octanomaly.errors import InputError
from octanomaly.volume import OCTVolume

#: Voxel types that NIfTI (nibabel) refuses to write; :func:`normalise_dtype` converts them.
CONVERTED_DTYPES = frozenset(np.dtype(t) for t in (np.int64, np.uint64, np.float16, np.longdouble))

#: Reader modules in the order they are asked; file sniffers look at magic bytes.
READERS: tuple[str, ...] = (
    "octanomaly.io.dicom",
    "octanomaly.io.nifti",
    "octanomaly.io.vendor",
    "octanomaly.io.images",
)


def _readers() -> list[ModuleType]:
    return [importlib.import_module(name) for name in READERS]


def find_reader(path: Path) -> ModuleType:
    """The reader module for ``path``, or :class:`InputError` saying why there is none."""
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise InputError(path, "permission denied (cannot read it)")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    for reader in _readers():
        if reader.sniff(path):
            return reader
    if path.is_dir():
        raise InputError(path, "folder holds no readable B-scan images or DICOM files")
    raise InputError(
        path,
        "unrecognised format (expected DICOM, NIfTI, a PNG/TIFF/JPEG image or a vendor OCT file)",
    )


def load_volume(path: str | Path, spacing: tuple[float, float, float] | None = None) -> OCTVolume:
    """Read an OCT volume from a file or folder of any supported format.

    Args:
        path: DICOM OPT file or folder of single-frame DICOMs, NIfTI, folder of B-scan images,
            a single 2-D image, or a vendor file (``.vol``, ``.e2e``, ``.fds``, ... with the
            ``vendor`` extra).
        spacing: ``(bscan, axial, lateral)`` mm overriding whatever the file says (needed for
            plain images, which carry none).
    """
    path = Path(path)
    reader = find_reader(path)
    try:
        volume = reader.read(path, spacing=spacing)
    except PermissionError as exc:  # a file inside a folder
        raise InputError(exc.filename or path, "permission denied (cannot read it)") from None
    if spacing is not None:
        volume.spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
        volume.spacing_is_default = False
    return normalise_dtype(volume.validate())


def normalise_dtype(volume: OCTVolume) -> OCTVolume:
    """``volume`` with voxels of a type every writer takes: 64-bit integers -> the smallest of
    uint8/uint16/int16 holding their range, else float32; float16/long double -> float32."""
    data = volume.data
    if data.dtype not in CONVERTED_DTYPES:
        return volume
    if np.issubdtype(data.dtype, np.integer):
        lo, hi = int(data.min()), int(data.max())
        for t in (np.uint8, np.uint16, np.int16, np.float32):
            if t is np.float32 or (np.iinfo(t).min <= lo and hi <= np.iinfo(t).max):
                new = data.astype(t)
                break
    else:
        new = data.astype(np.float32)
    volume.metadata["voxel_type_converted"] = f"{data.dtype} -> {new.dtype}"
    return volume.with_data(new)
