"""Pixel-level results row: a run's anomaly map against drusen on the Spectralis drusen volume.

Usage::

    python benchmarks/eval_drusen.py RUN_DIR [--folder ../shared/data/volumes/spectralis-drusen]
        [--min-thickness 7] [--every 1] [--device auto] [--out benchmarks/results/drusen-<run>]
        [--figure docs/drusen-eval.png]

Ground truth: :func:`octanomaly.evaluation.drusen.load_drusen_mask` (pixels between the expert
RPE and BM lines where they are more than ``--min-thickness`` px apart). The run's map
(``map_volume``: calibrated z-scores, 0 outside its detected retina) is scored over two pixel
sets: the **retina region** the map covers (headline: drusen against other retinal tissue, the
actual localisation task; ``gt_in_retina`` says which fraction of drusen pixels that region
holds, so a retina detector that misses drusen cannot hide it) and the **whole volume** (the
textbook pixel AUROC; inflated here, because the map is 0 outside the retina by construction and
the vitreous and choroid are easy true negatives). Dice uses the map's
calibrated mask (healthy 99th percentile). Writes ``drusen.json`` into ``--out``, prints a
markdown row, and with ``--figure`` a PNG of a few B-scans with map and drusen contours.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared/data/volumes/spectralis-drusen"


def figure(vol: np.ndarray, anomaly: np.ndarray, truth: np.ndarray, pred: np.ndarray,
           idx: list[int], titles: list[str], vmax: float, out: Path) -> None:  # fmt: skip
    """B-scans with the anomaly map (hot, transparent below 0) and drusen/mask contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from octanomaly.io.atomic import atomic_path

    fig, axs = plt.subplots(len(idx), 1, figsize=(8, 2.9 * len(idx)), dpi=110)
    for ax, i, title in zip(np.atleast_1d(axs), idx, titles, strict=True):
        ax.imshow(vol[i], cmap="gray", aspect="auto")
        a = np.ma.masked_less_equal(anomaly[i], 0)
        im = ax.imshow(a, cmap="hot", vmin=0, vmax=vmax, alpha=0.55, aspect="auto")
        if truth[i].any():
            ax.contour(truth[i], levels=[0.5], colors="cyan", linewidths=0.8)
        if pred[i].any():
            ax.contour(pred[i], levels=[0.5], colors="lime", linewidths=0.6, linestyles="--")
        rows = np.flatnonzero(truth[i].any(axis=1) | (anomaly[i] > 0).any(axis=1))
        if rows.size:
            ax.set_ylim(min(rows.max() + 40, vol.shape[1] - 1), max(rows.min() - 40, 0))
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.colorbar(im, ax=axs, fraction=0.02, label="anomaly (z vs healthy)")
    fig.suptitle("cyan: drusen (expert RPE/BM lines)   green dashes: calibrated mask", fontsize=9)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _ascan_auroc(anomaly: np.ndarray, retina: np.ndarray, truth: np.ndarray) -> float:
    """A-scan AUROC: a column's score is its highest map value in the retina; positive when it
    holds drusen pixels (columns without retina are left out)."""
    from sklearn.metrics import roc_auc_score

    score = np.where(retina, anomaly, -np.inf).max(axis=1)
    ok = retina.any(axis=1)
    return float(roc_auc_score(truth.any(axis=1)[ok], score[ok]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    p.add_argument("--min-thickness", type=float, default=7.0)
    p.add_argument("--every", type=int, default=1, help="score every N-th B-scan (quick checks)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--figure", type=Path, default=None)
    p.add_argument("--name", default=None, help="row label (default: the run folder's name)")
    a = p.parse_args(argv)

    from octanomaly.devices import resolve_device
    from octanomaly.errors import OctanomalyError
    from octanomaly.evaluation.drusen import load_drusen_mask
    from octanomaly.evaluation.metrics import PixelAccumulator
    from octanomaly.evaluation.runner import RunScorer
    from octanomaly.io import load_volume
    from octanomaly.runs import write_json

    name = a.name or a.run_dir.resolve().name
    out = a.out or Path(__file__).resolve().parent / "results" / f"drusen-{name}"
    try:
        volume = load_volume(a.folder / "OCT-Volume-Scan")
        truth = load_drusen_mask(a.folder, a.min_thickness)
        if truth.shape != volume.shape:
            raise OctanomalyError(f"drusen mask {truth.shape} vs volume {volume.shape}")
        pick = np.arange(0, volume.n_bscans, max(a.every, 1))
        if a.every > 1:
            volume = dataclasses.replace(volume, data=volume.data[pick])
        truth = truth[pick]
        scorer = RunScorer(a.run_dir, device=a.device)
        t0 = time.perf_counter()
        maps = scorer.maps(volume)
        seconds = time.perf_counter() - t0
    except OctanomalyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    whole, retina = PixelAccumulator(), PixelAccumulator()
    whole.add(maps.anomaly, truth, maps.mask)
    retina.add(maps.anomaly, truth, maps.mask, region=maps.retina)
    res = {
        "headline": "retina_region",
        "whole_volume": whole.result(),
        "retina_region": retina.result(),
        "gt_in_retina": float(truth[maps.retina].sum() / max(truth.sum(), 1)),
        "ascan_auroc": _ascan_auroc(maps.anomaly, maps.retina, truth),
        "drusen_fraction": float(truth.mean()),
        "bscans_with_drusen": int(truth.any(axis=(1, 2)).sum()),
        "n_bscans": int(volume.n_bscans),
        "min_thickness_px": a.min_thickness,
        "every": a.every,
        "seconds_per_volume": seconds * (145 / volume.n_bscans),
        "seconds_per_bscan": seconds / volume.n_bscans,
        "device": str(resolve_device(a.device)),
        "model": scorer.info,
    }
    write_json(out / "drusen.json", res)
    if a.figure is not None:
        per = truth.sum(axis=(1, 2))
        order = np.argsort(per)
        idx = [int(order[-1]), int(order[len(order) // 2]), int(order[0])]
        titles = [
            f"B-scan {pick[i] + 1}: {per[i]} drusen px ({lab})"
            for i, lab in zip(idx, ("most drusen", "median", "fewest"), strict=True)
        ]
        vmax = float(max(np.percentile(maps.anomaly[maps.retina], 99.5), 1.0))
        figure(volume.data, maps.anomaly, truth, maps.mask, idx, titles, vmax, a.figure)
    w, r = res["whole_volume"], res["retina_region"]

    def f(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    print(json.dumps({k: v for k, v in res.items() if k != "model"}, indent=1))
    print("| model | pixel AUROC (retina) | pixel AP (retina) | A-scan AUROC | drusen in retina "
          "| Dice | pixel AUROC (whole volume) | pixel AP (whole) | time / volume |")  # fmt: skip
    print(
        f"| {name} | {f(r['pixel_auroc'])} | {f(r['pixel_ap'])} | {f(res['ascan_auroc'])} | "
        f"{f(res['gt_in_retina'])} % | "
        f"{f(w.get('dice'))} | {f(w['pixel_auroc'])} | {f(w['pixel_ap'])} | "
        f"{res['seconds_per_volume']:.0f} s ({res['device']}) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
