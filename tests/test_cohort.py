"""``octanomaly cohort``: local and 2-worker Dask runs, resume, a bad volume, clustering outputs."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from octanomaly.data.phantom import make_phantom
from octanomaly.evaluation.phantom_regions import lesion_mask_regions
from octanomaly.findings.cluster import cluster_regions, max_k
from octanomaly.findings.cohort import expand_inputs, run_cohort, volume_names
from octanomaly.io.nifti import write_volume


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def cohort_inputs(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for seed, lesions in ((1, "cyst,hrf"), (2, "drusen,srf")):
        ph = make_phantom(seed, n_bscans=4, depth=128, width=128, lesions=lesions)
        write_volume(ph.volume, folder / f"eye{seed}.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"not a volume at all")
    (folder / "notes.txt").write_text("skipped")
    return folder


def test_cohort_local_resume_and_bad_volume(tmp_path, tiny_run, cohort_inputs):
    out = tmp_path / "out"
    seen = []

    def note(r, k, n):
        seen.append(r["volume"]["volume"] if r else k)

    res = run_cohort([cohort_inputs], out, tiny_run, device="cpu", on_result=note)
    assert seen[0] == 0 and sorted(seen[1:]) == ["broken", "eye1", "eye2"]
    assert (res.n_skipped, res.n_failed, len(res.results)) == (0, 1, 2)
    vols = {r["volume"]: r for r in _rows(out / "volumes.csv")}
    assert vols["broken"]["status"] == "failed" and "broken.nii.gz" in vols["broken"]["error"]
    assert vols["eye1"]["status"] == vols["eye2"]["status"] == "ok"
    regions = _rows(out / "regions.csv")
    for name in ("eye1", "eye2"):
        own = _rows(out / "volumes" / name / f"{name}_regions.csv")
        assert len(own) == int(vols[name]["n_regions"])
        assert [r["region_id"] for r in regions if r["volume"] == name] == [
            r["region_id"] for r in own
        ]
    clusters = _rows(out / "clusters.csv")
    assert len(clusters) == len(regions)
    summary = json.loads((out / "clusters.json").read_text())
    assert summary["n_regions"] == len(regions)
    assert sum(summary["clustering"]["sizes"]) == len(regions)
    page = (out / "report.html").read_text()
    assert "<img" in page and not re.search(r"(src|href)=\"(https?:)?//", page)
    assert 'href="volumes/eye1/eye1_enface.png"' in page  # volumes open their en-face image
    assert (out / "figures" / "map.png").is_file()
    assert (out / "figures" / "etdrs_burden.png").is_file()
    _check_in_browser(out / "report.html", page)

    # interrupted run: one volume's completion marker is missing -> only it (and the bad one) rerun
    marker = out / "volumes" / "eye2" / "eye2_cohort.json"
    marker.unlink()
    kept = (out / "volumes" / "eye1" / "eye1_cohort.json").stat().st_mtime_ns
    seen.clear()
    res2 = run_cohort([cohort_inputs], out, tiny_run, device="cpu", on_result=note)
    assert seen[0] == 1 and sorted(seen[1:]) == ["broken", "eye2"] and res2.n_skipped == 1
    assert (out / "volumes" / "eye1" / "eye1_cohort.json").stat().st_mtime_ns == kept
    assert _rows(out / "regions.csv") == regions  # same regions, same order
    assert len(_rows(out / "volumes.csv")) == 3

    # outputs of an older octanomaly (another outputs version) are mapped again, not reused
    done = json.loads(marker.read_text())
    done["key"]["outputs"] -= 1
    marker.write_text(json.dumps(done))
    seen.clear()
    res3 = run_cohort([cohort_inputs], out, tiny_run, device="cpu", on_result=note)
    assert sorted(seen[1:]) == ["broken", "eye2"] and res3.n_skipped == 1
    assert _rows(out / "regions.csv") == regions


def _check_in_browser(path: Path, page: str) -> None:
    """Render the page in headless Chromium with the network blocked (when Chromium is here)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
            "--host-resolver-rules=MAP * ~NOTFOUND", path.as_uri()]  # fmt: skip
    dom = subprocess.run(args, capture_output=True, text=True, timeout=180, check=True).stdout
    assert "octanomaly cohort report" in dom and "Cluster 0" in dom
    assert dom.count("<img") == page.count("<img") > 0


@pytest.mark.slow
def test_cohort_on_a_two_worker_local_cluster(tmp_path, tiny_run, cohort_inputs):
    from dask.distributed import LocalCluster

    (cohort_inputs / "broken.nii.gz").unlink()
    run_cohort([cohort_inputs], tmp_path / "local", tiny_run, device="cpu")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        dist = run_cohort([cohort_inputs], tmp_path / "dask", tiny_run, device="cpu",
                          scheduler=cluster.scheduler_address)  # fmt: skip
    assert dist.n_failed == 0 and len(dist.results) == 2
    assert _rows(tmp_path / "dask" / "regions.csv") == _rows(tmp_path / "local" / "regions.csv")
    assert _rows(tmp_path / "dask" / "clusters.csv") == _rows(tmp_path / "local" / "clusters.csv")


def test_cohort_cli_reports_bad_volume_and_exits_2(tmp_path, tiny_run, cohort_inputs):
    from octanomaly.cli import app

    args = ["cohort", str(cohort_inputs / "*.nii.gz"), "--out", str(tmp_path / "o"),
            "--model", str(tiny_run), "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert "broken.nii.gz" in res.output and "Traceback" not in res.output
    assert "2 volumes mapped" in res.output


def test_output_folder_inside_an_input_folder_is_refused(tmp_path, tiny_run, cohort_inputs):
    from octanomaly.errors import InputError

    with pytest.raises(InputError, match="inside the input folder"):
        run_cohort([cohort_inputs], cohort_inputs / "out", tiny_run, device="cpu")
    assert not (cohort_inputs / "out").exists()


def test_inputs_from_folders_globs_and_csv(tmp_path, cohort_inputs):
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\nin/eye2.nii.gz,x\nin/eye1.nii.gz,y\n")
    assert [p.name for p in expand_inputs([listing])] == ["eye2.nii.gz", "eye1.nii.gz"]
    from_folder = [p.name for p in expand_inputs([cohort_inputs])]
    assert from_folder == ["broken.nii.gz", "eye1.nii.gz", "eye2.nii.gz"]
    assert [p.name for p in expand_inputs([str(cohort_inputs / "eye*.nii.gz"), listing])] == [
        "eye1.nii.gz", "eye2.nii.gz"]  # fmt: skip
    assert volume_names([Path("a/x.nii.gz"), Path("b/x.nii.gz")]) == ["x", "x_2"]


def test_clusters_recover_phantom_lesion_types():
    """From exact lesion masks, descriptors alone separate the four phantom lesion types."""
    regions, truth = lesion_mask_regions()
    c = cluster_regions(regions)
    assert max(c.bic) == max_k(len(regions)) == 7 and min(c.bic) == 1  # k = 1 .. sqrt(n / 2)
    assert c.k >= 3
    assert adjusted_rand_score(truth, c.labels) >= 0.8
    again = cluster_regions(regions)
    assert np.array_equal(again.labels, c.labels)  # deterministic


def test_a_recalibrated_model_maps_finished_volumes_again(tmp_path, tiny_run, cohort_inputs):
    """Same weights, other calibration: the resume key differs, so no volume is reused."""
    import shutil

    (cohort_inputs / "broken.nii.gz").unlink()
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    out = tmp_path / "out"
    assert run_cohort([cohort_inputs], out, run, device="cpu").n_skipped == 0
    assert run_cohort([cohort_inputs], out, run, device="cpu").n_skipped == 2  # resumed
    cal = json.loads((run / "calibration.json").read_text())
    cal["pixel"]["mean"] += 0.01  # what a new `octanomaly calibrate` would change
    (run / "calibration.json").write_text(json.dumps(cal))
    again = run_cohort([cohort_inputs], out, run, device="cpu")
    assert again.n_skipped == 0 and len(again.results) == 2


def test_run_id_is_the_weights_digest_and_calibration_id_follows_the_calibration(tiny_run):
    """The run id documented in model cards is the first 12 hex digits of the weights' SHA-256;
    the calibration id changes with the calibration files, the run id does not."""
    import hashlib

    from octanomaly.scoring import load_run

    run = load_run(tiny_run, device="cpu")
    weights = (tiny_run / "model.safetensors").read_bytes()
    assert run.run_id == hashlib.sha256(weights).hexdigest()[:12]
    bundled = Path(__file__).parents[1] / "octanomaly" / "bundled" / "ganomaly"
    assert load_run(bundled, "cpu").run_id == "bfb6c75a22b4"  # as its model card says
    assert run.info["calibration_id"] == run.calibration_id and len(run.calibration_id) == 12
    assert run.calibration_id != run.run_id
