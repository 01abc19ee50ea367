"""Bad input through the CLI: one line on stderr naming the file, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from octanomaly.cli import app

runner = CliRunner()


def _empty(tmp: Path) -> Path:
    p = tmp / "empty.dcm"
    p.write_bytes(b"")
    return p


def _random(tmp: Path) -> Path:
    p = tmp / "noise.bin"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    return p


def _missing(tmp: Path) -> Path:
    return tmp / "does-not-exist.nii.gz"


def _no_images(tmp: Path) -> Path:
    d = tmp / "notes-only"
    d.mkdir()
    (d / "README.txt").write_text("no B-scans here")
    (d / "OCT-Info.xml").write_text("<BODY/>")
    return d


def _mixed_sizes(tmp: Path) -> Path:
    d = tmp / "mixed"
    d.mkdir()
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(d / "b1.png")
    Image.fromarray(np.zeros((10, 14), np.uint8)).save(d / "b2.png")
    return d


def _nifti_4d(tmp: Path) -> Path:
    p = tmp / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.float32), np.eye(4)), str(p))
    return p


def _nifti_nan(tmp: Path) -> Path:
    a = np.ones((4, 5, 6), np.float32)
    a[1, 2, 3] = np.nan
    a[0, 0, 0] = np.inf
    p = tmp / "nan.nii.gz"
    nib.save(nib.Nifti1Image(a, np.eye(4)), str(p))
    return p


def _corrupt_image(tmp: Path) -> Path:
    good = tmp / "good.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40), np.uint8)).save(good)
    p = tmp / "corrupt.png"
    p.write_bytes(good.read_bytes()[:200])  # PNG magic, truncated data
    good.unlink()
    return p


# (case, file factory, the path the message must name, words the message must contain)
CASES: list[tuple[str, Callable[[Path], Path], str, str]] = [
    ("empty", _empty, "empty.dcm", "empty"),
    ("random", _random, "noise.bin", "unrecognised format"),
    ("missing", _missing, "does-not-exist.nii.gz", "no such file"),
    ("no-images", _no_images, "notes-only", "no readable B-scan images"),
    ("mixed-sizes", _mixed_sizes, "mixed", "b1.png is 12x10 but b2.png is 14x10"),
    ("nifti-4d", _nifti_4d, "four_d.nii.gz", "4-D"),
    ("nifti-nan", _nifti_nan, "nan.nii.gz", "2 voxels are NaN or infinite"),
    ("corrupt-image", _corrupt_image, "corrupt.png", "corrupt or unreadable png"),
]


def _check_one_line(stderr: str, stdout: str, name: str, words: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("octanomaly: error: ")
    assert name in lines[0] and words in lines[0]
    assert "Traceback" not in stderr + stdout
    assert stdout.strip() == ""


@pytest.mark.parametrize(("case", "make", "name", "words"), CASES, ids=[c[0] for c in CASES])
def test_info_bad_input(tmp_path: Path, case: str, make, name: str, words: str) -> None:
    path = make(tmp_path)
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 2, result.output
    _check_one_line(result.stderr, result.stdout, name, words)


@pytest.mark.parametrize(("case", "make", "name", "words"), CASES, ids=[c[0] for c in CASES])
def test_convert_bad_input_writes_nothing(
    tmp_path: Path, case: str, make, name: str, words: str
) -> None:
    path = make(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = runner.invoke(app, ["convert", str(path), str(out_dir / "vol.nii.gz")])
    assert result.exit_code == 2, result.output
    _check_one_line(result.stderr, result.stdout, name, words)
    assert list(out_dir.iterdir()) == []  # no output, no temporary left behind


def _dicom_cases(tmp: Path) -> list[tuple[Path, str, str]]:
    """A truncated OPT-like DICOM and a CT image (needs the DICOM reader)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def write(name: str, sop: str, modality: str) -> Path:
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop, generate_uid(), modality
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = (
            8,
            8,
            1,
            "MONOCHROME2",
        )
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = bytes(64)
        p = tmp / name
        ds.save_as(p, enforce_file_format=True)
        return p

    import pydicom

    opt = write("trunc.dcm", "1.2.840.10008.5.1.4.1.1.77.1.5.4", "OPT")
    opt.write_bytes(opt.read_bytes()[:-40])
    ct = write("ct.dcm", "1.2.840.10008.5.1.4.1.1.2", "CT")
    return [(opt, "trunc.dcm", "truncated"), (ct, "ct.dcm", "CT")]


def test_dicom_bad_input_when_reader_present(tmp_path: Path) -> None:
    pytest.importorskip("octanomaly.io.dicom")
    for path, name, words in _dicom_cases(tmp_path):
        result = runner.invoke(app, ["info", str(path)])
        assert result.exit_code == 2, result.output
        _check_one_line(result.stderr, result.stdout, name, words)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "octanomaly", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_console_script_one_line_and_debug_traceback(tmp_path: Path) -> None:
    bad = _random(tmp_path)
    proc = _run_cli("info", str(bad))
    assert proc.returncode == 2
    _check_one_line(proc.stderr, proc.stdout, "noise.bin", "unrecognised format")
    debug = _run_cli("--debug", "info", str(bad))
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "InputError" in debug.stderr
