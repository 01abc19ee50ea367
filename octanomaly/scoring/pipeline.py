"""Score a volume: preprocess with the run's own config, score grid patches, stitch, calibrate,
restore to the input geometry, threshold. :func:`map_volume` is the product's main call.

The anomaly map is the fused z-map of the scoring channels against the run's normative model of
healthy retina (position-aware: height above BM, relative depth), clipped at 0 and zero outside
the scored retina. The threshold is a percentile of healthy (default 99): a pixel is anomalous
above the healthy fused maps' P-th percentile when its 3-D region also holds a pixel above a ten
times rarer one (99.9: hysteresis, so that regions are not the healthy maps' own 1 % tail), a
B-scan is flagged when its score (a high percentile of its fused map, calibrated) exceeds the
healthy B-scans' P-th percentile.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import octanomaly
from octanomaly.config import RunConfig
from octanomaly.errors import OctanomalyError
from octanomaly.models import AnomalyModel
from octanomaly.progress import progress_bar
from octanomaly.scoring.calibration import (
    BANK_FILE,
    CALIBRATION_FILE,
    NORMATIVE_FILE,
    VOLUME_TOP_K,
    Calibration,
    clean_mask,
    flatten_row,
    load_calibration,
    volume_score,
)
from octanomaly.scoring.masks import core_percentile, keep_cored_regions
from octanomaly.scoring.stitching import score_stack
from octanomaly.volume import OCTVolume

#: Default threshold: this percentile of healthy.
DEFAULT_PERCENTILE: float = 99.0
#: Mask components smaller than this many pixels (per B-scan) are dropped.
DEFAULT_MIN_SIZE: int = 50


def default_model_dir() -> Path | None:
    """The bundled default model (``octanomaly/bundled/<DEFAULT_BUNDLED>/``) if installed."""
    from octanomaly.runs import bundled_model_dir

    return bundled_model_dir()


@dataclass
class LoadedRun:
    """A trained run ready to score: model (eval, on its device), config, calibration."""

    model: AnomalyModel
    cfg: RunConfig
    calibration: Calibration
    run_dir: Path | None = None
    run_id: str | None = None
    calibration_id: str | None = None  #: digest of the calibration files (JSON + arrays)

    @property
    def info(self) -> dict[str, Any]:
        """``{name, version, run_id, calibration, scoring}`` for summaries."""
        f = self.calibration.file
        return {
            "name": self.model.name,
            "version": octanomaly.__version__,
            "run_id": self.run_id,
            "calibration": self.calibration.kind,
            "calibration_id": self.calibration_id,
            "scoring": {
                "normative_model": "position-aware (height above BM x relative depth)",
                "feature_bank": None if f.feature_bank is None else f.feature_bank.size,
                "channels": dict(zip(f.channels, f.weights, strict=True)),
                "bscan_percentile": f.bscan_percentile,
                "stride": f.stride,
                "healthy_bscans": f.n_bscans,
            },
        }


def _digest(*files: Path) -> str:
    """First 12 hex digits of the SHA-256 of ``files``' bytes in turn (missing ones skipped)."""
    h = hashlib.sha256()
    for path in files:
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]


def load_run(run_dir: str | Path, device: str = "auto") -> LoadedRun:
    """Load a finished run folder; clear :class:`OctanomalyError` when it does not fit together."""
    from octanomaly.devices import resolve_device
    from octanomaly.runs import MODEL_FILE, load_model

    run_dir = Path(run_dir)
    model, cfg, _ = load_model(run_dir, resolve_device(device))
    calibration = load_calibration(run_dir)
    f = calibration.file
    if f.model != model.name or f.patch_size != int(model.patch_size):
        raise OctanomalyError(
            f"{run_dir / CALIBRATION_FILE}: made for {f.model} patch size {f.patch_size}, "
            f"but the run is {model.name} patch size {model.patch_size}"
        )
    cal_id = _digest(*(run_dir / n for n in (CALIBRATION_FILE, NORMATIVE_FILE, BANK_FILE)))
    return LoadedRun(model, cfg, calibration, run_dir, _digest(run_dir / MODEL_FILE), cal_id)


def _as_run(model: LoadedRun | str | Path, device: str) -> LoadedRun:
    if isinstance(model, LoadedRun):
        if str(device) != "auto":
            from octanomaly.devices import resolve_device

            model.model.to(resolve_device(device))
        return model
    return load_run(model, device)


@dataclass
class MapResult:
    """Maps and scores of one volume, all in its own geometry ``(n_bscans, depth, width)``.

    Attributes:
        anomaly: float32 z-scores vs healthy (clipped at 0; 0 outside the retina).
        mask: uint8 anomalous voxels (``anomaly > threshold``, small components removed, in
            3-D regions holding a voxel above ``core_threshold``).
        residual: float32 raw stitched residual map (mean ``|x - x_hat|``; smoothed).
        score_map: float32 raw stitched patch-score map.
        retina: bool retina mask the maps are restricted to.
        ilm, bm: boundary rows ``(n, width)`` of the input grid the scoring found (NaN: none).
        bscan_scores: calibrated B-scan scores ``(n,)`` (NaN where a B-scan has no retina).
        volume_score: mean of the top :data:`VOLUME_TOP_K` B-scan scores.
        flagged: B-scans whose score exceeds ``bscan_threshold``.
        threshold: pixel threshold (z) on ``anomaly``; ``percentile`` of healthy it stands for.
        core_threshold: the z a region's highest voxel must pass (:func:`core_percentile`).
        preprocessed: what the maps were computed on (:func:`preprocess_volume`: the windowed,
            resampled, flattened ``image``, its ``mask``, the flattening shifts); reused for
            region features so a volume is preprocessed once.

    ``residual`` and ``score_map`` are not written by ``map``: they are restored to the input
    geometry on first access (the same values as restoring them eagerly; issue 13).
    """

    anomaly: np.ndarray
    mask: np.ndarray
    retina: np.ndarray
    bscan_scores: np.ndarray
    volume_score: float | None
    flagged: list[int]
    threshold: float
    bscan_threshold: float
    percentile: float
    stride: int
    n_patches: int
    model: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    core_threshold: float | None = None
    ilm: np.ndarray | None = None
    bm: np.ndarray | None = None
    preprocessed: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: ``residual`` / ``score_map`` still in preprocessed space (:func:`restore_map` brings
    #: them back with ``preprocessed``), and the maps once restored
    _raw: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    _restored_maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def _restored(self, name: str) -> np.ndarray:
        if name not in self._restored_maps:
            from octanomaly.transforms.preprocess import restore_map

            out = np.where(self.retina, restore_map(self._raw[name], self.preprocessed), 0.0)
            self._restored_maps[name] = out.astype(np.float32)
        return self._restored_maps[name]

    @property
    def residual(self) -> np.ndarray:
        return self._restored("residual")

    @property
    def score_map(self) -> np.ndarray:
        return self._restored("score_map")


def _threshold(run: LoadedRun, threshold: float | None) -> tuple[float, float, float]:
    p = DEFAULT_PERCENTILE if threshold is None else float(threshold)
    pixel, bscan = run.calibration.thresholds(p)
    return p, pixel, bscan


def map_volume(
    volume: OCTVolume,
    model: LoadedRun | str | Path,
    *,
    stride: int | None = None,
    device: str = "auto",
    threshold: float | None = None,
    min_size: int = DEFAULT_MIN_SIZE,
    batch_size: int | None = None,
    progress: bool = False,
) -> MapResult:
    """Anomaly maps, mask and scores of ``volume`` with a run folder or :class:`LoadedRun`.

    ``stride`` must be the one the run was calibrated with (default); ``threshold`` is a
    percentile of healthy (default 99).
    """
    from octanomaly.transforms.preprocess import preprocess_volume, restore_maps

    run = _as_run(model, device)
    percentile, pix_thr, bscan_thr = _threshold(run, threshold)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    prep = preprocess_volume(volume, run.cfg.preprocessing)
    timings["preprocess"] = time.perf_counter() - t0
    stride, maps, z, bscan_z = _score_prepped(run, prep, stride, batch_size, progress, timings)

    t0 = time.perf_counter()
    retina, anomaly = restore_maps((prep["mask"], z), prep)  # only what is written
    np.maximum(anomaly, 0.0, out=anomaly)
    anomaly[~retina] = 0.0
    mask = clean_mask(anomaly, pix_thr, min_size)
    np.multiply(mask, retina, out=mask)  # uint8 mask inside the retina only (in place)
    core_thr = run.calibration.thresholds(core_percentile(percentile))[0]
    keep_cored_regions(mask, anomaly, core_thr)
    timings["restore"] = time.perf_counter() - t0

    flagged = [int(i) for i in np.flatnonzero(np.nan_to_num(bscan_z, nan=-np.inf) > bscan_thr)]
    return MapResult(
        anomaly=anomaly,
        mask=mask,
        retina=retina,
        ilm=prep["ilm"],
        bm=prep["bm"],
        bscan_scores=bscan_z,
        volume_score=volume_score(bscan_z, VOLUME_TOP_K),
        flagged=flagged,
        threshold=pix_thr,
        core_threshold=core_thr,
        bscan_threshold=bscan_thr,
        percentile=percentile,
        stride=stride,
        n_patches=maps.n_patches,
        model=run.info,
        timings=timings,
        _raw={"residual": maps.residual, "score_map": maps.score},
        preprocessed=prep,
    )


def score_bscans(
    volume: OCTVolume,
    model: LoadedRun | str | Path,
    *,
    stride: int | None = None,
    device: str = "auto",
    batch_size: int | None = None,
) -> np.ndarray:
    """Calibrated image-level score of every B-scan of ``volume`` (``(n,)``, NaN: no retina).

    The same preprocessing, patch grid and B-scan score as :func:`map_volume`, without maps.
    """
    from octanomaly.transforms.preprocess import preprocess_volume

    run = _as_run(model, device)
    prep = preprocess_volume(volume, run.cfg.preprocessing)
    return _score_prepped(run, prep, stride, batch_size, False, {})[3]


def _score_prepped(
    run: LoadedRun,
    prep: dict[str, Any],
    stride: int | None,
    batch_size: int | None,
    progress: bool,
    timings: dict[str, float],
) -> tuple[int, Any, np.ndarray, np.ndarray]:
    """``(stride, raw maps, fused z-map clipped at 0 in the scored region, B-scan z)``."""
    cal = run.calibration
    stride = cal.check_stride(stride)
    pre = run.cfg.preprocessing
    image, inside = prep["image"], prep["mask"]
    with progress_bar(progress) as bar:
        maps = score_stack(
            run.model,
            image,
            inside,
            stride=stride,
            top_k=cal.top_k,
            smooth_sigma=cal.smooth_sigma,
            batch_size=batch_size or run.cfg.training.score_batch_size,
            amp=run.cfg.training.amp,
            progress=bar,
        )
    timings.update(maps.timings)
    t0 = time.perf_counter()
    bank = cal.bank_map(maps, run.model.patch_size)
    if bank is not None:
        timings["feature_bank"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fused, region, raw = cal.score(
        image,
        maps.residual,
        inside,
        flatten_row(pre, image.shape[1]),
        pre.margin_px,
        prep["spacing"][1],
        bank,
    )
    z = np.where(region, np.maximum(fused, 0.0), 0.0).astype(np.float32)
    timings["normative"] = time.perf_counter() - t0
    return stride, maps, z, cal.bscan_z(raw)
