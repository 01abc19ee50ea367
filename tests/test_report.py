"""Report layer: B-scan overlays, en-face map, JSON summary, DICOM parametric map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from octanomaly.errors import InputError, OctanomalyError
from octanomaly.report import overlays
from octanomaly.report.dicom_pm import write_parametric_map
from octanomaly.report.enface import (
    enface_figure,
    enface_intensity,
    enface_projection,
    save_enface,
)
from octanomaly.report.overlays import (
    COLORBAR_WIDTH,
    CONTOUR_RGB,
    TITLE_HEIGHT,
    display_size,
    grayscale_u8,
    inner_boundary,
    overlay_rgb,
    save_bscan_overlay,
)
from octanomaly.report.summary import (
    anomalous_volume_mm3,
    assert_no_phi,
    summary_json,
    write_summary,
)

SPACING = (0.03, 0.0039, 0.0112)  # (bscan, axial, lateral) mm


def _bscan_case(rng: np.random.Generator, depth: int = 40, width: int = 48):
    """Mid-gray B-scan, a map with a positive blob, a negative patch and zeros, mask in the blob."""
    bscan = rng.integers(60, 200, (depth, width)).astype(np.uint8)
    anomaly = np.zeros((depth, width), np.float32)
    anomaly[10:25, 8:30] = rng.uniform(0.05, 6.0, (15, 22))
    anomaly[30:35, 35:45] = -2.0
    mask = np.zeros((depth, width), bool)
    mask[12:22, 10:26] = True
    return bscan, anomaly, mask


def _no_temp_files(folder: Path) -> bool:
    return not any(p.name.startswith(".") for p in folder.iterdir())


# --- overlays -------------------------------------------------------------------------------


def test_overlay_changes_exactly_the_positive_pixels_and_draws_the_contour():
    bscan, anomaly, mask = _bscan_case(np.random.default_rng(0))
    out = overlay_rgb(bscan, anomaly, mask, vmax=6.0)
    assert out.shape == (*bscan.shape, 3) and out.dtype == np.uint8
    changed = (out != np.repeat(bscan[..., None], 3, axis=2)).any(axis=2)
    np.testing.assert_array_equal(changed, anomaly > 0)
    edge = inner_boundary(mask)
    assert edge.sum() == 2 * (10 + 16) - 4  # perimeter of a 10x16 rectangle
    assert (out[edge] == CONTOUR_RGB).all()
    assert not (out[mask & ~edge] == CONTOUR_RGB).all(axis=1).any()


def test_overlay_colour_grows_with_the_score():
    bscan = np.full((4, 4), 128, np.uint8)
    anomaly = np.zeros((4, 4), np.float32)
    anomaly[0, 0], anomaly[0, 1] = 0.5, 5.0
    out = overlay_rgb(bscan, anomaly, np.zeros((4, 4), bool), vmax=5.0).astype(int)
    shift = np.abs(out[0, :2] - 128).sum(axis=1)
    assert shift[1] > shift[0] > 0


def test_grayscale_windows_floats_and_keeps_uint8():
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert grayscale_u8(u8) is u8
    g = grayscale_u8(np.linspace(-1, 3, 400, dtype=np.float32).reshape(20, 20))
    assert g.dtype == np.uint8 and g.min() == 0 and g.max() == 255
    assert grayscale_u8(np.ones((3, 3))).dtype == np.uint8  # constant image: no division by 0


def test_display_size_is_physical_aspect_times_exaggeration():
    h, w = display_size((496, 512), (0.0039, 0.0112), 3.0)
    assert w == 512 and h == round(512 * (496 * 0.0039 * 3) / (512 * 0.0112))
    h1, _ = display_size((100, 300), (0.004, 0.01), 1.0)
    h2, _ = display_size((100, 300), (0.008, 0.01), 1.0)
    assert h1 == 40 and abs(h2 - 2 * h1) <= 1
    assert display_size((10, 20), (0.01, 0.01), 1.0)[1] == overlays.MIN_DISPLAY_WIDTH


def test_save_bscan_overlay_writes_png_of_expected_size_and_content(tmp_path):
    bscan, anomaly, mask = _bscan_case(np.random.default_rng(1), depth=200, width=300)
    spacing = (0.0039, 0.0112)
    path = save_bscan_overlay(
        bscan, anomaly, mask, spacing, tmp_path / "b" / "x.png", title="B-scan 3", vmax=6.0
    )
    assert path == tmp_path / "b" / "x.png" and _no_temp_files(path.parent)
    with Image.open(path) as im:
        im.verify()
    img = np.asarray(Image.open(path).convert("RGB"))
    h, w = display_size(bscan.shape, spacing)
    assert img.shape == (h + TITLE_HEIGHT, w + COLORBAR_WIDTH, 3)
    panel = img[TITLE_HEIGHT:, :w]
    expected = overlay_rgb(bscan, anomaly, mask, vmax=6.0, size=(h, w))
    top = slice(0, h // 2)  # the scale bars live in the lower-left corner
    np.testing.assert_array_equal(panel[top], expected[top])
    strip = img[TITLE_HEIGHT:, w:]
    assert strip.std() > 20  # a colour bar was drawn, not a blank margin


def test_overlay_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="one shape"):
        overlay_rgb(np.zeros((4, 4)), np.zeros((4, 5)), np.zeros((4, 4), bool))


# --- en-face --------------------------------------------------------------------------------


def test_enface_projection_is_max_over_depth_and_intensity_mean():
    anomaly = np.zeros((3, 5, 4), np.float32)
    anomaly[1, 2, 3] = 7.0
    anomaly[2, :, 0] = -1.0
    anomaly[0, 4, 1] = 2.5
    proj = enface_projection(anomaly)
    assert proj.shape == (3, 4) and proj.dtype == np.float32
    assert proj[1, 3] == 7.0 and proj[0, 1] == 2.5 and proj[2, 0] == -1.0
    assert np.count_nonzero(proj) == 3
    vol = np.arange(60, dtype=np.float32).reshape(3, 5, 4)
    np.testing.assert_allclose(enface_intensity(vol), vol.mean(axis=1))
    with pytest.raises(ValueError):
        enface_projection(np.zeros((3, 4)))


def test_enface_panels_have_physical_aspect():
    rng = np.random.default_rng(3)
    vol = rng.random((20, 30, 64), dtype=np.float32)
    anomaly = rng.normal(size=(20, 30, 64)).astype(np.float32)
    fig = enface_figure(vol, anomaly, (0.12, 0.004, 0.01), threshold=1.5)
    fig.canvas.draw()
    ax_i, ax_a = fig.axes[:2]
    expected = (20 * 0.12) / (64 * 0.01)  # height / width in mm
    for ax in (ax_i, ax_a):
        bbox = ax.get_window_extent()
        assert bbox.height / bbox.width == pytest.approx(expected, rel=0.03)
        assert ax.get_xlim() == pytest.approx((0.0, 0.64))
        assert "mm" in ax.get_xlabel()
    assert "mm" in ax_i.get_ylabel()
    assert "z-score" in fig.axes[2].get_ylabel()


def test_save_enface_png_and_flag_ticks(tmp_path):
    rng = np.random.default_rng(4)
    vol = rng.random((12, 20, 32), dtype=np.float32)
    anomaly = np.zeros_like(vol)
    anomaly[5, 8:12, 10:20] = 6.0
    plain = save_enface(vol, anomaly, (0.1, 0.004, 0.02), tmp_path / "plain.png", threshold=3.0)
    marked = save_enface(
        vol, anomaly, (0.1, 0.004, 0.02), tmp_path / "marked.png", threshold=3.0, flagged=[5]
    )
    for p in (plain, marked):
        with Image.open(p) as im:
            im.verify()
    red = [
        int(((np.asarray(Image.open(p).convert("RGB")) == (255, 0, 0)).all(axis=2)).sum())
        for p in (plain, marked)
    ]
    assert red[0] == 0 and red[1] > 0
    assert _no_temp_files(tmp_path)


# --- atomic behaviour -----------------------------------------------------------------------


def test_failed_png_writes_leave_no_file_and_keep_the_old_one(tmp_path, monkeypatch):
    bscan, anomaly, mask = _bscan_case(np.random.default_rng(5))
    dest = tmp_path / "o.png"

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_bscan_overlay(bscan, anomaly, mask, (0.004, 0.01), dest)
    assert list(tmp_path.iterdir()) == []
    dest.write_bytes(b"old")
    with pytest.raises(OSError):
        save_bscan_overlay(bscan, anomaly, mask, (0.004, 0.01), dest)
    assert dest.read_bytes() == b"old" and _no_temp_files(tmp_path)

    from matplotlib.figure import Figure

    monkeypatch.setattr(Figure, "savefig", boom)
    vol = np.random.default_rng(6).random((3, 4, 5))
    with pytest.raises(OSError):
        save_enface(vol, vol, SPACING, tmp_path / "e.png")
    assert not (tmp_path / "e.png").exists() and _no_temp_files(tmp_path)


def test_writers_refuse_to_overwrite_an_input(tmp_path):
    bscan, anomaly, mask = _bscan_case(np.random.default_rng(7))
    src = tmp_path / "input.png"
    Image.fromarray(bscan).save(src)
    before = src.read_bytes()
    with pytest.raises(InputError):
        save_bscan_overlay(bscan, anomaly, mask, (0.004, 0.01), src, protect=(src,))
    with pytest.raises(InputError):
        write_summary(src, _summary(), protect=(src,))
    assert src.read_bytes() == before


# --- summary --------------------------------------------------------------------------------


def _summary() -> dict:
    return {
        "input": Path("/data/eye1.dcm"),
        "shape": np.array([3, 40, 48], dtype=np.int64),
        "spacing_mm": (np.float32(0.03), 0.0039, np.float64(0.0112)),
        "model": {"name": "fanogan", "version": "0.1.0", "run_id": "run-7"},
        "threshold": np.float32(2.5),
        "volume_score": np.float64(np.nan),
        "bscan_scores": np.array([0.5, np.nan, 3.25], dtype=np.float32),
        "flagged_bscans": np.array([2], dtype=np.int64),
        "anomalous_volume_mm3": anomalous_volume_mm3(np.ones((2, 2, 2), bool), SPACING),
        "timings_s": {"read": np.float32(0.25), "score": 1.5},
        "extra": {"inf": float("inf"), "ok": True},
    }


def test_summary_round_trip_converts_numpy_and_nan(tmp_path):
    path = write_summary(tmp_path / "s.json", _summary())
    text = path.read_text()
    data = json.loads(text)
    assert data["shape"] == [3, 40, 48]
    assert data["spacing_mm"] == pytest.approx([0.03, 0.0039, 0.0112])
    assert data["threshold"] == 2.5 and data["volume_score"] is None
    assert data["bscan_scores"] == [0.5, None, 3.25]
    assert data["flagged_bscans"] == [2] and data["input"] == "/data/eye1.dcm"
    assert data["anomalous_volume_mm3"] == pytest.approx(8 * 0.03 * 0.0039 * 0.0112)
    assert data["model"] == {"name": "fanogan", "version": "0.1.0", "run_id": "run-7"}
    assert data["timings_s"] == {"read": 0.25, "score": 1.5}
    assert data["extra"] == {"inf": None, "ok": True}
    assert "NaN" not in text and "Infinity" not in text
    assert list(data) == sorted(data) and text.startswith('{\n  "')
    shuffled = dict(reversed(list(_summary().items())))
    assert summary_json(shuffled) == text


@pytest.mark.parametrize("key", ["shape", "model", "bscan_scores", "timings_s", "input"])
def test_summary_requires_keys(tmp_path, key):
    s = _summary()
    del s[key]
    with pytest.raises(OctanomalyError, match=key):
        write_summary(tmp_path / "s.json", s)
    assert list(tmp_path.iterdir()) == []


def test_assert_no_phi_finds_identifiers_and_ignores_noise():
    phi = {"PatientName": "Doe^Jonathan", "PatientID": "PID-4711", "PatientBirthDate": "19630412",
           "PatientSex": "M"}  # fmt: skip
    for leak in ("name: doe", "Jonathan", '"id": "PID-4711"', "born 1963-04-12", "19630412"):
        with pytest.raises(OctanomalyError, match="Patient"):
            assert_no_phi(leak, phi)
    try:
        assert_no_phi('{"model": "fanogan", "Modality": "OPT", "x": "Doesburg", "n": 4711}', phi)
    except OctanomalyError as exc:
        pytest.fail(f"false positive: {exc}")
    with pytest.raises(OctanomalyError) as info:
        assert_no_phi("jonathan", phi)
    assert "jonathan" not in str(info.value).lower()  # the error never repeats the value


def test_write_summary_refuses_phi_and_writes_nothing(tmp_path):
    s = _summary()
    s["input"] = "/data/Doe_Jonathan/eye.dcm"
    with pytest.raises(OctanomalyError, match="PatientName"):
        write_summary(tmp_path / "s.json", s, phi={"PatientName": "Doe^Jonathan"})
    assert list(tmp_path.iterdir()) == []
    write_summary(tmp_path / "s.json", _summary(), phi={"PatientName": "Doe^Jonathan"})
    assert (tmp_path / "s.json").is_file()


# --- DICOM parametric map -------------------------------------------------------------------

PATIENT = {"PatientName": "Doe^Jonathan", "PatientID": "PID-4711", "PatientBirthDate": "19630412"}


def _opt(tmp_path: Path, frame_of_reference: bool = True, shape=(4, 20, 24)) -> Path:
    dicom_writer = pytest.importorskip("octanomaly.io.dicom_writer")
    from octanomaly.volume import OCTVolume

    data = np.random.default_rng(8).integers(0, 255, shape).astype(np.uint8)
    vol = OCTVolume(data, SPACING)
    return dicom_writer.write_opt(
        vol, tmp_path / "src.dcm", frame_of_reference=frame_of_reference, patient=PATIENT
    )


def test_parametric_map_references_source_and_decodes_values(tmp_path):
    import pydicom

    src_path = _opt(tmp_path)
    src = pydicom.dcmread(src_path)
    anomaly = np.random.default_rng(9).normal(0, 2, (4, 20, 24)).astype(np.float32)
    out = write_parametric_map(src_path, anomaly, tmp_path / "pm.dcm")
    pm = pydicom.dcmread(out)
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map Storage
    assert int(pm.NumberOfFrames) == 4 and (pm.Rows, pm.Columns) == (20, 24)
    assert pm.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert pm.StudyInstanceUID == src.StudyInstanceUID
    assert pm.SeriesInstanceUID != src.SeriesInstanceUID
    ref_series = pm.ReferencedSeriesSequence[0]
    assert ref_series.SeriesInstanceUID == src.SeriesInstanceUID
    assert ref_series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    rwvm = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    slope, intercept = float(rwvm.RealWorldValueSlope), float(rwvm.RealWorldValueIntercept)
    pixels = pm.pixel_array
    src_positions = [
        [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
        for f in src.PerFrameFunctionalGroupsSequence
    ]
    seen = set()
    for k, frame in enumerate(pm.PerFrameFunctionalGroupsSequence):
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
        b = int(ref.ReferencedFrameNumber) - 1
        seen.add(b)
        pos = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert pos == pytest.approx(src_positions[b])
        np.testing.assert_allclose(pixels[k] * slope + intercept, anomaly[b], rtol=0, atol=1e-6)
    assert seen == {0, 1, 2, 3}
    assert _no_temp_files(tmp_path)


def test_parametric_map_blanks_patient_unless_asked(tmp_path):
    import pydicom

    src_path = _opt(tmp_path)
    anomaly = np.zeros((4, 20, 24), np.float32)
    anon = pydicom.dcmread(write_parametric_map(src_path, anomaly, tmp_path / "a.dcm"))
    assert_no_phi(str(anon), PATIENT)
    assert anon.PatientName == "" and anon.PatientID == ""
    kept = pydicom.dcmread(
        write_parametric_map(src_path, anomaly, tmp_path / "k.dcm", keep_patient=True)
    )
    assert str(kept.PatientName) == "Doe^Jonathan" and kept.PatientID == "PID-4711"


def test_parametric_map_needs_a_dicom_source_with_frame_of_reference(tmp_path):
    no_for = _opt(tmp_path, frame_of_reference=False)
    anomaly = np.zeros((4, 20, 24), np.float32)
    with pytest.raises(OctanomalyError, match="Frame of Reference"):
        write_parametric_map(no_for, anomaly, tmp_path / "pm.dcm")
    src = _opt(tmp_path / "ok")
    with pytest.raises(OctanomalyError, match="does not match"):
        write_parametric_map(src, anomaly[:, :, :10], tmp_path / "pm.dcm")
    not_dicom = tmp_path / "map.nii"
    not_dicom.write_bytes(b"\x00" * 400)
    with pytest.raises(InputError, match="map.nii"):
        write_parametric_map(not_dicom, anomaly, tmp_path / "pm.dcm")
    with pytest.raises(InputError, match="input"):
        write_parametric_map(src, anomaly, src)
    assert not (tmp_path / "pm.dcm").exists()


def test_parametric_map_from_compressed_source_and_unusable_geometry(tmp_path):
    import pydicom

    dicom_writer = pytest.importorskip("octanomaly.io.dicom_writer")
    from octanomaly.volume import OCTVolume

    data = np.random.default_rng(10).integers(0, 4000, (3, 40, 48)).astype(np.uint16)
    src = dicom_writer.write_opt(
        OCTVolume(data, SPACING), tmp_path / "j2k.dcm", transfer_syntax="jpeg2000-lossless"
    )
    anomaly = np.random.default_rng(11).normal(size=(3, 40, 48)).astype(np.float32)
    pm = pydicom.dcmread(write_parametric_map(src, anomaly, tmp_path / "pm.dcm"))
    assert int(pm.NumberOfFrames) == 3
    ds = pydicom.dcmread(src)  # same file without plane positions: highdicom cannot place frames
    for frame in ds.PerFrameFunctionalGroupsSequence:
        del frame.PlanePositionSequence
    ds.save_as(tmp_path / "nopos.dcm")
    with pytest.raises(OctanomalyError, match="cannot derive a parametric map"):
        write_parametric_map(tmp_path / "nopos.dcm", anomaly, tmp_path / "pm2.dcm")
    assert not (tmp_path / "pm2.dcm").exists()
