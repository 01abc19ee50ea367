"""BM (and RPE) accuracy of the layer detector on the expert-annotated Spectralis drusen volume.

Usage: ``python benchmarks/bm_accuracy.py [../shared/data/volumes/spectralis-drusen]``.
B-scan ``k-Input.tif`` pairs with ``k-layers.png`` (255 = RPE, 127 = BM, 170 = both).
Prints the median and 95th percentile absolute row error of BM over all annotated A-scans.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/volumes/spectralis-drusen"


def load(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """B-scans (n, 496, 512) uint8 and expert BM rows (n, 512), NaN where unannotated."""
    scans = sorted(
        (folder / "OCT-Volume-Scan").glob("*-Input.tif"),
        key=lambda p: int(re.match(r"\d+", p.name).group()),
    )
    vol, bm = [], []
    for s in scans:
        k = re.match(r"\d+", s.name).group()
        vol.append(np.asarray(Image.open(s).convert("L")))
        lab = np.asarray(Image.open(folder / "RPE-BM-Layers" / f"{k}-layers.png"))
        is_bm = (lab == 127) | (lab == 170)
        rows = np.where(is_bm, np.arange(lab.shape[0])[:, None], -1).max(axis=0).astype(float)
        rows[rows < 0] = np.nan
        bm.append(rows)
    return np.stack(vol), np.stack(bm)


def main() -> None:
    from octanomaly.transforms.layers import detect_layers

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    vol, ref = load(folder)
    t0 = time.perf_counter()
    _, bm = detect_layers(vol)
    dt = time.perf_counter() - t0
    err = np.abs(bm - ref)[np.isfinite(ref)]
    n_nan = int(np.isnan(err).sum())
    err = err[np.isfinite(err)]
    print(f"volume {vol.shape}, {err.size} annotated A-scans, detection {dt:.1f} s")
    print("| boundary | median |px| | p95 |px| | mean signed | missed |")
    print("|---|---|---|---|---|")
    signed = (bm - ref)[np.isfinite(ref) & np.isfinite(bm)]
    print(
        f"| BM | {np.median(err):.2f} | {np.percentile(err, 95):.2f} | "
        f"{signed.mean():+.2f} | {n_nan} |"
    )


if __name__ == "__main__":
    main()
