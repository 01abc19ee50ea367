"""Clustering of regions across a cohort (scikit-learn).

Embedding of a region = its model features (see :mod:`octanomaly.findings.embed`) reduced by PCA
to at most :data:`FEATURE_DIMS` dimensions, beside its shape, position and reflectivity
descriptors (:data:`DESCRIPTORS`, sizes on a log scale); each column is standardised, and the
feature block is scaled to carry the same total weight as the descriptor block. Regions are
grouped by a Gaussian mixture with one covariance shared by all groups (``tied``: few
parameters per group, so small groups are allowed) for k = 1 .. min(:data:`MAX_K`, sqrt(n / 2))
(the usual rule of thumb, so a small cohort is not cut into clusters of three); the k with the
lowest BIC is kept (one group when there are fewer than 4 regions). BIC, unlike the silhouette,
does not favour a few well-separated groups: false regions and each lesion type can each have
their own. Chosen on the phantom cohorts of ``benchmarks/compare_clustering.py`` (docs/findings.md:
diagonal and spherical covariances over-split, a full one under-splits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Region descriptors in the embedding (``log`` ones are log10 of a size).
DESCRIPTORS: tuple[tuple[str, bool], ...] = (
    ("volume_mm3", True), ("width_mm", True), ("height_um", True), ("extent_y_mm", True),
    ("height_above_bm_um", False), ("relative_depth", False), ("band_top_um", False),
    ("contrast", False), ("mean_z", False), ("max_z", False), ("eccentricity_mm", False),
)  # fmt: skip
FEATURE_DIMS: int = 8
MAX_K: int = 8
SEED: int = 0
#: Added to the mixture's covariance diagonal (the embedding's columns have unit variance).
REG_COVAR: float = 1e-3


@dataclass
class Clustering:
    """Cluster of each region and how the number of clusters was chosen."""

    labels: np.ndarray
    k: int
    bic: dict[int, float] = field(default_factory=dict)
    embedding: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready: chosen k, criterion and the BIC of every k tried."""
        return {
            "k": self.k,
            "criterion": f"lowest BIC of a tied-covariance Gaussian mixture over k=1..min({MAX_K}, "
            "sqrt(n/2))",
            "bic": {str(k): round(v, 1) for k, v in self.bic.items()},
            "sizes": np.bincount(self.labels, minlength=self.k).tolist(),
        }


def max_k(n: int) -> int:
    """Largest number of clusters tried for ``n`` regions: min(MAX_K, sqrt(n / 2)), at least 2."""
    return int(min(MAX_K, n - 1, max(2, np.sqrt(n / 2))))


def descriptor_matrix(regions: Sequence[dict[str, Any]]) -> np.ndarray:
    """``(n, len(DESCRIPTORS))`` float64 descriptors (log10 sizes; NaN -> column median)."""
    x = np.array(
        [[float(r.get(name, np.nan) or 0.0) for name, _ in DESCRIPTORS] for r in regions],
        dtype=np.float64,
    ).reshape(len(regions), len(DESCRIPTORS))
    for j, (_, log) in enumerate(DESCRIPTORS):
        if log:
            x[:, j] = np.log10(np.maximum(x[:, j], 1e-9))
    med = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0) if len(x) else 0
    return np.where(np.isfinite(x), x, np.nan_to_num(med))


def region_embedding(regions: Sequence[dict[str, Any]], features: np.ndarray | None) -> np.ndarray:
    """The standardised embedding of the module doc, ``(n, d)``."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    desc = StandardScaler().fit_transform(descriptor_matrix(regions))
    if features is None or features.size == 0 or len(regions) < 3:
        return desc
    dims = min(FEATURE_DIMS, features.shape[1], len(regions) - 1)
    f = PCA(dims, random_state=SEED).fit_transform(np.asarray(features, np.float64))
    f = StandardScaler().fit_transform(f)
    f *= np.sqrt(desc.shape[1] / dims)  # same total variance as the descriptor block
    return np.concatenate([desc, f], axis=1)


def cluster_regions(
    regions: Sequence[dict[str, Any]], features: np.ndarray | None = None
) -> Clustering:
    """Group regions; the number of groups is chosen by BIC (module doc)."""
    from sklearn.mixture import GaussianMixture

    n = len(regions)
    emb = region_embedding(regions, features) if n else np.zeros((0, 1))
    if n < 4:
        return Clustering(np.zeros(n, np.int64), 1 if n else 0, {}, emb)
    bic: dict[int, float] = {}
    fits: dict[int, np.ndarray] = {}
    for k in range(1, max_k(n) + 1):
        gmm = GaussianMixture(
            k, covariance_type="tied", reg_covar=REG_COVAR, n_init=3, random_state=SEED
        ).fit(emb)
        bic[k] = float(gmm.bic(emb))
        fits[k] = gmm.predict(emb)
    best = min(bic, key=lambda k: (bic[k], k))
    return Clustering(_order_by_size(fits[best]), int(len(np.unique(fits[best]))), bic, emb)


def _order_by_size(labels: np.ndarray) -> np.ndarray:
    """Relabel so cluster 0 is the largest (ties: first seen); deterministic names."""
    counts = np.bincount(labels)
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], int(np.argmax(labels == c))))
    remap = np.empty(len(counts), np.int64)
    remap[order] = np.arange(len(counts))
    return remap[labels]


def map_2d(embedding: np.ndarray) -> np.ndarray:
    """2-D t-SNE map of the embedding (PCA for fewer than 10 regions); ``(n, 2)``."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(embedding)
    if n == 0:
        return np.zeros((0, 2))
    if n < 10:
        dims = min(2, embedding.shape[1], n)
        out = np.zeros((n, 2))
        out[:, :dims] = PCA(dims, random_state=SEED).fit_transform(embedding) if n > 1 else 0
        return out
    perplexity = float(min(30.0, (n - 1) / 3))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=SEED).fit_transform(embedding)


def describe_clusters(
    regions: Sequence[dict[str, Any]], labels: np.ndarray
) -> list[dict[str, Any]]:
    """One line of typical descriptors per cluster (medians, most common band/reflectivity)."""
    from collections import Counter

    out = []
    for c in range(int(labels.max(initial=-1)) + 1):
        rs = [r for r, lab in zip(regions, labels, strict=True) if lab == c]
        if not rs:
            continue

        def med(key: str, rs=rs) -> float:
            return float(np.nanmedian([float(r[key]) for r in rs]))

        band, n_band = Counter(r["band"] for r in rs).most_common(1)[0]
        refl, n_refl = Counter(r["reflectivity"] for r in rs).most_common(1)[0]
        out.append(
            {
                "cluster": c,
                "n_regions": len(rs),
                "n_volumes": len({r.get("volume", "") for r in rs}),
                "band": band,
                "band_fraction": round(n_band / len(rs), 2),
                "reflectivity": refl,
                "reflectivity_fraction": round(n_refl / len(rs), 2),
                "median_volume_mm3": med("volume_mm3"),
                "median_width_mm": med("width_mm"),
                "median_height_um": med("height_um"),
                "median_height_above_bm_um": med("height_above_bm_um"),
                "median_max_z": med("max_z"),
                "median_eccentricity_mm": med("eccentricity_mm"),
            }
        )
    return out
