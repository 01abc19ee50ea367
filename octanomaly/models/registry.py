"""Model registry: name -> model class, the one list of models.

Adding a model = its folder under ``models/`` (an :class:`AnomalyModel` subclass with its
``config_cls``, ``stages`` and capabilities such as ``grad_scoring``), one line below, and its
shipped defaults in ``octanomaly/configs/<name>.yaml``. The run config, the CLI, scoring, tests and
benchmarks all read this dict.
"""

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
