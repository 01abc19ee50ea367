"""Readers and writers. ``load_volume`` picks the reader by content, not by extension alone.

Each reader module has ``FORMAT``, ``sniff(path) -> bool`` and ``read(path, **options) ->
OCTVolume``. They are tried in ``READERS`` order; the first whose ``sniff`` says yes reads.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from octanomaly.errors import InputError
from octanomaly.volume import OCTVolume

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
    volume = reader.read(path, spacing=spacing)
    if spacing is not None:
        volume.spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
        volume.spacing_is_default = False
    return volume.validate()
