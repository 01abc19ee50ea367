"""Evaluation figures: ROC curves (overall and per class) and score histograms per class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from octanomaly.evaluation.metrics import roc_points


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


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
    plt = _pyplot()
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(classes, dtype=object)
    labels = (classes != normal_class).astype(int)
    normal = classes == normal_class
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
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
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8, title="AUROC", title_fontsize=8)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def histogram_figure(
    scores: Sequence[float],
    classes: Sequence[str],
    path: str | Path,
    threshold: float | None = None,
    title: str = "image scores per class",
) -> None:
    """Step histograms of ``scores`` per class on shared bins, with the flag threshold."""
    plt = _pyplot()
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(classes, dtype=object)
    finite = scores[np.isfinite(scores)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if threshold is not None and np.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        hi = lo + 1.0
    bins = np.linspace(lo, hi, 41)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for cls in sorted(set(classes.tolist())):
        s = scores[(classes == cls) & np.isfinite(scores)]
        if s.size:
            ax.hist(s, bins=bins, histtype="step", lw=1.6, density=True, label=f"{cls} ({s.size})")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"flag threshold {threshold:.2f}")
    ax.set(xlabel="image score (z vs healthy)", ylabel="density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
