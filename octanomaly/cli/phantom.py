"""``octanomaly phantom``: a synthetic SD-OCT volume with lesion masks (test and demo data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from octanomaly.cli.app import command, console
from octanomaly.errors import InputError


@command()
def phantom(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write into (created if missing).")],
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same volume.")
    ] = 0,
    n_bscans: Annotated[int, typer.Option("--n-bscans", help="Number of B-scans.")] = 49,
    depth: Annotated[int, typer.Option(help="Rows per B-scan (axial).")] = 496,
    width: Annotated[int, typer.Option(help="A-scans per B-scan (lateral).")] = 512,
    lesions: Annotated[
        str,
        typer.Option(
            help="Comma-separated lesions: cyst, srf, drusen, hrf, or 'all'; none by default."
        ),
    ] = "",
    laterality: Annotated[str, typer.Option(help="OD (right eye) or OS.")] = "OD",
    name: Annotated[str, typer.Option(help="File name prefix of the outputs.")] = "phantom",
) -> None:
    """Write a synthetic Spectralis-like OCT volume as DICOM OPT and NIfTI, with NIfTI lesion masks.

    Files: NAME.dcm, NAME.nii.gz, NAME_mask.nii.gz (all lesions, uint8), NAME_mask_TYPE.nii.gz per
    requested lesion type and NAME_layers.npz (ILM and Bruch's membrane rows per A-scan).
    """
    import numpy as np
    from rich.table import Table

    from octanomaly.data.phantom import make_phantom, parse_lesions
    from octanomaly.errors import ConfigError
    from octanomaly.io.atomic import atomic_path
    from octanomaly.io.dicom_writer import write_opt
    from octanomaly.io.nifti import write_map, write_volume

    kinds = parse_lesions(lesions)
    if not name or Path(name).name != name or name.startswith("."):
        raise ConfigError(f"--name must be a plain file name prefix, got {name!r}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a folder")
    ph = make_phantom(
        seed=seed,
        n_bscans=n_bscans,
        depth=depth,
        width=width,
        lesions=kinds,
        laterality=laterality.upper(),
    )
    vol = ph.volume
    written = [
        write_opt(vol, out_dir / f"{name}.dcm"),
        write_volume(vol, out_dir / f"{name}.nii.gz"),
    ]
    written.append(write_map(ph.lesion_mask, vol, out_dir / f"{name}_mask.nii.gz", "lesion mask"))
    for kind in kinds:
        path = out_dir / f"{name}_mask_{kind}.nii.gz"
        written.append(write_map(ph.masks[kind], vol, path, f"{kind} mask"))
    layers = out_dir / f"{name}_layers.npz"
    with atomic_path(layers) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, ilm=ph.ilm.astype(np.float32), bm=ph.bm.astype(np.float32))
    written.append(layers)

    voxel_mm3 = float(np.prod(vol.spacing))
    table = Table(title=f"phantom seed {seed}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("shape", str(list(vol.shape)))
    table.add_row("spacing mm", str(list(vol.spacing)))
    table.add_row("laterality", str(vol.laterality))
    if vol.metadata["axial_scale"] < 1:
        table.add_row("axial scale", f"{vol.metadata['axial_scale']:.2f} (depth too small)")
    for kind in kinds:
        n = int(ph.masks[kind].sum())
        table.add_row(kind, f"{n} voxels, {n * voxel_mm3:.4f} mm³")
    if not kinds:
        table.add_row("lesions", "none (healthy)")
    for path in written:
        table.add_row("wrote", str(path))
    console.print(table)
