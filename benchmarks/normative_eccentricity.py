"""Does the normative model gain from lateral position? Eccentricity bins vs none (issue 10).

    python benchmarks/normative_eccentricity.py [RUN_DIR] [--edges 0.5 1.5] [--json PATH]

Fits the healthy statistics of the pixel channels (intensity, residual, elevation; fused with
weights 1, 0.25, 1; no feature bank, whose healthy values need out-of-fold banks) on the 85
native ``kermany/train/NORMAL`` B-scans twice: once per retina position bin (height above BM x
relative depth, as the product) and once per position bin *and* eccentricity ring (distance from
the fovea in mm, rings split at ``--edges``; the fovea of each B-scan or volume from its
thickness map, :func:`octanomaly.findings.etdrs.find_fovea`, the scan centre when there is no
pit). Reports dev image AUROC (all, per class, dev-A/B) and drusen pixel / A-scan AUROC in the
flattened grid for both. Writes ``--json`` (default
``benchmarks/results/normative-eccentricity.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feature_bank_weight import DATA, dev_and_drusen, metrics_row  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "normative-eccentricity.json"
CHANNELS = ("intensity", "residual", "elevation")
WEIGHTS = {"intensity": 1.0, "residual": 0.25, "elevation": 1.0}


def prepare(run, vol) -> dict:
    """Raw channel maps, bins, supports, region and eccentricity (mm) of one volume."""
    from octanomaly.findings.etdrs import find_fovea
    from octanomaly.scoring import channels as ch
    from octanomaly.scoring.normative import BinSpec
    from octanomaly.scoring.stitching import score_stack
    from octanomaly.transforms.preprocess import preprocess_volume

    cal, pre = run.calibration, run.cfg.preprocessing
    prep = preprocess_volume(vol, pre)
    image, mask, bm = prep["image"], prep["mask"], prep["bm_row"]
    axial = prep["spacing"][1]
    maps = score_stack(run.model, image, mask, stride=cal.stride, smooth_sigma=cal.smooth_sigma)
    raw = ch.channel_maps(image, maps.residual, mask, CHANNELS, cal.smooth_sigma,
                          bm_row=bm, axial_mm=axial)  # fmt: skip
    fovea, _ = find_fovea(prep["ilm"], prep["bm"], vol.spacing)
    fb, fc = fovea.position
    n, _, w = image.shape
    cols_in = (np.arange(w) + 0.5) * vol.shape[2] / w - 0.5
    sb, _, sl = vol.spacing
    ecc = np.hypot((np.arange(n)[:, None] - fb) * sb, (cols_in[None] - fc) * sl)
    return {
        "raw": {k: v.astype(np.float32) for k, v in raw.items()},
        "bins": ch.position_bins(mask, bm, pre.margin_px, axial, BinSpec()),
        "support": ch.supports(raw, bm, axial),
        "region": ch.scoring_region(mask, cal.file.edge_px),
        "ecc": ecc,
        "fovea": fovea.method,
        "shifts": prep["flatten_shifts"],
        "width": vol.shape[2],
    }


def ring(ecc: np.ndarray, edges: list[float]) -> np.ndarray:
    return np.searchsorted(np.asarray(edges), ecc, side="right")


def fit(healthy: list[dict], edges: list[float]):
    """One normative model per eccentricity ring (one ring: the product's model)."""
    from octanomaly.scoring.normative import BinSpec, NormativeModel

    models = []
    for r in range(len(edges) + 1):
        vals = {k: [] for k in CHANNELS}
        bins = []
        for d in healthy:
            sel = d["region"] & (ring(d["ecc"], edges) == r)[:, None, :]
            for k in CHANNELS:
                vals[k].append(d["raw"][k][sel])
            bins.append(d["bins"][sel])
        models.append(NormativeModel.fit({k: np.concatenate(v) for k, v in vals.items()},
                                         np.concatenate(bins), BinSpec()))  # fmt: skip
    return models


def fused(d: dict, models, edges: list[float]) -> np.ndarray:
    from octanomaly.scoring import channels as ch

    rings = np.broadcast_to(ring(d["ecc"], edges)[:, None, :], d["region"].shape)
    z = {k: np.zeros(d["region"].shape, np.float32) for k in CHANNELS}
    for r, m in enumerate(models):
        zr = m.z(d["raw"], d["bins"])
        for k in CHANNELS:
            np.copyto(z[k], zr[k], where=rings == r)
    return ch.fuse(z, WEIGHTS, d["support"])


def main(argv: list[str] | None = None) -> int:
    from rich.progress import track

    from octanomaly.io import load_volume
    from octanomaly.scoring import default_model_dir, load_run
    from octanomaly.scoring.channels import bscan_scores

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?", type=Path, default=None)
    p.add_argument("--edges", type=float, nargs="+", default=[0.5, 1.5])
    p.add_argument("--json", type=Path, default=OUT)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    run = load_run(a.run_dir or default_model_dir(), "cpu")
    normals = sorted((DATA / "kermany/train/NORMAL").glob("*.jpeg"))
    healthy = [prepare(run, load_volume(f)) for f in track(normals, "healthy")]
    dev, vol, (cls, widths, half, gt) = dev_and_drusen(lambda v: prepare(run, v))
    rows = {}
    variants = (("position only (product)", []), (f"position x rings {a.edges} mm", a.edges))
    for name, edges in variants:
        models = fit(healthy, edges)
        scores = [float(bscan_scores(fused(d, models, edges), d["region"], 99.5)[0]) for d in dev]
        f = fused(vol, models, edges)
        rows[name] = metrics_row(scores, cls, widths, half, f, vol["region"], gt)
        print(name, json.dumps(rows[name]), file=sys.stderr)
    methods = [d["fovea"] for d in healthy + dev]
    pits = {k: methods.count(k) for k in sorted(set(methods))}
    print("fovea found by", pits, file=sys.stderr)
    result = {"run_id": run.run_id, "channels": WEIGHTS, "edges_mm": a.edges, "fovea": pits,
              "seconds": time.perf_counter() - t0, "rows": rows}  # fmt: skip
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=1))
    print("| normative bins | dev AUROC | CNV | DME | DRUSEN | 512-wide | dev-A | dev-B "
          "| drusen px AUROC (retina) | drusen A-scan AUROC |")  # fmt: skip
    print("|---" * 10 + "|")
    for k, r in rows.items():
        d = r["dev"]
        px, asc = r["drusen_pixel_auroc_retina"], r["drusen_ascan_auroc"]
        print(f"| {k} | {d['all']:.3f} | {d['CNV']:.3f} | {d['DME']:.3f} | {d['DRUSEN']:.3f} | "
              f"{d['512']:.3f} | {r['dev-A']['all']:.3f} | {r['dev-B']['all']:.3f} | "
              f"{px:.3f} | {asc:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
