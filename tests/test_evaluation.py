"""`octanomaly evaluate`: exact metrics with a known scorer, the real pipeline on phantom B-scans,
bad files, masks, errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.evaluation import runner as ev_runner
from octanomaly.evaluation.dataset import discover, match_masks
from octanomaly.evaluation.metrics import (
    PixelAccumulator,
    compress_scores,
    image_metrics,
    pixel_metrics,
    sensitivity_at_specificity,
)
from octanomaly.evaluation.runner import VolumeMaps, evaluate_folder, write_evaluation

cli = CliRunner()


# --------------------------------------------------------------------- a scorer with known scores
class MeanScorer:
    """Image score = mean pixel value / 100 of each B-scan; anomaly map = pixel value / 100."""

    bscan_threshold = 0.35
    info = {"name": "mean-intensity"}

    def bscan_scores(self, volume):
        return np.asarray(volume.data, np.float64).mean(axis=(1, 2)) / 100

    def maps(self, volume):
        a = np.asarray(volume.data, np.float32) / 100
        return VolumeMaps(self.bscan_scores(volume), a, a > 0.5, a > 0)


def _png(path: Path, value: int, shape=(40, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


@pytest.fixture()
def known(tmp_path) -> Path:
    """NORMAL 10/20/30, A 25/40, B 50 (B-scan values); widths 32 but A's 40 is 48 wide."""
    data = tmp_path / "known"
    for i, v in enumerate((10, 20, 30)):
        _png(data / "NORMAL" / f"n{i}.png", v)
    _png(data / "A" / "a0.png", 25)
    _png(data / "A" / "a1.png", 40, shape=(40, 48))
    _png(data / "B" / "b0.png", 50)
    return data


def test_known_scores_give_exact_metrics(known, tmp_path):
    ev = evaluate_folder(known, MeanScorer())
    m = ev.metrics
    assert m["image_auroc"] == pytest.approx(8 / 9)  # 2 + 3 + 3 of 9 pairs ranked right
    assert m["per_class_auroc"] == {"A": pytest.approx(5 / 6), "B": 1.0}
    labels, scores = [0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.25, 0.4, 0.5]
    assert m["image_ap"] == pytest.approx(average_precision_score(labels, scores))
    assert m["sensitivity_at_95_specificity"] == pytest.approx(2 / 3)  # 0.4, 0.5 above all normals
    assert (m["n_normal"], m["n_abnormal"], m["n_bad_files"]) == (3, 3, 0)
    assert m["per_width"]["32"]["image_auroc"] == pytest.approx(5 / 6)  # 0.25, 0.5 vs 3 normals
    assert m["per_width"]["48"] == {
        "image_auroc": None, "image_ap": None, "n_normal": 0, "n_abnormal": 1,
    }  # fmt: skip
    assert m["width_only_auroc"] == pytest.approx(roc_auc_score(labels, [32, 32, 32, 32, 48, 32]))
    assert m["flagged_fraction"] == {"A": 0.5, "B": 1.0, "NORMAL": 0.0}

    out = write_evaluation(ev, tmp_path / "out", known)
    assert sorted(p.name for p in out.iterdir()) == sorted(ev_runner.OUTPUT_FILES)
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert [r["file"] for r in rows] == [
        "A/a0.png", "A/a1.png", "B/b0.png", "NORMAL/n0.png", "NORMAL/n1.png", "NORMAL/n2.png",
    ]  # fmt: skip
    for r in rows:
        assert r["flagged"] == str(int(float(r["score"]) > 0.35))
    assert rows[1]["width"] == "48"
    assert json.loads((out / "metrics.json").read_text())["image_auroc"] == pytest.approx(8 / 9)
    assert Image.open(out / "roc.png").size[0] > 300


def test_constant_scores_give_chance(known):
    class Constant(MeanScorer):
        def bscan_scores(self, volume):
            return np.full(volume.shape[0], 0.7)

    m = evaluate_folder(known, Constant()).metrics
    assert m["image_auroc"] == 0.5
    assert m["image_ap"] == pytest.approx(0.5)  # prevalence
    assert m["sensitivity_at_95_specificity"] == 0.0
    assert set(m["per_class_auroc"].values()) == {0.5}


def test_volumes_score_as_mean_of_top_three_bscans(tmp_path):
    from octanomaly.io.nifti import write_volume
    from octanomaly.volume import OCTVolume

    data = tmp_path / "vols"
    vals = [10, 90, 20, 60, 30]  # B-scan means -> top three 90, 60, 30 -> 0.6
    vol = np.stack([np.full((16, 20), v, np.uint8) for v in vals])
    (data / "AMD").mkdir(parents=True)
    write_volume(OCTVolume(vol, (0.1, 0.004, 0.01)), data / "AMD" / "v1.nii.gz")
    _png(data / "NORMAL" / "n.png", 40)
    ev = evaluate_folder(data, MeanScorer())
    row = next(r for r in ev.rows if r.cls == "AMD")
    assert (row.n_bscans, row.score, row.flagged) == (5, pytest.approx(0.6), True)


def test_bad_files_are_skipped_with_one_warning_each(known):
    (known / "B" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (known / "A" / "notes.txt").write_text("not an image")
    warnings: list[str] = []
    m = evaluate_folder(known, MeanScorer(), warn=warnings.append).metrics
    assert m["n_bad_files"] == 2 and m["n_scored"] == 6 and m["n_files"] == 8
    assert {b["file"] for b in m["bad_files"]} == {"B/broken.png", "A/notes.txt"}
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert m["image_auroc"] == pytest.approx(8 / 9)


def test_masks_give_exact_pixel_metrics(known, tmp_path):
    masks = tmp_path / "masks"
    truth = {}
    rng = np.random.default_rng(1)
    for item in discover(known):
        img = np.asarray(Image.open(item.path))
        noisy = np.clip(img.astype(int) + rng.integers(0, 60, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(item.path)  # varied pixel scores
        t = rng.random(img.shape) < (0.3 if item.label else 0.05)
        t &= noisy > 30
        _png(masks / item.cls / f"{item.key}.png", 0, img.shape)
        Image.fromarray(t.astype(np.uint8) * 255).save(masks / item.cls / f"{item.key}.png")
        truth[item.path] = (noisy / 100, t)
    m = evaluate_folder(known, MeanScorer(), masks=masks).metrics
    s = np.concatenate([v[0].ravel() for v in truth.values()])
    t = np.concatenate([v[1].ravel() for v in truth.values()])
    assert m["pixel_auroc"] == pytest.approx(roc_auc_score(t, s), abs=1e-4)
    assert m["pixel_ap"] == pytest.approx(average_precision_score(t, s), abs=1e-3)
    pred = s > 0.5
    assert m["dice"] == pytest.approx(2 * (pred & t).sum() / (pred.sum() + t.sum()))
    r = s > 0
    assert m["pixel_retina"]["pixel_auroc"] == pytest.approx(roc_auc_score(t[r], s[r]), abs=1e-4)
    assert m["n_masks_matched"] == 6 and m["pixel"]["n_pixels"] == s.size


def test_mask_matching_by_name(known, tmp_path):
    items = discover(known)
    masks = tmp_path / "m"
    (masks / "deep").mkdir(parents=True)
    (masks / "deep" / "a0.nii.gz").write_bytes(b"x")  # matched by name, not read here
    _png(masks / "b0.png", 0)
    found = match_masks(masks, items)
    assert {p.name for p in found} == {"a0.png", "b0.png"}
    _png(masks / "other" / "b0.tif", 0)
    with pytest.raises(Exception, match="two masks"):
        match_masks(masks, items)
    with pytest.raises(Exception, match="no mask matches"):
        match_masks(known / "NORMAL", [i for i in items if i.cls == "B"])


def test_limit_per_class_is_seeded_subset(known):
    for i in range(3, 9):
        _png(known / "NORMAL" / f"n{i}.png", 10 * i)
    a = [i.path.name for i in discover(known, limit_per_class=2)]
    assert a == [i.path.name for i in discover(known, limit_per_class=2)]
    assert sum(n.startswith("n") for n in a) == 2 and len(a) == 5


# ------------------------------------------------------------------------------- metrics units
def test_metric_helpers_match_sklearn():
    normal = np.arange(1.0, 21.0)  # 20 normals: 95 % specificity allows one above threshold
    y = np.r_[np.zeros(20), np.ones(4)]
    assert sensitivity_at_specificity(y, np.r_[normal, 19.5, 21, 22, 5]) == 0.75
    rng = np.random.default_rng(0)
    y = rng.random(3000) < 0.2
    s = rng.normal(size=3000) + y
    v, lab, w = compress_scores(s, y)
    assert w.sum() == 3000 and roc_auc_score(lab, v, sample_weight=w) == pytest.approx(
        roc_auc_score(y, s), abs=1e-6
    )
    acc = PixelAccumulator()
    acc.add(s[:1000], y[:1000])
    acc.add(s[1000:], y[1000:])
    assert acc.result()["pixel_auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert pixel_metrics(np.zeros(4), np.zeros(4, bool), threshold=0.5)["dice"] is None
    m = image_metrics([1.0, 2.0], ["NORMAL", "X"], "NORMAL", widths=[10, 10])
    assert m["image_auroc"] == 1.0 and m["width_only_auroc"] is None


# ------------------------------------------------------------------- the real pipeline, tiny run
@pytest.fixture(scope="module")
def phantom_data(tmp_path_factory) -> tuple[Path, Path]:
    """Phantom B-scans as PNGs: NORMAL (healthy), CYST and SRF (lesions), with lesion masks."""
    from octanomaly.data.phantom import make_phantom

    root = tmp_path_factory.mktemp("phantom_eval")
    data, masks = root / "data", root / "masks"
    healthy = make_phantom(10, n_bscans=3, depth=128, width=96)
    for i, b in enumerate(healthy.volume.data):
        _save(data / "NORMAL" / f"h{i}.png", b)
        _save(masks / f"h{i}.png", np.zeros_like(b))
    for kind in ("cyst", "srf"):
        ph = make_phantom(20, n_bscans=5, depth=128, width=96, lesions=kind)
        for i in (1, 3):
            _save(data / kind.upper() / f"{kind}{i}.png", ph.volume.data[i])
            _save(masks / f"{kind}{i}.png", ph.lesion_mask[i].astype(np.uint8) * 255)
    return data, masks


def _save(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(a, np.uint8)).save(path)


def test_cli_with_tiny_model_and_masks(phantom_data, tiny_run, tmp_path):
    data, masks = phantom_data
    out = tmp_path / "ev"
    args = ["evaluate", str(data), "--model", str(tiny_run), "--out", str(out), "--device", "cpu"]
    res = cli.invoke(app, [*args, "--masks", str(masks)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(ev_runner.OUTPUT_FILES)
    m = json.loads((out / "metrics.json").read_text())
    for key in ("image_auroc", "image_ap", "sensitivity_at_95_specificity", "pixel_auroc",
                "pixel_ap"):  # fmt: skip
        assert 0.0 <= m[key] <= 1.0, key
    assert 0.0 <= m["dice"] <= 1.0 or m["dice"] is None
    assert set(m["per_class_auroc"]) == {"CYST", "SRF"}
    assert (m["n_normal"], m["n_abnormal"]) == (3, 4)
    assert m["pixel"]["n_pixels"] == 7 * 128 * 96
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 7
    for r in rows:
        assert r["flagged"] == str(int(float(r["score"]) > m["bscan_threshold"]))
    assert "AUROC" in res.output and "CYST vs NORMAL" in res.output


def test_cli_errors_one_line_exit_2(phantom_data, tmp_path, monkeypatch):
    data, _ = phantom_data
    monkeypatch.setattr(ev_runner, "RunScorer", lambda *a, **k: MeanScorer())
    cases = {
        "normal": ([str(data), "--normal-class", "HEALTHY"], "no normal-class folder"),
        "empty": ([str(tmp_path / "empty")], "no class subfolders"),
        "inside": ([str(data), "--out", str(data / "NORMAL" / "ev")], "inside the data folder"),
    }
    (tmp_path / "empty").mkdir()
    for name, (args, msg) in cases.items():
        res = cli.invoke(app, ["evaluate", *args])
        assert res.exit_code == 2, (name, res.output)
        assert msg in res.output and len(res.output.strip().splitlines()) == 1, res.output
    not_eval = tmp_path / "precious"
    not_eval.mkdir()
    (not_eval / "thesis.txt").write_text("keep me")
    res = cli.invoke(app, ["evaluate", str(data), "--out", str(not_eval)])
    assert res.exit_code == 2 and (not_eval / "thesis.txt").exists()


def test_cli_plumbing_with_patched_scorer(known, tmp_path, monkeypatch):
    monkeypatch.setattr(ev_runner, "RunScorer", lambda *a, **k: MeanScorer())
    monkeypatch.chdir(tmp_path)
    res = cli.invoke(app, ["evaluate", str(known)])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "octanomaly-eval-known" / "metrics.json").read_text())
    assert m["image_auroc"] == pytest.approx(8 / 9)
    res = cli.invoke(app, ["evaluate", str(known)])  # re-running replaces the earlier evaluation
    assert res.exit_code == 0, res.output


def test_items_scored_on_threads_equal_one_at_a_time(phantom_data, tiny_run, tmp_path):
    """Two items in flight on threads: the same rows, in the same order, and the same pixel
    metrics as scoring one item after the other; a bad file is still skipped in its place."""
    data, masks = phantom_data
    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    (bad / "CYST" / "broken.png").write_bytes(b"not a png")
    scorer = ev_runner.RunScorer(tiny_run, device="cpu")
    for folder, mask_dir in ((bad, None), (data, masks)):
        one = evaluate_folder(folder, scorer, masks=mask_dir, workers=1)
        two = evaluate_folder(folder, scorer, masks=mask_dir, workers=2)
        assert [r.file for r in one.rows] == [r.file for r in two.rows]
        np.testing.assert_array_equal([r.score for r in one.rows], [r.score for r in two.rows])
        assert one.bad_files == two.bad_files
        for key in ("image_auroc", "pixel_auroc", "pixel_ap", "dice"):
            assert one.metrics.get(key) == two.metrics.get(key), key
    assert [b["file"] for b in one.bad_files] == [] and len(two.rows) == 7
    assert [b["file"] for b in evaluate_folder(bad, scorer, workers=2).bad_files] == [
        "CYST/broken.png"
    ]
