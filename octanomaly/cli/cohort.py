"""``octanomaly cohort``: map many volumes (on Dask), collect their regions, cluster them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from octanomaly.cli.app import command, console
from octanomaly.cli.options import DeviceOption, ModelOption, StrideOption


@command()
def cohort(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Volumes: folders (each entry is a volume), glob patterns, CSV lists (column "
            "'path') or single volumes.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created; reruns resume).")],
    model: ModelOption = None,
    device: DeviceOption = "auto",
    stride: StrideOption = None,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Percentile of healthy (0-100, default 99), as in map."),
    ] = None,
    min_size: Annotated[
        int, typer.Option("--min-size", min=1, help="Drop mask components under N px per B-scan.")
    ] = 50,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Dask scheduler address (tcp://HOST:PORT); default: a local in-process worker.",
        ),
    ] = None,
) -> None:
    """Map volumes into OUT/volumes/NAME/, write volumes.csv and regions.csv, cluster the regions.

    Also writes clusters.csv, clusters.json, figures/ (cluster montages, 2-D map, ETDRS burden)
    and report.html. Volumes already finished with the same model and settings are skipped; a
    bad volume is recorded in volumes.csv and the others go on (exit code 2 at the end).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from octanomaly.cli.app import EXIT_BAD_INPUT, err_console, fail
    from octanomaly.cli.models import resolve_model
    from octanomaly.findings.cohort import run_cohort

    if threshold is not None and not 0 < threshold < 100:
        fail(f"--threshold must be a percentile between 0 and 100, got {threshold}")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("mapping volumes", total=None)

        def on_result(res, done, total):
            row = res["volume"] if res is not None else {"status": "ok"}
            if row["status"] != "ok":
                err_console.print(f"octanomaly: error: {row['error']}", markup=False,
                                  highlight=False)  # fmt: skip
            bar.update(task, completed=done, total=total)

        result = run_cohort(
            inputs, out, resolve_model(model), stride=stride, threshold=threshold,
            min_size=min_size, device=device, scheduler=scheduler, on_result=on_result,
        )  # fmt: skip
    n_ok = len(result.results)
    clusters = result.files.get("clusters_json")
    console.print(
        f"{n_ok} volumes mapped ({result.n_skipped} reused), {result.n_failed} failed; "
        f"{sum(len(r['regions']) for r in result.results)} regions; report: "
        f"{result.files['report']}" + (f"; clusters: {clusters}" if clusters else "")
    )
    if result.n_failed:
        raise typer.Exit(EXIT_BAD_INPUT)
