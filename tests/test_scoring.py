"""Scoring: maps, calibration, thresholds, determinism, stride, bad runs, files."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from octanomaly.data.phantom import make_phantom
from octanomaly.errors import OctanomalyError
from octanomaly.scoring import (
    Dist,
    calibrate_run,
    clean_mask,
    load_run,
    map_volume,
    score_bscans,
    write_outputs,
)
from tests._summary_text import text_values


@pytest.fixture(scope="module")
def lesion_volume():
    return make_phantom(seed=11, n_bscans=4, depth=128, width=128, lesions="all").volume


@pytest.fixture(scope="module")
def run(tiny_run):
    return load_run(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def result(lesion_volume, run):
    return map_volume(lesion_volume, run)


def test_map_shapes_dtypes_and_zero_outside_retina(result, lesion_volume):
    shape = lesion_volume.shape
    for name in ("anomaly", "residual", "score_map"):
        arr = getattr(result, name)
        assert arr.shape == shape and arr.dtype == np.float32 and np.isfinite(arr).all()
    assert result.mask.shape == shape and result.mask.dtype == np.uint8
    assert result.retina.shape == shape and 0 < result.retina.mean() < 1
    assert (result.anomaly >= 0).all()
    outside = ~result.retina
    assert not result.anomaly[outside].any() and not result.mask[outside].any()
    assert not result.residual[outside].any()
    assert result.anomaly[result.retina].max() > 0
    assert result.bscan_scores.shape == (shape[0],)
    assert {"preprocess", "score", "stitch", "restore"} <= set(result.timings)


def test_mask_and_flags_follow_the_threshold(result, lesion_volume, run):
    assert (result.anomaly[result.mask.astype(bool)] > result.threshold).all()
    expected = [i for i, s in enumerate(result.bscan_scores) if s > result.bscan_threshold]
    assert result.flagged == expected
    assert result.volume_score == pytest.approx(np.sort(result.bscan_scores)[::-1][:3].mean())
    low = map_volume(lesion_volume, run, threshold=50.0)
    high = map_volume(lesion_volume, run, threshold=99.9)
    assert low.threshold < result.threshold < high.threshold
    assert set(high.flagged) <= set(result.flagged) <= set(low.flagged)
    assert high.mask.sum() <= result.mask.sum() <= low.mask.sum()
    assert low.mask.sum() > 0
    with pytest.raises(OctanomalyError, match="percentile"):
        map_volume(lesion_volume, run, threshold=100.0)


def test_deterministic(result, lesion_volume, tiny_run):
    again = map_volume(lesion_volume, tiny_run, device="cpu")
    for name in ("anomaly", "mask", "residual", "score_map", "bscan_scores"):
        np.testing.assert_array_equal(getattr(again, name), getattr(result, name))
    assert again.flagged == result.flagged and again.model == result.model


def test_other_stride_is_refused_until_calibrated_for_it(
    result, lesion_volume, run, tiny_run, tmp_path
):
    """Issue 12 item 6: stride 8 used to reuse stride-16 statistics; 100000 scored 0 patches."""
    for stride in (8, 100000):
        with pytest.raises(OctanomalyError, match="calibrated at stride 16"):
            map_volume(lesion_volume, run, stride=stride)
    healthy = sorted(tiny_run.parent.glob("h*.nii.gz"))
    with pytest.raises(OctanomalyError, match="stride must be 1..32"):
        calibrate_run(tiny_run, healthy, out=tmp_path / "x", stride=100000, progress=False)
    calibrate_run(tiny_run, healthy, out=tmp_path / "s8", stride=8, device="cpu", progress=False)
    fine = map_volume(lesion_volume, tmp_path / "s8", device="cpu", stride=8)
    assert fine.stride == 8 and result.stride == 16
    assert fine.n_patches > 2 * result.n_patches
    assert fine.anomaly.shape == result.anomaly.shape
    np.testing.assert_array_equal(fine.retina, result.retina)
    assert not np.array_equal(fine.residual, result.residual)


def test_score_bscans_matches_map(result, lesion_volume, run):
    np.testing.assert_allclose(score_bscans(lesion_volume, run), result.bscan_scores)


def test_dist_percentiles_and_z():
    x = np.random.default_rng(0).normal(3.0, 2.0, 100_000)
    d = Dist.model_validate(json.loads(json.dumps(Dist.from_samples(x).model_dump())))
    assert np.mean(x > d.percentile(99)) == pytest.approx(0.01, abs=1e-3)
    assert d.z_at(99) == pytest.approx(2.326, abs=0.05)
    assert float(d.z(3.0)) == pytest.approx(0.0, abs=0.02)


def test_clean_mask_drops_small_components():
    a = np.zeros((1, 20, 20), dtype=np.float32)
    a[0, 2:4, 2:4] = 5  # 4 px
    a[0, 10:18, 10:18] = 5  # 64 px
    m = clean_mask(a, 1.0, min_size=10)
    assert m.dtype == np.uint8 and m.sum() == 64 and m[0, 12, 12] == 1


def test_calibration_files_and_old_format(tiny_run, run, tmp_path, lesion_volume):
    raw = json.loads((tiny_run / "calibration.json").read_text())
    assert raw["format"] == "octanomaly-calibration/2" and raw["stride"] == 16
    assert raw["channels"] == ["intensity", "residual", "bank", "elevation"]
    assert raw["n_bscans"] >= 20
    assert len(raw["bscan"]["sorted"]) == 1001 and (tiny_run / "normative.safetensors").is_file()
    assert run.calibration.kind == "maps" and run.calibration.normative.channels == (
        "intensity",
        "residual",
        "bank",
        "elevation",
    )
    old = shutil.copytree(tiny_run, tmp_path / "old")
    (old / "calibration.json").write_text(json.dumps({"model": "fanogan", "maps": {}}))
    with pytest.raises(OctanomalyError, match="not a current calibration"):
        map_volume(lesion_volume, old, device="cpu")


def test_mismatched_run_folders_give_clear_errors(tmp_path, tiny_run):
    bad = shutil.copytree(tiny_run, tmp_path / "bad")
    cfg = (bad / "config.yaml").read_text().replace("width: 4", "width: 8")
    (bad / "config.yaml").write_text(cfg)
    with pytest.raises(OctanomalyError, match="do not match"):
        load_run(bad, "cpu")
    other = shutil.copytree(tiny_run, tmp_path / "other")
    raw = json.loads((other / "calibration.json").read_text())
    raw["patch_size"] = 64
    (other / "calibration.json").write_text(json.dumps(raw))
    with pytest.raises(OctanomalyError, match="patch size"):
        load_run(other, "cpu")
    (other / "calibration.json").unlink()
    with pytest.raises(OctanomalyError, match="calibrat"):
        load_run(other, "cpu")
    with pytest.raises(OctanomalyError, match="not found|missing"):
        load_run(tmp_path / "nowhere", "cpu")


def test_write_outputs_geometry_summary_and_no_phi(tmp_path, run, lesion_volume):
    vol = lesion_volume.with_data(lesion_volume.data)
    vol.phi = {"PatientName": "Doe^Jonathan", "PatientID": "PID-4711"}
    vol.source_path = tmp_path / "Doe_scan.nii.gz"
    res = map_volume(vol, run, threshold=60.0)
    assert res.flagged
    paths = write_outputs(res, vol, tmp_path / "out", "scan")
    ref = nib.load(paths["volume"])
    for kind, dtype in (("anomaly", np.float32), ("mask", np.uint8)):
        img = nib.load(paths[kind])
        assert img.shape == ref.shape and np.allclose(img.affine, ref.affine)
        assert img.get_data_dtype() == dtype
    back = np.transpose(np.asarray(nib.load(paths["anomaly"]).dataobj), (2, 1, 0))
    np.testing.assert_array_equal(back, res.anomaly)
    assert sorted(p.name for p in paths["bscans"].iterdir()) == [
        f"bscan_{i:04d}.png" for i in res.flagged
    ]
    assert paths["enface"].stat().st_size > 0 and "parametric_map" not in paths
    text = paths["summary"].read_text()
    summary = json.loads(text)
    for key in ("shape", "spacing_mm", "model", "threshold", "volume_score", "bscan_scores",
                "flagged_bscans", "anomalous_volume_mm3", "timings_s"):  # fmt: skip
        assert key in summary
    assert summary["flagged_bscans"] == res.flagged
    assert set(summary["model"]) >= {"name", "version", "run_id"}
    assert summary["model"]["scoring"]["channels"] == {
        "intensity": 1.0,
        "residual": 0.25,
        "bank": 1.0,
        "elevation": 1.0,
    }
    assert summary["anomalous_volume_mm3"] == pytest.approx(res.mask.sum() * np.prod(vol.spacing))
    assert "Doe" not in text  # the patient's ID "4711" in no text value (hashes may hold it)
    assert not [v for v in text_values(summary) if "4711" in v]
    assert not list((tmp_path / "out").glob(".*"))  # no temporaries left


def test_anogan_scores_with_latent_mapping(tmp_path, lesion_volume, tiny_run):
    from octanomaly.config import load_config
    from octanomaly.models import build_model
    from octanomaly.runs import save_model

    cfg = load_config(model="anogan", overrides={
        "model": {"width": 4, "nz": 8, "mapping": {"steps": 3}},
        "preprocessing": {"patch_size": 32, "score_stride": 32},
    })  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    save_model(tmp_path / "ano", model, cfg, {})
    with pytest.raises(OctanomalyError, match="not calibrated"):
        load_run(tmp_path / "ano", "cpu")
    calibrate_run(tmp_path / "ano", sorted(tiny_run.parent.glob("h*.nii.gz")), progress=False)
    res = map_volume(lesion_volume, tmp_path / "ano", device="cpu")
    assert res.model["name"] == "anogan" and res.model["calibration"] == "maps"
    assert res.anomaly.shape == lesion_volume.shape and np.isfinite(res.bscan_scores).all()


def test_mask_keeps_only_regions_with_a_core_above_the_rarer_threshold():
    """3-D hysteresis: a region survives whole when one voxel passes the core threshold, in any
    of its B-scans (26-connected, like the findings' regions); a region without one is cleared."""
    from scipy import ndimage

    from octanomaly.scoring.masks import core_percentile, keep_cored_regions

    assert core_percentile(99) == pytest.approx(99.9) and core_percentile(95) == pytest.approx(99.5)
    anomaly = np.zeros((3, 20, 20), dtype=np.float32)
    anomaly[0, 2:6, 2:6] = 2.0  # region A: B-scans 0-1, its core in B-scan 1 only
    anomaly[1, 5:8, 5:8] = 2.0
    anomaly[1, 6, 6] = 5.0
    anomaly[2, 12:16, 12:16] = 2.0  # region B: no core
    mask = (anomaly > 1.0).astype(np.uint8)
    out = keep_cored_regions(mask.copy(), anomaly, 4.0)
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    assert out.dtype == np.uint8
    assert np.array_equal(out.astype(bool), labels == labels[1, 6, 6])
    assert out[0, 2:6, 2:6].all() and not out[2].any()
