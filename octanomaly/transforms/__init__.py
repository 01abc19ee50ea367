"""MONAI-style transforms for OCT: intensity, retina layers, flattening, patches, and the one
preprocessing path shared by training and scoring (:mod:`.preprocess`), a ``Compose`` of the
dictionary transforms whose geometric steps invert for maps."""

from octanomaly.transforms.flatten import (
    Flatten,
    Flattend,
    Resample,
    Resampled,
    Unflatten,
    Unflattend,
)
from octanomaly.transforms.intensity import (
    FillPadding,
    FillPaddingd,
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
from octanomaly.transforms.preprocess import (
    PreprocessingConfig,
    RetinaMaskd,
    preprocess_volume,
    preprocessing_transform,
    restore_map,
)

__all__ = [
    "DetectLayers",
    "DetectLayersd",
    "FillPadding",
    "FillPaddingd",
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
    "RetinaMaskd",
    "Unflatten",
    "Unflattend",
    "detect_layers",
    "grid_coords",
    "preprocess_volume",
    "preprocessing_transform",
    "restore_map",
    "retina_mask",
    "stitch",
]
