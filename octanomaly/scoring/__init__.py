"""Scoring: patch scores -> stitched per-B-scan maps -> calibrated z-scores, masks, outputs.

``map_volume(volume, run_dir)`` is the main call; ``write_outputs`` writes its files;
``score_bscans`` gives image-level scores; ``calibrate_run`` fits the normative model.
"""

from __future__ import annotations

from octanomaly.scoring.calibration import (
    Calibration,
    Dist,
    calibrate_run,
    clean_mask,
    load_calibration,
)
from octanomaly.scoring.normative import NormativeModel
from octanomaly.scoring.outputs import output_stem, write_outputs
from octanomaly.scoring.pipeline import (
    LoadedRun,
    MapResult,
    default_model_dir,
    load_run,
    map_volume,
    score_bscans,
)
from octanomaly.scoring.stitching import StackMaps, score_stack

__all__ = [
    "Calibration",
    "Dist",
    "LoadedRun",
    "MapResult",
    "NormativeModel",
    "StackMaps",
    "calibrate_run",
    "clean_mask",
    "default_model_dir",
    "load_calibration",
    "load_run",
    "map_volume",
    "output_stem",
    "score_bscans",
    "score_stack",
    "write_outputs",
]
