"""``octanomaly map``: anomaly maps of OCT volumes."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated

import typer

from octanomaly.cli.app import command, console, err_console
from octanomaly.cli.models import resolve_model
from octanomaly.cli.options import (
    DeviceOption,
    ModelOption,
    PhiOption,
    SpacingOption,
    StrideOption,
)
from octanomaly.errors import OctanomalyError


def _plan(volumes: list[Path], out: Path | None) -> list[tuple[Path, Path, str]]:
    """``(input, out_dir, stem)`` per input; a stem taken by an earlier input of the batch (or
    by octanomaly results of another input there) becomes ``stem-2``, ... with a warning."""
    from octanomaly.scoring.outputs import choose_stem, output_stem

    taken: set[tuple[str, str]] = set()
    seen: set[Path] = set()
    plan = []
    for path in volumes:
        if path.exists() and path.resolve() in seen:
            _warn(f"{path}: given twice; mapped once")
            continue
        seen.add(path.resolve())
        out_dir = out if out is not None else path.resolve().parent
        stem = output_stem(path)
        try:
            chosen = choose_stem(out_dir, stem, path, taken)
        except OctanomalyError:
            chosen = stem  # reported by check_outputs at its turn
        if chosen != stem:
            _warn(f"{path}: outputs named {chosen}_* ({stem}_* is taken by another input)")
        plan.append((path, out_dir, chosen))
    return plan


def _warn(message: str) -> None:
    err_console.print(f"octanomaly: warning: {message}", markup=False, highlight=False)


def _map_one(path, out_dir, stem, run, inputs, opts) -> tuple[object, float]:
    """Check, read, map and write one input; returns ``(result, seconds)``."""
    from octanomaly.io import load_volume
    from octanomaly.scoring import map_volume, write_outputs
    from octanomaly.scoring.guards import check_mappable
    from octanomaly.scoring.outputs import check_outputs

    t0 = time.perf_counter()
    check_outputs(out_dir, stem, path, inputs)  # a refused volume costs nothing
    with warnings.catch_warnings(record=True) as caught:  # reported naming the file
        warnings.simplefilter("always")
        volume = load_volume(path, spacing=opts["spacing"])
        check_mappable(volume, run.cfg.preprocessing)
        t_read = time.perf_counter() - t0
        result = map_volume(
            volume, run, stride=opts["stride"], device=opts["device"],
            threshold=opts["threshold"], min_size=opts["min_size"], progress=True,
        )  # fmt: skip
    for message in dict.fromkeys(str(w.message) for w in caught):
        _warn(f"{path}: {message}")
    write_outputs(
        result, volume, out_dir, stem, all_bscans=opts["all_bscans"], phi=opts["phi"],
        timings={"read": t_read}, inputs=inputs,
    )  # fmt: skip
    return result, time.perf_counter() - t0


def error_line(path: Path, exc: Exception) -> str:
    """One line naming ``path`` and what went wrong with it (unexpected errors: their type)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OctanomalyError):
        named = str(path) in text or (path.name and path.name in text)
        return text if named else f"{path}: {text}"
    if isinstance(exc, MemoryError):
        return f"{path}: out of memory ({text or 'allocation failed'})"
    if isinstance(exc, OSError) and exc.strerror:  # disk full, permissions: not a bug
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{path}: {exc.strerror}{where}; nothing was written for it"
    return f"{path}: unexpected {type(exc).__name__}: {text} (run with --debug for the traceback)"


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
            "percentile are anomalous where their region reaches a ten times rarer one (99.9), "
            "B-scans above the healthy B-scans' percentile flagged.",
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
    STEM_enface.png (with thickness map and ETDRS grid), STEM_bscans/ (flagged B-scans),
    STEM_regions.csv and STEM_regions.nii.gz (3-D regions), STEM_summary.json, and
    STEM_anomaly_pm.dcm for DICOM inputs with a Frame of Reference. A bad input is reported
    and the others still run.
    A volume's files appear together or not at all; existing files are replaced only if this
    input's earlier run wrote them (STEM_summary.json lists them with their hashes).
    """
    from rich.table import Table

    from octanomaly.cli.app import EXIT_BAD_INPUT, debug_enabled, fail
    from octanomaly.scoring import load_run
    from octanomaly.scoring.outputs import check_out_dir
    from octanomaly.volume import check_spacing

    if threshold is not None and not 0 < threshold < 100:
        fail(f"--threshold must be a percentile between 0 and 100, got {threshold}")
    if spacing is not None:
        check_spacing(spacing)
    if out is not None:
        check_out_dir(out, volumes)
    run = load_run(resolve_model(model), device)
    opts = dict(
        spacing=spacing, stride=stride, device=device, threshold=threshold, min_size=min_size,
        all_bscans=all_bscans, phi=phi,
    )  # fmt: skip
    table = Table(title=f"octanomaly map ({run.model.name}, run {run.run_id})")
    for col in ("input", "status", "volume score", "flagged B-scans", "time s", "written to"):
        table.add_column(col, overflow="fold")
    failures = 0
    for path, out_dir, stem in _plan(volumes, out):
        name = path.name or str(path)
        try:
            res, secs = _map_one(path, out_dir, stem, run, volumes, opts)
        except Exception as exc:  # one bad volume never stops the batch
            if debug_enabled():
                raise
            failures += 1
            err_console.print(
                f"octanomaly: error: {error_line(path, exc)}", markup=False, highlight=False
            )
            table.add_row(name, "[red]failed[/red]", "", "", "", "")
            continue
        score = "n/a" if res.volume_score is None else f"{res.volume_score:.2f}"
        flagged = f"{len(res.flagged)}/{len(res.bscan_scores)}"
        written = str(out_dir / f"{stem}_*")
        table.add_row(name, "[green]ok[/green]", score, flagged, f"{secs:.1f}", written)
    console.print(table)
    if failures:
        raise typer.Exit(EXIT_BAD_INPUT)
