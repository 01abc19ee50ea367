"""A new model is one class (its own folder in ``octanomaly/models/``) plus one registry line.

The toy model below is registered at run time, as a registry line would, and then trained,
calibrated and used for maps through the public API and the CLI, with no other change.
"""

from __future__ import annotations

import json
from typing import ClassVar, Literal

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from octanomaly.models import MODELS
from octanomaly.models.base import AnomalyModel, ModelConfig, PatchScores
from tests._patches import one_thread

_single_thread = pytest.fixture(autouse=True)(one_thread)


class ToyConfig(ModelConfig):
    """A two-convolution autoencoder; no ``width``, no ``nz``."""

    name: Literal["toy"] = "toy"
    channels: int = 4
    lr: float = 1e-2


class Toy(AnomalyModel):
    """Scores a patch by its mean squared reconstruction error."""

    name: ClassVar[str] = "toy"
    config_cls: ClassVar[type[ModelConfig]] = ToyConfig
    stages: ClassVar[tuple[str, ...]] = ("fit",)
    trained_nets: ClassVar[dict[str, tuple[str, ...]]] = {"fit": ("AE",)}
    cfg: ToyConfig

    def __init__(self, cfg: ToyConfig):
        super().__init__(cfg)
        c = cfg.channels
        self.AE = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.Tanh(), nn.Conv2d(c, 1, 3, padding=1), nn.Tanh()
        )

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = self.adam("AE", lr=self.cfg.lr, betas=(0.9, 0.999))
        return self.optimizers

    def train_step(self, real: Tensor, stage: str, step: int) -> dict[str, Tensor]:
        with self.autocast():
            loss = (self.net("AE")(real) - real).square().mean()
        self.update("AE", loss)
        return {"mse": loss.detach()}

    def reconstruct(self, x: Tensor) -> Tensor:
        with self.evaluating(), torch.no_grad():
            return self.AE(x).float()

    def score(self, x: Tensor) -> PatchScores:
        residual = (x.float() - self.reconstruct(x)).abs()
        mse = residual.square().flatten(1).mean(1)
        return PatchScores(mse, residual, {"residual_score": mse})


TOY_YAML = (
    "model: {name: toy, channels: 3}\n"
    "training: {batch_size: 4, steps: {fit: 3}, log_every: 1, checkpoint_every: 2, n_samples: 4,"
    " calibration_patches: 16, score_batch_size: 16}\n"
    "preprocessing: {patch_size: 32, score_stride: 16}\n"
)


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(MODELS, Toy.name, Toy)  # what one line in models/registry.py does


@pytest.fixture
def phantoms(tmp_path):
    from octanomaly.data.phantom import make_phantom
    from octanomaly.io.nifti import write_volume

    healthy = tmp_path / "healthy"
    healthy.mkdir()
    for seed in (0, 1):
        vol = make_phantom(seed, n_bscans=20, depth=128, width=128).volume  # >= 20 to calibrate
        write_volume(vol, healthy / f"h{seed}.nii.gz")
    sick = make_phantom(7, n_bscans=2, depth=128, width=128, lesions="drusen").volume
    return healthy, write_volume(sick, tmp_path / "scan.nii.gz"), sick


def test_toy_model_through_the_public_api(toy_registered, phantoms, tmp_path):
    from octanomaly.config import config_from_dict, dump_config, load_config
    from octanomaly.data.healthy import load_healthy
    from octanomaly.scoring import calibrate_run, load_run, map_volume
    from octanomaly.training import train

    healthy, _, sick = phantoms
    cfg_file = tmp_path / "toy.yaml"
    cfg_file.write_text(TOY_YAML)
    cfg = load_config(cfg_file)
    assert isinstance(cfg.model, ToyConfig) and cfg.model.channels == 3
    assert config_from_dict(json.loads(json.dumps(cfg.model_dump()))) == cfg  # round trip
    assert "channels: 3" in dump_config(cfg)
    train_s, val_s = load_healthy([healthy], cfg.preprocessing, val_fraction=0.5, seed=0)
    run = train(cfg, train_s, val_s, tmp_path / "run", device="cpu", progress=False)
    calibrate_run(run, val_s, device="cpu", progress=False)
    loaded = load_run(run, device="cpu")
    assert isinstance(loaded.model, Toy) and loaded.calibration.kind == "maps"
    res = map_volume(sick, loaded, device="cpu")
    assert res.anomaly.shape == sick.shape and np.isfinite(res.anomaly).all()


def test_toy_model_through_the_cli(toy_registered, phantoms, tmp_path):
    from octanomaly.cli import app

    healthy, scan, _ = phantoms
    cfg_file = tmp_path / "toy.yaml"
    cfg_file.write_text(TOY_YAML)
    run = tmp_path / "runs" / "toy1"
    cli = CliRunner()
    args = ["train", str(healthy), "--config", str(cfg_file), "--out", str(run), "--device", "cpu"]
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    res = cli.invoke(app, ["map", str(scan), "--model", str(run), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "scan_anomaly.nii.gz").is_file()
    res = cli.invoke(app, ["models", str(run), "--json"])  # a model without `width` lists fine
    assert res.exit_code == 0, res.output
    row = next(r for r in json.loads(res.stdout) if not r["bundled"])
    assert row["model"] == "toy" and row["width"] is None and row["steps"] == {"fit": 3}
    res = cli.invoke(app, ["models", str(run)])
    assert res.exit_code == 0 and "toy" in res.stdout
