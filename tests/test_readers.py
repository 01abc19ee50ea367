"""The reader contract and its one suffix table (octanomaly.io), and the ``--spacing`` override
applied once by ``load_volume`` whatever the format."""

from __future__ import annotations

import inspect
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.errors import InputError
from octanomaly.io import (
    find_reader,
    load_volume,
    may_be_volume,
    nifti,
    readers,
    suffix_table,
    volume_stem,
    volume_suffix,
)
from octanomaly.io.dicom_writer import write_opt
from octanomaly.scoring.outputs import output_stem
from octanomaly.volume import OCTVolume

SPACING = (0.12, 0.0039, 0.0112)
OVERRIDE = (0.05, 0.004, 0.01)


def _volume() -> OCTVolume:
    data = np.random.default_rng(0).integers(0, 250, (3, 40, 48)).astype(np.uint8)
    return OCTVolume(data, SPACING)


def _image(path: Path) -> Path:
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".png": "PNG"}.get(path.suffix, "TIFF")
    Image.fromarray(_volume().data[0]).save(path, format=fmt)
    return path


def _heyex_mat(path: Path) -> Path:
    frames = {f"B{i}": np.full((40, 48), i / 10, np.float32) for i in range(3)}
    savemat(path, {**frames, "NumBScans": 3, "SizeX": 48, "SizeZ": 40, "ScaleX": 0.0112,
                   "ScaleZ": 0.0039, "Distance": 0.12})  # fmt: skip
    return path


def _magic(head: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(head + bytes(512))
        return path

    return make


def _zeiss(path: Path) -> Path:
    with open(path, "wb") as f:  # sparse: the size is what the sniffer checks
        f.truncate(1024 * 200 * 200)
    return path


#: A file of each claimed suffix, made so that the claiming reader takes it.
MAKERS: dict[str, Callable[[Path], Path]] = {
    ".dcm": lambda p: write_opt(_volume(), p),
    ".dicom": lambda p: write_opt(_volume(), p),
    ".nii": lambda p: nifti.write_volume(_volume(), p),
    ".nii.gz": lambda p: nifti.write_volume(_volume(), p),
    ".png": _image,
    ".jpg": _image,
    ".jpeg": _image,
    ".bmp": _image,
    ".tif": _image,
    ".tiff": _image,
    ".ome.tif": _image,
    ".ome.tiff": _image,
    ".vol": _magic(struct.pack("<12s", b"HSF-OCT-103")),
    ".mat": _heyex_mat,
    ".e2e": _magic(b"CMDb"),
    ".fda": _magic(b"FOCT" + b"FDA"),
    ".fds": _magic(b"FOCT" + b"FDS"),
    ".img": _zeiss,
}
#: Suffixes whose sample is fully read here (the others need the vendor extra and real files).
READ_HERE = {".dcm", ".dicom", ".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".bmp", ".tif",
             ".tiff", ".ome.tif", ".ome.tiff", ".mat"}  # fmt: skip


def test_every_reader_keeps_the_contract() -> None:
    for reader in readers():
        assert isinstance(reader.FORMAT, str) and reader.FORMAT
        suffixes = reader.SUFFIXES
        assert suffixes and all(s.startswith(".") and s == s.lower() for s in suffixes)
        assert callable(reader.sniff)
        assert list(inspect.signature(reader.read).parameters) == ["path"]  # no spacing


def test_the_table_holds_every_reader_suffix_once() -> None:
    table = suffix_table()
    assert set(table) == {s for r in readers() for s in r.SUFFIXES}
    assert set(table) == set(MAKERS)  # a new suffix needs a sample here


@pytest.mark.parametrize("suffix", sorted(MAKERS))
def test_every_claimed_suffix_is_read_by_its_reader(tmp_path: Path, suffix: str) -> None:
    path = MAKERS[suffix](tmp_path / f"scan{suffix}")
    claimed = suffix_table()[suffix]
    assert volume_suffix(path) == suffix and volume_stem(path) == "scan"
    assert output_stem(path) == "scan"
    assert find_reader(path) is claimed
    if suffix in READ_HERE:
        vol = load_volume(path)
        assert vol.shape[1:] == (40, 48) and vol.source_path == path


def test_content_wins_over_the_suffix(tmp_path: Path) -> None:
    path = _image(tmp_path / "b.png").rename(tmp_path / "really-a-png.dcm")
    assert find_reader(path).FORMAT == "images"
    assert load_volume(path).source_format == "images"


def test_unknown_suffix_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.xyz"
    path.write_bytes(np.random.default_rng(3).bytes(600))
    with pytest.raises(InputError) as err:
        load_volume(path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and "unrecognised format" in text
    assert ".nii.gz" in text and ".dcm" in text  # what is readable comes from the table


def test_claimed_suffix_with_other_content_says_so(tmp_path: Path) -> None:
    path = tmp_path / "scan.nii"
    path.write_bytes(b"not a nifti header" * 40)
    with pytest.raises(InputError, match=r"scan\.nii: unrecognised content for a \.nii file"):
        load_volume(path)


def test_side_files_are_not_volumes(tmp_path: Path) -> None:
    for name in ("a.csv", "b.json", "c.xml", "d.npy", ".hidden.png"):
        (tmp_path / name).write_text("x")
        assert not may_be_volume(tmp_path / name)
    (tmp_path / "notes").write_text("plain text, no suffix")
    assert not may_be_volume(tmp_path / "notes")
    dicom_no_suffix = write_opt(_volume(), tmp_path / "IM0001")
    assert may_be_volume(dicom_no_suffix) and may_be_volume(tmp_path)
    assert may_be_volume(_image(tmp_path / "e.png"))


def test_info_lists_the_table() -> None:
    import json

    res = CliRunner().invoke(app, ["info", "--formats", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {s: r.FORMAT for s, r in suffix_table().items()}


# ------------------------------------------------------------------ spacing, applied once


def _folder_of_images(path: Path) -> Path:
    path.mkdir()
    for i in range(3):
        Image.fromarray(_volume().data[i]).save(path / f"b{i}.png")
    return path


def _degenerate_nifti(path: Path) -> Path:
    import nibabel as nib

    affine = np.diag([-0.0112, -0.0039, 0.12, 1.0])
    affine[:3, 2] = 0.0  # no usable spacing: the override is required
    img = nifti.to_nifti_image(_volume().data, SPACING)
    img.set_sform(affine, code=1)
    img.set_qform(None, code=0)
    nib.save(img, str(path))
    with pytest.raises(InputError, match="zero or non-finite axis"):
        load_volume(path)
    return path


SOURCES: dict[str, Callable[[Path], Path]] = {
    "dicom": lambda d: write_opt(_volume(), d / "v.dcm"),
    "nifti": lambda d: nifti.write_volume(_volume(), d / "v.nii.gz"),
    "nifti-degenerate": lambda d: _degenerate_nifti(d / "z.nii.gz"),
    "image": lambda d: _image(d / "v.png"),
    "image-folder": lambda d: _folder_of_images(d / "scans"),
    "heyex-mat": lambda d: _heyex_mat(d / "v.mat"),
}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_spacing_override_is_the_same_on_every_format(tmp_path: Path, kind: str) -> None:
    path = SOURCES[kind](tmp_path)
    vol = load_volume(path, spacing=OVERRIDE)
    assert vol.spacing == OVERRIDE and not vol.spacing_is_default
    assert vol.metadata["spacing_source"] == "option"


def test_bad_override_is_refused_once_naming_the_option(tmp_path: Path) -> None:
    path = nifti.write_volume(_volume(), tmp_path / "v.nii.gz")
    with pytest.raises(InputError, match=r"^--spacing: .*outside what OCT devices produce"):
        load_volume(path, spacing=(0.1, 0.0039, 1e-9))
    assert load_volume(path).spacing == pytest.approx(SPACING)  # the file's own spacing
