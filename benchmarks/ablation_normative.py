"""Ablation of the scoring channels against the normative model (issue 10): each channel alone
and fused, on kermany/dev (image level) and the Spectralis drusen volume (pixel / A-scan level).

    python benchmarks/ablation_normative.py [RUN_DIR] [--cache /tmp/octanomaly-ablation]

The network runs once per image (cached as .npz under --cache); every configuration then reuses
the cache. Healthy reference: the 85 native ``kermany/train/NORMAL`` B-scans (the bundled model
was trained on them; the B-scan threshold comes from out-of-fold scores, by patient). Settings are
chosen on half of dev (patients split by a hash of their id: "dev-A") and reported on the other
half ("dev-B") and on all of dev. Prints a markdown table and writes
``benchmarks/results/ablation-normative.json``.

Channels: ``intensity`` (per-B-scan normalised image), ``residual`` (stitched ``|x - x_hat|``),
``structural`` (gradient-magnitude difference of x and x_hat: structure, not speckle), ``score``
(the model's own patch score made spatial: GANomaly's latent distance, f-AnoGAN's feature term).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from scipy import ndimage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "ablation-normative.json"

CONFIGS: dict[str, dict[str, float]] = {
    "residual": {"residual": 1.0},
    "intensity": {"intensity": 1.0},
    "structural": {"structural": 1.0},
    "score": {"score": 1.0},
    "intensity + residual (equal)": {"intensity": 1.0, "residual": 1.0},
    "intensity + 0.25 residual (shipped)": {"intensity": 1.0, "residual": 0.25},
    "all four (equal)": {"intensity": 1.0, "residual": 1.0, "structural": 1.0, "score": 1.0},
}
TWO_SIDED = {"intensity": True, "residual": False, "structural": False, "score": False}


def _cache_one(run, vol, stride, sigma):
    import torch

    from octanomaly.scoring.calibration import flatten_row
    from octanomaly.scoring.channels import channel_maps
    from octanomaly.scoring.patch_scores import score_patches
    from octanomaly.transforms.patches import extract, grid_coords, pad_to_patch, stitch
    from octanomaly.transforms.preprocess import preprocess_volume

    pre = run.cfg.preprocessing
    prep = preprocess_volume(vol, pre)
    img, mask = prep["image"], prep["mask"]
    p = run.model.patch_size
    coords = grid_coords(mask, p, stride)
    patches = extract(pad_to_patch(img, p, -1.0), coords, p)
    scored = score_patches(run.model, patches, 256, False)
    with torch.inference_mode():
        rec = np.concatenate(
            [run.model.reconstruct(torch.from_numpy(patches[s : s + 256])).numpy()[:, 0]
             for s in range(0, len(patches), 256)] or [np.zeros((0, p, p), np.float32)]
        )  # fmt: skip
    shape = img.shape
    residual = ndimage.gaussian_filter(stitch(scored.residual, coords, shape, p), (0, sigma, sigma))
    recon = stitch(rec, coords, shape, p)

    def grad(a):
        return np.hypot(ndimage.sobel(a, 1), ndimage.sobel(a, 2))

    structural = ndimage.gaussian_filter(np.abs(grad(img) - grad(recon)), (0, sigma, sigma))
    score = stitch(scored.score.astype(np.float32), coords, shape, p)
    intensity = channel_maps(img, residual, mask, ("intensity",), sigma)["intensity"]
    return {
        "intensity": intensity.astype(np.float16), "residual": residual.astype(np.float16),
        "structural": structural.astype(np.float16), "score": score.astype(np.float32),
        "mask": mask, "bm_row": flatten_row(pre, img.shape[1]), "axial": prep["spacing"][1],
        "shifts": prep["flatten_shifts"], "width": vol.shape[2],
    }  # fmt: skip


def build_cache(run, cache: Path, stride: int, sigma: float) -> dict[str, list[Path]]:
    from rich.progress import Progress

    from octanomaly.io import load_volume

    sets = {
        "healthy": sorted((DATA / "kermany/train/NORMAL").glob("*.jpeg")),
        "dev": sorted((DATA / "kermany/dev").glob("*/*.jpeg")),
        "drusen": [DATA / "volumes/spectralis-drusen/OCT-Volume-Scan"],
    }
    out: dict[str, list[Path]] = {}
    with Progress(transient=True) as bar:
        for name, files in sets.items():
            task = bar.add_task(f"caching {name}", total=len(files))
            out[name] = []
            for f in files:
                dst = cache / name / f"{f.parent.name}__{f.stem}.npz"
                if not dst.is_file():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dst.with_suffix(".tmp.npz")
                    np.savez(tmp, **_cache_one(run, load_volume(f), stride, sigma))
                    tmp.replace(dst)  # complete files only (interrupted runs leave no half file)
                out[name].append(dst)
                bar.advance(task)
    return out


def _load(path: Path, spec, margin: int, edge: int) -> dict:
    from octanomaly.scoring.channels import position_bins, scoring_region

    d = dict(np.load(path))
    d["bins"] = position_bins(d["mask"], int(d["bm_row"]), margin, float(d["axial"]), spec)
    d["region"] = scoring_region(d["mask"], edge)
    d["name"] = path.stem
    return d


def _fused(nm, d, weights):
    z = nm.z({k: d[k] for k in weights}, d["bins"])
    total = sum(weights.values())
    return sum(w / total * (np.abs(z[k]) if TWO_SIDED[k] else z[k]) for k, w in weights.items())


def _fit(items, channels, spec, seed=0):
    from octanomaly.scoring.normative import NormativeModel

    rng = np.random.default_rng(seed)
    vals = {k: [] for k in channels}
    bins = []
    for d in items:
        idx = np.flatnonzero(d["region"])
        if idx.size > 20_000:
            idx = rng.choice(idx, 20_000, replace=False)
        bins.append(d["bins"].ravel()[idx])
        for k in channels:
            vals[k].append(d[k].ravel()[idx].astype(np.float32))
    return NormativeModel.fit({k: np.concatenate(v) for k, v in vals.items()},
                              np.concatenate(bins), spec)  # fmt: skip


def _bscore(f, region, q):
    return np.array([np.percentile(f[i][region[i]], q) if region[i].any() else np.nan
                     for i in range(f.shape[0])])  # fmt: skip


def _pid(name: str) -> str:
    m = re.search(r"-(\d+)-\d+$", name)
    return m.group(1) if m else name


def _auroc(scores, labels):
    from sklearn.metrics import roc_auc_score

    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    ok = np.isfinite(s)
    return float(roc_auc_score(y[ok], s[ok])) if len(set(y[ok])) == 2 else float("nan")


def image_metrics(scores, cls, widths, sel):
    s, c, w = np.asarray(scores)[sel], np.asarray(cls)[sel], np.asarray(widths)[sel]
    y = c != "NORMAL"
    out = {"all": _auroc(s, y)}
    for k in ("CNV", "DME", "DRUSEN"):
        m = (c == k) | (c == "NORMAL")
        out[k] = _auroc(s[m], y[m])
    m = w == 512
    out["512"] = _auroc(s[m], y[m])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?", type=Path, default=None)
    p.add_argument("--cache", type=Path, default=Path("/tmp/octanomaly-ablation"))
    p.add_argument("--percentile", type=float, default=99.5, help="B-scan score percentile")
    a = p.parse_args(argv)

    import torch

    from octanomaly.evaluation.drusen import load_drusen_mask
    from octanomaly.scoring import default_model_dir, load_run
    from octanomaly.scoring.normative import BinSpec
    from octanomaly.transforms.flatten import resize_bscans, shift_columns

    torch.set_num_threads(2)
    run = load_run(a.run_dir or default_model_dir(), "cpu")
    cal = run.calibration.file
    t0 = time.perf_counter()
    files = build_cache(run, a.cache / run.run_id, cal.stride, cal.smooth_sigma)
    t_cache = time.perf_counter() - t0
    spec, margin, edge = BinSpec(), run.cfg.preprocessing.margin_px, cal.edge_px
    healthy = [_load(f, spec, margin, edge) for f in files["healthy"]]
    dev = [_load(f, spec, margin, edge) for f in files["dev"]]
    vol = _load(files["drusen"][0], spec, margin, edge)
    cls = [d["name"].split("__")[0] for d in dev]
    widths = [int(d["width"]) for d in dev]
    half = np.array([zlib.crc32(_pid(d["name"]).encode()) % 2 == 0 for d in dev])
    truth = load_drusen_mask(DATA / "volumes/spectralis-drusen")
    n, dd, w = vol["mask"].shape
    gt = shift_columns(resize_bscans(truth.astype(np.float32), (dd, w)) > 0.5, vol["shifts"], 0)
    pids = [_pid(d["name"]) for d in healthy]
    groups = sorted(set(pids))
    fold = np.array([groups.index(g) % 5 for g in pids])
    rows = {}
    q = a.percentile
    for name, weights in CONFIGS.items():
        nm = _fit(healthy, weights, spec)
        oof = np.empty(len(healthy))
        for k in range(5):
            nm_k = _fit([h for h, f in zip(healthy, fold, strict=True) if f != k], weights, spec)
            for i in np.flatnonzero(fold == k):
                oof[i] = _bscore(_fused(nm_k, healthy[i], weights), healthy[i]["region"], q)[0]
        thr = np.percentile(oof, 99)
        scores = [float(_bscore(_fused(nm, d, weights), d["region"], q)[0]) for d in dev]
        normal = np.array([c == "NORMAL" for c in cls])
        f = _fused(nm, vol, weights)
        r = vol["region"]
        col_score = np.where(r, f, -np.inf).max(axis=1)
        ok = r.any(axis=1)
        rows[name] = {
            "dev": image_metrics(scores, cls, widths, np.ones(len(dev), bool)),
            "dev-A": image_metrics(scores, cls, widths, half),
            "dev-B": image_metrics(scores, cls, widths, ~half),
            "healthy_flagged": float(np.mean(np.asarray(scores)[normal] > thr)),
            "drusen_pixel_auroc_retina": _auroc(f[r], gt[r]),
            "drusen_ascan_auroc": _auroc(col_score[ok], gt.any(axis=1)[ok]),
        }
        print(name, json.dumps(rows[name]), file=sys.stderr)
    chosen = max(rows, key=lambda k: rows[k]["dev-A"]["all"])
    width_leak = _auroc(widths, [c != "NORMAL" for c in cls])
    result = {"run_id": run.run_id, "percentile": q, "chosen_on_dev_A": chosen,
              "width_leak_auroc": width_leak, "cache_seconds": t_cache, "rows": rows}  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))

    def f3(v):
        return "–" if not np.isfinite(v) else f"{v:.3f}"

    print(
        "| channels (normative z) | dev AUROC | CNV | DME | DRUSEN | 512-wide | dev-A | dev-B "
        "| healthy flagged | drusen px AUROC (retina) | drusen A-scan AUROC |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        d = r["dev"]
        mark = " ←" if name == chosen else ""
        print(
            f"| {name}{mark} | {f3(d['all'])} | {f3(d['CNV'])} | {f3(d['DME'])} | "
            f"{f3(d['DRUSEN'])} | {f3(d['512'])} | {f3(r['dev-A']['all'])} | "
            f"{f3(r['dev-B']['all'])} | {100 * r['healthy_flagged']:.1f} % | "
            f"{f3(r['drusen_pixel_auroc_retina'])} | {f3(r['drusen_ascan_auroc'])} |"
        )
    print(f"width alone (leak reference): {f3(width_leak)}; ← best on dev-A")
    return 0


if __name__ == "__main__":
    sys.exit(main())
