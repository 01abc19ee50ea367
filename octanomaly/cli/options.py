"""Options shared by several commands (one definition each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SpacingOption = Annotated[
    tuple[float, float, float] | None,
    typer.Option(
        "--spacing",
        help="Voxel spacing in mm as BSCAN AXIAL LATERAL; overrides the file (images have none).",
    ),
]
PhiOption = Annotated[
    bool,
    typer.Option("--phi", help="Also show patient-identifying fields (name, ID, birth date)."),
]
ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="A run folder, or a bundled model: ganomaly (the default), fanogan, anogan "
        "(`octanomaly models` lists them).",
    ),
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda.")
]
StrideOption = Annotated[
    int | None,
    typer.Option("--stride", min=1, help="Patch grid stride in px (default: the run's)."),
]
