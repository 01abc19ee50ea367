"""``octanomaly models``: the bundled models and local run folders, with their cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from octanomaly.cli.app import command, console, err_console
from octanomaly.errors import InputError, OctanomalyError

#: The model card a run folder may carry (the bundled model does).
CARD_FILE = "MODEL_CARD.md"
#: Where local runs are looked for when no folder is named.
RUNS_DIR = Path("runs")
#: Names that stand for the bundled default model.
BUNDLED_NAMES = ("default", "bundled")
NO_BUNDLED = "no bundled model installed"
NO_MODEL = (
    "no model: pass --model RUN_DIR (a folder made by `octanomaly train HEALTHY... --out RUN_DIR`);"
    " no bundled default model is installed"
)


def is_run_dir(path: Path) -> bool:
    """True when ``path`` holds weights, config and calibration (a finished run folder)."""
    from octanomaly.runs import CALIBRATION_FILE, CONFIG_FILE, MODEL_FILE

    return all((path / f).is_file() for f in (MODEL_FILE, CONFIG_FILE, CALIBRATION_FILE))


def check_run_dir(path: Path) -> Path:
    """``path`` if it is a finished run folder, else :class:`InputError` naming what is missing."""
    from octanomaly.runs import CALIBRATION_FILE, CONFIG_FILE, MODEL_FILE

    if not path.is_dir():
        raise InputError(path, "not a folder (expected a run folder)")
    missing = [f for f in (MODEL_FILE, CONFIG_FILE, CALIBRATION_FILE) if not (path / f).is_file()]
    if missing:
        raise InputError(path, f"not a run folder: {', '.join(missing)} missing")
    return path


def find_runs(root: Path) -> list[Path]:
    """Finished run folders at or below ``root`` (natural order; none if ``root`` is absent)."""
    from octanomaly.io.images import natural_key
    from octanomaly.runs import MODEL_FILE

    if not root.is_dir():
        return []
    found = {p.parent for p in root.rglob(MODEL_FILE) if is_run_dir(p.parent)}
    return sorted(found, key=lambda p: tuple(natural_key(Path(part)) for part in p.parts))


def describe(path: Path, name: str | None = None, bundled: bool = False) -> dict[str, Any]:
    """One model's listing: name, path, architecture, preprocessing, steps, run_id, calibration."""
    from octanomaly.runs import CALIBRATION_FILE, CONFIG_FILE, MODEL_FILE
    from octanomaly.scoring import load_run

    run = load_run(check_run_dir(path), device="cpu")
    cfg = run.cfg
    spacing = cfg.preprocessing.target_spacing
    files = [path / f for f in (MODEL_FILE, CONFIG_FILE, CALIBRATION_FILE, CARD_FILE)]
    return {
        "name": name or path.name,
        "path": str(path),
        "bundled": bundled,
        "model": cfg.model.name,
        "patch_size": int(cfg.model.patch_size),
        "width": getattr(cfg.model, "width", None),  # not every model has a width
        "target_spacing": list(spacing) if spacing is not None else None,
        "steps": dict(cfg.training.steps),
        "run_id": run.run_id,
        "calibration": run.calibration.kind,
        "maps_calibrated": run.calibration.kind == "maps",
        "card": (path / CARD_FILE).is_file(),
        "size_mb": round(sum(f.stat().st_size for f in files if f.is_file()) / 1e6, 2),
    }


def resolve_model(name_or_path: str | Path | None, runs_dir: Path = RUNS_DIR) -> Path:
    """The run folder ``--model`` names: a folder, a bundled model (``ganomaly``, ``fanogan``,
    ``anogan``; ``default`` or nothing: the default one), or a run's name under ``runs_dir``."""
    from octanomaly.runs import bundled_model_dir, bundled_models

    if name_or_path is None or str(name_or_path) in BUNDLED_NAMES:
        default = bundled_model_dir()
        if default is None:
            raise OctanomalyError(NO_MODEL)
        return default
    path = Path(name_or_path)
    if path.is_dir():
        return check_run_dir(path)
    name = str(name_or_path)
    bundled = bundled_models()
    if name in bundled:
        return bundled[name]
    matches = [p for p in find_runs(runs_dir) if name in (p.name, str(p))]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InputError(name, f"{len(matches)} runs under {runs_dir} have this name")
    raise InputError(
        name,
        "no such model (not a folder, not a bundled model "
        f"({', '.join(['default', *bundled])}), no run of that name in {runs_dir})",
    )


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title="models", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("name", overflow="fold")
    for col in ("model", "patch", "width", "mm", "steps", "run_id", "calib.", "MB"):
        right = col in ("patch", "width", "MB")
        table.add_column(col, justify="right" if right else "left", no_wrap=col == "run_id")
    for r in rows:
        spacing = r["target_spacing"]
        name = Text(r["name"] + (" (bundled)" if r["bundled"] else ""), style="bold")
        table.add_row(
            name,
            r["model"],
            str(r["patch_size"]),
            "-" if r["width"] is None else str(r["width"]),
            "native" if spacing is None else "\n".join(f"{v:g}" for v in spacing),
            "\n".join(f"{stage} {n:,}" for stage, n in r["steps"].items()) or "-",
            r["run_id"],
            r["calibration"],
            f"{r['size_mb']:.1f}",
        )
    console.print(table)
    for r in rows:
        console.print(f"{r['name']}: {r['path']}", markup=False, highlight=False)
    if any(r["card"] for r in rows):
        console.print("model cards: octanomaly models --card NAME_OR_PATH", markup=False)


@command()
def models(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run folders to list (default: every run below --runs-dir).", show_default=False
        ),
    ] = None,
    runs_dir: Annotated[
        Path, typer.Option("--runs-dir", help="Folder searched for local runs.")
    ] = RUNS_DIR,
    card: Annotated[
        str | None,
        typer.Option(
            "--card",
            help="Print the model card of NAME_OR_PATH (a bundled model's name, or 'default').",
            metavar="NAME_OR_PATH",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list on stdout.")] = False,
) -> None:
    """List the bundled models and local run folders, or print a model card."""
    from octanomaly.runs import DEFAULT_BUNDLED, bundled_models

    if card is not None:
        path = resolve_model(card, runs_dir)
        if not (path / CARD_FILE).is_file():
            raise InputError(path, f"no model card ({CARD_FILE}) in this run folder")
        typer.echo((path / CARD_FILE).read_text(encoding="utf-8"), nl=False)
        return
    named = [check_run_dir(p) for p in runs or []]  # named folders must all be runs
    bundled = bundled_models()
    rows = [
        describe(path, name + (" (default)" if name == DEFAULT_BUNDLED else ""), bundled=True)
        for name, path in bundled.items()
    ]
    rows += [describe(p) for p in named]
    for path in [] if named else find_runs(runs_dir):
        try:
            rows.append(describe(path))
        except OctanomalyError as exc:  # a broken run found by the search: say so, go on
            err_console.print(f"octanomaly: warning: skipped {exc}", markup=False)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not bundled:
        console.print(f"{NO_BUNDLED} (octanomaly/bundled/)", markup=False)
    if rows:
        _print_table(rows)
    if not named and len(rows) == len(bundled):
        console.print(f"no local runs found under {runs_dir}", markup=False)
