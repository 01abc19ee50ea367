"""Calibration against healthy data: score distributions, z-scores, percentile thresholds.

A run folder's ``calibration.json`` holds, from training (:func:`octanomaly.training.calibrate`),
the patch-score and raw pixel-residual distributions of held-out healthy patches. Stitched maps
and B-scan scores have distributions of their own (overlap averaging narrows them), so
:func:`calibrate_run` adds a ``maps`` section measured through the
very pipeline that makes the maps. :class:`Calibration` reads either: with ``maps`` the z-scores
are exact; without it they fall back to the patch-level statistics (``kind == "patches"``).

Every distribution is summarised by mean, std and 1001 evenly spaced quantiles; a value's
calibrated score is ``(value - mean) / std`` and a threshold "percentile P of healthy" is the
z-score of the healthy P-th percentile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from octanomaly.errors import OctanomalyError

if TYPE_CHECKING:
    from octanomaly.volume import OCTVolume

#: Percentile levels stored for every distribution (0, 0.1, ..., 100).
LEVELS: np.ndarray = np.linspace(0.0, 100.0, 1001)
#: Smallest std used to divide (a degenerate healthy distribution must not give inf).
_MIN_STD = 1e-8
#: The volume score is the mean of this many highest B-scan scores.
VOLUME_TOP_K: int = 3


@dataclass(frozen=True)
class Dist:
    """A healthy score distribution: mean, std and quantile values at percentile ``levels``."""

    mean: float
    std: float
    levels: np.ndarray
    values: np.ndarray

    @classmethod
    def from_samples(cls, samples: np.ndarray) -> Dist:
        """Summarise finite ``samples`` (at least one)."""
        x = np.asarray(samples, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        if x.size == 0:
            raise OctanomalyError("calibration needs at least one finite healthy value")
        return cls(float(x.mean()), float(x.std()), LEVELS.copy(), np.percentile(x, LEVELS))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dist:
        """From :meth:`to_dict`, or the training summaries (``quantiles`` as ``{"99": v}``)."""
        if "sorted" in d:
            values = np.asarray(d["sorted"], dtype=np.float64)
            levels = np.linspace(0.0, 100.0, len(values))
        else:
            q = {float(k): float(v) for k, v in d["quantiles"].items()}
            levels = np.array(sorted(q))
            values = np.array([q[k] for k in levels])
        return cls(float(d["mean"]), float(d["std"]), levels, values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``sorted`` = quantiles at :data:`LEVELS`)."""
        return {"mean": self.mean, "std": self.std, "sorted": [float(v) for v in self.values]}

    def z(self, x: np.ndarray | float) -> np.ndarray:
        """Calibrated score ``(x - mean) / std`` (float32 for arrays)."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / max(self.std, _MIN_STD)).astype(
            np.float32
        )

    def percentile(self, p: float) -> float:
        """The healthy ``p``-th percentile (interpolated; clamped to the stored range)."""
        return float(np.interp(float(p), self.levels, self.values))

    def z_at(self, p: float) -> float:
        """Calibrated score of the healthy ``p``-th percentile."""
        return float(self.z(self.percentile(p)))


@dataclass(frozen=True)
class Calibration:
    """What scoring needs from ``calibration.json``.

    Attributes:
        kind: ``"maps"`` (measured on stitched healthy maps) or ``"patches"`` (fallback).
        pixel: distribution of map pixels inside the retina (``source`` map).
        bscan: distribution of B-scan scores (top-k mean of patch scores); with
            ``kind == "patches"`` it is the patch-score distribution and B-scan scores are the
            mean of the top-k calibrated patch scores.
        patch: distribution of single patch scores (training calibration).
        source: which stitched map the anomaly map is made of, ``"residual"`` or ``"score"``.
        top_k, smooth_sigma, stride: map settings the ``maps`` section was measured with.
    """

    kind: str
    pixel: Dist
    bscan: Dist
    patch: Dist | None
    source: str = "residual"
    top_k: int = 5
    smooth_sigma: float = 2.0
    stride: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "calibration.json") -> Calibration:
        """Read a run's calibration dict; :class:`OctanomalyError` if it holds neither section."""
        patch = None
        if "score" in data and "sorted_scores" in data:
            patch = Dist.from_dict({**data["score"], "sorted": data["sorted_scores"]})
        maps = data.get("maps")
        if maps:
            src = maps.get("source", "residual")
            return cls(
                kind="maps",
                pixel=Dist.from_dict(maps[src]),
                bscan=Dist.from_dict(maps["bscan"]),
                patch=patch,
                source=src,
                top_k=int(maps["top_k"]),
                smooth_sigma=float(maps["smooth_sigma"]),
                stride=maps.get("stride"),
            )
        if patch is None or "residual" not in data:
            raise OctanomalyError(
                f"{where}: no healthy calibration in the run folder (retrain, or run calibrate_run)"
            )
        return cls(kind="patches", pixel=Dist.from_dict(data["residual"]), bscan=patch, patch=patch)

    def bscan_z(self, top_scores: list[np.ndarray]) -> np.ndarray:
        """Calibrated B-scan scores from each B-scan's top-k raw patch scores (NaN when none)."""
        out = np.full(len(top_scores), np.nan, dtype=np.float64)
        for i, top in enumerate(top_scores):
            if len(top) == 0:
                continue
            if self.kind == "maps":
                out[i] = float(self.bscan.z(float(np.mean(top))))
            else:
                out[i] = float(np.mean(self.bscan.z(top)))
        return out

    def thresholds(self, percentile: float) -> tuple[float, float]:
        """``(pixel z threshold, B-scan z threshold)`` at the healthy ``percentile``."""
        if not 0.0 < float(percentile) < 100.0:
            raise OctanomalyError(f"threshold must be a percentile in (0, 100), got {percentile}")
        return self.pixel.z_at(percentile), self.bscan.z_at(percentile)


def volume_score(bscan_z: np.ndarray, k: int = VOLUME_TOP_K) -> float | None:
    """Volume score: mean of the ``k`` highest calibrated B-scan scores (None if none)."""
    x = np.asarray(bscan_z, dtype=np.float64)
    x = np.sort(x[np.isfinite(x)])[::-1]
    return float(x[:k].mean()) if x.size else None


def clean_mask(anomaly: np.ndarray, threshold: float, min_size: int) -> np.ndarray:
    """uint8 mask of ``anomaly > threshold`` per B-scan, components < ``min_size`` px removed."""
    from skimage.morphology import remove_small_objects

    mask = np.asarray(anomaly) > threshold
    if min_size > 1:
        for i in range(mask.shape[0]):
            if mask[i].any():
                try:  # scikit-image >= 0.26: removes objects of <= max_size pixels
                    mask[i] = remove_small_objects(mask[i], max_size=min_size - 1, connectivity=2)
                except TypeError:  # older scikit-image
                    mask[i] = remove_small_objects(mask[i], min_size=min_size, connectivity=2)
    return mask.astype(np.uint8)


#: Most healthy map pixels kept per distribution (a seeded random subset beyond this).
MAX_PIXELS = 4_000_000


def _healthy_stacks(healthy: Any, prep_cfg: Any) -> Any:
    """Yield preprocessed ``(image, mask)`` stacks from a sampler or volumes/paths."""
    if hasattr(healthy, "images") and hasattr(healthy, "masks"):  # data.healthy.PatchSampler
        yield (
            healthy.images.detach().cpu().numpy().astype(np.float32),
            healthy.masks.detach().cpu().numpy().astype(bool),
        )
        return
    from octanomaly.io import load_volume
    from octanomaly.transforms.preprocess import preprocess_volume

    for item in healthy:
        vol = item if hasattr(item, "data") else load_volume(item)
        prep = preprocess_volume(vol, prep_cfg)
        yield prep["image"], prep["mask"]


def calibrate_run(
    run_dir: str | Path,
    healthy: Any | Sequence[str | Path | OCTVolume],
    *,
    device: str = "auto",
    stride: int | None = None,
    top_k: int = 5,
    smooth_sigma: float = 2.0,
    source: Literal["residual", "score"] = "residual",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure healthy map and B-scan statistics through the map pipeline; store them.

    ``healthy`` is held-out healthy data: the validation sampler of
    :func:`octanomaly.data.healthy.load_healthy` (its cached preprocessed B-scans) or volumes /
    paths (preprocessed with the run's config). Adds a ``maps`` section to the run's
    ``calibration.json`` (rewritten atomically) and returns it.
    """
    from octanomaly.devices import resolve_device
    from octanomaly.runs import CALIBRATION_FILE, load_model, write_json
    from octanomaly.scoring.stitching import score_stack

    run_dir = Path(run_dir)
    model, cfg, raw = load_model(run_dir, resolve_device(device))
    stride = int(stride or cfg.preprocessing.score_stride)
    rng = np.random.default_rng(seed)
    pixels: dict[str, list[np.ndarray]] = {"residual": [], "score": []}
    bscan: list[float] = []
    n_bscans = 0
    bar = _progress(progress)
    with bar:
        for image, mask in _healthy_stacks(healthy, cfg.preprocessing):
            maps = score_stack(
                model, image, mask, stride=stride, top_k=top_k, smooth_sigma=smooth_sigma,
                batch_size=cfg.training.score_batch_size, amp=cfg.training.amp,
                progress=bar.progress, description="calibrating on healthy B-scans",
            )  # fmt: skip
            for name in pixels:
                pixels[name].append(getattr(maps, name)[mask])
            bscan += [float(np.mean(t)) for t in maps.top_scores if len(t)]
            n_bscans += image.shape[0]
    if not bscan:
        raise OctanomalyError(f"{run_dir}: healthy calibration data hold no retina patches")
    section: dict[str, Any] = {
        "source": source,
        "stride": stride,
        "top_k": int(top_k),
        "smooth_sigma": float(smooth_sigma),
        "n_bscans": n_bscans,
        "n_bscan_scores": len(bscan),
        "bscan": Dist.from_samples(np.asarray(bscan)).to_dict(),
    }
    for name, parts in pixels.items():
        values = np.concatenate(parts)
        if values.size > MAX_PIXELS:
            values = rng.choice(values, MAX_PIXELS, replace=False)
        section[name] = Dist.from_samples(values).to_dict()
        section[name]["n"] = int(values.size)
    write_json(run_dir / CALIBRATION_FILE, {**raw, "maps": section})
    return section


class _progress:
    """A transient rich progress display, or nothing (``progress`` attribute ``None``)."""

    def __init__(self, enabled: bool):
        self.progress = None
        if enabled:
            from rich.progress import Progress

            self.progress = Progress(transient=True)

    def __enter__(self) -> _progress:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
