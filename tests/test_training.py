"""Training loop: run folder, resume equivalence, Ctrl-C, divergence, config errors, DDP, CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from octanomaly.config import CONFIG_DIR, RunConfig, TrainingConfig, load_config, read_yaml
from octanomaly.errors import ConfigError, OctanomalyError
from octanomaly.models import MODELS
from octanomaly.training import TensorSampler, Trainer, train
from octanomaly.transforms.preprocess import PreprocessingConfig
from tests._patches import layered_patches, one_thread

_single_thread = pytest.fixture(autouse=True)(one_thread)
P = 32
#: Tiny settings for whichever registered model has these fields.
TINY = {"width": 4, "nz": 8, "n_critic": 2, "mapping": {"steps": 5}}


def tiny_model_cfg(name: str):
    """The registered model's config with :data:`TINY` where its fields allow."""
    cls = MODELS[name].config_cls
    return cls.model_validate(
        {"name": name, **{k: v for k, v in TINY.items() if k in cls.model_fields}}
    )


def tiny_cfg(name: str = "fanogan", steps: dict | None = None, **training) -> RunConfig:
    opts = dict(
        batch_size=4,
        steps=steps or {"gan": 4, "encoder": 3}.copy(),
        log_every=2,
        checkpoint_every=3,
        n_samples=4,
        calibration_patches=16,
        score_batch_size=8,
    )
    opts.update(training)
    stages = MODELS[name].stages
    opts["steps"] = {s: n for s, n in opts["steps"].items() if s in stages}
    return RunConfig(
        model=tiny_model_cfg(name),
        training=TrainingConfig(**opts),
        preprocessing=PreprocessingConfig(patch_size=P),
    )


def samplers(seed: int = 0) -> tuple[TensorSampler, TensorSampler]:
    return TensorSampler(layered_patches(64, P, seed)), TensorSampler(layered_patches(16, P, 99))


class InterruptingSampler(TensorSampler):
    """Sends the process a SIGINT (Ctrl-C) during its ``at``-th draw."""

    def __init__(self, patches: torch.Tensor, at: int):
        super().__init__(patches)
        self.calls, self.at = 0, at

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return super().sample(n, generator)


class NaNSampler(TensorSampler):
    """Returns NaN patches from its ``at``-th draw on."""

    def __init__(self, patches: torch.Tensor, at: int):
        super().__init__(patches)
        self.calls, self.at = 0, at

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self.calls += 1
        x = super().sample(n, generator)
        return x * float("nan") if self.calls >= self.at else x


@pytest.mark.parametrize("name", sorted(MODELS))
def test_train_writes_complete_run_folder(name, tmp_path):
    from octanomaly.runs import load_model

    run = train(tiny_cfg(name), *samplers(), tmp_path / "run", device="cpu", progress=False)
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "model.safetensors", "calibration.json", "log.jsonl"} <= names
    assert "losses.png" in names and any(n.startswith("samples_step") for n in names)
    assert "checkpoint" not in names and not any(n.startswith(".") for n in names)
    calib = json.loads((run / "calibration.json").read_text())
    assert calib == {}  # patches only (no B-scans): calibrated later by `octanomaly calibrate`
    model, cfg, calib2 = load_model(run)
    assert cfg.model.name == name and cfg.preprocessing.patch_size == P and calib2 == calib
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in log] == sorted({r["global_step"] for r in log})
    assert all(r["patches_per_s"] > 0 for r in log)


def test_ctrl_c_then_resume_reaches_identical_weights(tmp_path):
    cfg = tiny_cfg("fanogan")  # 4 GAN + 3 encoder steps; the interrupt crosses the stage border
    train_s, val_s = samplers()
    full = train(cfg, train_s, val_s, tmp_path / "full", device="cpu", progress=False)

    interrupted = InterruptingSampler(layered_patches(64, P, 0), at=2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, interrupted, val_s, tmp_path / "cut", device="cpu", progress=False)
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state == {"stage_index": 0, "step": 2, "global_step": 2}
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    with pytest.raises(OctanomalyError, match="--resume"):
        train(cfg, train_s, val_s, tmp_path / "cut", device="cpu", progress=False)

    # a second interruption, in the encoder stage, then resume to the end
    interrupted = InterruptingSampler(layered_patches(64, P, 0), at=4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, interrupted, val_s, tmp_path / "cut", device="cpu", resume=True, progress=False)
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state == {"stage_index": 1, "step": 2, "global_step": 6}
    cut = train(cfg, train_s, val_s, tmp_path / "cut", device="cpu", resume=True, progress=False)

    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (full / "calibration.json").read_text() == (cut / "calibration.json").read_text()
    steps = [json.loads(x)["global_step"] for x in (cut / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_diverging_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny_cfg("ganomaly", steps={"gan": 12})
    bad = NaNSampler(layered_patches(64, P, 0), at=5)
    with pytest.raises(OctanomalyError, match=r"diverged.*step 3"):
        train(cfg, bad, samplers()[1], tmp_path / "run", device="cpu", progress=False)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["global_step"] == 3
    weights = load_file(tmp_path / "run" / "checkpoint" / "model.safetensors")
    assert all(torch.isfinite(v.float()).all() for v in weights.values())
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_config_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: fanogan\n  width: wide\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: model\.width"):
        load_config(bad)
    bad.write_text("model: {name: ganomaly}\ntraining: {batchsize: 3}\n")
    with pytest.raises(ConfigError, match=r"training\.batchsize"):
        load_config(bad)
    bad.write_text("model: {name: ganomaly}\ntraining: {steps: {encoder: 5}}\n")
    with pytest.raises(ConfigError, match=r"unknown stage 'encoder'"):
        load_config(bad)
    bad.write_text("model: {name: fanogan, patch_size: 32}\npreprocessing: {patch_size: 64}\n")
    with pytest.raises(ConfigError, match=r"model\.patch_size \(32\) differs"):
        load_config(bad)
    bad.write_text("model: {name: gan}\n")
    with pytest.raises(ConfigError, match="model"):
        load_config(bad)
    bad.write_text("model: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="but --model 'anogan'"):
        load_config(model="anogan", path=_write(tmp_path, "model: {name: fanogan}\n"))


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shipped_configs_validate_and_overrides_apply(name):
    cfg = load_config(model=name, overrides={"training": {"batch_size": 7, "seed": 3}})
    assert cfg.model.name == name and cfg.training.batch_size == 7 and cfg.training.seed == 3
    assert set(cfg.training.steps) == set(MODELS[name].stages)
    shipped = read_yaml(CONFIG_DIR / f"{name}.yaml")
    assert cfg.training.steps == shipped["training"]["steps"]  # the shipped file, not defaults
    assert cfg.model.patch_size == cfg.preprocessing.patch_size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo")  # one group for both runs (Trainer reuses an existing one)
    for name in ("fanogan", "ganomaly"):
        cfg = tiny_cfg(name, steps={"gan": 2, "encoder": 2}, checkpoint_every=2)
        train_s = TensorSampler(layered_patches(32, P, seed=rank))  # different data per rank
        trainer = Trainer(
            cfg, train_s, samplers()[1], Path(tmp) / name, device="cpu", progress=False
        )
        trainer.run()
        params = {k: v.detach().contiguous() for k, v in trainer.model.named_parameters()}
        save_file(params, str(Path(tmp) / f"{name}-rank{rank}.safetensors"))
    dist.destroy_process_group()


def test_ddp_gloo_two_processes_keep_weights_in_sync(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for name in ("fanogan", "ganomaly"):
        r0 = load_file(tmp_path / f"{name}-rank0.safetensors")
        r1 = load_file(tmp_path / f"{name}-rank1.safetensors")
        for k in r0:
            assert torch.equal(r0[k], r1[k]), f"{name}: {k} differs between ranks"
        assert (tmp_path / name / "model.safetensors").is_file()  # written by rank 0
        assert (tmp_path / name / "calibration.json").is_file()


def test_cli_train_on_phantom_volumes(tmp_path):
    from typer.testing import CliRunner

    from octanomaly.cli import app
    from octanomaly.data.phantom import make_phantom
    from octanomaly.io import nifti

    vols = []
    for s in (0, 1):
        vols.append(str(tmp_path / f"h{s}.nii.gz"))
        nifti.write_volume(make_phantom(seed=s, n_bscans=3, depth=256, width=256).volume, vols[-1])
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "model: {name: ganomaly, width: 4, nz: 8}\n"
        "training: {batch_size: 4, log_every: 1, checkpoint_every: 2, n_samples: 4,"
        " calibration_patches: 16, score_batch_size: 8}\n"
        "preprocessing: {patch_size: 32}\n"
    )
    out = tmp_path / "run"
    args = ["train", *vols, "--config", str(cfg), "--out", str(out), "--device", "cpu"]
    res = CliRunner().invoke(app, [*args, "--max-steps", "2", "--seed", "5", "--batch-size", "3"])
    assert res.exit_code == 0, res.output
    saved = load_config(out / "config.yaml")
    assert saved.training.seed == 5 and saved.training.batch_size == 3  # CLI overrides the YAML
    assert saved.preprocessing.patch_size == P and (out / "model.safetensors").is_file()
    res = CliRunner().invoke(app, [*args, "--model", "anogan"])
    assert res.exit_code == 2 and "--model 'anogan'" in res.output


def test_scoring_and_lower_layers_import_nothing_from_training():
    import ast

    import octanomaly

    root = Path(octanomaly.__file__).parent
    for folder in ("scoring", "models", "transforms", "io", "data", "report"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                )  # fmt: skip
                assert not any(n.startswith("octanomaly.training") for n in names), path
