"""Feature-bank scoring channel (issue 10): a PatchCore-style bank of the model's own healthy
patch embeddings, fitted in the one calibration path, stored as safetensors, used by map."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from octanomaly.data.phantom import make_phantom
from octanomaly.errors import OctanomalyError
from octanomaly.io.nifti import write_volume
from octanomaly.scoring import calibrate_run, load_calibration, load_run, map_volume
from octanomaly.scoring.feature_bank import FeatureBank
from octanomaly.scoring.stitching import score_stack
from octanomaly.transforms.preprocess import preprocess_volume


@pytest.fixture(scope="module")
def ganomaly_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GANomaly run (patch embeddings: its latent code), calibrated on phantoms."""
    from octanomaly.config import load_config
    from octanomaly.data.healthy import load_healthy
    from octanomaly.training import train

    root = tmp_path_factory.mktemp("ganomaly_run")
    for seed in range(3):
        write_volume(
            make_phantom(seed, n_bscans=8, depth=128, width=128).volume, root / f"h{seed}.nii.gz"
        )
    cfg = load_config(model="ganomaly", overrides={
        "model": {"width": 4, "nz": 16},
        "preprocessing": {"patch_size": 32, "score_stride": 16},
        "training": {"batch_size": 8, "steps": {"gan": 3}, "calibration_patches": 64,
                     "score_batch_size": 64, "checkpoint_every": 100},
    })  # fmt: skip
    train_s, val_s = load_healthy([root], cfg.preprocessing, val_fraction=0.34, seed=0)
    with pytest.warns(UserWarning, match="not calibrated"):  # 8 validation B-scans: too few
        run = train(cfg, train_s, val_s, root / "run", device="cpu", progress=False)
    calibrate_run(run, sorted(root.glob("h*.nii.gz")), device="cpu", progress=False)
    return run


def _healthy_paths(run: Path) -> list[Path]:
    return sorted(run.parent.glob("h*.nii.gz"))


def test_calibration_stores_a_bank_and_map_uses_it(ganomaly_run):
    cal = load_calibration(ganomaly_run)
    fb = cal.file.feature_bank
    assert "bank" in cal.file.channels and fb is not None
    assert cal.bank is not None and cal.bank.bank.shape == (fb.size, fb.dim) and fb.dim == 16
    assert fb.n_healthy_patches >= fb.size > 0
    res = map_volume(make_phantom(9, n_bscans=2, depth=128, width=128).volume, ganomaly_run)
    assert "feature_bank" in res.timings and res.model["scoring"]["channels"]["bank"] > 0
    assert np.isfinite(res.anomaly).all()


def test_models_without_embeddings_have_no_bank_channel(tiny_run, tmp_path, monkeypatch):
    from octanomaly.models.fanogan import FAnoGAN
    from octanomaly.scoring import calibrate_run

    assert "bank" in load_calibration(tiny_run).file.channels  # f-AnoGAN embeds: E(x)
    monkeypatch.setattr(FAnoGAN, "embeds_patches", False)  # a model without embeddings
    healthy = [tiny_run.parent / f"h{seed}.nii.gz" for seed in range(3)]
    out = tmp_path / "no-bank"
    calibrate_run(tiny_run, healthy, out=out, device="cpu", progress=False)
    cal = load_calibration(out)
    assert "bank" not in cal.file.channels and cal.file.feature_bank is None and cal.bank is None
    assert not (out / "feature_bank.safetensors").exists()


def test_bank_round_trips_identically(tmp_path):
    rng = np.random.default_rng(0)
    bank = FeatureBank.fit(rng.normal(size=(500, 12)) * 3 + 1, np.random.default_rng(1), size=200)
    bank.save(tmp_path / "b.safetensors")
    back = FeatureBank.load(tmp_path / "b.safetensors", 12)
    for name in ("bank", "mean", "std"):
        a, b = getattr(bank, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    q = rng.normal(size=(30, 12))
    assert np.array_equal(bank.distances(q), back.distances(q))


def test_same_seed_same_bank(ganomaly_run, tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 8))
    a, b, c = (FeatureBank.fit(x, np.random.default_rng(s), size=50) for s in (3, 3, 4))
    assert np.array_equal(a.bank, b.bank) and not np.array_equal(a.bank, c.bank)
    # the whole calibration: same healthy data and seed -> byte-identical bank and settings
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        calibrate_run(ganomaly_run, _healthy_paths(ganomaly_run), out=out, device="cpu",
                      seed=7, progress=False)  # fmt: skip
    files = [(o / "feature_bank.safetensors").read_bytes() for o in outs]
    assert files[0] == files[1]
    cals = [json.loads((o / "calibration.json").read_text()) for o in outs]
    assert cals[0] == cals[1]


@pytest.mark.parametrize("seed", [12, 13])
def test_a_lesion_patch_is_farther_from_the_bank_than_healthy(ganomaly_run, seed):
    """Same phantom eye with and without drusen: the patches of the B-scans holding drusen move
    away from the healthy bank; those of drusen-free B-scans do not move."""
    run = load_run(ganomaly_run, "cpu")

    def distances(vol):
        prep = preprocess_volume(vol, run.cfg.preprocessing)
        maps = score_stack(run.model, prep["image"], prep["mask"], stride=16, smooth_sigma=1.0)
        return run.calibration.bank.distances(maps.embedding), maps.coords

    sick = make_phantom(seed, n_bscans=6, depth=128, width=128, lesions="drusen")
    healthy, coords = distances(make_phantom(seed, n_bscans=6, depth=128, width=128).volume)
    lesioned, coords2 = distances(sick.volume)
    assert np.array_equal(coords, coords2)
    on = np.isin(coords[:, 0], np.flatnonzero(sick.lesion_mask.any(axis=(1, 2))))
    assert on.any() and (~on).any()
    assert lesioned[on].max() > 1.1 * healthy[on].max()
    assert np.allclose(lesioned[~on], healthy[~on])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"bank": np.zeros((0, 16)), "mean": np.zeros(16), "std": np.ones(16)}, "is empty"),
        ({"bank": np.full((4, 16), np.nan), "mean": np.zeros(16), "std": np.ones(16)}, "NaN"),
        ({"bank": np.zeros((4, 8)), "mean": np.zeros(8), "std": np.ones(8)}, "dimension 8, "),
        ({"bank": np.zeros((4, 16)), "mean": np.zeros(16)}, "lacks std"),
    ],
)
def test_bad_bank_data_is_a_one_line_error(ganomaly_run, tmp_path, arrays, message):
    run = tmp_path / "run"
    shutil.copytree(ganomaly_run, run)
    save_file({k: v.astype(np.float32) for k, v in arrays.items()},
              str(run / "feature_bank.safetensors"))  # fmt: skip
    with pytest.raises(OctanomalyError) as err:
        load_run(run, "cpu")
    text = str(err.value)
    assert message in text and "feature_bank.safetensors" in text and "\n" not in text


def test_bad_healthy_embeddings_are_refused():
    with pytest.raises(OctanomalyError, match="no healthy patch embeddings"):
        FeatureBank.fit(np.zeros((0, 4)), np.random.default_rng(0))
    with pytest.raises(OctanomalyError, match="NaN"):
        FeatureBank.fit(np.full((3, 4), np.nan), np.random.default_rng(0))


def test_a_uniform_rise_of_the_bank_channel_over_a_volume_is_referenced_away(
    ganomaly_run, monkeypatch
):
    """A device or export shift moves every patch away from the healthy bank: bank z-scores
    raised by 2 or by 5 over the whole volume give the same fused map and B-scan scores (the
    volume's own median is taken off); without the volume reference they differ by the bank's
    share of 3."""
    from octanomaly.scoring import channels as ch
    from octanomaly.scoring.calibration import flatten_row
    from octanomaly.scoring.normative import NormativeModel

    run = load_run(ganomaly_run, "cpu")
    cal, pre = run.calibration, run.cfg.preprocessing
    prep = preprocess_volume(make_phantom(21, n_bscans=4, depth=128, width=128).volume, pre)
    maps = score_stack(run.model, prep["image"], prep["mask"], stride=16, smooth_sigma=1.0)
    bank = cal.bank_map(maps, run.model.patch_size)
    plain_z = NormativeModel.z

    def scored(rise: float) -> tuple[np.ndarray, np.ndarray]:
        def z(self, m, bins):
            out = plain_z(self, m, bins)
            out["bank"] = out["bank"] + np.float32(rise)
            return out

        monkeypatch.setattr(NormativeModel, "z", z)
        image = prep["image"]
        fused, region, raw = cal.score(
            image, maps.residual, prep["mask"], flatten_row(pre, image.shape[1]),
            pre.margin_px, prep["spacing"][1], bank,
        )  # fmt: skip
        return np.where(region, fused, 0), raw

    (f2, r2), (f5, r5) = scored(2.0), scored(5.0)
    np.testing.assert_allclose(f5, f2, atol=1e-4)
    np.testing.assert_allclose(r5, r2, atol=1e-4)
    monkeypatch.setattr(ch, "VOLUME_REFERENCED", ())
    (g2, _), (g5, _) = scored(2.0), scored(5.0)
    share = ch.weight_share(cal.file.weight_of, cal.file.channels, "bank")
    inside = g2 != 0
    np.testing.assert_allclose((g5 - g2)[inside], 3 * share, atol=1e-4)


def test_volume_reference_only_lowers():
    from octanomaly.scoring.channels import volume_reference

    assert volume_reference(np.array([4.0, 5.0, 9.0], np.float32)) == 5.0
    assert volume_reference(np.array([-1.0, -0.5, 3.0], np.float32)) == 0.0
    assert volume_reference(np.zeros(0, np.float32)) == 0.0
