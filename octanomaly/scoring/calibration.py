"""Calibration against healthy data: the normative model, healthy score distributions, thresholds.

One calibration path, :func:`calibrate_run`, used by ``octanomaly calibrate``, ``train()`` and
the ``train`` command alike. It maps held-out healthy B-scans through the same pipeline as
``map`` and stores with the run:

- ``normative.safetensors``: per retina position (height above BM, relative depth BM->ILM),
  the robust healthy median and spread of each scoring channel (:mod:`.normative`);
- ``feature_bank.safetensors`` (models with patch embeddings): a coreset of healthy patch
  embeddings (:mod:`.feature_bank`); the healthy ``bank`` channel values the normative model is
  fitted on are distances to a bank built *without* the B-scan's own fold (patients);
- ``calibration.json``: settings (stride, smoothing, channels, B-scan percentile) and two
  healthy distributions measured *out of fold* (each healthy group scored against a normative
  model fitted without it): fused pixel z-scores and raw B-scan scores.

A B-scan's raw score is a high percentile of its fused z-map inside the retina; its calibrated
score is that raw score as a z-score of the healthy B-scans. A threshold "percentile P of
healthy" is the healthy P-th percentile (pixels: of the fused map; B-scans: of their scores).
Every file is validated on load (pydantic): a broken file is a one-line error.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from octanomaly.errors import InputError, OctanomalyError
from octanomaly.progress import progress_bar
from octanomaly.scoring import channels as ch
from octanomaly.scoring.feature_bank import FeatureBank, distance_map
from octanomaly.scoring.normative import BinSpec, NormativeModel
from octanomaly.transforms._threads import per_bscan

if TYPE_CHECKING:
    from octanomaly.volume import OCTVolume

#: Percentile levels stored for every distribution (0, 0.1, ..., 100).
LEVELS: np.ndarray = np.linspace(0.0, 100.0, 1001)
#: The volume score is the mean of this many highest B-scan scores.
VOLUME_TOP_K: int = 3
#: Format tag of ``calibration.json``.
FORMAT = "octanomaly-calibration/2"
CALIBRATION_FILE = "calibration.json"
NORMATIVE_FILE = "normative.safetensors"
BANK_FILE = "feature_bank.safetensors"
#: Fewest healthy B-scans (with retina) a calibration accepts.
MIN_HEALTHY_BSCANS: int = 20
#: Fewest healthy groups (patients / volumes) to fold by group (else by B-scan blocks).
MIN_HEALTHY_GROUPS: int = 2
#: Default scoring settings (chosen on a patient split of kermany/dev; docs/results.md).
#: ``bank`` only for models that declare ``embeds_patches``.
DEFAULT_CHANNELS: tuple[str, ...] = ("intensity", "residual", "bank", "elevation")
#: Fusion weights: the residual adds little at image level and lights the bright RPE band in
#: eyes unlike the healthy set, so it counts a quarter; the feature bank's and the outer band
#: elevation's weights were chosen on dev-A (docs/results.md, ablation).
DEFAULT_WEIGHTS: tuple[float, ...] = (1.0, 0.25, 1.0, 1.0)
DEFAULT_SMOOTH_SIGMA: float = 1.0
DEFAULT_BSCAN_PERCENTILE: float = 99.5
#: Healthy pixels kept per B-scan for fitting (a seeded subset beyond this).
MAX_PIXELS_PER_BSCAN = 20_000
#: Most healthy pixels kept for the pixel distribution.
MAX_PIXELS = 4_000_000
#: Out-of-fold folds.
N_FOLDS = 10


class Dist(BaseModel):
    """A healthy distribution: mean, std and quantiles at :data:`LEVELS` (``sorted``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float
    std: float = Field(gt=0)
    sorted: list[float] = Field(min_length=2)

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("sorted")
    @classmethod
    def _monotone(cls, v: list[float]) -> list[float]:
        a = np.asarray(v, dtype=np.float64)
        if not np.isfinite(a).all():
            raise ValueError("quantiles must be finite numbers")
        if (np.diff(a) < 0).any():
            raise ValueError("quantiles must not decrease")
        return v

    @classmethod
    def from_samples(cls, samples: np.ndarray) -> Dist:
        """Summarise finite ``samples`` (at least two distinct values)."""
        x = np.asarray(samples, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        if x.size < 2 or float(x.std()) <= 0:
            raise OctanomalyError("calibration needs at least two different healthy values")
        return cls(
            mean=float(x.mean()), std=float(x.std()), sorted=np.percentile(x, LEVELS).tolist()
        )

    def z(self, x: np.ndarray | float) -> np.ndarray:
        """``(x - mean) / std`` (float32 for arrays)."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def percentile(self, p: float) -> float:
        """The healthy ``p``-th percentile (interpolated)."""
        return float(np.interp(float(p), np.linspace(0, 100, len(self.sorted)), self.sorted))

    def z_at(self, p: float) -> float:
        """z-score of the healthy ``p``-th percentile."""
        return float(self.z(self.percentile(p)))


class NormativeSettings(BaseModel):
    """Where the normative arrays are and how they are binned."""

    model_config = ConfigDict(extra="forbid")

    file: str = NORMATIVE_FILE
    height_um: tuple[float, float, float]
    rel_depth: tuple[float, float, float]
    smooth_bins: float = Field(ge=0)

    @field_validator("height_um", "rel_depth")
    @classmethod
    def _bins(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        lo, hi, step = v
        if not all(map(math.isfinite, v)) or step <= 0 or hi <= lo:
            raise ValueError("bins must be (start, stop > start, step > 0)")
        return v


class BankSettings(BaseModel):
    """Where the feature bank is, its embedding dimension and size."""

    model_config = ConfigDict(extra="forbid")

    file: str = BANK_FILE
    dim: int = Field(ge=1)
    size: int = Field(ge=1)
    n_healthy_patches: int = Field(ge=1)


class CalibrationFile(BaseModel):
    """``calibration.json``: scoring settings and healthy distributions."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["octanomaly-calibration/2"]
    model: str
    patch_size: int = Field(ge=1)
    stride: int = Field(ge=1)
    smooth_sigma: float = Field(ge=0, le=16)
    edge_px: int = Field(ge=0)
    channels: list[str] = Field(min_length=1)
    weights: list[float] = Field(min_length=1)
    bscan_percentile: float = Field(gt=50, lt=100)
    normative: NormativeSettings
    feature_bank: BankSettings | None = None
    pixel: Dist
    bscan: Dist
    n_bscans: int = Field(ge=MIN_HEALTHY_BSCANS)
    n_groups: int = Field(ge=1)
    sources: list[str] = Field(default_factory=list)

    @field_validator("channels")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in ch.CHANNELS]
        if bad or len(set(v)) != len(v):
            raise ValueError(f"channels must be distinct names of {sorted(ch.CHANNELS)}")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: list[float]) -> list[float]:
        if not all(math.isfinite(w) and w >= 0 for w in v) or sum(v) <= 0:
            raise ValueError("weights must be finite, >= 0 and not all 0")
        return v

    @model_validator(mode="after")
    def _one_weight_per_channel(self) -> CalibrationFile:
        if len(self.weights) != len(self.channels):
            raise ValueError("one weight per channel")
        if ("bank" in self.channels) != (self.feature_bank is not None):
            raise ValueError("the bank channel and the feature_bank settings go together")
        return self

    @property
    def weight_of(self) -> dict[str, float]:
        """Fusion weight per channel."""
        return dict(zip(self.channels, self.weights, strict=True))


@dataclass(frozen=True)
class Calibration:
    """What scoring needs: settings, normative model and healthy distributions."""

    file: CalibrationFile
    normative: NormativeModel
    kind: str = "maps"
    bank: FeatureBank | None = None

    @property
    def stride(self) -> int:
        """Patch grid stride the healthy statistics were measured with."""
        return self.file.stride

    @property
    def smooth_sigma(self) -> float:
        """Gaussian smoothing of the stitched residual and the intensity channel (px)."""
        return self.file.smooth_sigma

    @property
    def top_k(self) -> int:
        """Top patch scores kept per B-scan (reported, not used for B-scan scores)."""
        return 5

    def bank_map(self, maps: Any, patch_size: int) -> np.ndarray | None:
        """Stitched feature-bank distance map of :class:`~.stitching.StackMaps` (None: no bank)."""
        if self.bank is None:
            return None
        if maps.embedding is None:
            raise OctanomalyError(
                "the run is calibrated with a feature bank, but its model gives no patch embeddings"
            )
        return distance_map(
            self.bank.distances(maps.embedding), maps.coords, maps.residual.shape, patch_size
        )

    def score(
        self, image: np.ndarray, residual: np.ndarray, mask: np.ndarray, bm_row: int,
        margin_px: int, axial_mm: float, bank: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """``(fused z-map, scoring region, raw B-scan scores)`` of a preprocessed stack.

        Every step is per B-scan, so chunks of ~16 B-scans are scored on threads (the same
        values; the temporaries of a few chunks at a time).
        """
        f = self.file

        referenced = [k for k in ch.VOLUME_REFERENCED if k in f.channels]

        def chunk(image, residual, mask, bank=None) -> tuple[np.ndarray, ...]:
            maps = ch.channel_maps(
                image, residual, mask, tuple(f.channels), f.smooth_sigma, bank,
                bm_row=bm_row, axial_mm=axial_mm,
            )  # fmt: skip
            bins = ch.position_bins(mask, bm_row, margin_px, axial_mm, self.normative.spec)
            support = ch.supports(maps, bm_row, axial_mm)
            z = self.normative.z(maps, bins)
            fused = ch.fuse(z, f.weight_of, support)
            region = ch.scoring_region(mask, f.edge_px)
            own = [z[k][region] for k in referenced]  # for the volume's own median
            return fused, region, ch.bscan_scores(fused, region, f.bscan_percentile), *own

        more = () if bank is None else (bank,)
        fused, region, raw, *own = per_bscan(chunk, image, residual, mask, *more, per_chunk=16)
        # fusion is linear in a one-sided channel: lowering its z by the volume's own median
        # lowers the fused map and every B-scan's percentile by its share of that
        shift = sum(
            ch.weight_share(f.weight_of, f.channels, k) * ch.volume_reference(v)
            for k, v in zip(referenced, own, strict=True)
        )
        if shift:
            fused -= np.float32(shift)
            raw = raw - shift
        return fused, region, raw

    def bscan_z(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated B-scan scores from raw ones (NaN stays NaN)."""
        return self.file.bscan.z(np.asarray(raw, dtype=np.float64)).astype(np.float64)

    def thresholds(self, percentile: float) -> tuple[float, float]:
        """``(pixel threshold on the fused map, B-scan z threshold)`` at healthy ``percentile``."""
        if not 0.0 < float(percentile) < 100.0:
            raise OctanomalyError(f"threshold must be a percentile in (0, 100), got {percentile}")
        return self.file.pixel.percentile(percentile), self.file.bscan.z_at(percentile)

    def check_stride(self, stride: int | None) -> int:
        """The stride to score with: the calibrated one; another one is refused (one line)."""
        if stride is None or int(stride) == self.file.stride:
            return self.file.stride
        raise OctanomalyError(
            f"the run was calibrated at stride {self.file.stride}; --stride {stride} would "
            "compare maps with healthy statistics of another stride. Calibrate for it: "
            f"`octanomaly calibrate RUN HEALTHY... --stride {stride} --out NEW_RUN`"
        )


def load_calibration(run_dir: str | Path) -> Calibration:
    """Read and validate a run's ``calibration.json`` and normative model (one-line errors)."""
    run_dir = Path(run_dir)
    path = run_dir / CALIBRATION_FILE
    if not path.is_file():
        raise InputError(
            path,
            "missing; the run is not calibrated on healthy data "
            "(`octanomaly calibrate RUN HEALTHY... --out NEW_RUN`)",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    if data == {}:
        raise InputError(
            path,
            "the run is not calibrated on healthy data yet "
            "(`octanomaly calibrate RUN HEALTHY... --out NEW_RUN`)",
        )
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(
            path,
            "not a current calibration (no or another format tag); "
            "re-calibrate: `octanomaly calibrate RUN HEALTHY... --out NEW_RUN`",
        )
    try:
        cf = CalibrationFile.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "file"
        raise InputError(path, f"{where}: {e['msg']}") from None
    nm = NormativeModel.load(
        run_dir / cf.normative.file, {"channels": cf.channels, **cf.normative.model_dump()}
    )
    fb = cf.feature_bank
    bank = None if fb is None else FeatureBank.load(run_dir / fb.file, fb.dim)
    return Calibration(cf, nm, bank=bank)


def volume_score(bscan_z: np.ndarray, k: int = VOLUME_TOP_K) -> float | None:
    """Volume score: mean of the ``k`` highest calibrated B-scan scores (None if none)."""
    x = np.asarray(bscan_z, dtype=np.float64)
    x = np.sort(x[np.isfinite(x)])[::-1]
    return float(x[:k].mean()) if x.size else None


def clean_mask(anomaly: np.ndarray, threshold: float, min_size: int) -> np.ndarray:
    """uint8 mask of ``anomaly > threshold`` per B-scan, components < ``min_size`` px removed
    (chunks of ~16 B-scans on threads)."""
    from skimage.morphology import remove_small_objects

    def chunk(a: np.ndarray) -> np.ndarray:
        mask = a > threshold
        if min_size > 1:
            for i in range(mask.shape[0]):
                if mask[i].any():
                    try:  # scikit-image >= 0.26: removes objects of <= max_size pixels
                        mask[i] = remove_small_objects(
                            mask[i], max_size=min_size - 1, connectivity=2
                        )
                    except TypeError:  # older scikit-image
                        mask[i] = remove_small_objects(mask[i], min_size=min_size, connectivity=2)
        return mask.astype(np.uint8)

    return per_bscan(chunk, np.asarray(anomaly), per_chunk=16)


# ----------------------------------------------------------------------------- calibrating
def flatten_row(pre: Any, depth: int) -> int:
    """Row BM is flattened to in a preprocessed B-scan of ``depth`` rows."""
    row = pre.flatten_row
    return int(round(row * depth)) if row < 1 else int(row)


def _sources(healthy: Any) -> list[tuple[Any, str]]:
    """``(path or volume, group)`` pairs from paths, volumes or a healthy sampler."""
    from octanomaly.data.healthy import find_items, source_group

    if hasattr(healthy, "sources") and hasattr(healthy, "images"):  # data.healthy.PatchSampler
        paths = dict.fromkeys(Path(s.rsplit("#", 1)[0]) for s in healthy.sources)
        return [(p, source_group(p)) for p in paths]
    if hasattr(healthy, "sample"):
        raise OctanomalyError("the healthy sampler holds patches only, no B-scans to calibrate on")
    out: list[tuple[Any, str]] = []
    for i, item in enumerate(healthy):
        if hasattr(item, "data"):
            out.append((item, f"volume:{i}"))
        else:
            out += [(it.path, it.group) for it in find_items([item])]
    return out


def _is_bundled(run_dir: Path) -> bool:
    import octanomaly

    pkg = Path(octanomaly.__file__).resolve().parent
    return pkg in run_dir.resolve().parents or run_dir.resolve() == pkg


def calibrate_run(
    run_dir: str | Path,
    healthy: Any | Sequence[str | Path | OCTVolume],
    *,
    out: str | Path | None = None,
    device: str = "auto",
    stride: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit the normative model and healthy distributions on ``healthy``; store them with a run.

    ``healthy``: held-out healthy files/folders, volumes, or the validation sampler of
    :func:`octanomaly.data.healthy.load_healthy`; at least :data:`MIN_HEALTHY_BSCANS` B-scans
    with retina from :data:`MIN_HEALTHY_GROUPS` patients/volumes. With ``out`` a new run folder
    (config + weights copied) gets the calibration and ``run_dir`` is left alone; the bundled
    model is never modified. Returns the ``calibration.json`` content.
    """
    from octanomaly.devices import resolve_device
    from octanomaly.io import load_volume
    from octanomaly.io.atomic import atomic_dir
    from octanomaly.runs import CONFIG_FILE, MODEL_FILE, load_model, write_json
    from octanomaly.scoring.stitching import score_stack
    from octanomaly.transforms.preprocess import preprocess_volume

    run_dir = Path(run_dir)
    if out is not None and Path(out).resolve() == run_dir.resolve():
        out = None
    if _is_bundled(run_dir if out is None else Path(out)):
        raise OctanomalyError(
            f"{run_dir if out is None else out}: the bundled model (the installed package) is "
            "read-only; write a new run folder with --out NEW_RUN outside it"
        )
    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(out, "exists and is not empty; choose a new folder for the run")
    model, cfg, _ = load_model(run_dir, resolve_device(device))
    pre = cfg.preprocessing
    stride = int(stride or pre.score_stride)
    if not 1 <= stride <= model.patch_size:
        raise OctanomalyError(
            f"stride must be 1..{model.patch_size} (the patch size) so every "
            f"retina pixel is covered, got {stride}"
        )
    spec = BinSpec()
    weights = {
        k: w
        for k, w in zip(DEFAULT_CHANNELS, DEFAULT_WEIGHTS, strict=True)
        if k != "bank" or model.embeds_patches
    }
    names = tuple(weights)
    pixel_names = tuple(k for k in names if k != "bank")
    edge = model.patch_size // 2
    rng = np.random.default_rng(seed)
    #: per healthy B-scan: group, channel values, position bins, channel supports (sampled pixels)
    records: list[tuple[str, dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]] = []
    volume_of: list[int] = []  #: per record: the healthy source (volume) it came from
    #: per record: its patches' embeddings, coordinates (B-scan 0), B-scan shape, region pixels
    patches: list[tuple[np.ndarray, np.ndarray, tuple[int, int, int], np.ndarray]] = []
    sources = _sources(healthy)
    with progress_bar(progress) as bar:
        task = None
        if bar is not None:
            task = bar.add_task("calibrating on healthy data", total=len(sources))
        for i_src, (src, group) in enumerate(sources):
            vol = src if hasattr(src, "data") else load_volume(src)
            prep = preprocess_volume(vol, pre)
            image, mask = prep["image"], prep["mask"]
            if mask.any():
                maps = score_stack(
                    model,
                    image,
                    mask,
                    stride=stride,
                    smooth_sigma=DEFAULT_SMOOTH_SIGMA,
                    batch_size=cfg.training.score_batch_size,
                    amp=cfg.training.amp,
                )
                bm, axial = flatten_row(pre, image.shape[1]), prep["spacing"][1]
                raw = ch.channel_maps(
                    image, maps.residual, mask, pixel_names, DEFAULT_SMOOTH_SIGMA,
                    bm_row=bm, axial_mm=axial,
                )  # fmt: skip
                bins = ch.position_bins(mask, bm, pre.margin_px, axial, spec)
                support = ch.supports(raw, bm, axial)
                region = ch.scoring_region(mask, edge)
                for b in range(image.shape[0]):
                    idx = np.flatnonzero(region[b])
                    if idx.size < 100:
                        continue
                    if idx.size > MAX_PIXELS_PER_BSCAN:
                        idx = np.sort(rng.choice(idx, MAX_PIXELS_PER_BSCAN, replace=False))
                    vals = {k: v[b].ravel()[idx] for k, v in raw.items()}
                    sup = {k: v[b].ravel()[idx] for k, v in support.items()}
                    records.append((group, vals, bins[b].ravel()[idx], sup))
                    volume_of.append(i_src)
                    if "bank" in names:
                        sel = maps.coords[:, 0] == b
                        local = maps.coords[sel] * np.array([0, 1, 1])
                        patches.append((maps.embedding[sel], local, (1, *image.shape[1:]), idx))
            if task is not None:
                bar.advance(task)
    groups = sorted({r[0] for r in records})
    if len(records) < MIN_HEALTHY_BSCANS:
        raise OctanomalyError(
            f"calibration needs at least {MIN_HEALTHY_BSCANS} healthy B-scans with retina "
            f"(better: 100+ from 20+ patients); got {len(records)} from {len(groups)} "
            "patient(s)/volume(s)"
        )
    if len(groups) >= MIN_HEALTHY_GROUPS:  # out of fold by patient / volume
        fold_of = {g: i % min(N_FOLDS, len(groups)) for i, g in enumerate(groups)}
        folds = np.array([fold_of[r[0]] for r in records])
    else:  # one volume: by blocks of neighbouring B-scans
        folds = np.arange(len(records)) * N_FOLDS // len(records)
    bank = None
    if "bank" in names:  # healthy distances out of fold: to a bank without the own patients
        for k in range(int(folds.max()) + 1):
            bank_k = FeatureBank.fit(
                np.concatenate([e for (e, *_), f in zip(patches, folds, strict=True) if f != k]),
                rng,
            )
            for r, (e, c, shape, idx), f in zip(records, patches, folds, strict=True):
                if f == k:
                    dmap = distance_map(bank_k.distances(e), c, shape, model.patch_size)
                    r[1]["bank"] = dmap.ravel()[idx]
        bank = FeatureBank.fit(np.concatenate([e for e, *_ in patches]), rng)
    pixel_z, bscan_raw = [], []
    for k in range(int(folds.max()) + 1):
        fit = [r for r, f in zip(records, folds, strict=True) if f != k]
        nm_k = _fit(fit, names, spec)
        mine = [i for i, f in enumerate(folds) if f == k]
        zs = {i: nm_k.z(records[i][1], records[i][2]) for i in mine}
        for name in (c for c in ch.VOLUME_REFERENCED if c in names):  # as scoring does
            for v in {volume_of[i] for i in mine}:
                same = [i for i in mine if volume_of[i] == v]
                off = ch.volume_reference(np.concatenate([zs[i][name] for i in same]))
                for i in same:
                    zs[i][name] = zs[i][name] - np.float32(off)
        for i in mine:
            fz = ch.fuse(zs[i], weights, records[i][3])
            pixel_z.append(fz)
            bscan_raw.append(float(np.percentile(fz, DEFAULT_BSCAN_PERCENTILE)))
    pix = np.concatenate(pixel_z)
    if pix.size > MAX_PIXELS:
        pix = rng.choice(pix, MAX_PIXELS, replace=False)
    normative = _fit(records, names, spec)
    data = CalibrationFile(
        format=FORMAT,
        model=model.name,
        patch_size=model.patch_size,
        stride=stride,
        smooth_sigma=DEFAULT_SMOOTH_SIGMA,
        edge_px=edge,
        channels=list(names),
        weights=list(weights.values()),
        bscan_percentile=DEFAULT_BSCAN_PERCENTILE,
        normative=NormativeSettings(
            height_um=spec.height_um, rel_depth=spec.rel_depth, smooth_bins=spec.smooth_bins
        ),
        feature_bank=None
        if bank is None
        else BankSettings(
            dim=bank.dim,
            size=len(bank.bank),
            n_healthy_patches=sum(len(e) for e, *_ in patches),
        ),
        pixel=Dist.from_samples(pix),
        bscan=Dist.from_samples(np.asarray(bscan_raw)),
        n_bscans=len(records),
        n_groups=len(groups),
        sources=sorted({Path(str(s)).name for s, _ in sources if not hasattr(s, "data")})[:1000],
    ).model_dump(mode="json")
    if out is None:
        normative.save(run_dir / NORMATIVE_FILE)
        if bank is not None:
            bank.save(run_dir / BANK_FILE)
        write_json(run_dir / CALIBRATION_FILE, data)
    else:
        with atomic_dir(out) as tmp:
            for name in (CONFIG_FILE, MODEL_FILE):
                shutil.copy2(run_dir / name, tmp / name)
            normative.save(tmp / NORMATIVE_FILE)
            if bank is not None:
                bank.save(tmp / BANK_FILE)
            write_json(tmp / CALIBRATION_FILE, data)
    return data


def _fit(records: list, names: tuple[str, ...], spec: BinSpec) -> NormativeModel:
    samples = {k: np.concatenate([r[1][k] for r in records]) for k in names}
    return NormativeModel.fit(samples, np.concatenate([r[2] for r in records]), spec)


def calibrate_after_training(run_dir: Path, val_sampler: Any, device: str) -> bool:
    """``train()``'s calibration on its held-out healthy B-scans; a warning when too few (told
    before any scoring when the held-out sampler has fewer than :data:`MIN_HEALTHY_BSCANS`)."""
    try:
        n = len(val_sampler) if hasattr(val_sampler, "__len__") else None
        if n is not None and n < MIN_HEALTHY_BSCANS:
            raise OctanomalyError(
                f"calibration needs at least {MIN_HEALTHY_BSCANS} healthy B-scans with retina; "
                f"the held-out split has {n}"
            )
        calibrate_run(run_dir, val_sampler, device=device)
    except OctanomalyError as exc:
        warnings.warn(
            f"{run_dir} is not calibrated: {exc}; calibrate it with "
            "`octanomaly calibrate RUN HEALTHY... --out NEW_RUN`",
            stacklevel=2,
        )
        return False
    return True
