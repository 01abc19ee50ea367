"""Fusion weights (feature bank, residual, elevation) chosen on dev-A, reported on dev-B and dev.

    python benchmarks/feature_bank_weight.py [RUN_DIR] [--out /tmp/octanomaly-bank-run]
        [--healthy all|B] [--residual-weights 0.25 ...] [--elevation-weights 0 0.5 1 ...]
        [--json PATH]

Calibrates RUN_DIR (default: the bundled model) into ``--out`` on the native
``kermany/train/NORMAL`` B-scans (all 85, or ``--healthy B``: the patient-hash half B, 36
B-scans the bundled f-AnoGAN and AnoGAN never trained on) through the product's one path
(``calibrate_run``: normative model, feature bank of healthy patch embeddings, out-of-fold
healthy distances by patient), then scores every ``kermany/dev`` B-scan and the Spectralis
drusen volume with the product's own pipeline, keeping each channel's z-map. Each pair of
residual weight (``--residual-weights``) and bank weight (intensity 1) gives a B-scan score
(p99.5 of the fused map in the scoring region): image AUROC on dev-A / dev-B (patients split
by a CRC32 hash of their id, as in ``ablation_normative.py``) and all of dev, per class,
512-wide only; drusen pixel AUROC inside the retina and A-scan AUROC in the flattened grid.
With ``--elevation-weights`` the grid is the outer band elevation channel's weight instead (bank
weight 1); the table of docs/results.md came from
``--elevation-weights 0 0.5 1 2 4 --json benchmarks/results/elevation-weight.json``.
Writes ``--json`` (default ``benchmarks/results/feature-bank-weight.json``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "feature-bank-weight.json"
BANK_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, "alone")


def _pid(name: str) -> str:
    m = re.search(r"-(\d+)-\d+$", name)
    return m.group(1) if m else name


def _auroc(scores, labels) -> float:
    from sklearn.metrics import roc_auc_score

    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    ok = np.isfinite(s)
    return float(roc_auc_score(y[ok], s[ok])) if len(set(y[ok])) == 2 else float("nan")


def image_metrics(scores, cls, widths, sel) -> dict[str, float]:
    """AUROC overall, per class vs NORMAL and 512-wide only, on the selected images."""
    s, c, w = np.asarray(scores)[sel], np.asarray(cls)[sel], np.asarray(widths)[sel]
    y = c != "NORMAL"
    out = {"all": _auroc(s, y)}
    for k in ("CNV", "DME", "DRUSEN"):
        m = (c == k) | (c == "NORMAL")
        out[k] = _auroc(s[m], y[m])
    m = w == 512
    out["512"] = _auroc(s[m], y[m])
    return out


def dev_and_drusen(prepare) -> tuple[list[dict], dict, tuple]:
    """``prepare(volume)`` of every ``kermany/dev`` B-scan and of the drusen volume, with the dev
    classes, widths, dev-A membership and the drusen truth in the flattened grid."""
    from rich.progress import track

    from octanomaly.evaluation.drusen import load_drusen_mask
    from octanomaly.io import load_volume
    from octanomaly.transforms.flatten import resize_bscans, shift_columns

    dev_files = sorted((DATA / "kermany/dev").glob("*/*.jpeg"))
    dev = [prepare(load_volume(f)) for f in track(dev_files, "kermany/dev")]
    vol = prepare(load_volume(DATA / "volumes/spectralis-drusen/OCT-Volume-Scan"))
    cls = [f.parent.name for f in dev_files]
    widths = [d["width"] for d in dev]
    half = np.array([zlib.crc32(_pid(f.stem).encode()) % 2 == 0 for f in dev_files])
    truth = load_drusen_mask(DATA / "volumes/spectralis-drusen")
    _, dd, w = vol["region"].shape
    gt = shift_columns(resize_bscans(truth.astype(np.float32), (dd, w)) > 0.5, vol["shifts"], 0)
    return dev, vol, (cls, widths, half, gt)


def metrics_row(scores, cls, widths, half, fused_vol, region, gt) -> dict:
    """Image AUROCs of dev ``scores`` (all, dev-A, dev-B) and the drusen volume's pixel and
    A-scan AUROC of its fused map ``fused_vol`` in ``region`` against ``gt`` (flattened grid)."""
    col = np.where(region, fused_vol, -np.inf).max(axis=1)
    ok = region.any(axis=1)
    return {
        "dev": image_metrics(scores, cls, widths, np.ones(len(scores), bool)),
        "dev-A": image_metrics(scores, cls, widths, half),
        "dev-B": image_metrics(scores, cls, widths, ~half),
        "drusen_pixel_auroc_retina": _auroc(fused_vol[region], gt[region]),
        "drusen_ascan_auroc": _auroc(col[ok], gt.any(axis=1)[ok]),
    }


def channel_z(run, vol) -> dict:
    """Per-channel z-maps (in the scoring region, flattened grid) of one volume."""
    from octanomaly.scoring import channels as ch
    from octanomaly.scoring.calibration import flatten_row
    from octanomaly.scoring.stitching import score_stack
    from octanomaly.transforms.preprocess import preprocess_volume

    cal, pre = run.calibration, run.cfg.preprocessing
    prep = preprocess_volume(vol, pre)
    image, mask = prep["image"], prep["mask"]
    maps = score_stack(run.model, image, mask, stride=cal.stride, smooth_sigma=cal.smooth_sigma)
    bank = cal.bank_map(maps, run.model.patch_size)
    bm, axial = flatten_row(pre, image.shape[1]), prep["spacing"][1]
    raw = ch.channel_maps(
        image, maps.residual, mask, tuple(cal.file.channels), cal.smooth_sigma, bank,
        bm_row=bm, axial_mm=axial,
    )  # fmt: skip
    bins = ch.position_bins(mask, bm, pre.margin_px, axial, cal.normative.spec)
    z = {k: v.astype(np.float16) for k, v in cal.normative.z(raw, bins).items()}
    region = ch.scoring_region(mask, cal.file.edge_px)
    return {"z": z, "support": ch.supports(raw, bm, axial), "region": region,
            "shifts": prep["flatten_shifts"], "width": vol.shape[2]}  # fmt: skip


def fused_bscan(d: dict, w_bank, q: float = 99.5, w_res: float = 0.25, w_elev: float = 0.0):
    """Fused map and B-scan scores for one set of weights (``"alone"``: that channel only)."""
    from octanomaly.scoring.channels import bscan_scores, fuse

    if "alone" in (w_bank, w_elev):
        weights = {"bank" if w_bank == "alone" else "elevation": 1.0}
    else:
        weights = {"intensity": 1, "residual": w_res}
        if w_bank > 0:
            weights["bank"] = float(w_bank)
        if w_elev > 0:
            weights["elevation"] = float(w_elev)
    f = fuse({k: d["z"][k].astype(np.float32) for k in weights}, weights, d["support"])
    return f, bscan_scores(f, d["region"], q)


def main(argv: list[str] | None = None) -> int:

    from octanomaly.scoring import calibrate_run, default_model_dir, load_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("/tmp/octanomaly-bank-run"))
    p.add_argument("--healthy", choices=("all", "B"), default="all")
    p.add_argument("--residual-weights", type=float, nargs="+", default=[0.25])
    p.add_argument(
        "--elevation-weights",
        type=float,
        nargs="+",
        default=None,
        help="with bank weight 1, instead of the bank grid (run calibrated with it)",
    )
    p.add_argument("--json", type=Path, default=OUT)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    shutil.rmtree(a.out, ignore_errors=True)
    healthy = sorted((DATA / "kermany/train/NORMAL").glob("*.jpeg"))
    if a.healthy == "B":
        healthy = [f for f in healthy if zlib.crc32(_pid(f.stem).encode()) % 2 == 1]
    calibrate_run(a.run_dir or default_model_dir(), healthy, out=a.out, device="cpu")
    t_cal = time.perf_counter() - t0
    run = load_run(a.out, "cpu")
    dev, vol, (cls, widths, half, gt) = dev_and_drusen(lambda v: channel_z(run, v))
    rows = {}
    if a.elevation_weights is None:
        grid = [(wr, wb, 0.0) for wr in a.residual_weights for wb in BANK_WEIGHTS]
    else:
        grid = [(wr, 1.0, we) for wr in a.residual_weights for we in a.elevation_weights]
        grid.append((a.residual_weights[0], 1.0, "alone"))
    for wr, wb, we in grid:
        if "alone" in (wb, we) and wr != a.residual_weights[0]:
            continue
        key = str(wb) if len(a.residual_weights) == 1 else f"res {wr} bank {wb}"
        if a.elevation_weights is not None:
            key = f"elevation {we}" if len(a.residual_weights) == 1 else f"res {wr} elev {we}"
        scores = [float(fused_bscan(d, wb, w_res=wr, w_elev=we)[1][0]) for d in dev]
        f, _ = fused_bscan(vol, wb, w_res=wr, w_elev=we)
        rows[key] = metrics_row(scores, cls, widths, half, f, vol["region"], gt)
        print(key, json.dumps(rows[key]), file=sys.stderr)
    chosen = max((k for k in rows if "alone" not in k), key=lambda k: rows[k]["dev-A"]["all"])
    a.json.parent.mkdir(parents=True, exist_ok=True)
    result = {"run_id": run.run_id, "chosen_on_dev_A": chosen, "feature_bank":
              run.calibration.file.feature_bank.model_dump(), "calibrate_seconds": t_cal,
              "seconds": time.perf_counter() - t0, "rows": rows}  # fmt: skip
    a.json.write_text(json.dumps(result, indent=1))
    print("| weights | dev AUROC | CNV | DME | DRUSEN | 512-wide | dev-A | dev-B "
          "| drusen px AUROC (retina) | drusen A-scan AUROC |")  # fmt: skip
    print("|---" * 10 + "|")
    for k, r in rows.items():
        d = r["dev"]
        mark = " ←" if k == chosen else ""
        print(f"| {k}{mark} | {d['all']:.3f} | {d['CNV']:.3f} | {d['DME']:.3f} | "
              f"{d['DRUSEN']:.3f} | {d['512']:.3f} | {r['dev-A']['all']:.3f} | "
              f"{r['dev-B']['all']:.3f} | {r['drusen_pixel_auroc_retina']:.3f} | "
              f"{r['drusen_ascan_auroc']:.3f} |")  # fmt: skip
    print(f"← best on dev-A; {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
