"""DICOM OPT reader and writer: round trips, an independent OPT, folders, bad inputs, PHI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.errors import InputError
from octanomaly.io import dicom, load_volume
from octanomaly.io.dicom_writer import OPT_SOP_CLASS, write_opt
from octanomaly.volume import OCTVolume

SPACING = (0.12, 0.0039, 0.0112)  # bscan, axial, lateral (mm)


def _volume(dtype: type = np.uint8, shape: tuple[int, int, int] = (6, 40, 32)) -> OCTVolume:
    rng = np.random.default_rng(7)
    hi = 255 if dtype == np.uint8 else 4000
    data = rng.integers(0, hi, size=shape).astype(dtype)
    data[:, 0, 0] = np.arange(shape[0])  # every B-scan distinguishable
    return OCTVolume(data=data, spacing=SPACING, laterality="OS")


def _item(**elements: object) -> Dataset:
    item = Dataset()
    for keyword, value in elements.items():
        setattr(item, keyword, value)
    return item


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _independent_opt(
    data: np.ndarray,
    bscan: float,
    axial: float,
    lateral: float,
    disk_order: np.ndarray,
    frame_of_reference: bool = True,
    reverse_stack_numbers: bool = False,
) -> Dataset:
    """An OPT dataset built directly with pydicom, as another tool might write it.

    Per-frame PixelMeasures and PlanePosition (oblique orientation whose stack normal points to
    -x), frames stored on disk in ``disk_order``; without a Frame of Reference only the in-stack
    position numbers say where a frame belongs (``reverse_stack_numbers`` makes them disagree
    with the positions, which must then win).
    """
    n, rows, cols = data.shape
    ds = Dataset()
    ds.file_meta = _file_meta(OPT_SOP_CLASS, generate_uid())
    ds.SOPClassUID = OPT_SOP_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OPT"
    ds.PatientName = "Roe^Richard"
    ds.PatientID = "IND-4242"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Manufacturer = "Independent Tool"
    ds.ImageLaterality = "R"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    bits = 8 * data.dtype.itemsize
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = n
    # Rows and columns oblique in the y-z plane; the stack normal (row x column) is -x.
    row_dir = np.array([0.0, 0.6, -0.8])
    col_dir = np.array([0.0, -0.8, -0.6])
    normal = np.cross(row_dir, col_dir)
    assert np.allclose(normal, [-1, 0, 0])
    origin = np.array([10.0, -3.0, 5.0])
    if frame_of_reference:
        ds.FrameOfReferenceUID = generate_uid()
        shared = _item(
            PlaneOrientationSequence=Sequence(
                [_item(ImageOrientationPatient=[*row_dir.tolist(), *col_dir.tolist()])]
            )
        )
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in disk_order:  # spatial index of the frame stored at this position on disk
        frame = Dataset()
        frame.PixelMeasuresSequence = Sequence(
            [_item(PixelSpacing=[axial, lateral], SliceThickness=bscan)]
        )
        frame.FrameContentSequence = Sequence(
            [
                _item(
                    InStackPositionNumber=n - int(k) if reverse_stack_numbers else int(k) + 1,
                    StackID="A",
                )
            ]
        )
        if frame_of_reference:
            pos = origin + normal * bscan * int(k)
            frame.PlanePositionSequence = Sequence(
                [_item(ImagePositionPatient=[round(float(v), 6) for v in pos])]
            )
        per_frame.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.ascontiguousarray(data[disk_order]).tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    return ds


def _single_frame(
    frame: np.ndarray,
    series: str,
    position: float | None,
    instance: int,
    spacing: tuple[float, float] = (0.005, 0.01),
) -> Dataset:
    """One B-scan as a secondary-capture DICOM with modality OPT (as devices export them)."""
    ds = Dataset()
    ds.file_meta = _file_meta(SecondaryCaptureImageStorage, generate_uid())
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OPT"
    ds.SeriesInstanceUID = series
    ds.InstanceNumber = instance
    ds.Laterality = "L"
    if position is not None:
        ds.ImagePositionPatient = [0.0, 0.0, position]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 0.2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = frame.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = frame.tobytes()
    ds["PixelData"].VR = "OB"
    return ds


def _reorder_on_disk(path: Path, perm: np.ndarray, out: Path) -> None:
    """Rewrite a written OPT with frames (pixels and per-frame groups) stored in ``perm`` order."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    per = list(ds.PerFrameFunctionalGroupsSequence)
    ds.PerFrameFunctionalGroupsSequence = Sequence([per[i] for i in perm])
    ds.PixelData = np.ascontiguousarray(pixels[perm]).tobytes()
    ds.save_as(out, enforce_file_format=True)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_round_trip_exact(tmp_path: Path, dtype: type) -> None:
    vol = _volume(dtype)
    path = write_opt(vol, tmp_path / "vol.dcm")
    assert dicom.sniff(path)
    got = load_volume(path)
    assert got.source_format == "dicom-opt"
    assert got.data.dtype == dtype
    np.testing.assert_array_equal(got.data, vol.data)
    np.testing.assert_allclose(got.spacing, SPACING, rtol=1e-9)
    assert got.laterality == "OS"
    assert not got.spacing_is_default
    assert got.metadata["SOPClassUID"] == OPT_SOP_CLASS
    assert got.metadata["BitsStored"] == 8 * np.dtype(dtype).itemsize
    assert got.metadata["FrameOfReferenceUID"]
    assert got.metadata["frame_order_from"] == "ImagePositionPatient"
    assert got.phi.get("PatientName") is None


def test_round_trip_shuffled_frames_load_in_spatial_order(tmp_path: Path) -> None:
    vol = _volume(np.uint16)
    path = write_opt(vol, tmp_path / "vol.dcm")
    perm = np.array([3, 0, 5, 1, 4, 2])
    _reorder_on_disk(path, perm, tmp_path / "shuffled.dcm")
    assert (pydicom.dcmread(tmp_path / "shuffled.dcm").pixel_array[0] == vol.data[3]).all()
    got = load_volume(tmp_path / "shuffled.dcm")
    np.testing.assert_array_equal(got.data, vol.data)
    np.testing.assert_allclose(got.spacing, SPACING, rtol=1e-9)


def test_round_trip_without_frame_of_reference(tmp_path: Path) -> None:
    vol = _volume()
    path = write_opt(vol, tmp_path / "nofor.dcm", frame_of_reference=False)
    ds = pydicom.dcmread(path)
    assert "FrameOfReferenceUID" not in ds
    assert "PlanePositionSequence" not in ds.PerFrameFunctionalGroupsSequence[0]
    _reorder_on_disk(path, np.array([5, 4, 3, 2, 1, 0]), tmp_path / "rev.dcm")
    got = load_volume(tmp_path / "rev.dcm")
    np.testing.assert_array_equal(got.data, vol.data)
    np.testing.assert_allclose(got.spacing, SPACING, rtol=1e-9)  # bscan from SliceThickness
    assert got.metadata["frame_order_from"] == "InStackPositionNumber"
    assert "FrameOfReferenceUID" not in got.metadata


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_jpeg2000_lossless_round_trip(tmp_path: Path, dtype: type) -> None:
    vol = _volume(dtype)
    path = write_opt(vol, tmp_path / "j2k.dcm", transfer_syntax="jpeg2000-lossless")
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == JPEG2000Lossless
    got = load_volume(path)
    np.testing.assert_array_equal(got.data, vol.data)
    assert got.metadata["TransferSyntax"].startswith("JPEG 2000")


def test_jpeg_baseline_is_close_and_marked_lossy(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:40, 0:32]
    smooth = np.stack([(yy * 4 + xx * 2 + 10 * k) % 250 for k in range(4)]).astype(np.uint8)
    vol = OCTVolume(data=smooth, spacing=SPACING, laterality="OD")
    path = write_opt(vol, tmp_path / "jpg.dcm", transfer_syntax="jpeg-baseline")
    ds = pydicom.dcmread(path)
    assert ds.LossyImageCompression == "01"
    got = load_volume(path)
    assert got.shape == vol.shape and got.laterality == "OD"
    assert np.abs(got.data.astype(int) - smooth).mean() < 2.0
    with pytest.raises(ValueError, match="8-bit"):
        write_opt(_volume(np.uint16), tmp_path / "x.dcm", transfer_syntax="jpeg-baseline")


def test_writer_is_deterministic_refuses_floats_and_never_overwrites_input(tmp_path: Path) -> None:
    from datetime import datetime

    vol = _volume()
    when = datetime(2024, 1, 2, 3, 4, 5)
    a = write_opt(vol, tmp_path / "a.dcm", timestamp=when).read_bytes()
    b = write_opt(vol, tmp_path / "b.dcm", timestamp=when).read_bytes()
    assert a == b
    with pytest.raises(ValueError, match="integer"):
        write_opt(OCTVolume(vol.data.astype(np.float32), SPACING), tmp_path / "f.dcm")
    loaded = load_volume(tmp_path / "a.dcm")
    with pytest.raises(InputError):
        write_opt(loaded, tmp_path / "a.dcm")
    assert (tmp_path / "a.dcm").read_bytes() == a
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcm", "b.dcm"]


def test_written_file_has_opt_modules(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_opt(_volume(), tmp_path / "v.dcm"))
    assert ds.SOPClassUID == OPT_SOP_CLASS and ds.Modality == "OPT"
    assert ds.ImageLaterality == "L" and int(ds.NumberOfFrames) == 6
    shared = ds.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [SPACING[1], SPACING[2]]
    assert float(measures.SliceThickness) == SPACING[0]
    assert len(shared.PlaneOrientationSequence[0].ImageOrientationPatient) == 6
    assert shared.FrameAnatomySequence[0].FrameLaterality == "L"
    per = ds.PerFrameFunctionalGroupsSequence
    z = [float(f.PlanePositionSequence[0].ImagePositionPatient[2]) for f in per]
    np.testing.assert_allclose(np.diff(z), SPACING[0])
    assert [f.FrameContentSequence[0].InStackPositionNumber for f in per] == list(range(1, 7))
    assert len(ds.DimensionIndexSequence) == 2 and ds.DimensionOrganizationSequence
    assert ds.PatientName == "" and ds.PatientID == ""


# --------------------------------------------------------------------------- independent OPT


@pytest.mark.parametrize("frame_of_reference", [True, False])
def test_independent_opt_shape_spacing_order_and_j2k(
    tmp_path: Path, frame_of_reference: bool
) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 1000, size=(5, 40, 36)).astype(np.uint16)
    disk_order = np.array([2, 4, 0, 3, 1])
    ds = _independent_opt(
        data, 0.06, 0.0035, 0.0057, disk_order, frame_of_reference, frame_of_reference
    )
    plain = tmp_path / "independent.dcm"
    ds.save_as(plain, enforce_file_format=True)
    got = load_volume(plain)
    assert got.shape == (5, 40, 36)
    np.testing.assert_allclose(got.spacing, (0.06, 0.0035, 0.0057), rtol=1e-6)
    np.testing.assert_array_equal(got.data, data)
    expected_source = "ImagePositionPatient" if frame_of_reference else "InStackPositionNumber"
    assert got.metadata["frame_order_from"] == expected_source
    assert got.laterality == "OD"
    assert got.metadata["Manufacturer"] == "Independent Tool"
    assert got.phi["PatientName"] == "Roe^Richard"
    assert "Roe" not in json.dumps(got.metadata)

    ds.compress(JPEG2000Lossless, np.ascontiguousarray(data[disk_order]))
    j2k = tmp_path / "independent-j2k.dcm"
    ds.save_as(j2k, enforce_file_format=True)
    got_j2k = load_volume(j2k)
    np.testing.assert_array_equal(got_j2k.data, got.data)
    assert got_j2k.spacing == got.spacing


def test_dimension_index_values_order_frames_without_positions(tmp_path: Path) -> None:
    data = np.arange(4 * 8 * 6, dtype=np.uint8).reshape(4, 8, 6)
    ds = _independent_opt(data, 0.1, 0.004, 0.01, np.array([1, 3, 0, 2]), False)
    ds.DimensionIndexSequence = Sequence(
        [
            _item(DimensionIndexPointer=0x00209056, FunctionalGroupPointer=0x00209111),
            _item(DimensionIndexPointer=0x00209057, FunctionalGroupPointer=0x00209111),
        ]
    )
    # Index 0 (a decoy that would mis-order frames) is not the in-stack position; index 1 is.
    for frame in ds.PerFrameFunctionalGroupsSequence:
        content = frame.FrameContentSequence[0]
        content.DimensionIndexValues = [
            9 - content.InStackPositionNumber % 2,
            content.InStackPositionNumber,
        ]
        del content.InStackPositionNumber
    ds.save_as(tmp_path / "dim.dcm", enforce_file_format=True)
    got = load_volume(tmp_path / "dim.dcm")
    np.testing.assert_array_equal(got.data, data)
    assert got.metadata["frame_order_from"] == "DimensionIndexValues"


def test_preamble_less_dicom_is_sniffed_and_read(tmp_path: Path) -> None:
    data = np.arange(3 * 8 * 6, dtype=np.uint8).reshape(3, 8, 6)
    ds = _independent_opt(data, 0.1, 0.004, 0.01, np.arange(3), True)
    del ds.file_meta
    path = tmp_path / "bare.bin"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    assert dicom.sniff(path)
    got = load_volume(path)
    np.testing.assert_array_equal(got.data, data)
    assert got.metadata["frame_order_from"] == "ImagePositionPatient"
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x08\x00" + bytes(range(200)))
    assert not dicom.sniff(junk)


# --------------------------------------------------------------------------- folders


def test_folder_of_single_frame_dicoms(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = rng.integers(0, 255, size=(4, 16, 12)).astype(np.uint8)
    series = generate_uid()
    folder = tmp_path / "series"
    folder.mkdir()
    # File names and instance numbers disagree with the spatial order on purpose.
    names = ["c.dcm", "a.dcm", "d.dcm", "b.dcm"]
    for k, name in enumerate(names):
        ds = _single_frame(data[k], series, position=0.25 * k, instance=4 - k)
        ds.save_as(folder / name, enforce_file_format=True)
    assert dicom.sniff(folder)
    got = load_volume(folder)
    assert got.source_format == "dicom-series"
    np.testing.assert_array_equal(got.data, data)
    np.testing.assert_allclose(got.spacing, (0.25, 0.005, 0.01))
    assert got.laterality == "OS"
    assert got.metadata["n_files"] == 4
    with pytest.raises(InputError, match="overwrite"):  # never over one of the input files
        write_opt(got, folder / "a.dcm")
    written = write_opt(got, tmp_path / "stack.dcm")
    np.testing.assert_array_equal(load_volume(written).data, data)


def test_folder_without_positions_sorts_by_instance_number(tmp_path: Path) -> None:
    data = np.arange(3 * 6 * 5, dtype=np.uint8).reshape(3, 6, 5)
    series = generate_uid()
    for k in range(3):
        ds = _single_frame(data[k], series, position=None, instance=k + 1)
        ds.save_as(tmp_path / f"z{9 - k}.dcm", enforce_file_format=True)
    got = load_volume(tmp_path)
    np.testing.assert_array_equal(got.data, data)
    assert got.spacing[0] == pytest.approx(0.2)  # SliceThickness
    assert got.metadata["frame_order_from"] == "InstanceNumber"


def test_mixed_series_folder_is_refused(tmp_path: Path) -> None:
    frame = np.zeros((6, 5), dtype=np.uint8)
    for k in range(4):
        ds = _single_frame(frame, generate_uid() if k == 3 else "1.2.3.4", 0.1 * k, k + 1)
        ds.save_as(tmp_path / f"{k}.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match="2 series") as err:
        load_volume(tmp_path)
    assert str(tmp_path) in str(err.value)


# --------------------------------------------------------------------------- bad inputs


def _ct(path: Path, with_pixels: bool = True) -> Path:
    ds = Dataset()
    ds.file_meta = _file_meta(CTImageStorage, generate_uid())
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    if with_pixels:
        ds.PixelData = np.zeros((4, 4), np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _assert_cli_one_line(path: Path, *words: str) -> None:
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert path.name in lines[0]
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    for ts in ("explicit-le", "jpeg2000-lossless"):
        full = write_opt(_volume(), tmp_path / f"full-{ts}.dcm", transfer_syntax=ts).read_bytes()
        cut = tmp_path / f"cut-{ts}.dcm"
        cut.write_bytes(full[: int(len(full) * keep)])
        with pytest.raises(InputError, match="truncated") as err:
            load_volume(cut)
        assert cut.name in str(err.value)
        _assert_cli_one_line(cut, "truncated")


def test_ct_dicom_is_refused_saying_what_it_is(tmp_path: Path) -> None:
    path = _ct(tmp_path / "ct.dcm")
    with pytest.raises(InputError) as err:
        load_volume(path)
    message = str(err.value)
    assert "ct.dcm" in message and "CT Image Storage" in message
    assert "Ophthalmic Tomography" in message
    _assert_cli_one_line(path, "CT Image Storage")


def test_opt_without_pixel_data(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_opt(_volume(), tmp_path / "v.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match="no pixel data") as err:
        load_volume(tmp_path / "nopix.dcm")
    assert "nopix.dcm" in str(err.value)
    _assert_cli_one_line(tmp_path / "nopix.dcm", "no pixel data")


def test_jpeg2000_without_decoder_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom.pixels import get_decoder

    path = write_opt(_volume(), tmp_path / "j2k.dcm", transfer_syntax="jpeg2000-lossless")
    decoder = get_decoder(JPEG2000Lossless)
    assert decoder.is_available
    monkeypatch.setattr(decoder, "_available", {})  # as if no plugin were installed
    assert not decoder.is_available
    with pytest.raises(InputError, match="pip install pylibjpeg pylibjpeg-openjpeg") as err:
        load_volume(path)
    assert "j2k.dcm" in str(err.value)
    _assert_cli_one_line(path, "pip install pylibjpeg pylibjpeg-openjpeg")


def test_colour_and_multi_stack_are_refused_gray_rgb_is_accepted(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 255, size=(6, 5), dtype=np.uint8)
    for name, rgb in (("gray.dcm", np.stack([gray] * 3, -1)), ("colour.dcm", None)):
        if rgb is None:
            rgb = rng.integers(0, 255, size=(6, 5, 3), dtype=np.uint8)
        ds = _single_frame(gray, "1.2.3", None, 1)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.PixelData = rgb.tobytes()
        ds.save_as(tmp_path / name, enforce_file_format=True)
    np.testing.assert_array_equal(load_volume(tmp_path / "gray.dcm").data[0], gray)
    with pytest.raises(InputError, match="colour"):
        load_volume(tmp_path / "colour.dcm")

    data = np.zeros((4, 6, 5), dtype=np.uint8)
    ds = _independent_opt(data, 0.1, 0.004, 0.01, np.arange(4), False)
    ds.PerFrameFunctionalGroupsSequence[3].FrameContentSequence[0].StackID = "B"
    ds.save_as(tmp_path / "stacks.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match="2 stacks"):
        load_volume(tmp_path / "stacks.dcm")


# --------------------------------------------------------------------------- CLI: PHI, convert


def test_info_json_hides_patient_fields_unless_phi(tmp_path: Path) -> None:
    patient = {"PatientName": "Doe^Jane", "PatientID": "PID-777", "PatientBirthDate": "19700101"}
    path = write_opt(_volume(), tmp_path / "p.dcm", patient=patient)
    runner = CliRunner()
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["shape"] == [6, 40, 32] and summary["format"] == "dicom-opt"
    for secret in ("Doe", "PID-777", "19700101"):
        assert secret not in result.stdout
    with_phi = runner.invoke(app, ["info", str(path), "--json", "--phi"])
    assert with_phi.exit_code == 0
    phi = json.loads(with_phi.stdout)["phi"]
    assert phi["PatientName"] == "Doe^Jane" and phi["PatientID"] == "PID-777"
    table = runner.invoke(app, ["info", str(path)])
    assert table.exit_code == 0 and "Doe" not in table.output and "PID-777" not in table.output


def test_convert_dicom_to_nifti(tmp_path: Path) -> None:
    vol = _volume(np.uint16)
    src = write_opt(vol, tmp_path / "v.dcm", patient={"PatientName": "Doe^Jane"})
    out = tmp_path / "v.nii.gz"
    result = CliRunner().invoke(app, ["convert", str(src), str(out)])
    assert result.exit_code == 0, result.output
    img = nib.load(str(out))
    np.testing.assert_array_equal(np.asarray(img.dataobj), np.transpose(vol.data, (2, 1, 0)))
    bscan, axial, lateral = SPACING
    np.testing.assert_allclose(img.header.get_zooms(), (lateral, axial, bscan), rtol=1e-6)
    assert b"Doe" not in out.read_bytes() and b"Doe" not in __import__("gzip").decompress(
        out.read_bytes()
    )


def test_gray_bscans_stored_as_ybr_jpeg_collapse_to_gray(tmp_path: Path) -> None:
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    yy, xx = np.mgrid[0:40, 0:32]
    data = np.stack([(yy * 3 + xx + 7 * k) % 256 for k in range(3)]).astype(np.uint8)
    ds = pydicom.dcmread(write_opt(OCTVolume(data, SPACING), tmp_path / "v.dcm"))
    frames = []
    for frame in data:
        buf = io.BytesIO()
        Image.fromarray(np.stack([frame] * 3, -1)).save(buf, format="JPEG", quality=95)
        frames.append(buf.getvalue())
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.save_as(tmp_path / "ybr.dcm", enforce_file_format=True)
    got = load_volume(tmp_path / "ybr.dcm")
    assert got.shape == data.shape
    assert np.abs(got.data.astype(int) - data).max() <= 3


def test_positions_sheared_stack_and_contradicting_orientation(tmp_path: Path) -> None:
    """Spacing is the step along the stack normal; an orientation the positions contradict
    gives way to the positions' own direction (signed by the in-stack position numbers)."""
    vol = _volume()
    ds = pydicom.dcmread(write_opt(vol, tmp_path / "v.dcm"))
    for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):  # drifts laterally too
        frame.PlanePositionSequence[0].ImagePositionPatient = [0.05 * i, 0.0, SPACING[0] * i]
    ds.save_as(tmp_path / "sheared.dcm", enforce_file_format=True)
    _reorder_on_disk(tmp_path / "sheared.dcm", np.array([2, 5, 0, 4, 1, 3]), tmp_path / "s2.dcm")
    got = load_volume(tmp_path / "s2.dcm")
    np.testing.assert_array_equal(got.data, vol.data)
    assert got.spacing[0] == pytest.approx(SPACING[0])

    orientation = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    orientation.ImageOrientationPatient = [0.0, 0.0, 1.0, 0.0, 1.0, 0.0]  # normal along -x
    ds.save_as(tmp_path / "bogus.dcm", enforce_file_format=True)
    _reorder_on_disk(tmp_path / "bogus.dcm", np.array([4, 1, 5, 0, 3, 2]), tmp_path / "b2.dcm")
    got = load_volume(tmp_path / "b2.dcm")
    np.testing.assert_array_equal(got.data, vol.data)
    assert got.spacing[0] == pytest.approx(np.hypot(0.05, SPACING[0]))


def test_writer_patient_fields_are_the_reader_phi_keywords(tmp_path: Path) -> None:
    """One PHI list: each keyword write_opt accepts is a reader PHI keyword, read back in phi."""
    from octanomaly.io.dicom import PHI_KEYWORDS
    from octanomaly.io.dicom_writer import PATIENT_KEYWORDS

    assert set(PATIENT_KEYWORDS) <= set(PHI_KEYWORDS) and "PatientAddress" in PATIENT_KEYWORDS
    values = {"PatientBirthDate": "19700101", "StudyDate": "20200102", "StudyTime": "101500"}
    values |= {"PatientAge": "050Y", "PatientSex": "F"}
    patient = {k: values.get(k, f"X{i}") for i, k in enumerate(PATIENT_KEYWORDS)}
    vol = load_volume(write_opt(_volume(), tmp_path / "p.dcm", patient=patient))
    for keyword, value in patient.items():
        assert vol.phi.get(keyword) == value, keyword
        assert keyword not in vol.metadata
    with pytest.raises(ValueError, match="unknown patient field"):
        write_opt(_volume(), tmp_path / "q.dcm", patient={"Foo": "bar"})


def test_one_laterality_rule_for_every_reader() -> None:
    """R/L (DICOM) and OD/OS (vendor files) in any case map to OD/OS; anything else is unknown."""
    from octanomaly.volume import eye

    assert [eye(v) for v in ("R", " od ", "l", "OS")] == ["OD", "OD", "OS", "OS"]
    assert [eye(v) for v in (None, "", "B", "ODS", 3)] == [None] * 5
