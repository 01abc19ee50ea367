"""Prototype (not shipped): PatchCore-style feature bank with the model's own encoder.

    python benchmarks/feature_bank_probe.py [RUN_DIR]

Every retina patch of the stride grid (half a patch at each lateral end left out, as in scoring)
is embedded with the GANomaly encoder ``G.encoder1`` (the latent code z, 100-d); the healthy bank
holds the patches of the 85 native ``kermany/train/NORMAL`` B-scans (standardised per dimension,
up to 20,000). A B-scan's score is the mean of its three largest nearest-neighbour distances
(scikit-learn ``NearestNeighbors``). Prints image AUROC on ``kermany/dev``, overall and per class.
GANomaly runs only (other models have no ``G.encoder1``; a model hook for patch embeddings is the
step to ship it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def embed(run, path: Path) -> np.ndarray:
    """Encoder codes ``(n_patches, nz)`` of the scored patches of one B-scan image."""
    import torch

    from octanomaly.io import load_volume
    from octanomaly.transforms.patches import extract, grid_coords, pad_to_patch
    from octanomaly.transforms.preprocess import preprocess_volume

    prep = preprocess_volume(load_volume(path), run.cfg.preprocessing)
    p, edge = run.model.patch_size, run.calibration.file.edge_px
    coords = grid_coords(prep["mask"], p, run.calibration.stride)
    w = prep["image"].shape[2]
    coords = coords[(coords[:, 2] >= edge) & (coords[:, 2] + p <= w - edge)]
    patches = extract(pad_to_patch(prep["image"], p, -1.0), coords, p)
    with torch.inference_mode():
        z = run.model.G.encoder1(torch.from_numpy(np.ascontiguousarray(patches)))
    return z.flatten(1).numpy()


def main(argv: list[str] | None = None) -> int:
    from rich.progress import track
    from sklearn.metrics import roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    from octanomaly.scoring import default_model_dir, load_run

    argv = sys.argv[1:] if argv is None else argv
    run = load_run(Path(argv[0]) if argv else default_model_dir(), "cpu")
    healthy = sorted((DATA / "kermany/train/NORMAL").glob("*.jpeg"))
    dev = sorted((DATA / "kermany/dev").glob("*/*.jpeg"))
    bank = np.concatenate([embed(run, f) for f in track(healthy, "healthy bank")])
    bank = bank[np.random.default_rng(0).permutation(len(bank))[:20_000]]
    mu, sd = bank.mean(0), bank.std(0) + 1e-6
    nn = NearestNeighbors(n_neighbors=1).fit((bank - mu) / sd)
    scores, cls = [], []
    for f in track(dev, "kermany/dev"):
        z = embed(run, f)
        d = nn.kneighbors((z - mu) / sd)[0][:, 0] if len(z) else np.array([np.nan])
        scores.append(float(np.sort(d)[-3:].mean()))
        cls.append(f.parent.name)
    s, c = np.asarray(scores), np.asarray(cls)
    print(f"bank {len(bank)} healthy patches (nz {bank.shape[1]})")
    print(f"dev image AUROC {roc_auc_score(c != 'NORMAL', s):.3f}")
    for k in ("CNV", "DME", "DRUSEN"):
        m = (c == k) | (c == "NORMAL")
        print(f"  {k} vs NORMAL {roc_auc_score(c[m] != 'NORMAL', s[m]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
