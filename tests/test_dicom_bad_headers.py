"""DICOM headers that disagree with their pixel data: one-line error naming the file, checked
before any large allocation (issue 12, items 3 and 10)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sequence import Sequence
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.errors import InputError
from octanomaly.io import load_volume
from octanomaly.io.dicom_writer import write_opt
from octanomaly.volume import OCTVolume

SPACING = (0.12, 0.0039, 0.0112)
TRANSFER_SYNTAXES = ("explicit-le", "jpeg2000-lossless", "jpeg-baseline")


def _source(tmp_path: Path, ts: str) -> Path:
    data = np.random.default_rng(2).integers(0, 250, size=(8, 40, 48)).astype(np.uint8)
    return write_opt(OCTVolume(data, SPACING), tmp_path / f"src-{ts}.dcm", transfer_syntax=ts)


def _broken(tmp_path: Path, ts: str, name: str, **header: object) -> Path:
    ds = pydicom.dcmread(_source(tmp_path, ts))
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    path = tmp_path / f"{name}-{ts}.dcm"
    ds.save_as(path)
    return path


def _assert_one_line(path: Path, *words: str) -> None:
    with pytest.raises(InputError) as err:
        load_volume(path)
    assert path.name in str(err.value)
    for word in words:
        assert word in str(err.value)
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and path.name in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("ts", TRANSFER_SYNTAXES)
@pytest.mark.parametrize("columns", [47, 50])
def test_columns_that_do_not_match_the_pixels(tmp_path: Path, ts: str, columns: int) -> None:
    path = _broken(tmp_path, ts, f"cols{columns}", Columns=columns)
    words = ("Rows or Columns do not match",) if ts == "explicit-le" else ("40 x 48", "Columns")
    _assert_one_line(path, *words)


@pytest.mark.parametrize("ts", ["jpeg2000-lossless", "jpeg-baseline"])
def test_compressed_frames_with_swapped_rows_and_columns(tmp_path: Path, ts: str) -> None:
    """Same pixel count, other shape: only the codestream header can tell (it must be read)."""
    path = _broken(tmp_path, ts, "swapped", Rows=48, Columns=40)
    _assert_one_line(path, "40 x 48 pixels", "48 x 40")


@pytest.mark.parametrize("ts", TRANSFER_SYNTAXES)
@pytest.mark.parametrize("frames", ["0", "-8"])
def test_number_of_frames_zero_or_negative(tmp_path: Path, ts: str, frames: str) -> None:
    path = _broken(tmp_path, ts, f"nf{frames}", NumberOfFrames=frames)
    _assert_one_line(path, "NumberOfFrames", frames)


@pytest.mark.parametrize("text", ["abc", "8.5"])
def test_number_of_frames_that_is_not_a_whole_number(tmp_path: Path, text: str) -> None:
    """An invalid IS value: one line (pydicom's own warning about it is not printed too)."""
    good = _source(tmp_path, "explicit-le").read_bytes()
    tag = good.index(b"\x28\x00\x08\x00IS")  # NumberOfFrames, explicit VR little endian
    old_length = int.from_bytes(good[tag + 6 : tag + 8], "little")
    value = text.encode() + b" " * (len(text) % 2)
    path = tmp_path / "nf-text.dcm"
    new_length = len(value).to_bytes(2, "little")
    path.write_bytes(good[: tag + 6] + new_length + value + good[tag + 8 + old_length :])
    _assert_one_line(path, "NumberOfFrames", text)


@pytest.mark.parametrize("ts", TRANSFER_SYNTAXES)
@pytest.mark.parametrize("frames", [7, 9])
def test_number_of_frames_that_disagrees_with_the_pixel_data(
    tmp_path: Path, ts: str, frames: int
) -> None:
    """Header and per-frame groups agree with each other but not with the pixels."""
    ds = pydicom.dcmread(_source(tmp_path, ts))
    per = list(ds.PerFrameFunctionalGroupsSequence)
    ds.PerFrameFunctionalGroupsSequence = Sequence((per + per)[:frames])
    ds.NumberOfFrames = frames
    path = tmp_path / f"nf{frames}-{ts}.dcm"
    ds.save_as(path)
    _assert_one_line(path, "8 frames", f"NumberOfFrames is {frames}")


def test_per_frame_groups_that_disagree_with_number_of_frames(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_source(tmp_path, "explicit-le"))
    ds.PerFrameFunctionalGroupsSequence = Sequence(list(ds.PerFrameFunctionalGroupsSequence)[:5])
    ds.save_as(tmp_path / "per5.dcm")
    _assert_one_line(tmp_path / "per5.dcm", "5 items for 8 frames")


@pytest.mark.parametrize("ts", TRANSFER_SYNTAXES)
def test_huge_rows_and_columns_are_refused_before_allocating(
    tmp_path: Path, ts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """65535 x 65535 x 8 frames would be 34 GB; refused from the header, nothing allocated."""
    path = _broken(tmp_path, ts, "huge", Rows=65535, Columns=65535)
    real_empty = np.empty

    def guarded_empty(shape, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert np.prod(shape) < 10_000_000, f"large allocation {shape}"
        return real_empty(shape, *args, **kwargs)

    monkeypatch.setattr(np, "empty", guarded_empty)
    _assert_one_line(path, "65535")


@pytest.mark.parametrize("spacing", [[1e30, 0.0112], [0.0039, 1e-9]])
def test_implausible_pixel_spacing_in_the_header(tmp_path: Path, spacing: list[float]) -> None:
    ds = pydicom.dcmread(_source(tmp_path, "explicit-le"))
    ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = spacing
    ds.save_as(tmp_path / "spacing.dcm")
    _assert_one_line(tmp_path / "spacing.dcm", "outside what OCT devices produce", "--spacing")
    vol = load_volume(tmp_path / "spacing.dcm", spacing=SPACING)  # the user's spacing wins
    assert vol.spacing == SPACING and vol.shape == (8, 40, 48)


def test_implausible_bscan_spacing_from_positions(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_source(tmp_path, "explicit-le"))
    for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        frame.PlanePositionSequence[0].ImagePositionPatient = [0.0, 0.0, 1e6 * i]
    ds.save_as(tmp_path / "far.dcm")
    _assert_one_line(tmp_path / "far.dcm", "B-scan spacing", "outside what OCT devices produce")


def test_folder_of_single_frames_checks_each_file(tmp_path: Path) -> None:
    from pydicom.uid import generate_uid

    folder = tmp_path / "series"
    folder.mkdir()
    series = generate_uid()
    for k in range(3):
        ds = pydicom.dcmread(_source(tmp_path, "explicit-le"))
        frame = ds.pixel_array[k]
        ds.NumberOfFrames = 1
        ds.PerFrameFunctionalGroupsSequence = Sequence([ds.PerFrameFunctionalGroupsSequence[k]])
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
        ds.PixelData = frame.tobytes() if k != 1 else frame[:, :40].tobytes()
        ds.save_as(folder / f"b{k}.dcm")
    _assert_one_line(folder / "b1.dcm", "Rows or Columns do not match")
    with pytest.raises(InputError, match="b1.dcm"):
        load_volume(folder)
