"""One preprocessing path for training and scoring: :func:`preprocess_volume` (a ``Compose`` of
the dictionary transforms, :func:`preprocessing_transform`) and its inverse for maps,
:func:`restore_map`. Parameters live in :class:`PreprocessingConfig` (saved with runs).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from monai.transforms import Compose, CopyItemsd, MapTransform
from pydantic import BaseModel, ConfigDict, Field, model_validator

from octanomaly.transforms._threads import per_range
from octanomaly.transforms.flatten import (
    Flattend,
    Resampled,
    Unflattend,
    resize_bscans,
    target_row,
)
from octanomaly.transforms.intensity import (
    FillPaddingd,
    LogIntensityd,
    MedianDenoised,
    PercentileWindowd,
)
from octanomaly.transforms.layers import DetectLayersd, LayerParams, retina_mask
from octanomaly.volume import OCTVolume


class PreprocessingConfig(BaseModel):
    """Everything that decides what the model sees; identical at training and scoring."""

    model_config = ConfigDict(extra="forbid")

    percentiles: tuple[float, float] = (1.0, 99.5)
    log: Literal["auto"] | bool = "auto"  #: auto: log when metadata intensity == "linear"
    median_size: int = Field(0, ge=0)  #: speckle median filter size; 0/1 = off
    flatten: bool = True  #: shift A-scans so BM lies on ``flatten_row``
    flatten_row: float = Field(0.7, gt=0)  #: target BM row (fraction of depth if < 1)
    target_spacing: tuple[float, float] | None = None  #: (axial, lateral) mm; None = native
    margin_px: int = Field(8, ge=0)  #: retina mask: ILM - margin .. BM + margin
    patch_size: int = Field(64, ge=4)
    min_retina_coverage: float = Field(0.5, ge=0, le=1)  #: training patches: mask fraction
    train_stride: int = Field(2, ge=1)  #: grid of candidate training patch positions
    score_stride: int = Field(16, ge=1)  #: grid stride for scoring patches

    @model_validator(mode="after")
    def _check(self) -> PreprocessingConfig:
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {lo}, {hi}")
        if self.target_spacing is not None and min(self.target_spacing) <= 0:
            raise ValueError("target_spacing must be positive (axial, lateral) mm")
        return self


def _use_log(volume: OCTVolume, cfg: PreprocessingConfig) -> bool:
    if cfg.log == "auto":
        return str(volume.metadata.get("intensity", "")).lower() == "linear"
    return bool(cfg.log)


class OwnFloat32d(MapTransform):
    """A float32 copy of each key's array that no one else holds (always a copy), so the steps
    after it may work in place."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = np.array(d[key], dtype=np.float32)
        return d


class RetinaMaskd(MapTransform):
    """Adds ``mask_key``: the retina between ``ilm_key`` and ``bm_key`` (rows in the grid of
    ``keys[0]``) widened by ``margin_px``, minus export padding (``pad_key``, when present)."""

    def __init__(
        self,
        keys: str = "image",
        margin_px: int = 8,
        ilm_key: str = "ilm",
        bm_key: str = "bm",
        pad_key: str = "pad",
        mask_key: str = "mask",
    ) -> None:
        super().__init__(keys)
        self.margin_px, self.ilm_key, self.bm_key = margin_px, ilm_key, bm_key
        self.pad_key, self.mask_key = pad_key, mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        depth = np.asarray(d[self.keys[0]]).shape[-2]
        mask = retina_mask(d[self.ilm_key], d[self.bm_key], depth, self.margin_px)
        d[self.mask_key] = mask & ~d[self.pad_key] if self.pad_key in d else mask
        return d


def preprocessing_transform(
    cfg: PreprocessingConfig, log: bool = False, params: LayerParams | None = None
) -> Compose:
    """The preprocessing as one MONAI ``Compose`` of dictionary transforms.

    Input ``{"image": (n, depth, width), "spacing": (bscan, axial, lateral)}``; adds ``pad``,
    ``ilm``/``bm`` (input grid), ``ilm_grid``/``bm_grid`` (rows in the processed grid),
    ``mask``, ``original_shape`` and ``flatten_shifts``. ``log`` takes the log first. The
    first step makes the pipeline's own float32 copy of the image, which later steps may
    overwrite (the caller's array is never changed).
    """
    steps: list = [OwnFloat32d("image")]
    steps += [LogIntensityd("image")] if log else []
    steps += [
        FillPaddingd("image", pad_key="pad"),
        MedianDenoised("image", cfg.median_size),
        # the padding just filled tells which B-scans to search for padding again (none
        # changed in between when the median filter is off)
        DetectLayersd(
            "image",
            margin_px=cfg.margin_px,
            params=params,
            source_pad_key="pad" if cfg.median_size <= 1 else None,
        ),
        PercentileWindowd("image", *cfg.percentiles, pad_key="pad", in_place=True),
        CopyItemsd(("ilm", "bm"), names=("ilm_grid", "bm_grid")),
    ]
    if cfg.target_spacing is not None:
        steps.append(
            Resampled(("image", "pad"), cfg.target_spacing, rows_keys=("ilm_grid", "bm_grid"))
        )
    steps.append(RetinaMaskd("image", cfg.margin_px, "ilm_grid", "bm_grid", pad_key="pad"))
    if cfg.flatten:
        steps.append(
            Flattend(("image", "mask"), "bm_grid", cfg.flatten_row, rows_keys=("ilm_grid",))
        )
    return Compose(steps)


def preprocess_volume(
    volume: OCTVolume, cfg: PreprocessingConfig, params: LayerParams | None = None
) -> dict[str, Any]:
    """Normalise, find ILM/BM, mask, resample and flatten one volume
    (:func:`preprocessing_transform`).

    Returns ``image`` float32 ``(n, d', w')`` in [-1, 1], ``mask`` bool (retina, no padding),
    ``ilm``/``bm`` ``(n, width)`` rows of the *input* volume (NaN where absent), ``valid``
    (n,) B-scans with a retina, and what :func:`restore_map` needs (``flatten_shifts``,
    ``original_shape``), plus ``spacing`` of the processed grid (bscan, axial, lateral) mm and
    ``bm_row``, the row BM lies on in the flattened ``image`` (None without flattening).
    """
    shape = tuple(volume.shape)
    pipeline = preprocessing_transform(cfg, _use_log(volume, cfg), params)
    # the input dict holds the volume's own array; the pipeline's float32 copy and each
    # step's replaced image are freed as soon as the next step has replaced them
    d = pipeline(
        {
            "image": volume.data,
            "spacing": volume.spacing,
            "original_shape": shape,
        }
    )
    return {
        "image": np.ascontiguousarray(d["image"], dtype=np.float32),
        "mask": d["mask"],
        "ilm": d["ilm"],
        "bm": d["bm"],
        "valid": np.isfinite(d["bm"]).any(axis=1),
        "flatten_shifts": d.get("flatten_shifts"),
        "original_shape": shape,
        "spacing": tuple(float(s) for s in d["spacing"]),
        "bm_row": target_row(cfg.flatten_row, d["image"].shape[1]) if cfg.flatten else None,
    }


def restore_map(
    map_in_preprocessed_space: np.ndarray, prep: dict[str, Any], fill: float = 0.0
) -> np.ndarray:
    """A map ``(n, d', w')`` in preprocessed space back to the input ``(n, depth, width)``.

    The inverse of the geometric transforms: :class:`Unflattend` (integer shifts, exact;
    pixels that were outside the flattened frame get ``fill``), then :meth:`Resampled.inverse`
    to the original grid when the volume was resampled.
    """
    d = {"map": np.asarray(map_in_preprocessed_space), **prep}
    if prep.get("flatten_shifts") is not None:
        d = Unflattend("map", fill=fill)(d)
    return Resampled("map", (1.0, 1.0)).inverse(d)["map"]


def restore_maps(maps: Sequence[np.ndarray], prep: dict[str, Any]) -> list[np.ndarray]:
    """:func:`restore_map` (``fill`` 0) of several maps of one volume in one pass.

    The same values as restoring each map alone: every B-scan is unflattened and resized on
    its own, so chunks of ~16 B-scans run on threads, writing straight into the outputs.
    Boolean maps come back boolean, the others float32.
    """
    arrs = [np.asarray(m) for m in maps]
    n, depth, width = arrs[0].shape
    shape = tuple(prep["original_shape"])[-2:]
    shifts = prep.get("flatten_shifts")
    outs = [np.empty((n, *shape), dtype=bool if a.dtype == bool else np.float32) for a in arrs]

    def part(b: slice) -> None:
        stack = np.stack([np.asarray(a[b], dtype=np.float32) for a in arrs])
        if shifts is not None:
            rows = np.arange(depth)[None, :, None] + np.asarray(shifts[b])[:, None, :]
            inside = (rows >= 0) & (rows < depth)
            idx = np.clip(rows, 0, depth - 1)
            for i in range(len(arrs)):
                src = np.take_along_axis(stack[i], idx, axis=1)
                stack[i] = np.where(inside, src, np.float32(0.0))
        k, m = stack.shape[:2]
        out = resize_bscans(stack.reshape(k * m, depth, width), shape).reshape(k, m, *shape)
        for i, o in enumerate(outs):
            if o.dtype == bool:
                np.greater_equal(out[i], 0.5, out=o[b])
            else:
                o[b] = out[i]

    per_range(part, n, per_chunk=16)
    return outs
