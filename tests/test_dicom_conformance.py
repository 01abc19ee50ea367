"""DICOM objects octanomaly writes, as a PACS sees them (issue 16).

The parametric map follows the source's own frame numbers (frames stored in any order), carries
the eye's laterality and only DICOM-sized decimal strings. dicom3tools' ``dciodvfy`` checks every
object octanomaly writes (OPT volumes from ``write_opt`` / ``phantom``, parametric maps from
``map``) and any error line fails the test; ``.ci/run`` installs dicom3tools so these run in CI.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.io import load_volume
from octanomaly.io.dicom_writer import write_opt
from octanomaly.report.dicom_pm import write_parametric_map
from octanomaly.volume import OCTVolume

DCIODVFY = shutil.which("dciodvfy")
needs_dciodvfy = pytest.mark.skipif(
    DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) is not installed"
)
#: The only error lines accepted, and only for OPT: the OPT image module fixes Concatenation
#: Frame Offset Number 0, In-concatenation Number 1 and In-concatenation Total Number 1 as type 1
#: (PS3.3 C.8.17.7; concatenations are not permitted in OPT, C.8.17.16.3; the multi-frame module
#: allows an IOD to enumerate a total of 1 for this). dciodvfy applies the generic multi-frame
#: rules without that override; leaving the three out instead gives three "missing type 1" errors.
OPT_VALIDATOR_QUIRKS = frozenset(
    {
        "Error - Attribute present when condition unsatisfied (which may not be present "
        "otherwise) Type 1C Conditional Element=<ConcatenationFrameOffsetNumber> "
        "Module=<MultiFrameFunctionalGroupsCommon>",
        "Error - Attribute present when condition unsatisfied (which may not be present "
        "otherwise) Type 1C Conditional Element=<InConcatenationNumber> "
        "Module=<MultiFrameFunctionalGroupsCommon>",
        "Error - Cannot be less than or equal to one since then not a Concatenation - "
        "attribute <InConcatenationTotalNumber>",
    }
)
SPACING = (0.141, 0.0039, 0.0112)  # 0.141 x 30 = 4.2299999999999995 as a raw float repr
SHUFFLE = np.array([3, 0, 5, 1, 4, 2])  # stored frame i holds B-scan SHUFFLE[i]


def dciodvfy_errors(path: Path, iod: str) -> list[str]:
    """The error lines of dciodvfy's report on ``path`` (checked as the IOD named ``iod``)."""
    assert DCIODVFY is not None
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    report = out.stdout + out.stderr
    assert iod in report, report
    return [line.strip() for line in report.splitlines() if line.startswith("Error")]


def _volume(dtype: type, laterality: str | None, n: int = 6) -> OCTVolume:
    rng = np.random.default_rng(11)
    data = rng.integers(0, 250 if dtype == np.uint8 else 4000, size=(n, 40, 48)).astype(dtype)
    data[:, 0, 0] = np.arange(n)  # every B-scan distinguishable
    return OCTVolume(data, SPACING, laterality=laterality)


def _source(tmp_path: Path, dtype: type, ts: str, laterality: str | None, shuffle: bool) -> Path:
    """An OPT written by octanomaly, optionally with frames (pixels and per-frame groups)
    stored in ``SHUFFLE`` order as another device might store them."""
    path = write_opt(_volume(dtype, laterality), tmp_path / "src.dcm", transfer_syntax=ts)
    if not shuffle:
        return path
    ds = pydicom.dcmread(path)
    pixels = np.ascontiguousarray(ds.pixel_array[SHUFFLE])
    per = ds.PerFrameFunctionalGroupsSequence
    ds.PerFrameFunctionalGroupsSequence = Sequence([per[i] for i in SHUFFLE])
    if ds.file_meta.TransferSyntaxUID == JPEG2000Lossless:
        ds.compress(JPEG2000Lossless, pixels, generate_instance_uid=False)
    else:
        ds.PixelData = pixels.tobytes()
    shuffled = tmp_path / "shuffled.dcm"
    ds.save_as(shuffled, enforce_file_format=True)
    return shuffled


def _per_frame_geometry(path: Path) -> Path:
    """The OPT at ``path`` with pixel measures and plane orientation repeated in every frame's
    functional groups instead of shared, as some devices store them."""
    ds = pydicom.dcmread(path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    for keyword in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        for frame in ds.PerFrameFunctionalGroupsSequence:
            frame[keyword] = shared[keyword]
        del shared[keyword]
    out = path.with_name("per-frame.dcm")
    ds.save_as(out, enforce_file_format=True)
    return out


def _position(frame: pydicom.Dataset) -> list[float]:
    return [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]


def assert_map_matches_source(pm_path: Path, src_path: Path, anomaly: np.ndarray) -> None:
    """Each map frame references the source frame at its own position, and holds the map of
    the B-scan stored in that source frame (found by its content, not by assuming an order)."""
    pm, src = pydicom.dcmread(pm_path), pydicom.dcmread(src_path)
    volume = load_volume(src_path)
    src_pixels = src.pixel_array
    rwvm = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    slope, intercept = float(rwvm.RealWorldValueSlope), float(rwvm.RealWorldValueIntercept)
    referenced = []
    for k, frame in enumerate(pm.PerFrameFunctionalGroupsSequence):
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
        j = int(ref.ReferencedFrameNumber) - 1
        referenced.append(j)
        src_frame = src.PerFrameFunctionalGroupsSequence[j]
        assert _position(frame) == pytest.approx(_position(src_frame), abs=1e-9)
        (bscan,) = [b for b in range(volume.n_bscans) if (volume.data[b] == src_pixels[j]).all()]
        values = pm.pixel_array[k] * slope + intercept
        np.testing.assert_allclose(values, anomaly[bscan], rtol=0, atol=1e-5)
    assert sorted(referenced) == list(range(len(referenced)))


@pytest.mark.parametrize(
    ("dtype", "ts", "laterality", "shuffle", "per_frame"),
    [
        (np.uint8, "explicit-le", "OD", False, False),
        (np.uint16, "jpeg2000-lossless", "OS", False, False),
        (np.uint8, "explicit-le", "OS", True, False),
        (np.uint16, "jpeg2000-lossless", None, True, False),
        (np.uint16, "explicit-le", "OD", True, True),
    ],
)
def test_parametric_map_follows_source_frames_and_laterality(
    tmp_path: Path, dtype: type, ts: str, laterality: str | None, shuffle: bool, per_frame: bool
) -> None:
    src = _source(tmp_path, dtype, ts, laterality, shuffle)
    if per_frame:
        src = _per_frame_geometry(src)
    volume = load_volume(src)
    np.testing.assert_array_equal(volume.data, _volume(dtype, laterality).data)  # spatial order
    anomaly = volume.data.astype(np.float32) / 100.0 - 1.0  # differs per B-scan and pixel
    pm_path = write_parametric_map(src, anomaly, tmp_path / "pm.dcm")
    assert_map_matches_source(pm_path, src, anomaly)
    pm = pydicom.dcmread(pm_path)
    assert pm.Laterality == {"OD": "R", "OS": "L", None: ""}[laterality]
    if DCIODVFY is not None:
        assert dciodvfy_errors(pm_path, "ParametricMap") == []


def test_parametric_map_decimal_strings_fit_16_characters(tmp_path: Path) -> None:
    """A source with raw float reprs (18 characters) gives a map whose DS values all fit."""
    from pydicom import config
    from pydicom.valuerep import DSfloat

    vol = _volume(np.uint8, "OD", n=33)
    ds = pydicom.dcmread(write_opt(vol, tmp_path / "v.dcm"))
    for i, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        raw = DSfloat(SPACING[0] * i, validation_mode=config.IGNORE)
        frame.PlanePositionSequence[0].ImagePositionPatient = [DSfloat(0.0), DSfloat(0.0), raw]
    old = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        ds.save_as(tmp_path / "raw.dcm", enforce_file_format=True)
    finally:
        config.settings.writing_validation_mode = old
    src = pydicom.dcmread(tmp_path / "raw.dcm")
    assert "4.2299999999999995" in str(src.PerFrameFunctionalGroupsSequence[30])
    anomaly = np.zeros(vol.shape, np.float32)
    pm = pydicom.dcmread(write_parametric_map(tmp_path / "raw.dcm", anomaly, tmp_path / "pm.dcm"))
    lengths = [
        len(str(v))
        for elem in pm.iterall()
        if elem.VR == "DS" and elem.value not in (None, "")
        for v in (elem.value if elem.VM > 1 else [elem.value])
    ]
    assert lengths and max(lengths) <= 16
    z = sorted(_position(f)[2] for f in pm.PerFrameFunctionalGroupsSequence)
    np.testing.assert_allclose(z, SPACING[0] * np.arange(33), atol=1e-12)
    if DCIODVFY is not None:
        assert dciodvfy_errors(tmp_path / "pm.dcm", "ParametricMap") == []


@needs_dciodvfy
@pytest.mark.parametrize(
    ("dtype", "ts", "laterality"),
    [
        (np.uint8, "explicit-le", "OD"),
        (np.uint16, "jpeg2000-lossless", "OS"),
        (np.uint8, "jpeg-baseline", "OS"),
        (np.uint16, "explicit-le", "OD"),
    ],
)
def test_opt_writer_passes_dciodvfy(tmp_path: Path, dtype: type, ts: str, laterality: str) -> None:
    """Every kind of object write_opt makes for octanomaly's commands (``frame_of_reference=False``
    only stands in for device exports that lack one, see its docstring)."""
    path = write_opt(_volume(dtype, laterality), tmp_path / "v.dcm", transfer_syntax=ts)
    errors = dciodvfy_errors(path, "OphthalmicTomographyImage")
    assert [e for e in errors if e not in OPT_VALIDATOR_QUIRKS] == []


@needs_dciodvfy
def test_opt_of_an_eye_of_unknown_side_lacks_only_image_laterality(tmp_path: Path) -> None:
    """DICOM OPT has no value for an unknown eye (Image Laterality is type 1, R/L/B): the one
    departure write_opt documents; octanomaly's commands always know the side."""
    path = write_opt(_volume(np.uint8, None), tmp_path / "v.dcm")
    errors = dciodvfy_errors(path, "OphthalmicTomographyImage")
    assert [e for e in errors if e not in OPT_VALIDATOR_QUIRKS] == [
        "Error - Missing attribute Type 1 Required Element=<ImageLaterality> "
        "Module=<OcularRegionImaged>"
    ]


@needs_dciodvfy
def test_phantom_command_output_passes_dciodvfy(tmp_path: Path) -> None:
    args = ["phantom", str(tmp_path), "--n-bscans", "4", "--depth", "64", "--width", "64"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    errors = dciodvfy_errors(tmp_path / "phantom.dcm", "OphthalmicTomographyImage")
    assert [e for e in errors if e not in OPT_VALIDATOR_QUIRKS] == []


def test_map_command_on_shuffled_dicom_writes_a_matching_parametric_map(
    tmp_path: Path, tiny_run: Path
) -> None:
    from octanomaly.data.phantom import make_phantom

    phantom = make_phantom(4, n_bscans=6, depth=128, width=128, lesions="drusen").volume
    write_opt(phantom, tmp_path / "opt.dcm", transfer_syntax="jpeg2000-lossless")
    ds = pydicom.dcmread(tmp_path / "opt.dcm")
    pixels = np.ascontiguousarray(ds.pixel_array[SHUFFLE])
    per = ds.PerFrameFunctionalGroupsSequence
    ds.PerFrameFunctionalGroupsSequence = Sequence([per[i] for i in SHUFFLE])
    ds.compress(JPEG2000Lossless, pixels, generate_instance_uid=False)
    src = tmp_path / "eye.dcm"
    ds.save_as(src, enforce_file_format=True)
    (tmp_path / "opt.dcm").unlink()
    out = tmp_path / "out"
    args = ["map", str(src), "--model", str(tiny_run), "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    import nibabel as nib

    anomaly = np.asarray(nib.load(out / "eye_anomaly.nii.gz").dataobj).transpose(2, 1, 0)
    assert_map_matches_source(out / "eye_anomaly_pm.dcm", src, anomaly)
    assert pydicom.dcmread(out / "eye_anomaly_pm.dcm").Laterality == "R"  # phantom default OD
    if DCIODVFY is not None:
        assert dciodvfy_errors(out / "eye_anomaly_pm.dcm", "ParametricMap") == []
