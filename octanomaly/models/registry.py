"""Model registry: name -> model class; each model's default YAML is ``configs/<name>.yaml``."""

from __future__ import annotations

from octanomaly.errors import ConfigError
from octanomaly.models.anogan import AnoGAN
from octanomaly.models.base import AnomalyModel, ModelConfig
from octanomaly.models.fanogan import FAnoGAN
from octanomaly.models.ganomaly import GANomaly

MODELS: dict[str, type[AnomalyModel]] = {m.name: m for m in (FAnoGAN, AnoGAN, GANomaly)}


def get_model_class(name: str) -> type[AnomalyModel]:
    """The model class registered as ``name``; :class:`ConfigError` listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None


def build_model(cfg: ModelConfig) -> AnomalyModel:
    """A freshly initialised model for ``cfg`` (uses the global torch RNG for weights)."""
    return get_model_class(cfg.name)(cfg)
