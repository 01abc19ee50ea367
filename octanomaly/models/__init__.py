"""Anomaly models behind one interface (:class:`AnomalyModel`), chosen by name."""

from octanomaly.models.base import AnomalyModel, ModelConfig, PatchScores
from octanomaly.models.registry import MODELS, build_model, get_model_class

__all__ = ["MODELS", "AnomalyModel", "ModelConfig", "PatchScores", "build_model", "get_model_class"]
