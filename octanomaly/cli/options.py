"""Options shared by several commands (one definition each)."""

from __future__ import annotations

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
