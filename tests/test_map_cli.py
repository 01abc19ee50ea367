"""``octanomaly map``: outputs per input, batches with bad inputs, model errors, DICOM maps."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.data.phantom import make_phantom
from octanomaly.io.nifti import write_volume
from tests._summary_text import text_values

runner = CliRunner()
OUTPUTS = ("_volume.nii.gz", "_anomaly.nii.gz", "_mask.nii.gz", "_enface.png", "_summary.json")


def _volume(tmp: Path, name: str = "scan.nii.gz", seed: int = 5) -> Path:
    vol = make_phantom(seed, n_bscans=3, depth=128, width=128, lesions="drusen").volume
    return write_volume(vol, tmp / name)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_outputs_beside_input_and_input_untouched(tmp_path, tiny_run):
    src = _volume(tmp_path)
    before = _sha(src)
    res = runner.invoke(app, ["map", str(src), "--model", str(tiny_run), "--device", "cpu",
                              "--all-bscans", "--threshold", "95"])  # fmt: skip
    assert res.exit_code == 0, res.output
    for suffix in OUTPUTS:
        assert (tmp_path / f"scan{suffix}").is_file()
    assert len(list((tmp_path / "scan_bscans").glob("*.png"))) == 3
    assert _sha(src) == before
    summary = json.loads((tmp_path / "scan_summary.json").read_text())
    assert summary["threshold_percentile"] == 95.0 and summary["shape"] == [3, 128, 128]
    assert "ok" in res.stdout


def test_batch_with_a_bad_input_keeps_going(tmp_path, tiny_run):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    good = _volume(tmp_path, "good.nii.gz")
    out = tmp_path / "out"
    res = runner.invoke(app, ["map", str(bad), str(good), "--model", str(tiny_run),
                              "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("octanomaly: error")]
    assert len(errors) == 1 and "broken.nii.gz" in errors[0]
    assert "Traceback" not in res.output
    for suffix in OUTPUTS:
        assert (out / f"good{suffix}").is_file()
    assert not list(out.glob("broken*"))
    assert "failed" in res.stdout and "ok" in res.stdout


def test_no_model_and_no_bundled_model(tmp_path, monkeypatch):
    monkeypatch.setattr("octanomaly.runs.BUNDLED_DIR", tmp_path / "no-bundled")
    src = _volume(tmp_path)
    res = runner.invoke(app, ["map", str(src)])
    assert res.exit_code == 2
    assert "--model RUN_DIR" in res.stderr and "octanomaly train" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "scan_anomaly.nii.gz").exists()


def test_bad_model_folder_is_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    src = _volume(tmp_path)
    res = runner.invoke(app, ["map", str(src), "--model", str(tmp_path / "run")])
    assert res.exit_code == 2 and "not a run folder: model.safetensors" in res.stderr


@pytest.mark.parametrize("frame_of_reference", [True, False])
def test_dicom_input_parametric_map(tmp_path, tiny_run, frame_of_reference):
    from octanomaly.io.dicom_writer import write_opt

    vol = make_phantom(3, n_bscans=3, depth=128, width=128, lesions="drusen").volume
    src = write_opt(vol, tmp_path / "opt.dcm", frame_of_reference=frame_of_reference,
                    patient={"PatientName": "Doe^Jonathan", "PatientID": "PID-4711"})  # fmt: skip
    res = runner.invoke(app, ["map", str(src), "--model", str(tiny_run), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    pm = tmp_path / "opt_anomaly_pm.dcm"
    summary_text = (tmp_path / "opt_summary.json").read_text()
    assert "Doe" not in summary_text  # the ID "4711" in no text value (floats may hold it)
    assert not [v for v in text_values(json.loads(summary_text)) if "4711" in v]
    if not frame_of_reference:
        assert (
            not pm.exists()
            and "Frame of Reference" in json.loads(summary_text)["notes"]["parametric_map"]
        )
        return
    import pydicom

    ds = pydicom.dcmread(pm)
    assert ds.Modality == "OPT" or ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert int(ds.NumberOfFrames) == 3 and (ds.Rows, ds.Columns) == (128, 128)
    assert str(ds.get("PatientName", "")) == ""


@pytest.mark.parametrize("name", ["ganomaly", "fanogan", "anogan"])
def test_every_bundled_model_maps_a_bundled_example(name, tmp_path):
    """The three shipped models by name: the normal example is not flagged, the DME one is."""
    from octanomaly.runs import bundled_models

    assert name in bundled_models()
    examples = Path(__file__).resolve().parents[1] / "examples" / "bscans"
    dme, normal = sorted(examples.glob("DME-*.jpeg"))[0], sorted(examples.glob("NORMAL-*.jpeg"))[0]
    out = tmp_path / "out"
    res = runner.invoke(app, ["map", str(dme), str(normal), "--model", name, "--out", str(out)])
    assert res.exit_code == 0, res.output
    flagged = {}
    for src in (dme, normal):
        summary = json.loads((out / f"{src.stem}_summary.json").read_text())
        assert summary["model"]["name"] == name
        flagged[src.stem[:3]] = len(summary["flagged_bscans"])
    assert flagged == {"DME": 1, "NOR": 0}
