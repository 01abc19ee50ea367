"""``map`` writes the findings with the other outputs: regions CSV, aligned label map, ETDRS
sectors and fovea in the summary, in the same manifest (one set)."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.data.phantom import make_phantom
from octanomaly.io.dicom_writer import write_opt


def test_map_writes_regions_and_etdrs(tmp_path, tiny_run):
    ph = make_phantom(4, n_bscans=4, depth=128, width=128, lesions="drusen,hrf", laterality="OS")
    src = write_opt(ph.volume, tmp_path / "eye.dcm")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["map", str(src), "--model", str(tiny_run), "--device", "cpu",
                                   "--out", str(out), "--threshold", "90"])  # fmt: skip
    assert res.exit_code == 0, res.output
    labels_img = nib.load(out / "eye_regions.nii.gz")
    anomaly_img = nib.load(out / "eye_anomaly.nii.gz")
    np.testing.assert_array_equal(labels_img.affine, anomaly_img.affine)
    assert labels_img.shape == anomaly_img.shape
    labels = np.asarray(labels_img.dataobj)
    mask = np.asarray(nib.load(out / "eye_mask.nii.gz").dataobj)
    assert np.array_equal(labels > 0, mask > 0)  # every anomalous voxel is in one region
    with open(out / "eye_regions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["region_id"]) for r in rows] == sorted(set(np.unique(labels)) - {0})
    summary = json.loads((out / "eye_summary.json").read_text())
    found = summary["findings"]
    assert found["n_regions"] == len(rows) and found["laterality"] == "OS"
    assert found["fovea"]["method"] in ("thickness-pit", "scan-centre") and found["fovea"]["note"]
    assert "inner_nasal" in found["etdrs"]["sectors"]
    assert {"eye_regions.csv", "eye_regions.nii.gz"} <= set(summary["manifest"]["files"])
    # a rerun replaces its own set, findings included (they are in the manifest)
    again = CliRunner().invoke(app, ["map", str(src), "--model", str(tiny_run), "--device", "cpu",
                                     "--out", str(out), "--threshold", "90"])  # fmt: skip
    assert again.exit_code == 0, again.output


def test_findings_use_the_layers_scoring_found(tiny_run, monkeypatch):
    """The regions reuse the ILM/BM of the map's own preprocessing (no second detection),
    and those are the lines a fresh detection gives."""
    from octanomaly.findings import regions
    from octanomaly.scoring import load_run, map_volume

    ph = make_phantom(5, n_bscans=3, depth=128, width=128, lesions="drusen")
    result = map_volume(ph.volume, load_run(tiny_run, "cpu"), device="cpu")
    ilm, bm = regions.volume_layers(ph.volume)
    np.testing.assert_array_equal(result.ilm, ilm)
    np.testing.assert_array_equal(result.bm, bm)
    expected = regions.find_regions(result.mask, result.anomaly, ph.volume, ilm, bm)

    def no_second_detection(volume):  # noqa: ANN001, ANN202
        raise AssertionError("layers detected a second time")

    monkeypatch.setattr(regions, "volume_layers", no_second_detection)
    got = regions.volume_findings(result, ph.volume)
    np.testing.assert_array_equal(got.labels, expected.labels)
    assert got.fovea == expected.fovea
