"""``octanomaly calibrate``: healthy statistics of a trained run, for calibrated maps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from octanomaly.cli.app import command, console
from octanomaly.cli.options import DeviceOption, StrideOption


@command()
def calibrate(
    run_dir: Annotated[Path, typer.Argument(help="Run folder of a trained model.")],
    healthy: Annotated[
        list[Path],
        typer.Argument(help="Held-out healthy volumes or B-scan images (not trained on)."),
    ],
    device: DeviceOption = "auto",
    stride: StrideOption = None,
) -> None:
    """Measure healthy map and B-scan statistics for calibrated maps; updates calibration.json."""
    from octanomaly.data.healthy import find_items
    from octanomaly.scoring import calibrate_run

    paths = [item.path for item in find_items(healthy)]
    section = calibrate_run(run_dir, paths, device=device, stride=stride)
    console.print(
        f"calibrated {run_dir} on {section['n_bscans']} healthy B-scans "
        f"({section['n_bscan_scores']} with retina)"
    )
