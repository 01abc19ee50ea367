"""``octanomaly evaluate``: image- (and pixel-) level metrics of a model on a labelled folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from octanomaly.cli.app import command, console, err_console
from octanomaly.cli.options import DeviceOption, ModelOption, StrideOption


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _table(m: dict[str, Any], title: str):
    from rich.table import Table

    t = Table(title=title)
    for col in ("subset", "n normal", "n abnormal", "AUROC", "AP", "sens@95%spec"):
        t.add_column(col, justify="left" if col == "subset" else "right")
    t.add_row(
        "all", str(m["n_normal"]), str(m["n_abnormal"]), _fmt(m["image_auroc"]),
        _fmt(m["image_ap"]), _fmt(m["sensitivity_at_95_specificity"]), style="bold",
    )  # fmt: skip
    for cls, auc in m["per_class_auroc"].items():
        t.add_row(
            f"{cls} vs {m['normal_class']}", str(m["n_normal"]), str(m["per_class_n"][cls]),
            _fmt(auc), _fmt(m["per_class_ap"][cls]), "",
        )  # fmt: skip
    for width, w in m.get("per_width", {}).items():
        t.add_row(
            f"width {width} px", str(w["n_normal"]), str(w["n_abnormal"]),
            _fmt(w["image_auroc"]), _fmt(w["image_ap"]), "",
        )  # fmt: skip
    if m.get("width_only_auroc") is not None:
        t.add_row("width alone (leak ref.)", "", "", _fmt(m["width_only_auroc"]), "", "")
    if "pixel_auroc" in m:
        t.add_row("pixels (whole image)", "", "", _fmt(m["pixel_auroc"]), _fmt(m["pixel_ap"]), "")
        r = m.get("pixel_retina") or {}
        if r:
            t.add_row("pixels (retina)", "", "", _fmt(r["pixel_auroc"]), _fmt(r["pixel_ap"]), "")
    return t


@command()
def evaluate(
    data: Annotated[
        Path,
        typer.Argument(
            help="Labelled folder: one subfolder per class (B-scan images or volumes).",
            show_default=False,
        ),
    ],
    model: ModelOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output folder (default ./octanomaly-eval-<DATA name>; never inside DATA).",
        ),
    ] = None,
    normal_class: Annotated[
        str, typer.Option("--normal-class", help="Class folder of healthy (negative) items.")
    ] = "NORMAL",
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks",
            help="Folder of ground-truth masks (NIfTI/PNG/image folder), matched to data files "
            "by name without extension; adds pixel AUROC/AP and Dice.",
        ),
    ] = None,
    device: DeviceOption = "auto",
    limit_per_class: Annotated[
        int | None,
        typer.Option(
            "--limit-per-class", min=1, help="Evaluate a seeded random subset of N per class."
        ),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold", help="Flag threshold: percentile of healthy B-scan scores (0-100)."
        ),
    ] = 99.0,
    stride: StrideOption = None,
) -> None:
    """Score a labelled folder; write metrics.json, scores.csv, roc.png, scores_hist.png."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from octanomaly.cli.models import resolve_model
    from octanomaly.evaluation.dataset import discover
    from octanomaly.evaluation.runner import (
        RunScorer,
        check_out_dir,
        default_out_dir,
        evaluate_folder,
        write_evaluation,
    )

    out = out if out is not None else default_out_dir(data)
    items = discover(data, normal_class)  # bad layout fails before the model loads
    check_out_dir(out, data)
    scorer = RunScorer(resolve_model(model), device=device, percentile=threshold, stride=stride)

    def warn(msg: str) -> None:
        err_console.print(f"octanomaly: warning: {msg}", markup=False, highlight=False)

    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    )  # fmt: skip
    with Progress(*columns, console=err_console, transient=True) as progress:
        ev = evaluate_folder(data, scorer, normal_class, masks, limit_per_class, progress, warn)
    write_evaluation(ev, out, data)
    console.print(_table(ev.metrics, f"{data} ({scorer.info.get('name')})"))
    if ev.metrics["n_bad_files"]:
        console.print(f"{ev.metrics['n_bad_files']} file(s) skipped (listed in metrics.json)")
    console.print(f"wrote {out}/metrics.json, scores.csv, roc.png, scores_hist.png")
    _exit_if_incomplete(data, items, ev)


def _exit_if_incomplete(data: Path, items: list, ev: Any) -> None:
    """Exit 2 (after writing the results) when files failed or a class has no scored file."""
    from octanomaly.cli.app import EXIT_BAD_INPUT

    scored = {r.cls for r in ev.rows if r.score == r.score}  # NaN: unscored
    empty = sorted({i.cls for i in items} - scored)
    if empty:
        err_console.print(
            f"octanomaly: error: {data}: no readable, scorable file in class "
            f"{', '.join(empty)}; its metrics are missing",
            markup=False,
            highlight=False,
        )
    if empty or ev.metrics["n_bad_files"]:
        raise typer.Exit(EXIT_BAD_INPUT)
