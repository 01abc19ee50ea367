"""Output safety of ``octanomaly map`` (issue 12 items 1, 2, 4, 7): never destroy a user's file,
never write over an input of the batch, a rerun replaces exactly its own earlier set, and a
volume's set appears whole or not at all (failures and Ctrl-C roll back)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.data.phantom import make_phantom
from octanomaly.errors import InputError
from octanomaly.io import load_volume
from octanomaly.io.atomic import commit_entries
from octanomaly.io.manifest import is_listed, read_manifest
from octanomaly.io.nifti import write_volume
from octanomaly.scoring import load_run, map_volume, write_outputs
from octanomaly.scoring.outputs import check_outputs, choose_stem
from tests._patches import tree_hashes

runner = CliRunner()


_tree = tree_hashes


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


@pytest.fixture(scope="module")
def loaded_run(tiny_run):
    return load_run(tiny_run, "cpu")


@pytest.fixture(scope="module")
def mapped(tmp_path_factory, loaded_run):
    """(input path, volume, result) of a small drusen phantom mapped with the tiny test run."""
    root = tmp_path_factory.mktemp("mapped")
    src = write_volume(
        make_phantom(5, n_bscans=3, depth=128, width=128, lesions="drusen").volume,
        root / "eye.nii.gz",
    )
    volume = load_volume(src)
    return src, volume, map_volume(volume, loaded_run, device="cpu", threshold=60.0)


def test_rerun_replaces_own_set_and_removes_stale_files(tmp_path, mapped):
    src, volume, result = mapped
    out = tmp_path / "out"
    first = write_outputs(result, volume, out, "eye", all_bscans=True)
    assert first["bscans"].is_dir() and len(list(first["bscans"].iterdir())) == 3
    manifest = read_manifest(first["summary"])
    assert manifest is not None and manifest["generator"].startswith("octanomaly")
    for kind, path in first.items():
        if kind != "summary":
            assert is_listed(out, path.name, manifest), kind
    # rerun without overlays: its own files are replaced, the stale overlay folder goes
    second = write_outputs(dataclasses.replace(result, flagged=[]), volume, out, "eye")
    assert "bscans" not in second and not (out / "eye_bscans").exists()
    assert json.loads(second["summary"].read_text())["flagged_bscans"] == []
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in second.values())


def test_strangers_file_is_refused_and_kept(tmp_path, mapped):
    src, volume, result = mapped
    out = tmp_path / "out"
    out.mkdir()
    (out / "eye_mask.nii.gz").write_bytes(b"the user's own mask")
    before = _tree(out)
    with pytest.raises(
        InputError, match="eye_mask.nii.gz exists and was not written by octanomaly"
    ):
        write_outputs(result, volume, out, "eye")
    assert _tree(out) == before and not _hidden(out)


def test_own_file_edited_since_is_refused(tmp_path, mapped):
    src, volume, result = mapped
    out = tmp_path / "out"
    paths = write_outputs(result, volume, out, "eye")
    with open(paths["enface"], "ab") as f:
        f.write(b"edited")  # the user changed it: no longer octanomaly's
    before = _tree(out)
    with pytest.raises(InputError, match="eye_enface.png exists and was not written"):
        write_outputs(result, volume, out, "eye")
    assert _tree(out) == before
    summary = paths["summary"]
    summary.write_text(summary.read_text().replace('"stride"', '"stride" ', 1))
    assert read_manifest(summary) is None  # an edited summary is no manifest either


def test_another_inputs_results_are_not_replaced(tmp_path, mapped):
    src, volume, result = mapped
    out = tmp_path / "out"
    write_outputs(result, volume, out, "eye")
    other = tmp_path / "b" / "eye.nii.gz"
    with pytest.raises(InputError, match="another input"):
        check_outputs(out, "eye", other)
    assert choose_stem(out, "eye", other, set()) == "eye-2"
    assert choose_stem(out, "eye", src, set()) == "eye"  # its own earlier set: same name
    assert choose_stem(out, "eye", src, {(str(out.resolve()), "eye")}) == "eye-2"


@pytest.mark.parametrize("what", ["save_enface", "save_bscan_overlays"])
def test_failure_while_writing_keeps_the_old_set(tmp_path, mapped, monkeypatch, what):
    """Also when the B-scan overlays (written on a thread of their own) fail."""
    import octanomaly.report as report

    src, volume, result = mapped
    out = tmp_path / "out"
    write_outputs(result, volume, out, "eye", all_bscans=True)
    before = _tree(out)

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, what, broken)
    with pytest.raises(OSError, match="No space"):
        write_outputs(result, volume, out, "eye", all_bscans=True)
    assert _tree(out) == before and not _hidden(out)


@pytest.mark.parametrize("fail_at", [1, 4, 7, 9])
def test_interrupt_while_moving_in_restores_the_old_set(tmp_path, mapped, monkeypatch, fail_at):
    src, volume, result = mapped
    out = tmp_path / "out"
    write_outputs(result, volume, out, "eye", all_bscans=True)
    before = _tree(out)
    moves: list[str] = []
    real_replace = os.replace

    def replace(a, b):  # count only the moves of the commit (old set aside, new set in)
        if Path(b).parent == out or Path(b).parent.name.startswith(".octanomaly-old-"):
            moves.append(Path(b).name)
            if len(moves) == fail_at:
                raise KeyboardInterrupt
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):  # 6 old entries go aside, then 5 new ones move in
        write_outputs(dataclasses.replace(result, flagged=[]), volume, out, "eye")
    monkeypatch.undo()
    assert len(moves) >= fail_at  # interrupted at move fail_at (then the restoring moves)
    assert _tree(out) == before and not _hidden(out)


def test_commit_entries_moves_a_whole_set(tmp_path):
    tmp, dest = tmp_path / ".tmp", tmp_path / "dest"
    tmp.mkdir()
    dest.mkdir()
    (tmp / "a.txt").write_text("new a")
    (tmp / "d").mkdir()
    (tmp / "d" / "x.png").write_text("new x")
    (dest / "a.txt").write_text("old a")
    (dest / "stale.txt").write_text("old stale")
    (dest / "other.txt").write_text("not ours")
    commit_entries(tmp, dest, ["a.txt", "d"], remove=["stale.txt"])
    assert (dest / "a.txt").read_text() == "new a"
    assert (dest / "d" / "x.png").read_text() == "new x" and not (dest / "stale.txt").exists()
    assert (dest / "other.txt").read_text() == "not ours" and not _hidden(dest)


def _phantom_file(path: Path, seed: int = 5) -> Path:
    vol = make_phantom(seed, n_bscans=3, depth=128, width=128, lesions="drusen").volume
    return write_volume(vol, path)


def _errors(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("octanomaly: error")]


def test_cli_never_writes_over_an_input_of_the_batch(tmp_path, tiny_run):
    eye = _phantom_file(tmp_path / "eye.nii.gz")
    other = _phantom_file(tmp_path / "eye_volume.nii.gz", seed=6)  # named like eye's output
    before = _tree(tmp_path)
    res = runner.invoke(
        app, ["map", str(eye), str(other), "--model", str(tiny_run), "--device", "cpu"]
    )
    assert res.exit_code == 2, res.output
    errors = _errors(res)
    assert len(errors) == 1 and "eye.nii.gz" in errors[0] and "input of this batch" in errors[0]
    after = _tree(tmp_path)
    assert {k: after[k] for k in before} == before  # inputs untouched
    assert (tmp_path / "eye_volume_summary.json").is_file()  # the other one was mapped
    assert not (tmp_path / "eye_summary.json").exists() and not _hidden(tmp_path)


def test_cli_same_stem_gets_a_second_name_and_reruns_keep_it(tmp_path, tiny_run):
    a = _phantom_file(tmp_path / "a" / "scan.nii.gz", seed=1)
    b = _phantom_file(tmp_path / "b" / "scan.nii.gz", seed=2)
    out = tmp_path / "out"
    args = ["map", str(a), str(b), "--out", str(out), "--model", str(tiny_run), "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if "scan-2_*" in line]
    assert len(warnings) == 1 and str(b) in warnings[0]
    sa = json.loads((out / "scan_summary.json").read_text())
    sb = json.loads((out / "scan-2_summary.json").read_text())
    assert sa["manifest"]["source_id"] != sb["manifest"]["source_id"]
    res = runner.invoke(app, [*args[:1], *args[2:]])
    assert res.exit_code == 0, res.output  # b alone: still scan-2, a's results untouched
    assert json.loads((out / "scan_summary.json").read_text()) == sa
    assert not list(out.glob("scan-3*"))


@pytest.mark.parametrize("case", ["file", "input", "inside_input_folder", "read_only"])
def test_cli_bad_out_is_one_line_before_any_work(tmp_path, case, monkeypatch, tiny_run):
    from PIL import Image

    vol = make_phantom(1, n_bscans=2, depth=128, width=128).volume
    folder = tmp_path / "bscans"
    folder.mkdir()
    for i, b in enumerate(vol.data):
        Image.fromarray(b).save(folder / f"b{i}.png")
    single = _phantom_file(tmp_path / "eye.nii.gz")
    inputs = [str(folder), str(single)]
    out = {
        "file": tmp_path / "notes.txt",
        "input": single,
        "inside_input_folder": folder / "results",
        "read_only": tmp_path / "ro" / "out",
    }[case]
    if case == "file":
        out.write_text("my notes")
    if case == "read_only":
        import errno

        import octanomaly.scoring.outputs as outputs

        out.parent.mkdir()
        out.parent.chmod(0o500)
        if os.geteuid() == 0:  # root writes anyway: act as a read-only file system instead

            def read_only(*a, **k):
                raise OSError(errno.EROFS, "Read-only file system")

            monkeypatch.setattr(outputs, "tempfile", type("T", (), {"mkstemp": read_only}))
    before = _tree(tmp_path)
    res = runner.invoke(
        app, ["map", *inputs, "--out", str(out), "--model", str(tiny_run), "--device", "cpu"]
    )
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "--out" in res.stderr, res.stderr
    assert "Traceback" not in res.output
    assert _tree(tmp_path) == before and not (folder / "results").exists()


def test_cli_users_mask_beside_the_input_survives_and_rerun_works(tmp_path, tiny_run):
    eye = _phantom_file(tmp_path / "eye.nii.gz")
    args = ["map", str(eye), "--model", str(tiny_run), "--device", "cpu"]
    (tmp_path / "eye_mask.nii.gz").write_bytes(b"hand-drawn mask")
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "eye_mask.nii.gz exists and was not written" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eye.nii.gz", "eye_mask.nii.gz"]
    (tmp_path / "eye_mask.nii.gz").unlink()
    assert runner.invoke(app, args).exit_code == 0
    first = _tree(tmp_path)
    res = runner.invoke(app, args)  # a rerun replaces its own set with the same files
    assert res.exit_code == 0, res.output
    assert set(_tree(tmp_path)) == set(first) and not _hidden(tmp_path)


def test_a_folder_of_bscans_ignores_earlier_outputs_written_into_it(tmp_path, tiny_run):
    from PIL import Image

    scans = tmp_path / "scans"
    scans.mkdir()
    vol = make_phantom(2, n_bscans=3, depth=128, width=128).volume
    for i, b in enumerate(vol.data):
        Image.fromarray(b).save(scans / f"b{i}.png")
    args = ["--model", str(tiny_run), "--device", "cpu"]
    res = runner.invoke(app, ["map", str(scans / "b0.png"), *args])  # outputs land in scans/
    assert res.exit_code == 0, res.output
    assert (scans / "b0_enface.png").is_file()
    again = load_volume(scans)
    assert again.shape == (3, 128, 128)  # b0_enface.png is not taken for a B-scan
    res = runner.invoke(app, ["map", str(scans), *args])
    assert res.exit_code == 0, res.output
