"""One preprocessing path for training and scoring: :func:`preprocess_volume` and its inverse
for maps, :func:`restore_map`. Parameters live in :class:`PreprocessingConfig` (saved with runs).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from octanomaly.transforms.flatten import (
    flatten_shifts,
    resample_shape,
    resize_bscans,
    shift_columns,
)
from octanomaly.transforms.intensity import (
    fill_padding,
    log_map,
    median_denoise,
    padding_mask,
    percentile_window,
)
from octanomaly.transforms.layers import LayerParams, detect_layers, retina_mask
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


def _rows_to(rows: np.ndarray, old: tuple[int, int], new: tuple[int, int]) -> np.ndarray:
    """Boundary rows ``(n, old_w)`` in an ``old`` (depth, width) grid -> ``new`` grid."""
    if old == new:
        return rows
    fz, fx = new[0] / old[0], new[1] / old[1]
    src_cols = (np.arange(new[1]) + 0.5) / fx - 0.5
    cols = np.arange(old[1])
    out = np.full((rows.shape[0], new[1]), np.nan)
    for i, r in enumerate(rows):
        ok = np.isfinite(r)
        if ok.sum() >= 2:
            v = np.interp(src_cols, cols[ok], r[ok])
            far = np.interp(src_cols, cols, (~ok).astype(float)) > 0.5
            out[i] = np.where(far, np.nan, (v + 0.5) * fz - 0.5)
    return out


def preprocess_volume(
    volume: OCTVolume, cfg: PreprocessingConfig, params: LayerParams | None = None
) -> dict[str, Any]:
    """Normalise, find ILM/BM, mask, resample and flatten one volume.

    Returns ``image`` float32 ``(n, d', w')`` in [-1, 1], ``mask`` bool (retina, no padding),
    ``ilm``/``bm`` ``(n, width)`` rows of the *input* volume (NaN where absent), ``valid``
    (n,) B-scans with a retina, and what :func:`restore_map` needs (``flatten_shifts``,
    ``original_shape``), plus ``spacing`` of the processed grid (bscan, axial, lateral) mm.
    """
    x = np.asarray(volume.data, dtype=np.float32)
    n, depth, width = x.shape
    if _use_log(volume, cfg):
        x = log_map(x)
    pad = padding_mask(x)
    if pad.any():
        x = fill_padding(x, pad)
    if cfg.median_size > 1:
        x = median_denoise(x, cfg.median_size)
    ilm, bm = detect_layers(x, params)
    image = percentile_window(x, *cfg.percentiles, valid=~pad)
    spacing = volume.spacing
    shape = (depth, width)
    if cfg.target_spacing is not None:
        shape = resample_shape((depth, width), spacing[1:], cfg.target_spacing)
        image = resize_bscans(image, shape)
        pad = resize_bscans(pad, shape)
        spacing = (spacing[0], *cfg.target_spacing)
    ilm_p = _rows_to(ilm, (depth, width), shape)
    bm_p = _rows_to(bm, (depth, width), shape)
    mask = retina_mask(ilm_p, bm_p, shape[0], cfg.margin_px) & ~pad
    shifts = None
    if cfg.flatten:
        row = cfg.flatten_row
        target = int(round(row * shape[0])) if row < 1 else int(row)
        shifts = flatten_shifts(bm_p, target)
        image = shift_columns(image, shifts, -1.0)
        mask = shift_columns(mask, shifts, False)
    return {
        "image": np.ascontiguousarray(image, dtype=np.float32),
        "mask": mask,
        "ilm": ilm,
        "bm": bm,
        "valid": np.isfinite(bm).any(axis=1),
        "flatten_shifts": shifts,
        "original_shape": (n, depth, width),
        "spacing": tuple(float(s) for s in spacing),
    }


def restore_map(
    map_in_preprocessed_space: np.ndarray, prep: dict[str, Any], fill: float = 0.0
) -> np.ndarray:
    """A map ``(n, d', w')`` in preprocessed space back to the input ``(n, depth, width)``.

    Un-flattens exactly (integer shifts; pixels that were outside the flattened frame get
    ``fill``), then resizes to the original grid when the volume was resampled.
    """
    m = np.asarray(map_in_preprocessed_space)
    if prep.get("flatten_shifts") is not None:
        m = shift_columns(
            m, -np.asarray(prep["flatten_shifts"]), False if m.dtype == bool else fill
        )
    n, depth, width = prep["original_shape"]
    if m.shape[1:] != (depth, width):
        m = resize_bscans(m, (depth, width))
    return m
