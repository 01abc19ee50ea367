"""A normative model of healthy retina: robust per-position statistics of each scoring channel.

Every pixel of a flattened (BM-aligned) B-scan has a position in retina coordinates: its height
above Bruch's membrane in µm and its relative depth between BM (0) and the ILM (1). A healthy
channel value (e.g. the residual ``|x - x_hat|``) depends strongly on that position: the RPE and
the nerve fibre layer are bright and speckled in every eye. The model bins positions on a 2-D grid
and stores, per channel and bin, the healthy median and an upper-tail spread
``(q95 - median) / 1.645``, smoothed across bins (count-weighted) and floored, so sparse bins do
not explode. :meth:`NormativeModel.z` turns channel maps into z-scores against it.

Stored as ``normative.safetensors`` (arrays) with its settings in ``calibration.json``; no pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from octanomaly.errors import OctanomalyError

#: Normal quantile of the upper-tail spread (q95 - median) / Z95 ~ std of a normal.
Z95 = 1.6448536
#: Bins whose healthy count is below this borrow from their neighbours (smoothing weights).
MIN_BIN_COUNT = 50
#: Spread floor as a fraction of the channel's overall healthy spread.
FLOOR_FRACTION = 0.25


def load_arrays(path: Path, what: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays of a run's safetensors file ``path`` holding ``what``; one-line errors."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
    except FileNotFoundError:
        raise OctanomalyError(f"{path}: {what} file missing") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise OctanomalyError(f"{path}: unreadable {what} ({err})") from None
    missing = set(keys) - set(arrays)
    if missing:
        raise OctanomalyError(f"{path}: {what} lacks {', '.join(sorted(missing))}")
    return arrays


@dataclass(frozen=True)
class BinSpec:
    """Retina-coordinate bins: height above BM (µm) and relative depth BM (0) -> ILM (1)."""

    height_um: tuple[float, float, float] = (-80.0, 720.0, 8.0)  #: start, stop, step
    rel_depth: tuple[float, float, float] = (-0.3, 1.3, 0.05)
    smooth_bins: float = 1.0  #: Gaussian sigma (bins) across both axes

    @property
    def shape(self) -> tuple[int, int]:
        """Number of bins along (height, relative depth)."""
        return (_n_bins(self.height_um), _n_bins(self.rel_depth))


def _n_bins(spec: tuple[float, float, float]) -> int:
    lo, hi, step = spec
    return max(int(round((hi - lo) / step)), 1)


def _index(x: np.ndarray, spec: tuple[float, float, float]) -> np.ndarray:
    lo, _, step = spec
    n = _n_bins(spec)
    return np.clip(np.floor((x - lo) / step), 0, n - 1).astype(np.int32)


def retina_coordinates(
    shape: tuple[int, int, int], bm_row: float, ilm_rows: np.ndarray, axial_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(height above BM in µm, relative depth BM->ILM)`` of every pixel, each ``(n, d, w)``.

    ``bm_row`` is the row BM was flattened to; ``ilm_rows`` ``(n, w)`` the ILM row per column of
    the flattened grid (NaN where unknown: relative depth is then extrapolated from the median
    retina thickness of the B-scan, or 0.5 thickness 250 µm when none).
    """
    n, d, w = shape
    rows = np.arange(d, dtype=np.float32)[None, :, None]
    height = (float(bm_row) - rows) * float(axial_mm) * 1000.0
    thick = float(bm_row) - np.asarray(ilm_rows, dtype=np.float32)  # (n, w) rows
    thick = np.where(np.isfinite(thick) & (thick > 2), thick, np.nan)
    for i in range(n):
        if np.isnan(thick[i]).all():
            thick[i] = 0.25 / float(axial_mm)
        else:
            thick[i] = np.where(np.isnan(thick[i]), np.nanmedian(thick[i]), thick[i])
    rel = (float(bm_row) - rows) / thick[:, None, :]
    return np.broadcast_to(height, (n, d, w)), rel.astype(np.float32)


def bin_index(spec: BinSpec, height: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Flat bin index of every pixel (positions outside the grid go to the edge bins)."""
    nr = spec.shape[1]
    return _index(height, spec.height_um) * nr + _index(rel, spec.rel_depth)


def _grouped_quantiles(
    values: np.ndarray, bins: np.ndarray, n_bins: int, qs: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin quantiles ``(len(qs), n_bins)`` (NaN where empty) and counts ``(n_bins,)``."""
    order = np.lexsort((values, bins))
    v, b = values[order], bins[order]
    counts = np.bincount(b, minlength=n_bins)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.full((len(qs), n_bins), np.nan, dtype=np.float64)
    have = counts > 0
    for k, q in enumerate(qs):
        pos = starts[have] + q * (counts[have] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, starts[have] + counts[have] - 1)
        frac = pos - lo
        out[k, have] = v[lo] * (1 - frac) + v[hi] * frac
    return out, counts


def _smooth(field: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Count-weighted Gaussian smoothing of a 2-D field with holes (weight 0)."""
    f = np.where(weight > 0, field, 0.0)
    num = ndimage.gaussian_filter(f * weight, sigma, mode="nearest")
    den = ndimage.gaussian_filter(weight, sigma, mode="nearest")
    return np.where(den > 1e-12, num / np.maximum(den, 1e-12), np.nan)


def _fill_holes(field: np.ndarray, fallback: float) -> np.ndarray:
    """NaN bins take the value of the nearest defined bin (``fallback`` if none)."""
    bad = ~np.isfinite(field)
    if not bad.any():
        return field
    if bad.all():
        return np.full_like(field, fallback)
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return field[tuple(idx)]


@dataclass(frozen=True)
class NormativeModel:
    """Healthy median and spread of each channel per retina-coordinate bin.

    Attributes:
        channels: channel names, in the order of the first axis of ``center``/``scale``.
        spec: the bins.
        center: float32 ``(n_channels, n_height, n_rel)`` healthy medians.
        scale: float32 like ``center``: healthy upper-tail spreads (> 0, floored).
        counts: int64 ``(n_height, n_rel)`` healthy pixels per bin.
    """

    channels: tuple[str, ...]
    spec: BinSpec
    center: np.ndarray
    scale: np.ndarray
    counts: np.ndarray

    @classmethod
    def fit(cls, samples: dict[str, np.ndarray], bins: np.ndarray, spec: BinSpec) -> NormativeModel:
        """Fit from healthy pixel ``samples`` (channel -> ``(N,)``) at flat ``bins`` ``(N,)``."""
        bins = np.asarray(bins, dtype=np.int64).ravel()
        if bins.size == 0:
            raise OctanomalyError("normative model: no healthy retina pixels to fit")
        shape = spec.shape
        n_bins = shape[0] * shape[1]
        centers, scales = [], []
        counts = None
        for name, values in samples.items():
            x = np.asarray(values, dtype=np.float64).ravel()
            if x.shape != bins.shape or not np.isfinite(x).all():
                raise OctanomalyError(f"normative model: channel {name!r} has bad healthy values")
            (q50, q95), counts = _grouped_quantiles(x, bins, n_bins, (0.5, 0.95))
            w = np.minimum(counts, 10 * MIN_BIN_COUNT).reshape(shape).astype(np.float64)
            w = np.where(counts.reshape(shape) >= MIN_BIN_COUNT, w, w * 0.1)
            med = _smooth(q50.reshape(shape), w, spec.smooth_bins)
            spread = _smooth(((q95 - q50) / Z95).reshape(shape), w, spec.smooth_bins)
            overall = float((np.percentile(x, 95) - np.median(x)) / Z95)
            floor = max(FLOOR_FRACTION * overall, 1e-6)
            med = _fill_holes(med, float(np.median(x)))
            spread = np.maximum(_fill_holes(spread, overall), floor)
            centers.append(med)
            scales.append(spread)
        model = cls(
            tuple(samples),
            spec,
            np.stack(centers).astype(np.float32),
            np.stack(scales).astype(np.float32),
            counts.reshape(shape).astype(np.int64),
        )
        model.validate("normative model")
        return model

    def validate(self, where: str) -> None:
        """:class:`OctanomalyError` naming ``where`` unless shapes fit and values are usable."""
        shape = (len(self.channels), *self.spec.shape)
        for name in ("center", "scale"):
            arr = getattr(self, name)
            if arr.shape != shape:
                raise OctanomalyError(f"{where}: {name} has shape {arr.shape}, expected {shape}")
            if not np.isfinite(arr).all():
                raise OctanomalyError(f"{where}: {name} holds NaN or infinite values")
        if not (self.scale > 0).all():
            raise OctanomalyError(f"{where}: healthy spread must be > 0 in every bin")
        if self.counts.shape != self.spec.shape or int(self.counts.sum()) <= 0:
            raise OctanomalyError(f"{where}: holds no healthy pixel counts")

    def z(self, maps: dict[str, np.ndarray], bins: np.ndarray) -> dict[str, np.ndarray]:
        """z-scores ``(value - center[bin]) / scale[bin]`` of each channel map (float32)."""
        out = {}
        for k, name in enumerate(self.channels):
            c = self.center[k].ravel()[bins]
            s = self.scale[k].ravel()[bins]
            out[name] = ((np.asarray(maps[name], dtype=np.float32) - c) / s).astype(np.float32)
        return out

    # ------------------------------------------------------------------------- files
    def tensors(self) -> dict[str, np.ndarray]:
        """Arrays for safetensors."""
        return {"center": self.center, "scale": self.scale, "counts": self.counts}

    def meta(self) -> dict[str, Any]:
        """JSON-able settings (channels and bins)."""
        s = self.spec
        return {
            "channels": list(self.channels),
            "height_um": list(s.height_um),
            "rel_depth": list(s.rel_depth),
            "smooth_bins": s.smooth_bins,
        }

    def save(self, path: str | Path) -> None:
        """Write the arrays as safetensors (atomically); settings go to :meth:`meta`."""
        from safetensors.numpy import save_file

        from octanomaly.io.atomic import atomic_path

        with atomic_path(Path(path)) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in self.tensors().items()}, str(tmp))

    @classmethod
    def load(cls, path: str | Path, meta: dict[str, Any]) -> NormativeModel:
        """Read ``path`` (safetensors) with its ``meta``; one-line :class:`OctanomalyError`."""
        path = Path(path)
        arrays = load_arrays(path, "normative model", ("center", "scale", "counts"))
        spec = BinSpec(
            tuple(meta["height_um"]), tuple(meta["rel_depth"]), float(meta["smooth_bins"])
        )
        model = cls(
            tuple(meta["channels"]),
            spec,
            arrays["center"].astype(np.float32),
            arrays["scale"].astype(np.float32),
            arrays["counts"].astype(np.int64),
        )
        model.validate(str(path))
        return model
