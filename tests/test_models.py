"""The three GAN models: shapes, losses that fall, eval-mode scoring, save/load, AnoGAN mapping."""

from __future__ import annotations

import pytest
import torch

from octanomaly.config import CONFIG_DIR
from octanomaly.errors import InputError, OctanomalyError
from octanomaly.models import MODELS, build_model
from octanomaly.models.fanogan.networks import Critic, Encoder, Generator
from octanomaly.models.ganomaly import GANomalyConfig
from octanomaly.transforms.preprocess import PreprocessingConfig
from tests._patches import layered_patches, one_thread

_single_thread = pytest.fixture(autouse=True)(one_thread)
P = 32
#: Small settings for whichever registered model has these fields (fast CPU tests).
SMALL = {"width": 8, "nz": 16, "mapping": {"steps": 5}}


def small_config(name: str, **changes):
    """The registered model's config at patch size ``P`` with :data:`SMALL` where it applies."""
    cls = MODELS[name].config_cls
    small = {k: v for k, v in SMALL.items() if k in cls.model_fields}
    return cls.model_validate({"name": name, "patch_size": P, **small, **changes})


def _model(name: str, seed: int = 0, **changes):
    torch.manual_seed(seed)
    model = build_model(small_config(name, **changes))
    model.configure_optimizers()
    model.generator = torch.Generator().manual_seed(seed + 1)
    return model


def _train(model, data: torch.Tensor, steps: int, stage: str, batch: int = 8, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    model.begin_stage(stage)
    history = []
    for step in range(steps):
        x = data[torch.randint(len(data), (batch,), generator=g)]
        history.append({k: float(v) for k, v in model.train_step(x, stage, step).items()})
    return history


def run_config(model_cfg):
    """A run config around ``model_cfg`` whose preprocessing agrees on the patch size."""
    from octanomaly.config import RunConfig

    pre = {"patch_size": P} if "patch_size" in PreprocessingConfig.model_fields else {}
    return RunConfig(model=model_cfg, preprocessing=PreprocessingConfig(**pre))


def _mean(history, key, sl):
    vals = [h[key] for h in history[sl] if key in h]
    return sum(vals) / len(vals)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_fanogan_networks_at_patch_sizes(size):
    g, d, e = Generator(size, 16, 4), Critic(size, 4), Encoder(size, 16, 4)
    z = torch.rand(2, 16) * 2 - 1
    x = g(z)
    assert x.shape == (2, 1, size, size) and x.abs().max() <= 1
    assert d(x).shape == (2,)
    assert d.features(x).shape == (2, 4 * 8 * 16)  # 8w x 4 x 4, as the official 8192 at w=64
    assert e(x).shape == (2, 16)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registry_entry_is_complete(name):
    cls = MODELS[name]
    assert cls.name == name and cls.config_cls().name == name  # config defaults name the model
    assert cls.stages and set(cls.trained_nets) == set(cls.stages)
    assert (CONFIG_DIR / f"{name}.yaml").is_file()  # shipped defaults for every model
    assert isinstance(cls.grad_scoring, bool)
    assert MODELS["fanogan"].stages == ("gan", "encoder")
    assert MODELS["anogan"].grad_scoring and not MODELS["fanogan"].grad_scoring


@pytest.mark.parametrize("name", sorted(MODELS))
def test_score_shapes_and_eval_mode_invariance(name):
    model = _model(name)
    data = layered_patches(16, P)
    for stage in model.stages:
        _train(model, data, 2, stage)
    model.train()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x = data[:4]
    s1, s2 = model.score(x), model.score(x)
    assert s1.score.shape == (4,)
    assert s1.residual.shape == (4, 1, P, P)
    assert torch.isfinite(s1.score).all() and (s1.residual >= 0).all()
    assert torch.equal(s1.score, s2.score) and torch.equal(s1.residual, s2.residual)
    for k, v in s1.parts.items():
        assert v.shape == (4,) and torch.equal(v, s2.parts[k])
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), f"{k} changed while scoring"
    assert model.training  # the caller's mode is restored
    assert model.reconstruct(x).shape == x.shape


def test_fanogan_critic_and_encoder_losses_fall():
    # faster settings than the defaults so that a few CPU steps show the trend
    model = _model("fanogan", lr=1e-3, n_critic=1, encoder_lr=1e-3)
    data = layered_patches(128, P)
    gan = _train(model, data, 10, "gan")
    # the critic learns to separate real from generated patches: its loss drops
    assert _mean(gan, "d", slice(-3, None)) < _mean(gan, "d", slice(0, 2))
    assert _mean(gan, "wdist", slice(-3, None)) > _mean(gan, "wdist", slice(0, 2))
    fixed = data[:32]
    before = model.score(fixed).score.mean()
    enc = _train(model, data, 20, "encoder")
    # the encoder learns fast against a 10-step generator: compare with its first step
    assert _mean(enc, "enc", slice(-5, None)) < 0.95 * enc[0]["enc"]
    assert model.score(fixed).score.mean() < 0.95 * before  # izi_f score of healthy patches
    # frozen in the encoder stage: G and D get no gradients and stay in eval mode
    assert not model.G.training and not any(p.requires_grad for p in model.G.parameters())


def test_anogan_discriminator_loss_falls():
    model = _model("anogan")
    hist = _train(model, layered_patches(128, P), 20, "gan")
    assert _mean(hist, "d", slice(-5, None)) < _mean(hist, "d", slice(0, 3))


def test_ganomaly_reconstruction_loss_falls():
    model = _model("ganomaly", lr=1e-3)
    hist = _train(model, layered_patches(128, P), 20, "gan")
    assert _mean(hist, "con", slice(-5, None)) < 0.9 * _mean(hist, "con", slice(0, 3))


def test_anogan_mapping_lowers_loss_and_is_deterministic():
    model = _model("anogan")
    _train(model, layered_patches(32, P), 3, "gan")
    x = layered_patches(3, P, seed=5)
    one = model.map(x, steps=1, early_stop=False)
    many = model.map(x, steps=30, early_stop=False)
    assert (many.loss < one.loss).all()
    again = model.map(x, steps=30, early_stop=False)
    assert torch.equal(many.loss, again.loss)


@pytest.mark.parametrize("early_stop", [False, True])
def test_anogan_mapping_independent_of_batch(early_stop):
    model = _model("anogan")
    _train(model, layered_patches(32, P), 3, "gan")
    batch = torch.cat([layered_patches(1, P, seed=7), layered_patches(5, P, seed=9) * 0.3])
    kw = {"steps": 40, "early_stop": early_stop, "patience": 3, "rel_tol": 0.05}
    alone = model.map(batch[:1], **kw)
    together = model.map(batch, **kw)
    torch.testing.assert_close(alone.loss, together.loss[:1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(alone.z, together.z[:1], rtol=1e-4, atol=1e-4)
    assert alone.steps[0] == together.steps[0]
    if early_stop:
        assert together.steps.min() < 40  # the per-patch stop really triggered


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_gives_identical_outputs(name, tmp_path):
    from octanomaly.runs import load_model, save_model

    model = _model(name)
    data = layered_patches(16, P)
    for stage in model.stages:
        _train(model, data, 2, stage)
    cfg = run_config(model.cfg)
    save_model(tmp_path, model, cfg, {"score": {"mean": 1.0}})
    loaded, cfg2, calib = load_model(tmp_path)
    assert cfg2.model == cfg.model and calib["score"]["mean"] == 1.0
    x = data[:3]
    a, b = model.score(x), loaded.score(x)
    assert torch.equal(a.score, b.score) and torch.equal(a.residual, b.residual)


def test_load_model_mismatch_and_missing(tmp_path):
    from octanomaly.config import dump_config
    from octanomaly.runs import load_model, save_model

    model = _model("ganomaly")
    save_model(tmp_path, model, run_config(model.cfg), {})
    wider = run_config(GANomalyConfig(patch_size=P, width=16, nz=16))
    (tmp_path / "config.yaml").write_text(dump_config(wider))
    with pytest.raises(OctanomalyError, match="do not match"):
        load_model(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(InputError, match="model.safetensors is missing"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_build_model_gives_the_registered_class(name):
    assert type(_model(name)) is MODELS[name]
    assert len({cls.config_cls for cls in MODELS.values()}) == len(MODELS)
