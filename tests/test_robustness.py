"""Hostile inputs to ``octanomaly map`` (issue 12): every bad input is one line naming the file,
the batch goes on, exit code 2, nothing is left of the bad ones and no existing file changes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.data.phantom import make_phantom
from octanomaly.errors import InputError
from octanomaly.io import load_volume
from octanomaly.io.nifti import to_nifti_image, write_volume
from octanomaly.volume import DEFAULT_SPACING, OCTVolume, check_spacing
from tests._patches import tree_hashes
from tests._summary_text import text_values

runner = CliRunner()


_tree = tree_hashes


def _errors(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("octanomaly: error")]


def _phantom(seed: int = 5):
    return make_phantom(seed, n_bscans=3, depth=128, width=128, lesions="drusen").volume


def _png(path: Path, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path)


def _nifti_with_affine(path: Path, affine: np.ndarray, units: str = "unknown") -> None:
    img = to_nifti_image(_phantom().data, DEFAULT_SPACING)
    img.set_sform(affine, code=1)
    img.set_qform(None, code=0)
    img.header.set_xyzt_units(units)
    nib.save(img, str(path))


def _bad_inputs(d: Path) -> list[Path]:
    """One file (or folder) per kind of bad input the issue lists, and a few more."""
    _png(d / "one.png", (1, 1))
    _png(d / "eight.png", (8, 8))
    _png(d / "wide.png", (10, 10000))
    _png(d / "tall.png", (10000, 10))
    _nifti_with_affine(d / "microns.nii.gz", np.diag([-11.2, -3.9, 120.0, 1.0]))  # um, no units
    zero_col = np.diag([-0.0112, -0.0039, 0.12, 1.0])
    zero_col[:3, 2] = 0.0
    _nifti_with_affine(d / "zerocol.nii.gz", zero_col, "mm")
    _nifti_with_affine(d / "huge.nii.gz", np.diag([-1e30, -1e30, 1e30, 1.0]), "mm")
    (d / "zero.tif").write_bytes(b"II*\x00\x00\x00\x00\x00")  # a TIFF with no pages
    (d / "empty.nii.gz").write_bytes(b"")
    (d / "garbage.dcm").write_bytes(np.random.default_rng(1).bytes(4000))
    tifffile.imwrite(d / "nan.tif", np.full((64, 64), np.nan, np.float32))
    (d / "mixed").mkdir()
    _png(d / "mixed" / "b1.png", (128, 128))
    _png(d / "mixed" / "b2.png", (128, 96))
    write_volume(_phantom(7), d / "clash.nii.gz")  # fine, but a stranger's file has its name
    return [
        d / n
        for n in ("one.png", "eight.png", "wide.png", "tall.png", "microns.nii.gz",
                  "zerocol.nii.gz", "huge.nii.gz", "zero.tif", "empty.nii.gz", "garbage.dcm",
                  "nan.tif", "mixed", "clash.nii.gz", "missing.nii.gz")
    ]  # fmt: skip


def test_sweep_of_bad_inputs_in_one_batch(tmp_path, tiny_run):
    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    out.mkdir()
    bad = _bad_inputs(d)
    (out / "clash_mask.nii.gz").write_bytes(b"someone's manual mask")
    tifffile.imwrite(d / "int64.tif", np.arange(96 * 96, dtype=np.int64).reshape(96, 96) % 3000)
    tifffile.imwrite(
        d / "float16.tif", np.linspace(0, 1, 96 * 96, dtype=np.float16).reshape(96, 96)
    )
    good = [d / "int64.tif", d / "float16.tif", write_volume(_phantom(), d / "good.nii.gz")]
    before_in, before_out = _tree(d), _tree(out)

    res = runner.invoke(
        app,
        [
            "map",
            *map(str, bad + good),
            "--out",
            str(out),
            "--model",
            str(tiny_run),
            "--device",
            "cpu",
        ],
    )

    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = _errors(res)
    assert len(errors) == len(bad), "\n".join(errors)
    for path, line in zip(bad, errors, strict=True):  # one line each, in order, naming it
        assert path.name in line, (path.name, line)
        assert "unexpected" not in line, line  # every one is a known problem with a message
    for path in good:
        stem = path.name.split(".")[0]
        summary = json.loads((out / f"{stem}_summary.json").read_text())
        assert summary["input"] == path.name
        assert all((out / name).exists() for name in summary["outputs"].values())
    left = {p.name for p in out.iterdir()}
    bad_stems = {p.name.split(".")[0] for p in bad}
    assert not {n for n in left if n.split("_")[0] in bad_stems} - {"clash_mask.nii.gz"}
    assert not [n for n in left if n.startswith(".")]  # no temporaries
    assert _tree(d) == before_in  # no input touched
    after_out = _tree(out)
    assert {k: after_out[k] for k in before_out} == before_out  # the stranger's file kept
    line = {p.name: e for p, e in zip(bad, errors, strict=True)}
    assert "smaller than its 32x32 px patches" in line["eight.png"]
    assert "--spacing" in line["microns.nii.gz"] and "--spacing" in line["zerocol.nii.gz"]
    assert "mm along the lateral axis" in line["wide.png"]
    assert "not written by octanomaly" in line["clash.nii.gz"]
    assert "zero pages" in line["zero.tif"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--spacing", "0.1", "0.0039", "1e-9"], "lateral spacing 1e-09 mm is outside"),
        (["--spacing", "1e30", "0.0039", "0.0112"], "B-scan spacing 1e+30 mm is outside"),
        (["--spacing", "0", "0.0039", "0.0112"], "invalid spacing"),
        (["--device", "tpu"], "unknown device"),
        (["--threshold", "100"], "percentile between 0 and 100"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(tmp_path, args, words, tiny_run):
    src = write_volume(_phantom(), tmp_path / "eye.nii.gz")
    res = runner.invoke(app, ["map", str(src), "--model", str(tiny_run), *args])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and words in res.stderr, res.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["eye.nii.gz"]


def test_unexpected_error_is_one_line_with_its_type_and_debug_shows_it(
    tmp_path, monkeypatch, tiny_run
):
    import octanomaly.scoring.guards as guards

    real = guards.check_mappable

    def buggy(volume, cfg, memory_bytes=None):
        if volume.source_path.name == "boom.nii.gz":
            raise RuntimeError("something nobody expected")
        return real(volume, cfg, memory_bytes)

    monkeypatch.setattr(guards, "check_mappable", buggy)
    boom = write_volume(_phantom(), tmp_path / "boom.nii.gz")
    good = write_volume(_phantom(6), tmp_path / "good.nii.gz")
    res = runner.invoke(
        app, ["map", str(boom), str(good), "--model", str(tiny_run), "--device", "cpu"]
    )
    assert res.exit_code == 2 and (tmp_path / "good_summary.json").is_file()
    (line,) = _errors(res)
    assert "boom.nii.gz" in line and "RuntimeError: something nobody expected" in line
    assert "--debug" in line and "Traceback" not in res.output
    assert not list(tmp_path.glob("boom_*"))
    res = runner.invoke(
        app, ["--debug", "map", str(boom), "--model", str(tiny_run), "--device", "cpu"]
    )
    assert isinstance(res.exception, RuntimeError)


def test_phi_check_does_not_fire_on_file_names_or_numbers(tmp_path, tiny_run):
    """A patient named like the file, with a numeric ID equal to the width (item 5)."""
    from octanomaly.io.dicom_writer import write_opt

    patient = {"PatientName": "Scan^Retina", "PatientID": "128", "PatientBirthDate": "19630412"}
    src = write_opt(_phantom(), tmp_path / "retina_scan.dcm", patient=patient)
    res = runner.invoke(app, ["map", str(src), "--model", str(tiny_run), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "retina_scan_summary.json").read_text()
    summary = json.loads(text)
    assert summary["shape"] == [3, 128, 128]
    assert (tmp_path / summary["outputs"]["parametric_map"]).is_file()
    assert "Scan^Retina" not in text and "19630412" not in text

    assert not [v for v in text_values(summary) if "1963" in v]  # not even the birth year
    assert summary["input"] != "retina_scan.dcm"  # the name holds a patient name: withheld


def test_plausible_spacing_ranges():
    check_spacing(DEFAULT_SPACING)
    check_spacing((0.03, 0.0019, 0.0057))  # dense Spectralis, Cirrus-like axial
    for bad in ((0.1, 3.9, 11.2), (0.1, 0.0039, 1e-9), (1e30, 0.0039, 0.0112), (0.1, 0, 0.01)):
        with pytest.raises(InputError, match="--spacing"):
            check_spacing(bad)
    vol = OCTVolume(np.zeros((1, 10, 10000), np.uint8), DEFAULT_SPACING, source_path=Path("w.png"))
    with pytest.raises(InputError, match="w.png: .* 112 mm along the lateral axis"):
        vol.validate()


def test_memory_and_patch_size_are_checked_from_shape_alone():
    from octanomaly.config import load_config
    from octanomaly.scoring.guards import check_mappable, estimate_map_bytes

    cfg = load_config(model="ganomaly").preprocessing
    big = np.broadcast_to(np.zeros((), np.uint8), (1000, 1024, 1024))  # no memory behind it
    vol = OCTVolume(big, DEFAULT_SPACING, source_path=Path("big.dcm"))
    need = estimate_map_bytes(vol, cfg)
    assert need > 30 * 2**30
    with pytest.raises(InputError, match=r"big.dcm: .*needs about .* GiB .* more than"):
        check_mappable(vol, cfg, memory_bytes=16 * 2**30)
    check_mappable(vol, cfg, memory_bytes=need + 1)
    small = OCTVolume(np.zeros((1, 40, 40), np.uint8), DEFAULT_SPACING)
    with pytest.raises(InputError, match="smaller than its"):
        check_mappable(small, cfg, memory_bytes=2**40)


def test_degenerate_nifti_reads_with_spacing(tmp_path):
    zero_col = np.diag([-0.0112, -0.0039, 0.12, 1.0])
    zero_col[:3, 2] = 0.0
    _nifti_with_affine(tmp_path / "z.nii.gz", zero_col, "mm")
    with pytest.raises(InputError, match="zero or non-finite axis"):
        load_volume(tmp_path / "z.nii.gz")
    vol = load_volume(tmp_path / "z.nii.gz", spacing=(0.12, 0.0039, 0.0112))
    np.testing.assert_array_equal(vol.data, _phantom().data)
    assert vol.spacing == (0.12, 0.0039, 0.0112)


def test_64_bit_and_half_float_voxels_are_converted(tmp_path):
    ints = (np.arange(64 * 64, dtype=np.int64).reshape(64, 64) * 7) % 60000
    tifffile.imwrite(tmp_path / "i.tif", ints)
    tifffile.imwrite(
        tmp_path / "h.tif", np.linspace(0, 2, 64 * 64, dtype=np.float16).reshape(64, 64)
    )
    vi, vh = load_volume(tmp_path / "i.tif"), load_volume(tmp_path / "h.tif")
    assert vi.data.dtype == np.uint16 and np.array_equal(vi.data[0], ints)
    assert vh.data.dtype == np.float32 and vh.data.max() == 2.0
    assert vi.metadata["voxel_type_converted"] == "int64 -> uint16"


def test_unreadable_file_is_reported_as_such(tmp_path, monkeypatch):
    import octanomaly.io as io
    import octanomaly.io.images as images

    (tmp_path / "b").mkdir()
    _png(tmp_path / "b" / "x.png", (64, 64))
    real_access = io.os.access
    denied = {"b"}  # act as if we had no read permission (tests may run as root)
    monkeypatch.setattr(
        io.os, "access", lambda p, m: Path(p).name not in denied and real_access(p, m)
    )
    with pytest.raises(InputError, match="b: permission denied"):
        load_volume(tmp_path / "b")
    denied = {"x.png"}  # the folder is readable, a file in it is not
    monkeypatch.setattr(images, "image_kind", lambda p: None)
    with pytest.raises(InputError, match="x.png: permission denied"):
        load_volume(tmp_path / "b")


def test_zero_page_tiff_is_one_line(tmp_path):
    (tmp_path / "z.tif").write_bytes(b"II*\x00\x00\x00\x00\x00")
    res = runner.invoke(app, ["info", str(tmp_path / "z.tif")])
    assert res.exit_code == 2 and res.stderr.strip().count("\n") == 0
    assert "zero pages" in res.stderr


def test_overlay_png_is_capped(tmp_path):
    from octanomaly.report import save_bscan_overlay
    from octanomaly.report.overlays import COLORBAR_WIDTH, MAX_DISPLAY_SIDE, TITLE_HEIGHT

    for shape in ((10, 10000), (10000, 10)):
        b = np.random.default_rng(0).random(shape, dtype=np.float32)
        path = save_bscan_overlay(b, b, b > 0.5, (0.0039, 0.0112), tmp_path / "o.png")
        w, h = Image.open(path).size
        assert w <= MAX_DISPLAY_SIDE + COLORBAR_WIDTH and h <= MAX_DISPLAY_SIDE + TITLE_HEIGHT


def test_training_data_without_retina_is_one_error(tmp_path):
    from octanomaly.config import load_config
    from octanomaly.data.healthy import load_healthy

    for i in range(3):
        _png(tmp_path / f"noise{i}.png", (128, 128))
    cfg = load_config(model="ganomaly").preprocessing
    with pytest.warns(UserWarning), pytest.raises(InputError, match="no retina found"):
        load_healthy([tmp_path], cfg, val_fraction=0.34)
    res = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "run"),
                              "--model", "ganomaly", "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert len(_errors(res)) == 1 and "no retina found" in _errors(res)[0]
    assert not (tmp_path / "run").exists()


def test_evaluate_exits_2_when_a_class_has_no_readable_file(tmp_path, monkeypatch):
    from octanomaly.evaluation import runner as ev_runner
    from tests.test_evaluation import MeanScorer

    monkeypatch.setattr(ev_runner, "RunScorer", lambda *a, **k: MeanScorer())
    data = tmp_path / "data"
    (data / "NORMAL").mkdir(parents=True)
    (data / "AMD").mkdir()
    for i in range(3):
        _png(data / "NORMAL" / f"n{i}.png", (40, 32))
        (data / "AMD" / f"a{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = runner.invoke(app, ["evaluate", str(data), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 2, res.output
    assert "no readable, scorable file in class AMD" in res.stderr


def test_any_command_turns_an_unexpected_error_into_one_line(tmp_path, monkeypatch):
    import octanomaly.io as io

    def buggy(*a, **k):
        raise KeyError("a bug")

    src = write_volume(_phantom(), tmp_path / "eye.nii.gz")
    monkeypatch.setattr(io, "load_volume", buggy)
    res = runner.invoke(app, ["info", str(src)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.strip() == (
        "octanomaly: error: unexpected KeyError: 'a bug' (run with --debug for the traceback)"
    )
    res = runner.invoke(app, ["--debug", "info", str(src)])
    assert isinstance(res.exception, KeyError)


def test_map_names_the_file_in_warnings_and_maps_a_repeated_input_once(tmp_path, tiny_run):
    noise = tmp_path / "noise.png"
    _png(noise, (128, 128))
    args = ["map", str(noise), str(noise), "--model", str(tiny_run), "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    warnings = [w for w in res.stderr.splitlines() if w.startswith("octanomaly: warning")]
    assert f"octanomaly: warning: {noise}: given twice; mapped once" in warnings
    assert any(w.startswith(f"octanomaly: warning: {noise}: B-scan 0: no retina") for w in warnings)
    assert not list(tmp_path.glob("noise-2*"))


def test_evaluate_skips_a_file_whose_scoring_crashes(tmp_path, monkeypatch):
    from octanomaly.evaluation import runner as ev_runner
    from tests.test_evaluation import MeanScorer

    class Crashing(MeanScorer):
        def bscan_scores(self, volume):
            if volume.source_path.name == "a1.png":
                raise RuntimeError("boom")
            return super().bscan_scores(volume)

    monkeypatch.setattr(ev_runner, "RunScorer", lambda *a, **k: Crashing())
    data = tmp_path / "data"
    for cls, value in (("NORMAL", 20), ("AMD", 60)):
        (data / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((40, 32), value + i, np.uint8)).save(
                data / cls / f"{cls[0].lower()}{i}.png"
            )
    res = runner.invoke(app, ["evaluate", str(data), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 2, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["bad_files"] == [
        {"file": "AMD/a1.png", "error": "unexpected RuntimeError: boom"}
    ]
    assert metrics["n_scored"] == 5


def test_many_images_with_default_spacing_are_not_refused_for_their_count():
    many = np.broadcast_to(np.zeros((), np.uint8), (1000, 496, 512))
    OCTVolume(many, DEFAULT_SPACING, spacing_is_default=True).validate()  # 100 mm "apart": a guess
    with pytest.raises(InputError, match="along the B-scan axis"):
        OCTVolume(many, DEFAULT_SPACING).validate()  # the file says so: implausible


def test_summary_notes_carry_no_path_and_no_patient_data():
    from octanomaly.errors import OctanomalyError
    from octanomaly.scoring.outputs import _note

    vol = OCTVolume(np.zeros((1, 8, 8), np.uint8), DEFAULT_SPACING, phi={"PatientName": "Doe^Jo"})
    note = _note(InputError(Path("/data/Doe_eye.dcm"), "no Frame of Reference"), vol)
    assert note == "no Frame of Reference"
    assert "Doe" not in _note(OctanomalyError("frames of Doe differ"), vol)


def test_error_lines_name_the_file_and_say_what_happened():
    from octanomaly.cli.map import error_line

    p = Path("d/eye.nii.gz")
    assert error_line(p, InputError(p, "bad")) == "d/eye.nii.gz: bad"
    assert error_line(p, OSError(28, "No space left on device", "o/x.png")) == (
        "d/eye.nii.gz: No space left on device (o/x.png); nothing was written for it"
    )
    assert error_line(p, ValueError("odd")).startswith("d/eye.nii.gz: unexpected ValueError: odd")
