"""docs/normative-before-after.png: anomaly maps before (one global healthy mean/std of the
residual) and after (normative model: per-position healthy statistics, fused channels) on a
drusen, a DME and a CNV B-scan, bundled model.

    python docs/make_normative_figure.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
#: The global residual statistics of the bundled model before issue 10 (calibration.json maps).
BEFORE_MEAN, BEFORE_STD, BEFORE_SIGMA = 0.07504616386147549, 0.031615410202119804, 2.0


def before_map(volume, run) -> np.ndarray:
    """The pre-normative anomaly map: global z of the stitched residual (sigma 2), in the retina."""
    from octanomaly.scoring.stitching import score_stack
    from octanomaly.transforms.preprocess import preprocess_volume, restore_map

    prep = preprocess_volume(volume, run.cfg.preprocessing)
    maps = score_stack(run.model, prep["image"], prep["mask"], stride=16, smooth_sigma=BEFORE_SIGMA)
    z = np.where(prep["mask"], np.maximum((maps.residual - BEFORE_MEAN) / BEFORE_STD, 0), 0)
    return restore_map(z.astype(np.float32), prep)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from octanomaly.evaluation.drusen import load_drusen_mask
    from octanomaly.io import load_volume
    from octanomaly.scoring import default_model_dir, load_run, map_volume

    run = load_run(default_model_dir(), "cpu")
    drusen_vol = load_volume(DATA / "volumes/spectralis-drusen/OCT-Volume-Scan")
    truth = load_drusen_mask(DATA / "volumes/spectralis-drusen")
    one = dataclasses.replace(drusen_vol, data=drusen_vol.data[50:51])
    cases = [
        ("drusen (Spectralis volume, B-scan 51)", one, truth[50]),
        ("DME (examples/bscans)", load_volume(ROOT / "examples/bscans/DME-1102486-2.jpeg"), None),
        ("CNV (examples/bscans)", load_volume(ROOT / "examples/bscans/CNV-1112835-1.jpeg"), None),
    ]  # fmt: skip
    fig, axes = plt.subplots(len(cases), 2, figsize=(12, 3.4 * len(cases)))
    for row, (title, vol, gt) in zip(axes, cases, strict=True):
        after = map_volume(vol, run)
        before = before_map(vol, run)
        img = np.asarray(vol.data[0], dtype=np.float32)
        for ax, m, label in (
            (row[0], before[0], "before: global residual z"),
            (
                row[1],
                after.anomaly[0],
                f"after: normative z (B-scan {after.bscan_scores[0]:.1f} z)",
            ),
        ):
            ax.imshow(img, cmap="gray")
            vmax = max(float(np.percentile(m[m > 0], 99.5)) if (m > 0).any() else 1.0, 1.0)
            ax.imshow(np.ma.masked_less_equal(m, 0.5), cmap="inferno", alpha=0.6, vmin=0, vmax=vmax)
            if gt is not None:
                ax.contour(gt, levels=[0.5], colors="cyan", linewidths=0.6)
            ax.set_title(f"{title} — {label}", fontsize=8)
            ax.axis("off")
    fig.suptitle("heat: anomaly z (shown above 0.5); cyan: drusen from the expert RPE/BM lines",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "normative-before-after.png", dpi=80)


if __name__ == "__main__":
    main()
