"""CPU configs of the three methods: lazy gradient penalty, AnoGAN's warm start, augmentation,
the shipped ``*-cpu.yaml`` configs training on phantoms, and bit-exact resume with all of it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from octanomaly.config import CONFIG_DIR, RunConfig, TrainingConfig, load_config
from octanomaly.errors import ConfigError
from octanomaly.models import MODELS, build_model
from octanomaly.training import TensorSampler, train
from octanomaly.transforms.augment import AugmentConfig, augment
from octanomaly.transforms.preprocess import PreprocessingConfig
from tests._patches import layered_patches, one_thread

_single_thread = pytest.fixture(autouse=True)(one_thread)
P = 32


def _fanogan(**changes):
    torch.manual_seed(0)
    cfg = MODELS["fanogan"].config_cls(patch_size=P, arch="dcgan", width=8, nz=16, **changes)
    model = build_model(cfg)
    model.configure_optimizers()
    model.generator = torch.Generator().manual_seed(1)
    model.begin_stage("gan")
    return model


def test_lazy_gradient_penalty_every_kth_step_weighted_by_k():
    x = layered_patches(8, P)
    lazy = _fanogan(gp_every=3, n_critic=100)
    logs = [lazy.train_step(x, "gan", step) for step in range(6)]
    assert [("gp" in log) for log in logs] == [True, False, False, True, False, False]
    for log in logs:
        # critic loss = -wdist + k * lambda * gp on penalised steps, -wdist on the others
        penalty = 3 * 10.0 * log["gp"] if "gp" in log else 0.0
        torch.testing.assert_close(log["d"], -log["wdist"] + penalty)
    eager = _fanogan(gp_every=1, n_critic=100)
    log = eager.train_step(x, "gan", 0)
    torch.testing.assert_close(log["d"], -log["wdist"] + 10.0 * log["gp"])


def test_lazy_penalty_is_cheaper_per_step():
    """The skipped steps run no interpolate forward / double backward: fewer FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    x = layered_patches(16, P)

    def flops(model, step):
        with FlopCounterMode(display=False) as c:
            model.train_step(x, "gan", step)
        return c.get_total_flops()

    lazy = _fanogan(gp_every=4, n_critic=100)
    assert flops(lazy, 1) < 0.6 * flops(lazy, 0)


def test_anogan_warm_start_reaches_lower_loss_in_fewer_steps():
    """Patches the generator can make (``x = G(z*)``, so the search has an answer); the encoder
    trained for a few steps starts the search near it: 5 warm steps beat 50 random-start ones."""
    torch.manual_seed(0)
    cfg = MODELS["anogan"].config_cls(patch_size=P, width=8, nz=16, encoder_lr=2e-3,
                                      encoder_mode="ziz")  # fmt: skip
    model = build_model(cfg)
    model.configure_optimizers()
    model.generator = torch.Generator().manual_seed(1)
    model.begin_stage("gan")
    model.train_step(layered_patches(16, P), "gan", 0)
    model.begin_stage("encoder")
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        data = model.G(torch.randn(256, 16, generator=g))
    for step in range(150):
        model.train_step(data[torch.randint(len(data), (32,), generator=g)], "encoder", step)
    with torch.no_grad():
        x = model.G(torch.randn(16, 16, generator=torch.Generator().manual_seed(7)))

    def loss(steps: int, init: str) -> float:
        return float(model.map(x, steps=steps, init=init, early_stop=False).loss.mean())

    warm5 = loss(5, "encoder")
    assert warm5 < loss(5, "random")  # same steps: lower loss from the encoder's code
    assert warm5 < loss(50, "random")  # and in 10x fewer steps than a random start
    assert warm5 == loss(5, "encoder")  # deterministic
    s = model.score(x)
    assert s.embedding is not None and s.embedding.shape == (16, 16)  # the mapped code


def test_fanogan_embeds_patches_with_its_encoder():
    model = _fanogan()
    x = layered_patches(4, P)
    s = model.score(x)
    assert MODELS["fanogan"].embeds_patches
    with model.evaluating(), torch.no_grad():
        assert torch.equal(s.embedding, model.E(x).float())


def test_augment_flips_and_jitters_reproducibly_and_stays_in_range():
    x = layered_patches(64, P)
    cfg = AugmentConfig(flip=True, intensity=0.1)
    a = augment(x, cfg, torch.Generator().manual_seed(0))
    b = augment(x, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= -1 and a.max() <= 1
    flip_only = augment(x, AugmentConfig(flip=True), torch.Generator().manual_seed(0))
    pairs = list(zip(flip_only, x, strict=True))
    mirrored = [torch.equal(f, p.flip(-1)) and not torch.equal(f, p) for f, p in pairs]
    assert 16 < sum(mirrored) < 48  # about half are mirrored left-right ...
    kept = [torch.equal(f, p) for f, p in pairs]
    assert sum(mirrored) + sum(kept) == len(x)  # ... and never turned upside down
    assert augment(x, AugmentConfig(), torch.Generator()) is x  # off by default


def _tiny_cpu_cfg() -> RunConfig:
    return RunConfig(
        model=MODELS["fanogan"].config_cls(arch="dcgan", width=4, nz=8, n_critic=2, gp_every=2),
        training=TrainingConfig(
            batch_size=4,
            steps={"gan": 4, "encoder": 3},
            log_every=2,
            checkpoint_every=3,
            n_samples=4,
            calibration_patches=16,
            score_batch_size=8,
            augment=AugmentConfig(flip=True, intensity=0.05),
        ),
        preprocessing=PreprocessingConfig(patch_size=P),
    )


class _Interrupting(TensorSampler):
    def __init__(self, patches, at):
        super().__init__(patches)
        self.calls, self.at = 0, at

    def sample(self, n, generator):
        import os
        import signal

        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return super().sample(n, generator)


def test_resume_is_bit_exact_with_lazy_penalty_and_augmentation(tmp_path):
    cfg = _tiny_cpu_cfg()
    train_s, val_s = TensorSampler(layered_patches(64, P)), TensorSampler(layered_patches(16, P, 9))
    full = train(cfg, train_s, val_s, tmp_path / "full", device="cpu", progress=False)
    with pytest.raises(KeyboardInterrupt):  # stops inside the GAN stage, on a step without GP
        train(cfg, _Interrupting(layered_patches(64, P), 2), val_s, tmp_path / "cut",
              device="cpu", progress=False)  # fmt: skip
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state["global_step"] == 2
    cut = train(cfg, train_s, val_s, tmp_path / "cut", device="cpu", resume=True, progress=False)
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


CPU_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*-cpu.yaml"))


def test_every_method_has_a_cpu_config_found_by_name(tmp_path, monkeypatch):
    assert CPU_CONFIGS == sorted(f"{name}-cpu" for name in MODELS)
    monkeypatch.chdir(tmp_path)  # no configs/ folder here: names resolve to the shipped files
    for name in MODELS:
        cfg = load_config(f"{name}-cpu")
        assert cfg.model.name == name and cfg.preprocessing.patch_size == 32
        assert cfg == load_config(CONFIG_DIR / f"{name}-cpu.yaml")
    with pytest.raises(ConfigError, match="nosuch: no such config file or shipped .*fanogan-cpu"):
        load_config("nosuch")


def test_cpu_training_of_a_gpu_config_suggests_the_cpu_one(tmp_path):
    from typer.testing import CliRunner

    from octanomaly.cli import app

    res = CliRunner().invoke(app, ["train", str(tmp_path / "none"), "--out", str(tmp_path / "r"),
                                   "--model", "anogan", "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 2  # the missing data is still the error ...
    assert "--config anogan-cpu" in res.stderr  # ... after the note


@pytest.mark.parametrize("name", CPU_CONFIGS)
def test_cpu_config_trains_on_phantoms_and_maps(name, tmp_path):
    """The shipped CPU config as it is (networks, lazy penalty, warm start, augmentation),
    two steps per stage on phantom volumes, then `map` of a phantom with the run."""
    from typer.testing import CliRunner

    from octanomaly.cli import app
    from octanomaly.data.phantom import make_phantom
    from octanomaly.io import nifti

    vols = []
    for s in (0, 1, 2):
        vols.append(str(tmp_path / f"h{s}.nii.gz"))
        nifti.write_volume(make_phantom(seed=s, n_bscans=7, depth=256, width=256).volume, vols[-1])
    out = tmp_path / "run"
    args = ["train", *vols, "--config", str(CONFIG_DIR / f"{name}.yaml"), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--device", "cpu", "--max-steps", "2"])
    assert res.exit_code == 0, res.output
    saved = load_config(out / "config.yaml")
    assert saved.model == load_config(CONFIG_DIR / f"{name}.yaml").model
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in log} == set(MODELS[saved.model.name].stages)
    cal = tmp_path / "calibrated"  # 21 healthy B-scans of 3 volumes (train's 10 % are too few)
    res = CliRunner().invoke(app, ["calibrate", str(out), *vols, "--out", str(cal)])
    assert res.exit_code == 0, res.output
    maps = tmp_path / "maps"
    res = CliRunner().invoke(app, ["map", vols[0], "--model", str(cal), "--out", str(maps)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "maps" / "h0_anomaly.nii.gz").is_file()
