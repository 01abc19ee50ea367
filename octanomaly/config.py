"""The full run configuration: model + training + preprocessing, loaded from YAML and validated.

One YAML per model ships inside the package (``octanomaly/configs/<model>.yaml``, package data;
the repository's top-level ``configs/`` is a link to that folder, the one copy).
Validation errors become :class:`~octanomaly.errors.ConfigError` naming the file and the key,
e.g. ``configs/fanogan.yaml: model.width: Input should be a valid integer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

import octanomaly
from octanomaly.errors import ConfigError
from octanomaly.models.base import ModelConfig
from octanomaly.models.registry import MODELS
from octanomaly.transforms.augment import AugmentConfig
from octanomaly.transforms.preprocess import PreprocessingConfig

#: Folder of the shipped per-model defaults (package data, so wheels carry them).
CONFIG_DIR = Path(octanomaly.__file__).resolve().parent / "configs"

#: Steps per stage when a YAML does not give them.
DEFAULT_STAGE_STEPS = 10_000
#: The model trained when neither a config nor ``--model`` names one.
DEFAULT_MODEL = "fanogan"


def model_section(data: Any) -> ModelConfig:
    """The config of the registered model that ``data["name"]`` names, validated by its class."""
    if isinstance(data, ModelConfig):
        return data
    name = data.get("name", DEFAULT_MODEL) if isinstance(data, dict) else None
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name].config_cls.model_validate(data)


class TrainingConfig(BaseModel):
    """How to train: seed, batch, steps per stage, logging, checkpoints, calibration."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    batch_size: int = Field(64, ge=1)
    steps: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    """Optimisation steps per stage (one real batch each), e.g. ``{gan: 20000, encoder: 10000}``."""
    log_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    sample_every: int | None = Field(None, ge=1)
    """Steps between sample grids; defaults to ``checkpoint_every``."""
    n_samples: int = Field(32, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    calibration_patches: int = Field(2048, ge=1)
    score_batch_size: int = Field(256, ge=1)
    max_loss: float = Field(1e6, gt=0)
    """A loss whose magnitude exceeds this (or is NaN/inf) stops training."""
    amp: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    channels_last: bool = True
    """channels-last memory format on CUDA (ignored on CPU)."""
    augment: AugmentConfig = AugmentConfig()
    """Anatomy-preserving augmentation of the sampled patches (flips, intensity jitter)."""


class RunConfig(BaseModel):
    """Everything a run needs; saved as ``config.yaml`` beside the weights."""

    model_config = ConfigDict(extra="forbid")

    model: SerializeAsAny[ModelConfig] = Field(
        default_factory=lambda: model_section({"name": DEFAULT_MODEL})
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    preprocessing: PreprocessingConfig = Field(default_factory=PreprocessingConfig)

    @field_validator("model", mode="before")
    @classmethod
    def _registered_model(cls, data: Any) -> ModelConfig:
        return model_section(data)

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        pre_size = getattr(self.preprocessing, "patch_size", None)
        if self.model.patch_size is None:
            self.model.patch_size = int(pre_size) if pre_size else 64
        elif pre_size and int(pre_size) != self.model.patch_size:
            raise ValueError(
                f"model.patch_size ({self.model.patch_size}) differs from "
                f"preprocessing.patch_size ({pre_size}); set one of them"
            )
        stages = MODELS[self.model.name].stages
        unknown = sorted(set(self.training.steps) - set(stages))
        if unknown:
            raise ValueError(
                f"training.steps: unknown stage {unknown[0]!r} for {self.model.name} "
                f"(stages: {', '.join(stages)})"
            )
        for stage in stages:
            self.training.steps.setdefault(stage, DEFAULT_STAGE_STEPS)
        return self


def default_config_path(model: str) -> Path:
    """The shipped ``configs/<model>.yaml`` (inside the installed package)."""
    return CONFIG_DIR / f"{model}.yaml"


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package (``fanogan``, ``fanogan-cpu``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(path: str | Path) -> Path:
    """``path`` itself, or for a bare name (``fanogan-cpu``) that is no file here the shipped
    ``configs/<name>.yaml``, so installed packages find their configs from any folder."""
    p = Path(path)
    if p.exists() or p.suffix or p.name != str(path):
        return p
    if p.name not in shipped_configs():
        raise ConfigError(
            f"{path}: no such config file or shipped config ({', '.join(shipped_configs())})"
        )
    return default_config_path(p.name)


def _format_error(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors()[:3]:
        key = ".".join(str(p) for p in e["loc"])
        parts.append(f"{key}: {e['msg']}" if key else e["msg"])
    return f"{source}: " + "; ".join(parts)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a nested mapping into a :class:`RunConfig`; errors name ``source`` and the key."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; :class:`ConfigError` when missing, unparsable or not a map."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections (model, training, ...)")
    return data


def load_config(
    path: str | Path | None = None,
    model: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Load ``path`` (default: ``configs/<model>.yaml``), apply nested ``overrides``, validate.

    ``model`` picks the default file and must agree with the file's ``model.name``.
    """
    if path is None:
        name = model or DEFAULT_MODEL
        if name not in MODELS:
            raise ConfigError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
        path = default_config_path(name)
        data = read_yaml(path) if path.is_file() else {"model": {"name": name}}
    else:
        path = resolve_config_path(path)
        data = read_yaml(path)
    section = data.get("model")
    if section is None:
        data["model"] = section = {"name": model or DEFAULT_MODEL}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: model: must be a mapping with a 'name' key")
    if model is not None and section.get("name", model) != model:
        raise ConfigError(
            f"{path}: model.name is {section.get('name')!r} but --model {model!r} was asked"
        )
    section.setdefault("name", model or DEFAULT_MODEL)
    if overrides:
        data = _merge(data, overrides)
    return config_from_dict(data, str(path))


def dump_config(cfg: RunConfig) -> str:
    """The config as YAML text (every value resolved, preprocessing included)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
