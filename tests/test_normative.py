"""Normative model of healthy retina: round trip, position awareness, healthy false-alarm rate,
bad calibration data, bundled model protection, enough healthy data (issues 10 and 12)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from octanomaly.data.phantom import make_phantom
from octanomaly.errors import OctanomalyError
from octanomaly.io.nifti import write_volume
from octanomaly.scoring import (
    NormativeModel,
    calibrate_run,
    default_model_dir,
    load_calibration,
    load_run,
    map_volume,
)
from octanomaly.scoring.channels import scoring_region
from octanomaly.scoring.normative import BinSpec, bin_index


def _synthetic(seed: int = 0, n: int = 200_000):
    """Healthy pixels: a bright, noisy layer at height 0-40 µm, dim tissue above."""
    rng = np.random.default_rng(seed)
    spec = BinSpec()
    height = rng.uniform(-50, 400, n)
    rel = np.clip(height / 300, -0.2, 1.2)
    bright = (height >= 0) & (height < 40)
    values = np.where(bright, rng.normal(1.0, 0.3, n), rng.normal(0.2, 0.05, n))
    return spec, height, rel, values, bin_index(spec, height, rel)


def test_round_trip_is_identical(tmp_path):
    spec, _, _, values, bins = _synthetic()
    nm = NormativeModel.fit({"residual": values, "intensity": -values}, bins, spec)
    nm.save(tmp_path / "n.safetensors")
    back = NormativeModel.load(tmp_path / "n.safetensors", json.loads(json.dumps(nm.meta())))
    assert back.channels == nm.channels and back.spec == nm.spec
    for name in ("center", "scale", "counts"):
        np.testing.assert_array_equal(getattr(back, name), getattr(nm, name))
    assert (nm.scale > 0).all() and np.isfinite(nm.center).all()


def test_lesion_in_bright_layer_scores_higher_than_the_layer_elsewhere():
    spec, _, _, values, bins = _synthetic()
    nm = NormativeModel.fit({"residual": values}, bins, spec)
    h = np.array([20.0, 20.0, 200.0])  # bright layer healthy, bright layer lesion, dim tissue
    b = bin_index(spec, h, h / 300)
    x = np.array([1.0, 1.8, 0.5])
    z = nm.z({"residual": x}, b)["residual"]
    # raw: the healthy bright layer (1.0) outscores the dim-tissue lesion (0.5) ...
    assert x[0] > x[2]
    # ... but against the normative model the lesions stand out and the healthy layer does not
    assert z[1] > 2 and z[2] > 1.5 and abs(z[0]) < 0.5
    assert z[1] > z[0] + 2


def test_phantom_lesion_in_the_rpe_outscores_the_rpe_elsewhere(tiny_run, tmp_path):
    """Through the whole pipeline: a dark gap in the bright RPE band vs the same band elsewhere."""
    ph = make_phantom(5, n_bscans=3, depth=128, width=128)
    data = ph.volume.data.copy()
    top, bm = ph.boundaries["rpe"][1], ph.bm[1]
    lesion = np.zeros(data.shape, dtype=bool)
    same_layer = np.zeros(data.shape, dtype=bool)
    for c in range(128):
        rows = slice(int(np.ceil(top[c])), int(np.floor(bm[c])) + 1)
        (lesion if 50 <= c < 66 else same_layer)[1, rows, c] = 50 <= c < 66 or 80 <= c < 100
    above = int(np.median(top)) - 8
    data[lesion] = np.median(data[1, above, 50:66])  # RPE replaced by outer-retina brightness
    res = map_volume(ph.volume.with_data(data), tiny_run, device="cpu")
    assert lesion.sum() > 20 and same_layer.sum() > 20
    assert res.anomaly[lesion].mean() > 1.4 * res.anomaly[same_layer].mean()


def test_sparse_bins_are_smoothed_and_floored():
    spec, height, rel, values, bins = _synthetic(n=50_000)
    keep = (height < 300) | (np.arange(height.size) % 500 == 0)  # few pixels high up
    nm = NormativeModel.fit({"residual": values[keep]}, bins[keep], spec)
    assert np.isfinite(nm.scale).all() and nm.scale.min() >= 0.25 * nm.scale.max() * 0.01
    assert nm.scale.min() > 0


def test_bad_normative_data_gives_clear_errors(tmp_path):
    spec, _, _, values, bins = _synthetic(n=1000)
    with pytest.raises(OctanomalyError, match="no healthy retina pixels"):
        NormativeModel.fit({"residual": np.zeros(0)}, np.zeros(0, dtype=int), spec)
    bad = values.copy()
    bad[3] = np.nan
    with pytest.raises(OctanomalyError, match="bad healthy values"):
        NormativeModel.fit({"residual": bad}, bins, spec)
    nm = NormativeModel.fit({"residual": values}, bins, spec)
    from safetensors.numpy import save_file

    for key, broken in (("center", np.nan), ("scale", 0.0)):
        arrays = nm.tensors()
        arrays[key] = np.full_like(nm.scale, broken)
        save_file(arrays, str(tmp_path / "b.safetensors"))
        with pytest.raises(OctanomalyError, match="NaN|spread"):
            NormativeModel.load(tmp_path / "b.safetensors", nm.meta())
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(OctanomalyError, match="unreadable normative"):
        NormativeModel.load(tmp_path / "junk.safetensors", nm.meta())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: "{not json", "not valid JSON"),
        (lambda t: t.replace('"std": ', '"std": NaN, "x": ', 1), "std"),
        (lambda t: _set(t, ["pixel", "std"], 0.0), "pixel.std"),
        (lambda t: _set(t, ["bscan", "mean"], float("nan")), "bscan.mean"),
        (lambda t: _set(t, ["n_bscans"], 1), "n_bscans"),
        (lambda t: _set(t, ["stride"], 0), "stride"),
        (lambda t: "{}", "not calibrated"),
    ],
)
def test_broken_calibration_json_is_one_line(tiny_run, tmp_path, edit, message):
    """Issue 12 item 9: invalid JSON, NaN, std 0 are refused on load with one line."""
    from octanomaly.cli import app

    run = shutil.copytree(tiny_run, tmp_path / "run")
    path = run / "calibration.json"
    path.write_text(edit(path.read_text()))
    with pytest.raises(OctanomalyError, match=message):
        load_run(run, "cpu")
    vol = tmp_path / "v.nii.gz"
    write_volume(make_phantom(1, n_bscans=2, depth=128, width=128).volume, vol)
    r = CliRunner().invoke(app, ["map", str(vol), "--model", str(run), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert len([ln for ln in r.stderr.splitlines() if "error" in ln]) == 1


def _set(text: str, keys: list[str], value: float) -> str:
    data = json.loads(text)
    d = data
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value
    return json.dumps(data)


def test_missing_or_wrong_normative_file(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "normative.safetensors").unlink()
    with pytest.raises(OctanomalyError, match="normative model file missing"):
        load_calibration(run)


def test_calibration_needs_enough_healthy_data(tiny_run, tmp_path):
    """Issue 12 item 8: a single healthy B-scan used to be accepted."""
    one = tmp_path / "one.nii.gz"
    write_volume(make_phantom(3, n_bscans=1, depth=128, width=128).volume, one)
    with pytest.raises(OctanomalyError, match="at least 20 healthy B-scans"):
        calibrate_run(tiny_run, [one], out=tmp_path / "new", device="cpu", progress=False)
    assert not (tmp_path / "new").exists()


def test_bundled_model_is_never_modified(tmp_path):
    """Issue 12 item 8: `calibrate` on the bundled model rewrote a file inside the package."""
    from octanomaly.cli import app

    bundled = default_model_dir()
    if bundled is None:
        pytest.skip("no bundled model installed")
    before = {p.name: p.read_bytes() for p in bundled.iterdir() if p.is_file()}
    healthy = tmp_path / "h.nii.gz"
    write_volume(make_phantom(4, n_bscans=2, depth=128, width=128).volume, healthy)
    with pytest.raises(OctanomalyError, match="bundled model .* is read-only"):
        calibrate_run(bundled, [healthy], device="cpu", progress=False)
    r = CliRunner().invoke(app, ["calibrate", str(bundled), str(healthy)])
    assert r.exit_code == 2 and "read-only" in r.stderr and "--out" in r.stderr
    for out in (bundled, bundled.parent / "new"):  # --out the bundled folder or inside the package
        r = CliRunner().invoke(app, ["calibrate", str(bundled), str(healthy), "--out", str(out)])
        assert r.exit_code == 2 and "read-only" in r.stderr
    assert not (bundled.parent / "new").exists()
    after = {p.name: p.read_bytes() for p in bundled.iterdir() if p.is_file()}
    assert after == before


def test_calibrate_out_writes_a_new_run_and_leaves_the_old_alone(tiny_run, tmp_path):
    from octanomaly.cli import app

    run = shutil.copytree(tiny_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    healthy = [str(p) for p in sorted(tiny_run.parent.glob("h*.nii.gz"))]
    r = CliRunner().invoke(
        app, ["calibrate", str(run), *healthy, "--out", str(tmp_path / "new"), "--device", "cpu"]
    )
    assert r.exit_code == 0, r.output
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    new = tmp_path / "new"
    assert {"config.yaml", "model.safetensors", "calibration.json", "normative.safetensors"} <= {
        p.name for p in new.iterdir()
    }
    assert (new / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    # same data, same seed -> the same calibration
    assert (
        json.loads((new / "calibration.json").read_text())["bscan"]
        == json.loads((run / "calibration.json").read_text())["bscan"]
    )
    r = CliRunner().invoke(app, ["calibrate", str(run), *healthy, "--out", str(new)])
    assert r.exit_code == 2 and "not empty" in r.stderr


def test_healthy_phantoms_are_flagged_at_about_the_percentile(tiny_run, tmp_path):
    """Calibrate on healthy phantoms, map other healthy phantoms: about 10 % flagged at P90."""
    from octanomaly.io import load_volume

    cal, test = [], []
    for seed in range(20, 48):
        path = tmp_path / f"h{seed}.nii.gz"
        write_volume(make_phantom(seed, n_bscans=3, depth=128, width=128).volume, path)
        (cal if seed < 36 else test).append(path)
    calibrate_run(tiny_run, cal, out=tmp_path / "run", device="cpu", progress=False)
    run = load_run(tmp_path / "run", "cpu")
    flags, n = 0, 0
    for path in test:
        res = map_volume(load_volume(path), run, threshold=90.0)
        flags += len(res.flagged)
        n += int(np.isfinite(res.bscan_scores).sum())
    assert n == 36
    assert 0 < flags <= 9  # configured 10 % of 36 = 3.6; binomial spread, small healthy set


def test_scoring_region_drops_lateral_edges():
    m = np.zeros((1, 10, 50), dtype=bool)
    m[0, 2:8, 5:45] = True
    r = scoring_region(m, 8)
    cols = np.flatnonzero(r[0].any(axis=0))
    assert cols[0] == 13 and cols[-1] == 36 and r.sum() == 6 * 24


def test_map_cli_refuses_an_uncalibrated_stride_in_one_line(tiny_run, tmp_path):
    """Issue 12 item 6 at the command line: `--stride 100000` used to score 0 patches silently."""
    from octanomaly.cli import app

    vol = tmp_path / "v.nii.gz"
    write_volume(make_phantom(2, n_bscans=2, depth=128, width=128).volume, vol)
    args = ["map", str(vol), "--model", str(tiny_run), "--out", str(tmp_path / "o")]
    r = CliRunner().invoke(app, [*args, "--stride", "100000"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "calibrated at stride 16" in r.stderr
    assert not list((tmp_path / "o").glob("v_*")) if (tmp_path / "o").exists() else True
    assert CliRunner().invoke(app, [*args, "--stride", "16"]).exit_code == 0


def test_python_train_calibrates_through_the_one_path(tmp_path):
    """`train()` (Python) calibrates its run exactly as `octanomaly calibrate` would."""
    from octanomaly.config import load_config
    from octanomaly.data.healthy import load_healthy
    from octanomaly.training import train

    for seed in (0, 1):
        write_volume(
            make_phantom(seed, n_bscans=20, depth=128, width=128).volume,
            tmp_path / f"h{seed}.nii.gz",
        )
    cfg = load_config(model="ganomaly", overrides={
        "model": {"width": 4, "nz": 8},
        "preprocessing": {"patch_size": 32, "score_stride": 16},
        "training": {"batch_size": 8, "steps": {"gan": 2}, "score_batch_size": 64},
    })  # fmt: skip
    train_s, val_s = load_healthy([tmp_path], cfg.preprocessing, val_fraction=0.5, seed=0)
    run = train(cfg, train_s, val_s, tmp_path / "run", device="cpu", progress=False)
    data = json.loads((run / "calibration.json").read_text())
    assert data["format"] == "octanomaly-calibration/2" and data["n_bscans"] == 20
    val_file = {s.rsplit("#", 1)[0] for s in val_s.sources}
    assert len(val_file) == 1 and data["sources"] == [Path(val_file.pop()).name]
    again = calibrate_run(
        run, [tmp_path / data["sources"][0]], out=tmp_path / "cli", progress=False
    )
    assert again == data  # the same data through `calibrate` gives the same calibration
    assert load_run(run, "cpu").calibration.file.n_bscans == 20
