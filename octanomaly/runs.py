"""Run folders: trained models and training checkpoints, safetensors + YAML/JSON (no pickle).

A finished run folder holds ``config.yaml``, ``calibration.json`` and ``model.safetensors``; the
weights are written last, so their presence marks a complete run. ``checkpoint/`` (while training)
holds weights, optimiser states (tensors in safetensors, the rest in JSON), RNG states and the
position in the schedule; it is written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from octanomaly.config import RunConfig, dump_config, load_config
from octanomaly.errors import InputError, OctanomalyError
from octanomaly.io.atomic import atomic_dir, atomic_path, write_text
from octanomaly.models import AnomalyModel, build_model

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
CALIBRATION_FILE = "calibration.json"
CHECKPOINT_DIR = "checkpoint"

#: Trained models shipped inside the package, one run folder each (``bundled/<name>/``).
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
#: The bundled model used when no ``--model`` is given: the best on dev (docs/results.md).
DEFAULT_BUNDLED = "ganomaly"


def bundled_models() -> dict[str, Path]:
    """The installed bundled models, ``{name: run folder}``, sorted by name."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUNDLED_DIR.iterdir()) if (p / MODEL_FILE).is_file()}


def bundled_model_dir(name: str | None = None) -> Path | None:
    """The run folder of bundled model ``name`` (default: the default model) if installed."""
    return bundled_models().get(name or DEFAULT_BUNDLED)


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=1))


def save_weights(path: Path, model: AnomalyModel) -> None:
    """The model's state dict (parameters and buffers) as safetensors, atomically."""
    with atomic_path(path) as tmp:
        save_file(_tensors(model.state_dict()), str(tmp), metadata={"model": model.name})


def load_weights(path: Path, model: AnomalyModel, device: torch.device | str = "cpu") -> None:
    """Load safetensors weights into ``model``; :class:`OctanomalyError` on any mismatch."""
    try:
        state = load_file(str(path), device=str(device))
    except FileNotFoundError:
        raise InputError(path, "weights file missing") from None
    except (SafetensorError, OSError) as err:
        raise InputError(path, f"unreadable weights ({err})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or extra or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if extra:
            problems.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
        if wrong:
            problems.append(f"{len(wrong)} of wrong shape (e.g. {wrong[0]})")
        raise OctanomalyError(
            f"{path}: weights do not match the config's {model.name} model: " + ", ".join(problems)
        )
    model.load_state_dict(state)


def save_model(
    run_dir: str | Path, model: AnomalyModel, cfg: RunConfig, calibration: dict[str, Any]
) -> Path:
    """Write config, calibration, then weights (last) into ``run_dir``; returns ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / CONFIG_FILE, dump_config(cfg))
    write_json(run_dir / CALIBRATION_FILE, calibration)
    save_weights(run_dir / MODEL_FILE, model)
    return run_dir


def load_model(
    run_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[AnomalyModel, RunConfig, dict[str, Any]]:
    """``(model in eval mode on device, config, calibration)`` of a finished run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "run folder not found")
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (run_dir / name).is_file():
            raise InputError(run_dir, f"not a finished run: {name} is missing")
    cfg = load_config(run_dir / CONFIG_FILE)
    model = build_model(cfg.model)
    load_weights(run_dir / MODEL_FILE, model)
    model.to(device).eval()
    calib_path = run_dir / CALIBRATION_FILE
    try:
        calibration = (
            json.loads(calib_path.read_text(encoding="utf-8")) if calib_path.is_file() else {}
        )
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(calib_path, f"not valid JSON ({err})") from None
    return model, cfg, calibration


# ----------------------------------------------------------------------------- checkpoints
def _flatten_optimizers(
    optimizers: dict[str, torch.optim.Optimizer],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        state_meta: dict[str, dict[str, Any]] = {}
        for idx, st in sd["state"].items():
            entry: dict[str, Any] = {}
            for key, value in st.items():
                if torch.is_tensor(value):
                    tensors[f"{name}/{idx}/{key}"] = value
                    entry[key] = {"tensor": f"{name}/{idx}/{key}"}
                else:
                    entry[key] = {"value": value}
            state_meta[str(idx)] = entry
        meta[name] = {"param_groups": sd["param_groups"], "state": state_meta}
    return _tensors(tensors), meta


def _unflatten_optimizers(
    optimizers: dict[str, torch.optim.Optimizer],
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> None:
    for name, opt in optimizers.items():
        if name not in meta:
            raise OctanomalyError(f"checkpoint has no state for optimiser {name!r}")
        state = {
            int(idx): {
                k: tensors[v["tensor"]] if "tensor" in v else v["value"] for k, v in entry.items()
            }
            for idx, entry in meta[name]["state"].items()
        }
        opt.load_state_dict({"state": state, "param_groups": meta[name]["param_groups"]})


def save_checkpoint(
    ckpt_dir: str | Path,
    model: AnomalyModel,
    cfg: RunConfig,
    state: dict[str, Any],
    rng: dict[str, torch.Tensor],
) -> None:
    """Weights, optimiser states, RNG states and ``state`` (schedule position) as one folder."""
    opt_tensors, opt_meta = _flatten_optimizers(model.optimizers)
    with atomic_dir(ckpt_dir) as tmp:
        save_file(_tensors(model.state_dict()), str(tmp / MODEL_FILE))
        save_file(opt_tensors, str(tmp / "optimizers.safetensors"))
        save_file(_tensors(rng), str(tmp / "rng.safetensors"))
        (tmp / "optimizers.json").write_text(json.dumps(opt_meta), encoding="utf-8")
        (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
        (tmp / CONFIG_FILE).write_text(dump_config(cfg), encoding="utf-8")


def load_checkpoint(
    ckpt_dir: str | Path, model: AnomalyModel, device: torch.device | str = "cpu"
) -> tuple[RunConfig, dict[str, Any], dict[str, torch.Tensor]]:
    """Restore weights and optimisers in place; returns ``(config, state, rng tensors)``."""
    ckpt_dir = Path(ckpt_dir)
    needed = (MODEL_FILE, "optimizers.safetensors", "optimizers.json", "rng.safetensors")
    for name in (*needed, "state.json", CONFIG_FILE):
        if not (ckpt_dir / name).is_file():
            raise InputError(ckpt_dir, f"incomplete checkpoint: {name} is missing")
    cfg = load_config(ckpt_dir / CONFIG_FILE)
    load_weights(ckpt_dir / MODEL_FILE, model, device)
    # on CPU: load_state_dict moves moments to each parameter's device and keeps "step" on CPU
    opt_tensors = load_file(str(ckpt_dir / "optimizers.safetensors"))
    opt_meta = json.loads((ckpt_dir / "optimizers.json").read_text(encoding="utf-8"))
    _unflatten_optimizers(model.optimizers, opt_tensors, opt_meta)
    state = json.loads((ckpt_dir / "state.json").read_text(encoding="utf-8"))
    rng = load_file(str(ckpt_dir / "rng.safetensors"))
    return cfg, state, rng
