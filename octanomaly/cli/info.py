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
        Path | None,
        typer.Argument(
            help="OCT volume: DICOM, NIfTI, image folder, vendor file (--formats lists them).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
    spacing: SpacingOption = None,
    phi: PhiOption = False,
    formats: Annotated[
        bool, typer.Option("--formats", help="List the readable file suffixes and their readers.")
    ] = False,
) -> None:
    """Show shape, spacing, format and metadata of an OCT volume."""
    from octanomaly.cli.app import fail
    from octanomaly.io import load_volume

    if formats:
        _print_formats(as_json)
        return
    if volume is None:
        fail("give a VOLUME (or --formats)")
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


def _print_formats(as_json: bool) -> None:
    """The reader table: suffix -> reader format (content decides; see octanomaly.io)."""
    from octanomaly.io import suffix_table

    table = {suffix: reader.FORMAT for suffix, reader in sorted(suffix_table().items())}
    if as_json:
        typer.echo(json.dumps(table))
        return
    out = Table(title="readable files (recognised by content; the suffix picks who looks first)")
    out.add_column("suffix", style="bold")
    out.add_column("reader")
    for suffix, fmt in table.items():
        out.add_row(suffix, fmt)
    out.add_row("(none)", "dicom-opt, nifti, vendor or images by their magic bytes")
    out.add_row("folder", "single-frame DICOM files, or B-scan images (+ Heyex XML)")
    console.print(out)


@command()
def convert(
    volume: Annotated[Path, typer.Argument(help="OCT volume of any readable format.")],
    out: Annotated[Path, typer.Argument(help="Output NIfTI path (.nii or .nii.gz).")],
    spacing: SpacingOption = None,
) -> None:
    """Convert a volume to NIfTI: (width, depth, n_bscans), affine diag(-lat, -ax, +bscan)."""
    from octanomaly.io import load_volume, nifti

    if not out.name.endswith(nifti.SUFFIXES):
        raise InputError(out, f"output must end in {' or '.join(nifti.SUFFIXES)}")
    vol = load_volume(volume, spacing=spacing)
    nifti.write_volume(vol, out)
    console.print(f"wrote {out}  shape {list(vol.shape)}  spacing {list(vol.spacing)} mm")
