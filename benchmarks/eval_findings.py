"""Findings results: regions and clusters of ``octanomaly cohort`` against known truth.

Usage::

    python benchmarks/eval_findings.py phantom OUT [--model RUN] [--n 12] [--healthy 8]
    python benchmarks/eval_findings.py kermany OUT [--model RUN] [--per-class 30] [--normal]
    python benchmarks/eval_findings.py drusen OUT [--model RUN]

* ``phantom``: ``--n`` phantom volumes (DICOM OPT, 16 B-scans of 496x512, mixed lesion types)
  are mapped as a cohort. A phantom lesion (3-D component of one type's mask) is detected when a
  region touches it; a region touching no lesion is a false region. Adjusted Rand index of the
  clusters against the lesion type each true region overlaps most. With ``--healthy K`` (default
  8; 0: the model as it is) the model is first calibrated, as a user calibrates for a new device
  (``octanomaly calibrate RUN HEALTHY... --out NEW_RUN``), on K lesion-free phantom volumes of
  other seeds: phantoms are synthetic, so against real healthy retina every pixel is anomalous.
* ``kermany``: the first ``--per-class`` B-scans (0: all) of kermany/dev CNV, DME and DRUSEN
  (``--normal``: and NORMAL) as a cohort of single B-scans; purity of the clusters against the
  image class of each region, beside the purity a random assignment with the same cluster sizes
  reaches (mean of 200 shuffles) and the largest class share.
* ``drusen``: the Spectralis drusen volume; fraction of region voxels in the RPE-BM band and
  on the expert drusen mask, fovea.

Writes ``OUT/findings_eval.json`` and prints it; the cohort folder is ``OUT/cohort``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # --data overrides
MIXES = ["cyst,hrf", "drusen", "srf,hrf", "cyst,drusen", "drusen,hrf", "all",
         "cyst", "srf,drusen", "hrf", "cyst,srf", "drusen,cyst,hrf", "all"]  # fmt: skip


def _model(arg: str | None) -> Path:
    from octanomaly.scoring import default_model_dir

    return Path(arg) if arg else default_model_dir()


def _cohort(inputs, out: Path, model: Path):
    from octanomaly.findings.cohort import run_cohort

    t0 = time.perf_counter()
    res = run_cohort(inputs, out / "cohort", model)
    return res, time.perf_counter() - t0


def phantom(out: Path, model: Path, n: int, healthy: int = 8) -> dict:
    from scipy import ndimage
    from sklearn.metrics import adjusted_rand_score

    from octanomaly.data.phantom import LESION_TYPES, make_phantom
    from octanomaly.io import load_volume
    from octanomaly.io.dicom_writer import write_opt
    from octanomaly.scoring import calibrate_run

    src = out / "phantoms"
    src.mkdir(parents=True, exist_ok=True)
    calibrated = None
    if healthy > 0:  # the model calibrated on lesion-free phantoms (other seeds)
        calibrated = out / "model-phantom-calibrated"
        if not (calibrated / "calibration.json").is_file():
            normals = [make_phantom(900 + i, n_bscans=16, laterality="OD" if i % 2 else "OS")
                       .volume for i in range(healthy)]  # fmt: skip
            calibrate_run(model, normals, out=calibrated, device="cpu", progress=False)
        model = calibrated
    truth = {}
    for i in range(n):
        ph = make_phantom(100 + i, n_bscans=16, lesions=MIXES[i % len(MIXES)],
                          laterality="OD" if i % 2 == 0 else "OS")  # fmt: skip
        path = src / f"ph{i:02d}.dcm"
        if not path.exists():
            write_opt(ph.volume, path)
        truth[f"ph{i:02d}"] = ph.masks
    res, secs = _cohort([str(src / "ph*.dcm")], out, model)
    clusters = {
        (r["volume"], int(r["region_id"])): int(r["cluster"])
        for r in _csv(out / "cohort" / "clusters.csv")
    }
    detected = Counter()
    total = Counter()
    false_regions = 0
    types, labels, region_type = [], [], {}
    for name, masks in truth.items():
        lab_img = load_volume(out / "cohort" / "volumes" / name / f"{name}_regions.nii.gz").data
        for kind in LESION_TYPES:
            comp, k = ndimage.label(masks[kind], structure=np.ones((3, 3, 3), bool))
            for j in range(1, k + 1):
                total[kind] += 1
                detected[kind] += bool((lab_img[comp == j] > 0).any())
        for rid in np.unique(lab_img[lab_img > 0]):
            reg = lab_img == rid
            overlap = [int((masks[k] & reg).sum()) for k in LESION_TYPES]
            if max(overlap) == 0:
                false_regions += 1
                continue
            types.append(LESION_TYPES[int(np.argmax(overlap))])
            labels.append(clusters[(name, int(rid))])
            region_type[(name, int(rid))] = types[-1]
    # the true type of every region in clusters.csv order (null: a false region), for re-clustering
    (out / "region_types.json").write_text(json.dumps([region_type.get(k) for k in clusters]))
    table = Counter(zip(types, labels, strict=True))
    return {
        "volumes": n,
        "calibrated_on_healthy_phantoms": healthy,
        "seconds": round(secs, 1),
        "detection_rate": {k: round(detected[k] / total[k], 3) for k in LESION_TYPES if total[k]},
        "lesions": dict(total),
        "detection_rate_all": round(sum(detected.values()) / max(sum(total.values()), 1), 3),
        "true_regions": len(types),
        "false_regions_per_volume": round(false_regions / n, 2),
        "adjusted_rand_index": round(float(adjusted_rand_score(types, labels)), 3),
        "type_by_cluster": {f"{t}->{c}": v for (t, c), v in sorted(table.items())},
        "clustering": json.loads((out / "cohort" / "clusters.json").read_text())["clustering"],
    }


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def purity(truth: list[str], labels: np.ndarray) -> float:
    """Share of regions whose cluster's most common true class is their own."""
    by = Counter(zip(truth, np.asarray(labels).tolist(), strict=True))
    best = Counter()
    for (_, k), v in by.items():
        best[k] = max(best[k], v)
    return sum(best.values()) / max(len(truth), 1)


def chance_purity(truth: list[str], labels: np.ndarray, n: int = 200, seed: int = 0) -> float:
    """Mean purity of ``n`` random assignments with the same cluster sizes (shuffled labels)."""
    rng = np.random.default_rng(seed)
    return float(np.mean([purity(truth, rng.permutation(labels)) for _ in range(n)]))


def kermany(out: Path, model: Path, per_class: int, normal: bool = False) -> dict:
    listing = out / "kermany.csv"
    out.mkdir(parents=True, exist_ok=True)
    rows = ["path"]
    for cls in ("CNV", "DME", "DRUSEN", *(("NORMAL",) if normal else ())):
        files = sorted((DATA / "kermany" / "dev" / cls).glob("*.jpeg"))[: per_class or None]
        rows += [str(f) for f in files]
    listing.write_text("\n".join(rows) + "\n")
    res, secs = _cohort([listing], out, model)
    clusters = _csv(out / "cohort" / "clusters.csv")
    classes = [r["volume"].split("-")[0] for r in clusters]
    labels = np.array([int(r["cluster"]) for r in clusters])
    by = Counter(zip(classes, labels.tolist(), strict=True))
    abnormal = np.array([c != "NORMAL" for c in classes], bool)
    ab_classes = [c for c in classes if c != "NORMAL"]
    return {
        "images": len(rows) - 1,
        "seconds": round(secs, 1),
        "regions": len(clusters),
        "purity": round(purity(classes, labels), 3),
        "chance_purity": round(chance_purity(classes, labels), 3),
        "largest_class_share": round(max(Counter(classes).values()) / max(len(classes), 1), 3),
        "purity_abnormal_regions": round(purity(ab_classes, labels[abnormal]), 3),
        "chance_purity_abnormal_regions": round(chance_purity(ab_classes, labels[abnormal]), 3),
        "class_by_cluster": {f"{c}->{k}": v for (c, k), v in sorted(by.items())},
        "regions_per_class": dict(Counter(r["volume"].split("-")[0] for r in clusters)),
        "clustering": json.loads((out / "cohort" / "clusters.json").read_text())["clustering"],
    }


def drusen(out: Path, model: Path) -> dict:
    from octanomaly.evaluation.drusen import load_drusen_mask
    from octanomaly.io import load_volume

    folder = DATA / "volumes" / "spectralis-drusen"
    res, secs = _cohort([str(folder / "OCT-Volume-Sca*")], out, model)
    name = "OCT-Volume-Scan"
    regions = _csv(out / "cohort" / "volumes" / name / f"{name}_regions.csv")
    labels = load_volume(out / "cohort" / "volumes" / name / f"{name}_regions.nii.gz").data
    truth = load_drusen_mask(folder)
    truth = truth.mask if hasattr(truth, "mask") else truth
    vox = [int(r["n_voxels"]) for r in regions]
    bands = Counter()
    for r, v in zip(regions, vox, strict=True):
        bands[r["band"]] += v
    summary = json.loads((out / "cohort" / "volumes" / name / f"{name}_cohort.json").read_text())
    return {
        "seconds": round(secs, 1),
        "regions": len(regions),
        "voxel_fraction_by_band": {k: round(v / max(sum(vox), 1), 3) for k, v in bands.items()},
        "regions_by_band": dict(Counter(r["band"] for r in regions)),
        "region_voxels_on_drusen": round(float((truth[labels > 0]).mean()), 3) if vox else None,
        "drusen_voxels_in_regions": round(float((labels[truth] > 0).mean()), 3),
        "fovea": summary["summary"]["fovea"],
        "clustering": json.loads((out / "cohort" / "clusters.json").read_text())["clustering"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["phantom", "kermany", "drusen"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--healthy", type=int, default=8, help="phantom: calibrate on K normals")
    ap.add_argument("--per-class", type=int, default=30, help="B-scans per class; 0: all")
    ap.add_argument("--normal", action="store_true", help="kermany: NORMAL B-scans too")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    a = ap.parse_args()
    globals()["DATA"] = a.data
    model = _model(a.model)
    if a.what == "phantom":
        result = phantom(a.out, model, a.n, a.healthy)
    elif a.what == "kermany":
        result = kermany(a.out, model, a.per_class, a.normal)
    else:
        result = drusen(a.out, model)
    result = {"what": a.what, "model": str(model), "date": time.strftime("%Y-%m-%d"), **result}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "findings_eval.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
