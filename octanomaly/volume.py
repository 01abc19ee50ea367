"""OCTVolume: voxels ``(n_bscans, depth, width)`` with spacing in mm and light metadata.

The NIfTI geometry lives here and only here (see METHODS.md, "Geometry conventions"):
arrays are stored as ``(width, depth, n_bscans)`` with affine
``diag(-lateral, -axial, +bscan, 1)``, which opens aligned in 3D Slicer and ITK-SNAP.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from octanomaly.errors import InputError

#: Spacing used when a format carries none (Spectralis-like macular cube), in mm.
DEFAULT_SPACING: tuple[float, float, float] = (0.1, 0.0039, 0.0112)

#: Voxel spacing (mm) any retinal OCT device produces, per axis ``(bscan, axial, lateral)``,
#: with a wide margin: axial 0.5-50 um (devices: 2-8 um), lateral 0.5-200 um (devices:
#: 4-60 um), B-scan distance 1 um-5 mm (devices: 5 um-0.5 mm). Outside it a file's spacing is
#: wrong (e.g. um without units) and mapping would need absurd memory or give empty maps.
PLAUSIBLE_SPACING_MM: tuple[tuple[float, float], ...] = (
    (0.001, 5.0),
    (0.0005, 0.05),
    (0.0005, 0.2),
)
#: Largest physical extent (mm) per axis of an OCT volume (devices: at most ~6 mm deep, ~20 mm
#: wide and apart); larger means the spacing (or the image) is not an OCT scan.
PLAUSIBLE_EXTENT_MM: tuple[float, float, float] = (40.0, 20.0, 40.0)
_AXES = ("B-scan", "axial", "lateral")

#: Orientation codes of the NIfTI layout (nibabel ``aff2axcodes`` of :func:`nifti_affine`).
NIFTI_AXCODES: tuple[str, str, str] = ("L", "P", "S")


def nifti_affine(spacing: tuple[float, float, float]) -> np.ndarray:
    """The 4x4 NIfTI affine for a volume of spacing ``(bscan, axial, lateral)`` mm."""
    bscan, axial, lateral = (float(s) for s in spacing)
    return np.diag([-lateral, -axial, bscan, 1.0])


def eye(value: object) -> str | None:
    """``"OD"`` or ``"OS"`` from a file's laterality (R/L/OD/OS, any case), else None."""
    return {"R": "OD", "OD": "OD", "L": "OS", "OS": "OS"}.get(str(value or "").strip().upper())


#: What a reader found out about spacing: the ``(bscan, axial, lateral)`` mm it uses, whether
#: defaults filled gaps, and notes for the volume's metadata (e.g. ``spacing_source``).
FileSpacing = tuple[tuple[float, float, float], bool, dict[str, Any]]


def file_volume(
    path: str | Path,
    source_format: str,
    data: np.ndarray,
    spacing: FileSpacing,
    laterality: object,
    metadata: dict[str, Any],
    phi: dict[str, Any] | None = None,
) -> OCTVolume:
    """The :class:`OCTVolume` a reader returns: ``spacing``'s notes follow ``metadata``, the
    file's laterality goes through :func:`eye` (the one laterality rule)."""
    values, is_default, notes = spacing
    return OCTVolume(
        data=data,
        spacing=values,
        laterality=eye(laterality),
        source_format=source_format,
        source_path=Path(path),
        metadata={**metadata, **notes},
        phi=phi or {},
        spacing_is_default=is_default,
    )


def check_spacing(spacing: tuple[float, ...], where: str | Path = "--spacing") -> None:
    """Raise :class:`InputError` unless ``spacing`` is 3 mm values within
    :data:`PLAUSIBLE_SPACING_MM`; the message names the axis and suggests ``--spacing``."""
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(
            where,
            f"invalid spacing {tuple(spacing)} (need 3 positive mm values, BSCAN AXIAL LATERAL;"
            " pass --spacing)",
        )
    for axis, s, (lo, hi) in zip(_AXES, spacing, PLAUSIBLE_SPACING_MM, strict=True):
        if not lo <= s <= hi:
            hint = "give" if str(where) == "--spacing" else "in um without units? pass"
            raise InputError(
                where,
                f"{axis} spacing {s:g} mm is outside what OCT devices produce ({lo:g}-{hi:g} mm);"
                f" {hint} --spacing BSCAN AXIAL LATERAL in mm",
            )


@dataclass
class OCTVolume:
    """One OCT volume.

    Attributes:
        data: voxels, shape ``(n_bscans, depth, width)``; depth runs from the vitreous (row 0)
            towards the choroid.
        spacing: ``(bscan, axial, lateral)`` voxel spacing in mm.
        laterality: ``"OD"``, ``"OS"`` or ``None`` when unknown.
        source_format: reader that produced the volume, e.g. ``"dicom-opt"``, ``"nifti"``.
        source_path: file or folder it came from.
        metadata: small, non-identifying facts (device, series UID, ...).
        phi: patient-identifying fields (name, ID, birth date); never written unless asked.
        spacing_is_default: True when the format carried no spacing and defaults were used.
    """

    data: np.ndarray
    spacing: tuple[float, float, float]
    laterality: str | None = None
    source_format: str = "array"
    source_path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    phi: dict[str, Any] = field(default_factory=dict)
    spacing_is_default: bool = False

    def __post_init__(self) -> None:
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        if self.source_path is not None:
            self.source_path = Path(self.source_path)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_bscans, depth, width)``."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def n_bscans(self) -> int:
        return int(self.data.shape[0])

    @property
    def affine(self) -> np.ndarray:
        """NIfTI affine of this volume (see :func:`nifti_affine`)."""
        return nifti_affine(self.spacing)

    def with_data(self, data: np.ndarray) -> OCTVolume:
        """A copy carrying ``data`` (same geometry and metadata); shape must match."""
        if tuple(data.shape) != self.shape:
            raise ValueError(f"shape {tuple(data.shape)} does not match volume {self.shape}")
        return replace(self, data=data)

    def validate(self) -> OCTVolume:
        """Check shape, finiteness and plausible OCT geometry (:func:`check_spacing`, extent);
        raise :class:`InputError` naming the source."""
        where = self.source_path or "<array>"
        if self.data.ndim != 3:
            raise InputError(
                where, f"expected a 3-D volume, got {self.data.ndim}-D {self.data.shape}"
            )
        if min(self.data.shape) < 1:
            raise InputError(where, f"volume is empty (shape {self.data.shape})")
        if not np.issubdtype(self.data.dtype, np.number) or np.issubdtype(
            self.data.dtype, np.complexfloating
        ):
            raise InputError(where, f"unsupported voxel type {self.data.dtype}")
        if np.issubdtype(self.data.dtype, np.floating) and not np.isfinite(self.data).all():
            n = int((~np.isfinite(self.data)).sum())
            raise InputError(where, f"{n} voxels are NaN or infinite")
        check_spacing(self.spacing, where)
        for axis, n, s, top in zip(
            _AXES, self.shape, self.spacing, PLAUSIBLE_EXTENT_MM, strict=True
        ):
            if axis == "B-scan" and self.spacing_is_default:
                continue  # a guessed B-scan distance (e.g. a folder of images) proves nothing
            if n * s > top:
                raise InputError(
                    where,
                    f"{n} px x {s:g} mm = {n * s:.0f} mm along the {axis} axis; no OCT scan is "
                    f"larger than {top:g} mm (wrong spacing, or not an OCT B-scan? pass --spacing)",
                )
        return self

    def summary(self, phi: bool = False) -> dict[str, Any]:
        """A JSON-ready description; patient fields only with ``phi=True``."""
        out: dict[str, Any] = {
            "path": str(self.source_path) if self.source_path else None,
            "format": self.source_format,
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing),
            "spacing_is_default": self.spacing_is_default,
            "dtype": str(self.data.dtype),
            "laterality": self.laterality,
            "intensity_range": [float(self.data.min()), float(self.data.max())],
            "metadata": self.metadata,
        }
        if phi:
            out["phi"] = self.phi
        return out
