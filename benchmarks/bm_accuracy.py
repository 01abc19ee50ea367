"""BM (and RPE) accuracy of the layer detector on the expert-annotated Spectralis drusen volume.

Usage: ``python benchmarks/bm_accuracy.py [FOLDER] [--figures docs]``; ``--figures`` also
writes ``layers-drusen.png`` and ``layers-kermany.png`` (Kermany dev + OCTDL overlays).
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


def figure(images: list[np.ndarray], titles: list[str], out: Path, refs=None) -> None:
    """Overlay ILM (yellow), BM (cyan) and an optional expert BM (red dashes); small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from octanomaly.transforms.layers import detect_layers

    rows = (len(images) + 1) // 2
    fig, axs = plt.subplots(rows, 2, figsize=(10, 2.7 * rows))
    for k, (ax, img) in enumerate(zip(axs.flat, images, strict=False)):
        ilm, bm = detect_layers(img)
        ax.imshow(img, cmap="gray")
        ax.plot(ilm, "y", lw=0.7, label="ILM")
        ax.plot(bm, "c", lw=0.7, label="BM")
        if refs is not None:
            ax.plot(refs[k], "r--", lw=0.6, label="BM (expert)")
        ax.set_title(titles[k], fontsize=8)
        ax.axis("off")
    axs.flat[0].legend(fontsize=6, loc="lower left")
    for ax in list(axs.flat)[len(images) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=65)
    plt.close(fig)


def figures(vol: np.ndarray, ref: np.ndarray, docs: Path) -> None:
    """``layers-drusen.png`` and ``layers-kermany.png`` in ``docs``."""
    idx = [10, 60, 72, 120]
    figure([vol[i] for i in idx], [f"drusen volume B-scan {i}" for i in idx],
           docs / "layers-drusen.png", [ref[i] for i in idx])  # fmt: skip
    data = DEFAULT.parents[1]
    picks = [sorted((data / "kermany/dev" / c).iterdir())[5] for c in
             ("NORMAL", "CNV", "DME", "DRUSEN")]  # fmt: skip
    picks += [sorted((data / "abnormal/octdl" / c).iterdir())[0] for c in ("AMD", "VID")]
    imgs = [np.asarray(Image.open(p).convert("L")) for p in picks]
    figure(imgs, [p.name for p in picks], docs / "layers-kermany.png")


def main() -> None:
    from octanomaly.transforms.layers import detect_layers

    args = sys.argv[1:]
    docs = None
    if "--figures" in args:
        i = args.index("--figures")
        docs = Path(args[i + 1])
        del args[i : i + 2]
    folder = Path(args[0]) if args else DEFAULT
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
    if docs is not None:
        figures(vol, ref, docs)


if __name__ == "__main__":
    main()
