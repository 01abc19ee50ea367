"""``octanomaly calibrate``: fit a run's normative model of healthy retina and its thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from octanomaly.cli.app import command, console
from octanomaly.cli.options import DeviceOption, StrideOption


@command()
def calibrate(
    run_dir: Annotated[
        Path,
        typer.Argument(help="Run folder of a trained model, or a bundled model's name."),
    ],
    healthy: Annotated[
        list[Path],
        typer.Argument(
            help="Held-out healthy volumes or B-scan images (not trained on; at least 20 "
            "B-scans with retina, better 100+ from 20+ patients)."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="New run folder (weights + config copied) for the calibration; required for "
            "the bundled model (default: update RUN_DIR itself).",
        ),
    ] = None,
    device: DeviceOption = "auto",
    stride: StrideOption = None,
) -> None:
    """Fit the normative model (healthy statistics per retina position) and the thresholds."""
    from octanomaly.cli.models import resolve_model
    from octanomaly.scoring import calibrate_run

    if not run_dir.is_dir():  # a bundled model's name
        run_dir = resolve_model(run_dir)
    data = calibrate_run(run_dir, healthy, out=out, device=device, stride=stride)
    console.print(
        f"calibrated {out or run_dir} on {data['n_bscans']} healthy B-scans from "
        f"{data['n_groups']} patients/volumes (stride {data['stride']})"
    )
