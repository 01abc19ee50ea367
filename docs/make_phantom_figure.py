"""Make docs/phantom-vs-real.png: phantom B-scans beside real Spectralis B-scans, same gray scale.

Run from the repository root: ``python docs/make_phantom_figure.py [--data ../shared/data]``.
Real images: Kermany et al. 2018 (OCT2017, CC BY 4.0) and the MedVisBonn OCT-Annotation-Tool
drusen volume (GPL-3.0); they are read, never copied into the repository.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from octanomaly.data.phantom import make_phantom  # noqa: E402

NORMAL = "kermany/train/NORMAL/NORMAL-1038998-1.jpeg"
DRUSEN = "volumes/spectralis-drusen/OCT-Volume-Scan/73-Input.tif"
COLOURS = {"cyst": "#00e5ff", "srf": "#ffd400", "drusen": "#ff4d4d", "hrf": "#7CFC00"}


def _gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=root / "docs" / "phantom-vs-real.png")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    n = 49
    healthy = make_phantom(seed=args.seed, n_bscans=n)
    sick = make_phantom(seed=args.seed, n_bscans=n, lesions="all")
    mid = n // 2
    # the B-scan near the fovea that shows the most lesion types
    kinds = [sum(sick.masks[k][b].any() for k in sick.masks) for b in range(n)]
    b_sick = max(range(n), key=lambda b: (kinds[b], -abs(b - mid)))
    panels = [
        (healthy.volume.data[mid], f"phantom, healthy (seed {args.seed}, B-scan {mid}/{n})"),
        (_gray(args.data / NORMAL), "real Spectralis, normal (Kermany OCT2017)"),
        (sick.volume.data[b_sick], f"phantom with lesions (B-scan {b_sick}/{n})"),
        (sick.volume.data[b_sick], "same, ground-truth masks"),
        (_gray(args.data / DRUSEN), "real Spectralis, drusen (MedVisBonn volume)"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 9.6))
    order = [axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1], axes[1, 2]]
    for ax, (image, title) in zip(order, panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[1, 1]
    for kind, colour in COLOURS.items():
        mask = sick.masks[kind][b_sick]
        if mask.any():
            ax.contour(mask, [0.5], colors=colour, linewidths=0.8)
            ax.plot([], [], color=colour, label=kind)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.6)
    ax = axes[0, 2]
    ax.imshow(healthy.volume.data[mid], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.plot(healthy.ilm[mid], color="#00e5ff", linewidth=0.8, label="ILM")
    ax.plot(healthy.bm[mid], color="#ff4d4d", linewidth=0.8, label="BM")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.6)
    ax.set_title("phantom, ILM and Bruch's membrane", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.suptitle(
        "octanomaly phantom vs real Spectralis B-scans (496 x 512 px, 0.0039 x 0.0112 mm, "
        "gray 0-255 as stored)",
        fontsize=11,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=72, format="png")
    rgb = Image.open(buf).convert("RGB")
    rgb.quantize(colors=160, method=Image.Quantize.FASTOCTREE).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
