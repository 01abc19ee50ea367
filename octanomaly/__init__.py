"""octanomaly: unsupervised anomaly detection and localisation in retinal OCT volumes."""

from __future__ import annotations

__version__ = "0.1.0"

from octanomaly.errors import InputError, OctanomalyError
from octanomaly.io import load_volume
from octanomaly.volume import OCTVolume

__all__ = ["__version__", "InputError", "OCTVolume", "OctanomalyError", "load_volume"]
