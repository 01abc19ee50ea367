"""Image- and pixel-level detection metrics (scikit-learn), with grouping by class and width.

Larger scores mean more anomalous; label 1 = abnormal. A metric that is undefined (only one
label present) is ``None`` rather than an exception, so partial data still gives a report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Specificity at which sensitivity is reported.
SPECIFICITY = 0.95


def _both(labels: np.ndarray) -> bool:
    return bool(labels.size) and 0 < int(labels.sum()) < labels.size


def sensitivity_at_specificity(
    labels: np.ndarray, scores: np.ndarray, specificity: float = SPECIFICITY
) -> float | None:
    """Highest true-positive rate on the ROC curve with false-positive rate <= 1 - specificity."""
    from sklearn.metrics import roc_curve

    labels, scores = np.asarray(labels), np.asarray(scores)
    if not _both(labels):
        return None
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    ok = fpr <= 1.0 - specificity + 1e-12
    return float(tpr[ok].max())


def binary_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """``auroc``, ``ap``, ``sensitivity_at_95_specificity``, ``n_normal``, ``n_abnormal``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    out: dict[str, Any] = {"n_normal": int((labels == 0).sum()), "n_abnormal": int(labels.sum())}
    if _both(labels):
        out["auroc"] = float(roc_auc_score(labels, scores))
        out["ap"] = float(average_precision_score(labels, scores))
        out["sensitivity_at_95_specificity"] = sensitivity_at_specificity(labels, scores)
    else:
        out["auroc"] = out["ap"] = out["sensitivity_at_95_specificity"] = None
    return out


def image_metrics(
    scores: Sequence[float],
    classes: Sequence[str],
    normal_class: str,
    widths: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Metrics of image-level ``scores`` with ``classes`` (``normal_class`` negative).

    Returns ``image_auroc``, ``image_ap``, ``sensitivity_at_95_specificity``, ``n_normal``,
    ``n_abnormal``, ``per_class_auroc``/``per_class_ap`` (each class against the normal one)
    and, with ``widths``, ``per_width`` (the metrics within each width group) and
    ``width_only_auroc`` (AUROC of the width used as the score: 0.5 means width carries no
    label information; far from 0.5 either way, a size-dependent score can look good for free).
    """
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(classes, dtype=object)
    labels = (classes != normal_class).astype(int)
    overall = binary_metrics(labels, scores)
    out: dict[str, Any] = {
        "image_auroc": overall["auroc"],
        "image_ap": overall["ap"],
        "sensitivity_at_95_specificity": overall["sensitivity_at_95_specificity"],
        "n_normal": overall["n_normal"],
        "n_abnormal": overall["n_abnormal"],
        "per_class_auroc": {},
        "per_class_ap": {},
        "per_class_n": {},
    }
    normal = classes == normal_class
    for cls in sorted({c for c in classes if c != normal_class}):
        pick = normal | (classes == cls)
        m = binary_metrics(labels[pick], scores[pick])
        out["per_class_auroc"][cls] = m["auroc"]
        out["per_class_ap"][cls] = m["ap"]
        out["per_class_n"][cls] = m["n_abnormal"]
    if widths is not None:
        widths = np.asarray(widths, dtype=np.int64)
        out["per_width"] = {}
        for w in sorted(set(widths.tolist())):
            pick = widths == w
            m = binary_metrics(labels[pick], scores[pick])
            out["per_width"][str(w)] = {
                "image_auroc": m["auroc"],
                "image_ap": m["ap"],
                "n_normal": m["n_normal"],
                "n_abnormal": m["n_abnormal"],
            }
        out["width_only_auroc"] = (
            binary_metrics(labels, widths)["auroc"] if len(set(widths.tolist())) > 1 else None
        )
    return out


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(fpr, tpr)`` of the ROC curve, or ``None`` when only one label is present."""
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels)
    if not _both(labels):
        return None
    fpr, tpr, _ = roc_curve(labels, np.asarray(scores, dtype=np.float64))
    return fpr, tpr


def _dice_from_counts(counts: np.ndarray) -> float | None:
    """Dice = F1 from the 2x2 confusion counts ``(pred, truth)``: 00 01 10 11, as weights."""
    from sklearn.metrics import f1_score

    if counts[1] + counts[2] + counts[3] == 0:
        return None
    combos = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])  # (pred, truth)
    return float(f1_score(combos[:, 1], combos[:, 0], sample_weight=counts))


def _confusion(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    p = np.asarray(pred, dtype=bool).ravel().astype(np.int64)
    return np.bincount(p * 2 + np.asarray(truth, dtype=bool).ravel(), minlength=4)


def dice(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """Dice coefficient ``2|P∩T| / (|P| + |T|)`` (F1 of the pixels); ``None`` when both empty."""
    return _dice_from_counts(_confusion(pred, truth))


def compress_scores(
    scores: np.ndarray, truth: np.ndarray, mantissa_bits: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, labels, weights)``: each distinct score once per label, with its count.

    Scores are truncated to ``mantissa_bits`` of float32 mantissa first (relative precision
    ``2**-mantissa_bits``, scale-free and order-preserving), so AUROC/AP computed with these
    sample weights equal those of the full pixel set up to ties within that precision, at a
    fraction of the cost on tens of millions of pixels.
    """
    s = np.ascontiguousarray(scores, dtype=np.float32).ravel()
    drop = 23 - mantissa_bits
    q = ((s.view(np.uint32) >> drop) << drop).view(np.float32)
    values, inverse = np.unique(q, return_inverse=True)
    t = np.asarray(truth, dtype=bool).ravel()
    pos = np.bincount(inverse[t], minlength=values.size)
    neg = np.bincount(inverse[~t], minlength=values.size)
    keep_p, keep_n = pos > 0, neg > 0
    return (
        np.concatenate([values[keep_n], values[keep_p]]),
        np.concatenate([np.zeros(keep_n.sum(), int), np.ones(keep_p.sum(), int)]),
        np.concatenate([neg[keep_n], pos[keep_p]]).astype(np.float64),
    )


class PixelAccumulator:
    """Pools pixel scores and truth over many maps; :meth:`result` gives pooled pixel metrics.

    Each :meth:`add` keeps only :func:`compress_scores` of its pixels and the confusion counts
    of an optional predicted mask, so whole datasets pool in little memory.
    """

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._confusion = np.zeros(4, dtype=np.int64)  # (pred, truth): 00 01 10 11
        self._has_pred = False
        self.n_maps = 0

    def add(
        self,
        scores: np.ndarray,
        truth: np.ndarray,
        pred: np.ndarray | None = None,
        region: np.ndarray | None = None,
    ) -> None:
        """Add one map; ``region`` (bool, same shape) limits the pixels that count."""
        scores = np.asarray(scores)
        truth = np.asarray(truth, dtype=bool)
        if scores.shape != truth.shape:
            raise ValueError(f"score map {scores.shape} and mask {truth.shape} differ in shape")
        if region is not None:
            region = np.asarray(region, dtype=bool)
        sel = (lambda a: a[region]) if region is not None else (lambda a: a.ravel())
        s = sel(scores).astype(np.float32, copy=False)
        s = np.where(np.isfinite(s), s, np.float32(np.finfo(np.float32).min))
        t = sel(truth)
        self._parts.append(compress_scores(s, t))
        if pred is not None:
            self._confusion += _confusion(sel(np.asarray(pred, dtype=bool)), t)
            self._has_pred = True
        self.n_maps += 1

    def result(self) -> dict[str, Any]:
        """``pixel_auroc``, ``pixel_ap`` (None with one label), ``dice`` (with masks), counts."""
        from sklearn.metrics import average_precision_score, roc_auc_score

        out: dict[str, Any] = {"pixel_auroc": None, "pixel_ap": None, "n_maps": self.n_maps}
        if self._parts:
            v = np.concatenate([p[0] for p in self._parts])
            y = np.concatenate([p[1] for p in self._parts])
            w = np.concatenate([p[2] for p in self._parts])
            n_pos = float(w[y == 1].sum())
            out["n_pixels"] = int(w.sum())
            out["positive_fraction"] = n_pos / w.sum() if w.sum() else None
            if 0 < n_pos < w.sum():
                out["pixel_auroc"] = float(roc_auc_score(y, v, sample_weight=w))
                out["pixel_ap"] = float(average_precision_score(y, v, sample_weight=w))
        if self._has_pred:
            out["dice"] = _dice_from_counts(self._confusion)
        return out


def pixel_metrics(
    scores: np.ndarray,
    truth: np.ndarray,
    threshold: float | None = None,
    region: np.ndarray | None = None,
) -> dict[str, Any]:
    """``pixel_auroc``, ``pixel_ap`` (and ``dice`` of ``scores > threshold``) of one map.

    ``region`` (bool, same shape) restricts the pixels considered (e.g. the retina).
    Non-finite scores count as the lowest score.
    """
    acc = PixelAccumulator()
    pred = None if threshold is None else np.asarray(scores) > threshold
    acc.add(scores, truth, pred, region)
    out = acc.result()
    if threshold is not None:
        out["threshold"] = float(threshold)
    return out
