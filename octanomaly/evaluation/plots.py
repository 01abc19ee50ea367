"""Evaluation figures: ROC curves (overall and per class) and score histograms per class."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from octanomaly.evaluation.metrics import roc_points


@contextlib.contextmanager
def _figure(path: str | Path, size: tuple[float, float]) -> Iterator[Any]:
    """The axes of a new Agg figure of ``size`` inches; laid out, saved to ``path`` and closed
    when the block ends."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=110)
    try:
        yield ax
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def _per_class(scores: Sequence[float], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(scores, dtype=np.float64), np.asarray(classes, dtype=object)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def roc_figure(
    scores: Sequence[float],
    classes: Sequence[str],
    normal_class: str,
    path: str | Path,
    per_class_auroc: dict[str, float | None] | None = None,
    overall_auroc: float | None = None,
    title: str = "ROC",
) -> None:
    """ROC of every abnormal class against ``normal_class`` and of all together, as a PNG."""
    scores, classes = _per_class(scores, classes)
    labels = (classes != normal_class).astype(int)
    normal = classes == normal_class
    with _figure(path, (5.2, 5.0)) as ax:
        ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
        for cls in sorted({c for c in classes if c != normal_class}):
            pick = normal | (classes == cls)
            pts = roc_points(labels[pick], scores[pick])
            if pts is not None:
                auc = (per_class_auroc or {}).get(cls)
                ax.plot(*pts, lw=1.4, label=f"{cls} vs {normal_class} ({_fmt(auc)})")
        pts = roc_points(labels, scores)
        if pts is not None:
            ax.plot(*pts, color="k", lw=2.2, label=f"all abnormal ({_fmt(overall_auroc)})")
        ax.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1),
               ylim=(0, 1.01), title=title)  # fmt: skip
        ax.legend(loc="lower right", fontsize=8, title="AUROC", title_fontsize=8)
        ax.set_aspect("equal")


def histogram_figure(
    scores: Sequence[float],
    classes: Sequence[str],
    path: str | Path,
    threshold: float | None = None,
    title: str = "image scores per class",
) -> None:
    """Step histograms of ``scores`` per class on shared bins, with the flag threshold."""
    scores, classes = _per_class(scores, classes)
    finite = scores[np.isfinite(scores)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if threshold is not None and np.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        hi = lo + 1.0
    bins = np.linspace(lo, hi, 41)
    with _figure(path, (6.4, 4.0)) as ax:
        for cls in sorted(set(classes.tolist())):
            s = scores[(classes == cls) & np.isfinite(scores)]
            if s.size:
                ax.hist(s, bins=bins, histtype="step", lw=1.6, density=True,
                        label=f"{cls} ({s.size})")  # fmt: skip
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(threshold, color="k", ls="--", lw=1, label=f"flag threshold {threshold:.2f}")
        ax.set(xlabel="image score (z vs healthy)", ylabel="density", title=title)
        ax.legend(fontsize=8)
