"""Regions of one volume: 3-D connected components of the anomaly mask and their descriptors.

Voxels connect within a B-scan (8-neighbourhood) and across neighbouring B-scans (26-neighbourhood
in 3-D), so a lesion seen on several B-scans is one region. Each region gets its size (mm³),
B-scan range, en-face centroid relative to the fovea and ETDRS sector, depth (µm above BM,
relative depth ILM = 0 -> BM = 1, band), the height of the outer retinal band's top above BM
under it (µm, :func:`octanomaly.scoring.channels.band_top`: lifted over drusen and detachments;
NaN when the maps carry no flattened image), reflectivity against the tissue around it, and its
mean and max z-score. Depth bands (centroid height ``h`` above BM, relative depth ``d``):
``below BM`` (h < 0), ``RPE-BM`` (0 <= h < :data:`RPE_BM_UM`, the RPE, sub-RPE deposits and BM),
``inner retina`` (d < :data:`INNER_FRACTION`) and ``outer retina`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from octanomaly.findings.etdrs import Fovea, en_face_mm, find_fovea, sector_map, sector_stats
from octanomaly.scoring.masks import label_regions
from octanomaly.volume import OCTVolume

#: Height above BM (µm) below which a region lies in the RPE-BM band.
RPE_BM_UM: float = 50.0
#: Outer band tops (µm above BM) are histogrammed within +- this for their median.
BAND_RANGE_UM: float = 400.0
#: Relative depth (ILM 0 -> BM 1) above which a region is outer retina.
INNER_FRACTION: float = 0.5
#: Shell around a region (px, within its B-scans) that reflectivity is compared with.
SHELL_PX: int = 6
#: Columns of ``STEM_regions.csv`` in order.
COLUMNS: tuple[str, ...] = (
    "region_id", "n_voxels", "volume_mm3", "bscan_first", "bscan_last", "n_bscans",
    "x_mm", "y_mm", "eccentricity_mm", "etdrs_sector", "width_mm", "height_um", "extent_y_mm",
    "height_above_bm_um", "relative_depth", "band", "band_top_um", "reflectivity", "contrast",
    "mean_z", "max_z", "centre_bscan", "centre_row", "centre_column",
)  # fmt: skip
BANDS: tuple[str, ...] = ("inner retina", "outer retina", "RPE-BM", "below BM")


@dataclass
class VolumeFindings:
    """Regions, fovea and ETDRS statistics of one mapped volume.

    Attributes:
        regions: one dict per region with the keys of :data:`COLUMNS`.
        labels: int32 ``(n_bscans, depth, width)``; region ``i`` has label ``regions[i-1]
            ["region_id"]``, 0 elsewhere.
        fovea: where the fovea is and how it was found.
        thickness: retinal thickness map (µm) ``(n_bscans, width)``, NaN where unknown.
        sectors: per ETDRS sector: scanned area, mean thickness, anomalous volume.
        laterality: ``"OD"``, ``"OS"`` or None.
    """

    regions: list[dict[str, Any]]
    labels: np.ndarray
    fovea: Fovea
    thickness: np.ndarray
    sectors: dict[str, dict[str, float | None]]
    laterality: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The JSON part: fovea, ETDRS sectors, region counts by band and sector."""
        by_band = {b: sum(r["band"] == b for r in self.regions) for b in BANDS}
        return {
            "n_regions": len(self.regions),
            "regions_by_band": by_band,
            "regions_by_reflectivity": {
                k: sum(r["reflectivity"] == k for r in self.regions) for k in ("hyper", "hypo")
            },
            "fovea": self.fovea.as_dict(),
            "laterality": self.laterality,
            "etdrs": {"radii_mm": [0.5, 1.5, 3.0], "sectors": self.sectors},
            "largest_regions": sorted(self.regions, key=lambda r: -r["volume_mm3"])[:10],
        }

    def csv_text(self) -> str:
        """``STEM_regions.csv`` content (header + one line per region)."""
        return regions_csv(self.regions)


def regions_csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    """CSV text of ``rows`` with ``columns`` (floats rounded for reading)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _band(height_um: float, rel: float) -> str:
    if not np.isfinite(height_um):
        return "unknown"
    if height_um < 0:
        return "below BM"
    if height_um < RPE_BM_UM:
        return "RPE-BM"
    return "inner retina" if rel < INNER_FRACTION else "outer retina"


def describe_regions(
    mask: np.ndarray,
    anomaly: np.ndarray,
    volume: OCTVolume,
    ilm: np.ndarray,
    bm: np.ndarray,
    fovea: Fovea,
    *,
    labels: np.ndarray | None = None,
    band_top: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Descriptors of every 3-D region of ``mask`` (see module doc) and the label map.

    ``band_top``: the outer band top above BM (µm) per A-scan ``(n_bscans, width)``, or None.
    """
    if labels is None:
        labels, _ = label_regions(mask)
    n, depth, width = volume.shape
    sb, sa, sl = volume.spacing
    x_mm, y_mm = en_face_mm((n, width), volume.spacing, fovea)
    data = np.asarray(volume.data)  # region values become float32 (not the whole volume)
    ilm2, bm2 = np.atleast_2d(ilm), np.atleast_2d(bm)
    x_flat, y_flat = np.ravel(x_mm), np.ravel(y_mm)
    band_flat = np.full(x_flat.shape, np.nan) if band_top is None else np.ravel(band_top)
    out: list[dict[str, Any]] = []
    for rid, sl_box in enumerate(ndimage.find_objects(labels), start=1):
        if sl_box is None:
            continue
        # box grown by the shell width within B-scans, so the surround is inside it
        b0, b1 = sl_box[0].start, sl_box[0].stop
        z0, z1 = max(sl_box[1].start - SHELL_PX, 0), min(sl_box[1].stop + SHELL_PX, depth)
        c0, c1 = max(sl_box[2].start - SHELL_PX, 0), min(sl_box[2].stop + SHELL_PX, width)
        box = (slice(b0, b1), slice(z0, z1), slice(c0, c1))
        v = _region_values(
            rid, labels, box, anomaly, data, (ilm2, bm2), (x_flat, y_flat, band_flat), sa
        )
        nvox, st = v.n, v.stats
        h_med, band_med, r_med = st["height"], st["band"], st["rel"]
        # reflectivity: region vs a shell around it inside the retina (ILM .. BM + shell)
        if st["n_shell"] >= 5:
            spread = st["shell_std"] or 1.0
            contrast = float((st["inside"] - st["shell"]) / spread)
        else:
            contrast = float("nan")
        # means of integer indices: exact sums, as numpy's mean of the index arrays
        cb, cz, cc = (v.sums[k] / nvox for k in range(3))
        # en-face centroid: mean position of the region's A-scans weighted by voxel count
        xc, yc = st["x"], st["y"]
        ib, ic = int(round(cb)), int(round(cc))
        # the sector of the centroid itself (not of the nearest A-scan)
        sector = str(sector_map(np.array([xc]), np.array([yc]), volume.laterality)[0])
        out.append(
            {
                "region_id": rid,
                "n_voxels": nvox,
                "volume_mm3": nvox * sb * sa * sl,
                "bscan_first": int(b0),
                "bscan_last": int(b1 - 1),
                "n_bscans": int(b1 - b0),
                "x_mm": xc,
                "y_mm": yc,
                "eccentricity_mm": float(np.hypot(xc, yc)),
                "etdrs_sector": sector,
                "width_mm": float((v.hi[2] - v.lo[2] + 1) * sl),
                "height_um": float((v.hi[1] - v.lo[1] + 1) * sa * 1000.0),
                "extent_y_mm": float((b1 - b0) * sb),
                "height_above_bm_um": h_med,
                "relative_depth": r_med,
                "band": _band(h_med, r_med),
                "band_top_um": band_med,
                "reflectivity": "unknown"
                if not np.isfinite(contrast)
                else ("hyper" if contrast > 0 else "hypo"),
                "contrast": contrast,
                "mean_z": st["z_mean"],
                "max_z": st["z_max"],
                "centre_bscan": min(max(ib, 0), n - 1),
                "centre_row": int(round(cz)),
                "centre_column": min(max(ic, 0), width - 1),
            }
        )
    return out, labels


#: B-scans of a region's box handled at a time: a region spanning the volume needs the
#: temporaries of a few B-scans, not of the whole box.
SLAB_BSCANS: int = 8
#: Bins of the histograms that locate a median before its exact value is picked.
MEDIAN_BINS: int = 4096


class _ExactMedian:
    """``np.nanmedian`` of values that arrive slab by slab, in memory of one slab: a first pass
    (:meth:`count`) histograms them over ``[lo, hi]`` (out-of-range values in two end bins), a
    second (:meth:`collect`) keeps only the values in the bins holding the middle ranks, which
    are then sorted. Exactly the value of ``np.nanmedian`` over all of them; NaN when none is
    finite."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.scale = float(lo), MEDIAN_BINS / (float(hi) - float(lo))
        self.hist = np.zeros(MEDIAN_BINS + 2, np.int64)
        self.kept: list[np.ndarray] = []
        self.want: np.ndarray | None = None

    def _bins(self, v: np.ndarray) -> np.ndarray:
        b = np.floor((v - self.lo) * self.scale)
        return (np.clip(b, -1, MEDIAN_BINS) + 1).astype(np.int64)

    def count(self, v: np.ndarray) -> None:
        v = v[np.isfinite(v)]
        self.hist += np.bincount(self._bins(v), minlength=MEDIAN_BINS + 2)

    def needs_values(self) -> bool:
        """After the first pass: whether :meth:`collect` has anything to do."""
        n = int(self.hist.sum())
        if n == 0:
            return False
        self.cum = np.cumsum(self.hist)
        self.ranks = ((n - 1) // 2, n // 2)
        self.want = np.unique(np.searchsorted(self.cum, np.array(self.ranks), side="right"))
        return True

    def collect(self, v: np.ndarray) -> None:
        v = v[np.isfinite(v)]
        self.kept.append(v[np.isin(self._bins(v), self.want)])

    def value(self) -> float:
        if self.want is None:
            return float("nan")
        kept = np.sort(np.concatenate(self.kept)) if self.kept else np.zeros(0)
        before = self.cum[self.want[0] - 1] if self.want[0] > 0 else 0
        pair = kept[[r - before for r in self.ranks]]
        return float(np.mean(pair))  # as np.median: the mean of the two middle values


@dataclass
class _RegionValues:
    """What :func:`_region_values` gathers for one region."""

    n: int
    sums: tuple[int, int, int]  #: exact sums of the B-scan, row and column indices
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    stats: dict[str, float]  #: means, medians, maxima and spreads (keys in the function doc)


def _region_values(
    rid: int,
    labels: np.ndarray,
    box: tuple[slice, slice, slice],
    anomaly: np.ndarray,
    data: np.ndarray,
    layers: tuple[np.ndarray, np.ndarray],
    en_face: tuple[np.ndarray, np.ndarray, np.ndarray],
    axial_mm: float,
) -> _RegionValues:
    """Statistics of region ``rid`` in ``box``, gathered slab by slab of B-scans so a region
    spanning the volume costs the memory of a few B-scans: ``z_mean``/``z_max``, the medians
    ``height`` above BM (µm), relative depth ``rel`` and outer band top ``band`` (exact, two
    passes: :class:`_ExactMedian`), en-face ``x``/``y`` means (flat ``en_face`` maps), and the
    intensity ``inside`` the region and in the ``shell`` around it within B-scans (mean; the
    shell's standard deviation and voxel count). Means accumulate in float64."""
    ilm2, bm2 = layers
    width, depth = labels.shape[2], labels.shape[1]
    ilm_flat, bm_flat = np.ravel(ilm2), np.ravel(bm2)
    (b0, b1), (z0, z1), (c0, c1) = ((s.start, s.stop) for s in box)
    rows = np.arange(depth)[None, z0:z1, None]
    shell_struct = np.zeros((1, 3, 3), bool)
    shell_struct[0] = True
    span_um = depth * axial_mm * 1000.0
    medians = {
        "height": _ExactMedian(-span_um, span_um),
        "rel": _ExactMedian(-0.5, 1.5),
        "band": _ExactMedian(-BAND_RANGE_UM, BAND_RANGE_UM),
    }

    def slabs():
        """(slab box, region mask in it, B-scan/row/column indices, flat A-scan indices)."""
        for s0 in range(b0, b1, SLAB_BSCANS):
            sbox = (slice(s0, min(s0 + SLAB_BSCANS, b1)), box[1], box[2])
            reg = labels[sbox] == rid
            bi, zi, ci = np.nonzero(reg)
            if bi.size:
                bi += s0
                zi += z0
                ci += c0
                yield sbox, reg, bi, zi, ci, bi * width + ci

    def depth_values(zi: np.ndarray, ascan: np.ndarray) -> dict[str, np.ndarray]:
        top, bot = ilm_flat[ascan], bm_flat[ascan]
        return {
            "height": (bot - zi) * axial_mm * 1000.0,
            "rel": (zi - top) / np.maximum(bot - top, 1e-6),
            "band": en_face[2][ascan],
        }

    n, sums = 0, [0, 0, 0]
    lo, hi = [np.iinfo(np.int64).max] * 3, [-1] * 3
    acc = dict.fromkeys(("z", "x", "y", "inside"), 0.0)
    z_max = -np.inf
    n_shell, shell_mean, shell_m2 = 0, 0.0, 0.0  # merged per slab (Chan et al.'s update)
    for sbox, reg, bi, zi, ci, ascan in slabs():
        n += int(bi.size)
        for k, a in enumerate((bi, zi, ci)):
            sums[k] += int(a.sum())
            lo[k], hi[k] = min(lo[k], int(a.min())), max(hi[k], int(a.max()))
        z = anomaly[sbox][reg]
        acc["z"] += float(z.sum(dtype=np.float64))
        z_max = max(z_max, float(z.max()))
        acc["x"] += float(en_face[0][ascan].sum())
        acc["y"] += float(en_face[1][ascan].sum())
        for k, v in depth_values(zi, ascan).items():
            medians[k].count(v)
        s0, s1 = sbox[0].start, sbox[0].stop
        grown = ndimage.binary_dilation(reg, shell_struct, iterations=SHELL_PX)
        in_retina = (rows >= np.floor(ilm2[s0:s1, None, c0:c1])) & (
            rows <= np.ceil(bm2[s0:s1, None, c0:c1]) + SHELL_PX
        )
        values = data[sbox]
        acc["inside"] += float(values[reg].sum(dtype=np.float64))
        shell = values[grown & ~reg & in_retina].astype(np.float64)
        if shell.size:
            m = float(shell.mean())
            m2 = float(np.square(shell - m).sum())
            total = n_shell + shell.size
            delta = m - shell_mean
            shell_mean += delta * shell.size / total
            shell_m2 += m2 + delta * delta * n_shell * shell.size / total
            n_shell = total
    if any([m.needs_values() for m in medians.values()]):  # every one decides (no short cut)
        for _, _, _, zi, _, ascan in slabs():
            for k, v in depth_values(zi, ascan).items():
                if medians[k].want is not None:
                    medians[k].collect(v)
    stats = {
        "z_mean": acc["z"] / n,
        "z_max": z_max,
        "x": acc["x"] / n,
        "y": acc["y"] / n,
        "inside": acc["inside"] / n,
        "shell": shell_mean if n_shell else float("nan"),
        "shell_std": float(np.sqrt(shell_m2 / n_shell)) if n_shell else float("nan"),
        "n_shell": float(n_shell),
        **{k: m.value() for k, m in medians.items()},
    }
    return _RegionValues(n, (sums[0], sums[1], sums[2]), tuple(lo), tuple(hi), stats)


def find_regions(
    mask: np.ndarray,
    anomaly: np.ndarray,
    volume: OCTVolume,
    ilm: np.ndarray,
    bm: np.ndarray,
    band_top: np.ndarray | None = None,
) -> VolumeFindings:
    """Fovea, regions and ETDRS statistics of one volume from its mask, z-map and layer lines
    (and the outer band top per A-scan, µm, when known)."""
    shape = volume.shape
    if tuple(mask.shape) != shape or tuple(anomaly.shape) != shape:
        raise ValueError(f"mask {mask.shape} / anomaly {anomaly.shape} do not match {shape}")
    ilm, bm = np.atleast_2d(ilm), np.atleast_2d(bm)
    fovea, thickness = find_fovea(ilm, bm, volume.spacing)
    regions, labels = describe_regions(mask, anomaly, volume, ilm, bm, fovea, band_top=band_top)
    x_mm, y_mm = en_face_mm((shape[0], shape[2]), volume.spacing, fovea)
    sectors = sector_map(x_mm, y_mm, volume.laterality)
    stats = sector_stats(sectors, thickness, mask, volume.spacing, volume.laterality)
    return VolumeFindings(regions, labels, fovea, thickness, stats, volume.laterality)


def volume_layers(volume: OCTVolume) -> tuple[np.ndarray, np.ndarray]:
    """ILM and BM rows ``(n_bscans, width)`` found as the scoring preprocessing finds them."""
    from octanomaly.transforms.preprocess import PreprocessingConfig, preprocess_volume

    prep = preprocess_volume(volume, PreprocessingConfig(flatten=False))
    return prep["ilm"], prep["bm"]


def volume_findings(result: Any, volume: OCTVolume, layers: tuple | None = None) -> VolumeFindings:
    """:func:`find_regions` for a ``MapResult``; ILM/BM from ``layers``, else the ones its
    scoring found, else detected here."""
    if layers is None and getattr(result, "ilm", None) is not None:
        layers = (result.ilm, result.bm)
    ilm, bm = layers if layers is not None else volume_layers(volume)
    band = band_top_en_face(getattr(result, "preprocessed", None) or {}, volume.shape[2])
    return find_regions(result.mask, result.anomaly, volume, ilm, bm, band)


def band_top_en_face(prep: dict[str, Any], width: int) -> np.ndarray | None:
    """Outer band top above BM (µm) per A-scan ``(n_bscans, width)`` of the input volume, from
    the flattened image the maps were computed on (None without one)."""
    from octanomaly.scoring.channels import band_top

    if prep.get("bm_row") is None or prep.get("image") is None:
        return None
    image = prep["image"]
    top = band_top(image, prep["mask"], prep["bm_row"], prep["spacing"][1])
    # input column -> the processed column it was resampled to (same B-scans)
    cols = np.minimum(((np.arange(width) + 0.5) * image.shape[2] / width).astype(np.int64),
                      image.shape[2] - 1)  # fmt: skip
    return np.where(prep["mask"].any(axis=1), top, np.nan)[:, cols]
