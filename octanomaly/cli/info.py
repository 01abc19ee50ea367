"""``octanomaly info`` and ``octanomaly convert``: look at a volume, or turn it into NIfTI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from octanomaly.cli.app import command, console
from octanomaly.cli.options import PhiOption, SpacingOption
from octanomaly.errors import InputError


@command()
def info(
    volume: Annotated[
        Path, typer.Argument(help="OCT volume: DICOM, NIfTI, image folder, vendor file.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
    spacing: SpacingOption = None,
    phi: PhiOption = False,
) -> None:
    """Show shape, spacing, format and metadata of an OCT volume."""
    from octanomaly.io import load_volume

    vol = load_volume(volume, spacing=spacing)
    summary = vol.summary(phi=phi)
    if as_json:
        typer.echo(json.dumps(summary, default=str))
        return
    table = Table(title=str(volume), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if key in ("metadata", "phi"):
            continue
        table.add_row(key, str(value))
    for key, value in summary["metadata"].items():
        table.add_row(f"  {key}", str(value))
    for key, value in summary.get("phi", {}).items():
        table.add_row(f"[red]{key}[/red]", str(value))
    console.print(table)


@command()
def convert(
    volume: Annotated[Path, typer.Argument(help="OCT volume of any readable format.")],
    out: Annotated[Path, typer.Argument(help="Output NIfTI path (.nii or .nii.gz).")],
    spacing: SpacingOption = None,
) -> None:
    """Convert a volume to NIfTI: (width, depth, n_bscans), affine diag(-lat, -ax, +bscan)."""
    from octanomaly.io import load_volume, nifti

    if not (out.name.endswith(".nii") or out.name.endswith(".nii.gz")):
        raise InputError(out, "output must end in .nii or .nii.gz")
    vol = load_volume(volume, spacing=spacing)
    nifti.write_volume(vol, out)
    console.print(f"wrote {out}  shape {list(vol.shape)}  spacing {list(vol.spacing)} mm")
