"""Readers and writers. ``load_volume`` picks the reader by content, not by extension alone.

The reader contract: each module named in :data:`READERS` has

- ``FORMAT``: its name (``"dicom-opt"``, ``"nifti"``, ...);
- ``SUFFIXES``: the file-name endings it claims, lowercase with the dot (``".nii.gz"``);
- ``sniff(path) -> bool``: whether it reads ``path``, judged by content (magic bytes);
- ``read(path) -> OCTVolume``: the volume with the file's own spacing (no override: the user's
  ``--spacing`` is applied once, by :func:`load_volume`). A reader that cannot place the voxels
  without a spacing raises :class:`MissingSpacing` carrying the volume read as stored.

:func:`suffix_table` is the one home of file-suffix knowledge: the readers' suffixes, used to
ask the claiming reader first, to name what is readable in errors, and by :func:`volume_suffix`
/ :func:`volume_stem` (output names, mask matching) and :func:`may_be_volume` (folder walks of
the cohort inputs and the healthy training data). Adding a format: one module with the four
names above and one line in :data:`READERS`.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from types import ModuleType

import numpy as np

from octanomaly.errors import InputError, MissingSpacing  # noqa: F401  (part of the contract)
from octanomaly.volume import OCTVolume, check_spacing

#: Voxel types that NIfTI (nibabel) refuses to write; :func:`normalise_dtype` converts them.
CONVERTED_DTYPES = frozenset(np.dtype(t) for t in (np.int64, np.uint64, np.float16, np.longdouble))

#: Reader modules in the order they are asked; file sniffers look at magic bytes.
READERS: tuple[str, ...] = (
    "octanomaly.io.dicom",
    "octanomaly.io.nifti",
    "octanomaly.io.vendor",
    "octanomaly.io.images",
)

#: Side files (exports, notes, tables, arrays) never taken for volumes when walking folders.
SIDE_SUFFIXES = frozenset({".xml", ".txt", ".md", ".json", ".csv", ".yaml", ".yml", ".npz", ".npy"})


def readers() -> list[ModuleType]:
    """The reader modules of :data:`READERS`, in order."""
    return [importlib.import_module(name) for name in READERS]


@functools.cache
def suffix_table() -> dict[str, ModuleType]:
    """Every claimed file suffix -> the reader module claiming it (longest suffixes first)."""
    table: dict[str, ModuleType] = {}
    for reader in readers():
        for suffix in reader.SUFFIXES:
            if suffix in table:
                raise RuntimeError(f"{suffix} is claimed by {table[suffix].__name__} and "
                                   f"{reader.__name__}")  # fmt: skip
            table[suffix] = reader
    return dict(sorted(table.items(), key=lambda kv: -len(kv[0])))


def volume_suffix(path: str | Path) -> str:
    """The longest claimed suffix that ``path``'s name ends with (lowercase), else ``""``."""
    name = Path(path).name.lower()
    return next((s for s in suffix_table() if name.endswith(s) and len(name) > len(s)), "")


def volume_stem(path: str | Path) -> str:
    """The name of ``path`` less its claimed suffix (``a.nii.gz`` -> ``a``); else the name."""
    name = Path(path).name
    return name[: len(name) - len(volume_suffix(path))]


def may_be_volume(path: Path) -> bool:
    """False for hidden entries, side files (:data:`SIDE_SUFFIXES`) and files without a suffix
    that no reader sniffs; True for folders and every other file (read, or reported)."""
    if path.name.startswith("."):
        return False
    if path.is_dir():
        return True
    suffix = path.suffix.lower()
    if suffix in SIDE_SUFFIXES:
        return False
    return bool(suffix) or any(r.sniff(path) for r in readers())


def find_reader(path: Path) -> ModuleType:
    """The reader module for ``path``, or :class:`InputError` saying why there is none.

    The reader claiming the name's suffix is asked first, then the others in order; content
    decides (a PNG named ``.dcm`` is read as an image)."""
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise InputError(path, "permission denied (cannot read it)")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    claimed = suffix_table().get(volume_suffix(path))
    for reader in sorted(readers(), key=lambda r: r is not claimed):
        if reader.sniff(path):
            return reader
    if path.is_dir():
        raise InputError(path, "folder holds no readable B-scan images or DICOM files")
    if claimed is not None:
        raise InputError(path, f"unrecognised content for a {volume_suffix(path)} file (the "
                               f"{claimed.FORMAT} reader does not take it)")  # fmt: skip
    raise InputError(
        path,
        f"unrecognised format (readable: {' '.join(sorted(suffix_table()))}, DICOM without a "
        "suffix, or a folder of B-scan images or DICOM files)",
    )


def load_volume(path: str | Path, spacing: tuple[float, float, float] | None = None) -> OCTVolume:
    """Read an OCT volume from a file or folder of any supported format.

    Args:
        path: DICOM OPT file or folder of single-frame DICOMs, NIfTI, folder of B-scan images,
            a single 2-D image, or a vendor file (``.vol``, ``.e2e``, ``.fds``, ... with the
            ``vendor`` extra); :func:`suffix_table` lists the suffixes.
        spacing: ``(bscan, axial, lateral)`` mm overriding whatever the file says (needed for
            plain images, which carry none). Checked (:func:`~octanomaly.volume.check_spacing`)
            and applied here, once, after the reader.
    """
    path = Path(path)
    if spacing is not None:
        check_spacing(tuple(float(s) for s in spacing))
    reader = find_reader(path)
    try:
        volume = reader.read(path)
    except MissingSpacing as exc:
        if spacing is None:
            raise
        volume = exc.volume  # type: ignore[assignment]
    except PermissionError as exc:  # a file inside a folder
        raise InputError(exc.filename or path, "permission denied (cannot read it)") from None
    if spacing is not None:
        volume.spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
        volume.spacing_is_default = False
        volume.metadata["spacing_source"] = "option"
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
