"""``octanomaly map``: anomaly maps of OCT volumes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from octanomaly.cli.app import command, console, err_console
from octanomaly.cli.options import (
    DeviceOption,
    ModelOption,
    PhiOption,
    SpacingOption,
    StrideOption,
)
from octanomaly.errors import OctanomalyError

NO_MODEL = (
    "no model: pass --model RUN_DIR (a folder made by `octanomaly train HEALTHY... --out RUN_DIR`);"
    " no bundled default model is installed"
)


def _resolve_model(model: Path | None) -> Path:
    from octanomaly.scoring import default_model_dir

    if model is not None:
        return model
    default = default_model_dir()
    if default is None:
        raise OctanomalyError(NO_MODEL)
    return default


def _map_one(path, run, out, stride, threshold, min_size, all_bscans, spacing, phi, device):
    """Read, map and write one input; returns ``(out_dir, result)``."""
    from octanomaly.io import load_volume
    from octanomaly.scoring import map_volume, output_stem, write_outputs

    t0 = time.perf_counter()
    volume = load_volume(path, spacing=spacing)
    t_read = time.perf_counter() - t0
    out_dir = out if out is not None else path.resolve().parent
    result = map_volume(
        volume, run, stride=stride, device=device, threshold=threshold, min_size=min_size,
        progress=True,
    )  # fmt: skip
    write_outputs(
        result, volume, out_dir, output_stem(path), all_bscans=all_bscans, phi=phi,
        timings={"read": t_read},
    )  # fmt: skip
    return out_dir, result, time.perf_counter() - t0


@command("map")
def map_command(
    volumes: Annotated[
        list[Path],
        typer.Argument(help="OCT volumes (files or folders) to map.", show_default=False),
    ],
    model: ModelOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default: beside each input; never over it)."),
    ] = None,
    device: DeviceOption = "auto",
    stride: StrideOption = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="Percentile of healthy (0-100, default 99): pixels above the healthy maps' "
            "percentile are anomalous, B-scans above the healthy B-scans' percentile flagged.",
        ),
    ] = None,
    min_size: Annotated[
        int, typer.Option("--min-size", min=1, help="Drop mask components under N px per B-scan.")
    ] = 50,
    all_bscans: Annotated[
        bool, typer.Option("--all-bscans", help="PNG overlays of every B-scan, not only flagged.")
    ] = False,
    spacing: SpacingOption = None,
    phi: PhiOption = False,
) -> None:
    """Write calibrated anomaly maps (NIfTI), mask, en-face PNG, overlays and a JSON summary.

    Per input: STEM_volume.nii.gz, STEM_anomaly.nii.gz (z-score vs healthy), STEM_mask.nii.gz,
    STEM_enface.png, STEM_bscans/ (flagged B-scans), STEM_summary.json, and STEM_anomaly_pm.dcm
    for DICOM inputs with a Frame of Reference. A bad input is reported and the others still run.
    """
    from rich.table import Table

    from octanomaly.cli.app import EXIT_BAD_INPUT, fail
    from octanomaly.scoring import load_run

    if threshold is not None and not 0 < threshold < 100:
        fail(f"--threshold must be a percentile between 0 and 100, got {threshold}")
    run = load_run(_resolve_model(model), device)
    table = Table(title=f"octanomaly map ({run.model.name}, run {run.run_id})")
    for col in ("input", "status", "volume score", "flagged B-scans", "time s", "written to"):
        table.add_column(col, overflow="fold")
    failures = 0
    for path in volumes:
        try:
            out_dir, res, secs = _map_one(
                path, run, out, stride, threshold, min_size, all_bscans, spacing, phi, device
            )
        except OctanomalyError as exc:
            failures += 1
            err_console.print(
                f"octanomaly: error: {' '.join(str(exc).split())}", markup=False, highlight=False
            )
            table.add_row(path.name or str(path), "[red]failed[/red]", "", "", "", "")
            continue
        score = "n/a" if res.volume_score is None else f"{res.volume_score:.2f}"
        flagged = f"{len(res.flagged)}/{len(res.bscan_scores)}"
        name = path.name or str(path)
        table.add_row(name, "[green]ok[/green]", score, flagged, f"{secs:.1f}", str(out_dir))
    console.print(table)
    if failures:
        raise typer.Exit(EXIT_BAD_INPUT)
