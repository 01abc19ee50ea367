"""MONAI-style transforms for OCT: intensity, retina layers, flattening, patches, and the one
preprocessing path shared by training and scoring (:mod:`.preprocess`)."""

from octanomaly.transforms.flatten import (
    Flatten,
    Flattend,
    Resample,
    Resampled,
    Unflatten,
    Unflattend,
)
from octanomaly.transforms.intensity import (
    LogIntensity,
    LogIntensityd,
    MedianDenoise,
    MedianDenoised,
    PercentileWindow,
    PercentileWindowd,
)
from octanomaly.transforms.layers import DetectLayers, DetectLayersd, detect_layers, retina_mask
from octanomaly.transforms.patches import (
    GridPatches,
    GridPatchesd,
    RandRetinaPatches,
    RandRetinaPatchesd,
    grid_coords,
    stitch,
)
from octanomaly.transforms.preprocess import PreprocessingConfig, preprocess_volume, restore_map

__all__ = [
    "DetectLayers",
    "DetectLayersd",
    "Flatten",
    "Flattend",
    "GridPatches",
    "GridPatchesd",
    "LogIntensity",
    "LogIntensityd",
    "MedianDenoise",
    "MedianDenoised",
    "PercentileWindow",
    "PercentileWindowd",
    "PreprocessingConfig",
    "RandRetinaPatches",
    "RandRetinaPatchesd",
    "Resample",
    "Resampled",
    "Unflatten",
    "Unflattend",
    "detect_layers",
    "grid_coords",
    "preprocess_volume",
    "restore_map",
    "retina_mask",
    "stitch",
]
