"""Paired comparison of two models' image AUROC on the same B-scans: difference and a bootstrap CI.

    python benchmarks/paired_auroc.py benchmarks/results/kermany-fanogan/scores.csv \\
        benchmarks/results/kermany-ganomaly-halfB/scores.csv [--n 2000] [--seed 0]

Reads two ``scores.csv`` files written by ``octanomaly evaluate`` / ``eval_kermany.py`` (NORMAL
negative), pairs them by file, and resamples patients (the id in ``CLASS-PATIENT-N``) with
replacement, so B-scans of one patient stay together. Prints AUROC A, AUROC B, A - B and the
2.5 / 97.5 percentiles of the bootstrap differences.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score


def _scores(path: Path) -> dict[str, tuple[int, float]]:
    with path.open(newline="", encoding="utf-8") as f:
        return {
            r["file"]: (int(r["class"] != "NORMAL"), float(r["score"]))
            for r in csv.DictReader(f)
            if r["score"] not in ("", "nan")
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    a, b = _scores(args.a), _scores(args.b)
    files = sorted(set(a) & set(b))
    y = np.array([a[f][0] for f in files])
    sa, sb = np.array([a[f][1] for f in files]), np.array([b[f][1] for f in files])
    patient = np.array([Path(f).stem.split("-")[1] for f in files])
    groups = {g: np.flatnonzero(patient == g) for g in np.unique(patient)}
    keys = np.array(sorted(groups))
    rng = np.random.default_rng(args.seed)
    diffs = []
    for _ in range(args.n):
        idx = np.concatenate([groups[g] for g in rng.choice(keys, len(keys))])
        if 0 < y[idx].sum() < len(idx):
            diffs.append(roc_auc_score(y[idx], sa[idx]) - roc_auc_score(y[idx], sb[idx]))
    auc_a, auc_b = roc_auc_score(y, sa), roc_auc_score(y, sb)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    print(
        f"{len(files)} paired B-scans, {len(keys)} patients: AUROC {auc_a:.4f} vs {auc_b:.4f}, "
        f"difference {auc_a - auc_b:+.4f} (95 % bootstrap CI {lo:+.4f} .. {hi:+.4f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
