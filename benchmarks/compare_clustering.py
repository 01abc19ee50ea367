"""The product's clustering (tied-covariance Gaussian mixture, k by BIC) against k-means with k by
silhouette (its previous rule) and HDBSCAN, on cohorts already run.

Usage::

    python benchmarks/compare_clustering.py kermany OUT/cohort     # after eval_findings.py kermany
    python benchmarks/compare_clustering.py phantom OUT/cohort     # after eval_findings.py phantom
    python benchmarks/compare_clustering.py exact                  # phantom lesion masks as regions

Re-clusters the regions and features a cohort folder holds (no mapping again) with the same
embedding (:func:`octanomaly.findings.cluster.region_embedding`). HDBSCAN
(``sklearn.cluster.HDBSCAN``, deterministic) for several ``min_cluster_size``; its noise either
kept as one more group (``noise``) or given the cluster of the nearest clustered region
(``assign``, so every region has a cluster as in the product). kermany: purity against the image
class (and a chance purity: same cluster sizes, shuffled); phantom: adjusted Rand index against
the lesion type of each true region (``OUT/region_types.json``); exact: the six phantoms of
``test_clusters_recover_phantom_lesion_types``, descriptors only. Prints JSON.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_findings import chance_purity, purity  # noqa: E402


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_cohort(out: Path):
    """Regions (clusters.csv order), their features and the product's cluster labels."""
    rows = _rows(out / "clusters.csv")
    regions, feats = [], []
    for v in dict.fromkeys(r["volume"] for r in rows):
        rs = _rows(out / "volumes" / v / f"{v}_regions.csv")
        with np.load(out / "volumes" / v / f"{v}_features.npz") as z:
            feats.append(z["features"])
        regions += [{**r, "volume": v} for r in rs]
    assert [(r["volume"], r["region_id"]) for r in regions] == [
        (r["volume"], r["region_id"]) for r in rows]  # fmt: skip
    return regions, np.concatenate(feats), np.array([int(r["cluster"]) for r in rows])


def kmeans_silhouette(emb: np.ndarray) -> np.ndarray:
    """k-means, k = 2 .. max_k by the highest silhouette (the product's rule before 2026-12-04)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    from octanomaly.findings.cluster import max_k

    fits = {k: KMeans(k, n_init=10, random_state=0).fit_predict(emb)
            for k in range(2, max_k(len(emb)) + 1)}  # fmt: skip
    score = {k: silhouette_score(emb, lab, sample_size=min(len(emb), 5000), random_state=0)
             for k, lab in fits.items() if len(np.unique(lab)) > 1}  # fmt: skip
    return fits[max(score, key=lambda k: (score[k], -k))]


def hdbscan(emb: np.ndarray, min_size: int, assign: bool) -> np.ndarray:
    """HDBSCAN labels; ``assign``: noise (-1) takes the nearest clustered region's cluster."""
    from sklearn.cluster import HDBSCAN
    from sklearn.neighbors import NearestNeighbors

    lab = HDBSCAN(min_cluster_size=min_size, copy=True).fit_predict(emb)
    core, noise = np.flatnonzero(lab >= 0), np.flatnonzero(lab < 0)
    if assign and len(core) and len(noise):
        nn = NearestNeighbors(n_neighbors=1).fit(emb[core])
        lab[noise] = lab[core[nn.kneighbors(emb[noise])[1][:, 0]]]
    return lab


def main() -> None:
    from sklearn.metrics import adjusted_rand_score

    from octanomaly.findings.cluster import cluster_regions, region_embedding

    what = sys.argv[1]
    if what == "exact":
        from octanomaly.evaluation.phantom_regions import lesion_mask_regions

        regions, truth = lesion_mask_regions()
        feats, product = None, cluster_regions(regions).labels
    else:
        out = Path(sys.argv[2])
        regions, feats, _ = load_cohort(out)  # the labels the cohort run stored: not re-used
        product = cluster_regions(regions, feats).labels
        truth = ([r["volume"].split("-")[0] for r in regions] if what == "kermany"
                 else json.loads((out.parent / "region_types.json").read_text()))  # fmt: skip
    emb = region_embedding(regions, feats)
    n = len(regions)
    methods = {"gmm-tied-bic (product)": product, "kmeans-silhouette": kmeans_silhouette(emb)}
    for size in sorted({5, 10, 20, max(5, int(np.sqrt(n / 2)))}):
        for assign in (True, False):
            methods[f"hdbscan-min{size}-{'assign' if assign else 'noise'}"] = hdbscan(
                emb, size, assign
            )
    sel = [i for i, t in enumerate(truth) if t]  # phantom: true regions only
    result = {"what": what, "regions": n, "scored_regions": len(sel)}
    for name, lab in methods.items():
        t, lab = [truth[i] for i in sel], lab[sel]
        kept = lab[lab >= 0]
        row = {"k": len(set(kept.tolist())), "noise": int((lab < 0).sum()),
               "sizes": np.bincount(kept).tolist() if len(kept) else []}  # fmt: skip
        if what == "kermany":
            row |= {"purity": round(purity(t, lab), 3),
                    "chance_purity": round(chance_purity(t, lab), 3)}  # fmt: skip
        else:
            row["adjusted_rand_index"] = round(float(adjusted_rand_score(t, lab)), 3)
        result[name] = row
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
