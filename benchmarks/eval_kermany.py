"""Image-level results row on Kermany OCT2017 ``kermany/dev``: one command per trained run.

Usage::

    python benchmarks/eval_kermany.py RUN_DIR [--data ../shared/data/kermany/dev]
        [--out benchmarks/results/kermany-<run>] [--device auto] [--limit-per-class N]

Runs the same code as ``octanomaly evaluate`` (NORMAL negative; CNV, DME, DRUSEN positive),
writes its outputs (metrics.json, scores.csv, roc.png, scores_hist.png) into ``--out`` and
prints one markdown row for ``docs/results.md``: image AUROC/AP overall and per class, AUROC
within each B-scan width (512 / 768 px) beside the width-only AUROC (the size leak a score must
not ride on), seconds per B-scan, and the training time of the run (from its ``log.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/kermany/dev"


def training_seconds(run_dir: Path) -> float | None:
    """Training compute time estimated from the run's ``log.jsonl``: the sum over logged
    intervals of steps x batch / patches-per-second (single process; pauses between resumed
    sessions do not count). ``None`` when the run has no log."""
    import yaml

    log, cfg = run_dir / "log.jsonl", run_dir / "config.yaml"
    if not log.is_file() or not cfg.is_file():
        return None
    batch = int(yaml.safe_load(cfg.read_text(encoding="utf-8"))["training"]["batch_size"])
    total, prev = 0.0, 0
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        steps = int(rec["global_step"]) - prev
        prev = int(rec["global_step"])
        if rec.get("patches_per_s"):
            total += steps * batch / float(rec["patches_per_s"])
    return total


def _f(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def markdown_row(name: str, m: dict, train_s: float | None) -> str:
    """One results-table row (percentages)."""
    pc = m["per_class_auroc"]
    pw = m.get("per_width", {})
    widths = " / ".join(f"{_f(pw[w]['image_auroc'])}" for w in sorted(pw, key=int)) or "–"
    t = m["timing"]["seconds_per_bscan"]
    dev = m["model"].get("device", "")
    hours = "–" if train_s is None else f"{train_s / 3600:.2f} h"
    return (
        f"| {name} | {_f(m['image_auroc'])} | {_f(m['image_ap'])} | "
        + " | ".join(_f(pc.get(c)) for c in ("CNV", "DME", "DRUSEN"))
        + f" | {widths} | {_f(m.get('width_only_auroc'))} | {t:.2f} s ({dev}) | {hours} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--limit-per-class", type=int, default=None)
    p.add_argument("--name", default=None, help="row label (default: the run folder's name)")
    a = p.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress

    from octanomaly.devices import resolve_device
    from octanomaly.errors import OctanomalyError
    from octanomaly.evaluation.runner import RunScorer, evaluate_folder, write_evaluation

    console = Console(stderr=True)
    name = a.name or a.run_dir.resolve().name
    out = a.out or Path(__file__).resolve().parent / "results" / f"kermany-{name}"
    try:
        scorer = RunScorer(a.run_dir, device=a.device)
        scorer.info["device"] = str(resolve_device(a.device))
        with Progress(console=console, transient=True) as bar:
            ev = evaluate_folder(
                a.data, scorer, "NORMAL", limit_per_class=a.limit_per_class, progress=bar,
                warn=lambda msg: console.print(f"warning: {msg}", markup=False),
            )  # fmt: skip
        ev.metrics["training_seconds"] = training_seconds(a.run_dir)
        write_evaluation(ev, out, a.data)
    except OctanomalyError as exc:
        console.print(f"error: {exc}", markup=False)
        return 2
    m = ev.metrics
    print(json.dumps({k: m[k] for k in (
        "image_auroc", "image_ap", "sensitivity_at_95_specificity", "per_class_auroc",
        "per_width", "width_only_auroc", "n_normal", "n_abnormal", "n_bad_files", "timing",
    )}, indent=1))  # fmt: skip
    print(
        "| model | AUROC | AP | CNV | DME | DRUSEN | AUROC per width 512 / 768 | width alone "
        "| time / B-scan | training |"
    )
    print(markdown_row(name, m, m["training_seconds"]))
    print(f"outputs: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
