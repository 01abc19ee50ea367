"""Labelled evaluation data: a folder with one subfolder per class, and masks matched by name.

``DATA/<CLASS>/<item>``: an item is a file (a B-scan image, a NIfTI/DICOM/vendor volume) or a
folder (a volume stored as B-scan images or DICOM files). The normal class is the negative
label; every other class is positive. Hidden entries are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from octanomaly.errors import InputError
from octanomaly.io import volume_stem
from octanomaly.io.images import natural_key

#: Mask files may also be NumPy arrays (no reader claims ``.npy``).
MASK_ONLY_SUFFIX = ".npy"


@dataclass(frozen=True)
class Item:
    """One labelled file or volume folder."""

    path: Path
    cls: str
    label: int  #: 0 normal, 1 abnormal

    @property
    def key(self) -> str:
        """Name used to match a mask (:func:`stem`)."""
        return stem(self.path)


def stem(path: Path) -> str:
    """The file name without its image/volume suffix (``a.nii.gz`` -> ``a``; the readers'
    suffixes, :func:`octanomaly.io.volume_suffix`, and ``.npy`` for masks)."""
    name = path.name
    if name.lower().endswith(MASK_ONLY_SUFFIX) and len(name) > len(MASK_ONLY_SUFFIX):
        return name[: -len(MASK_ONLY_SUFFIX)]
    return volume_stem(path)


def _entries(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if not p.name.startswith(".")),
        key=natural_key,
    )


def discover(
    data: str | Path,
    normal_class: str = "NORMAL",
    limit_per_class: int | None = None,
    seed: int = 0,
) -> list[Item]:
    """The labelled items of ``data``, sorted by class then natural name.

    ``limit_per_class`` keeps a seeded random subset of that many items per class.
    :class:`InputError` when ``data`` has no class folders, lacks ``normal_class`` or has no
    other class, or a class folder is empty.
    """
    data = Path(data)
    if not data.is_dir():
        raise InputError(data, "not a folder (expected one subfolder per class)")
    classes = [p for p in _entries(data) if p.is_dir()]
    if not classes:
        raise InputError(data, "no class subfolders (expected e.g. NORMAL/, DRUSEN/, ...)")
    names = [p.name for p in classes]
    if normal_class not in names:
        raise InputError(
            data, f"no normal-class folder {normal_class!r} (found: {', '.join(names)})"
        )
    if len(classes) < 2:
        raise InputError(data, f"only the normal class {normal_class!r}; need an abnormal one")
    if limit_per_class is not None and limit_per_class < 1:
        raise InputError(None, f"--limit-per-class must be positive, got {limit_per_class}")
    items: list[Item] = []
    rng = np.random.default_rng(seed)
    for folder in classes:
        entries = _entries(folder)
        if not entries:
            raise InputError(folder, "class folder is empty")
        if limit_per_class is not None and len(entries) > limit_per_class:
            keep = np.sort(rng.choice(len(entries), limit_per_class, replace=False))
            entries = [entries[i] for i in keep]
        label = int(folder.name != normal_class)
        items.extend(Item(p, folder.name, label) for p in entries)
    return items


def match_masks(folder: str | Path, items: list[Item]) -> dict[Path, Path]:
    """Map each item's path to its mask under ``folder`` (searched recursively) by name.

    A mask is a file or a folder (a stack of B-scan masks) whose :func:`stem` equals the
    item's. Items without a mask are left out; :class:`InputError` when the folder is missing,
    no item has a mask, or two masks share a name that an item needs.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "mask folder not found")
    wanted: dict[str, list[Item]] = {}
    for item in items:
        wanted.setdefault(item.key, []).append(item)
    found: dict[str, Path] = {}
    stack = [folder]
    while stack:
        d = stack.pop()
        for p in _entries(d):
            key = stem(p)
            if key in wanted:
                if key in found:
                    raise InputError(p, f"two masks named {key!r} (also {found[key]})")
                found[key] = p
            elif p.is_dir():
                stack.append(p)
    if not found:
        raise InputError(folder, "no mask matches the name of any data file")
    return {item.path: found[k] for k, group in wanted.items() if k in found for item in group}
