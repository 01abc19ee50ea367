"""``octanomaly models``: listing run folders (table and JSON), model cards, non-run folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.errors import InputError
from octanomaly.scoring import load_run

runner = CliRunner()


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("checkpoint", "*.png", "*.jsonl"))
    return dest


def test_lists_runs_found_under_runs_dir(tmp_path, tiny_run):
    _copy(tiny_run, tmp_path / "runs" / "exp10" / "best")
    _copy(tiny_run, tmp_path / "runs" / "exp2")
    (tmp_path / "runs" / "notes").mkdir()  # not a run: ignored by the search
    res = runner.invoke(app, ["models", "--runs-dir", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert "exp2" in res.stdout and "best" in res.stdout and "fanogan" in res.stdout
    assert "notes" not in res.stdout
    assert res.stdout.index("exp2") < res.stdout.index("best")  # natural order: exp2 < exp10


def test_json_fields(tmp_path, tiny_run):
    res = runner.invoke(app, ["models", str(tiny_run), "--json"])
    assert res.exit_code == 0, res.output
    rows = [r for r in json.loads(res.stdout) if not r["bundled"]]
    assert len(rows) == 1
    row = rows[0]
    run = load_run(tiny_run, device="cpu")
    assert row["path"] == str(tiny_run) and row["name"] == tiny_run.name
    assert (row["model"], row["patch_size"], row["width"]) == ("fanogan", 32, 4)
    assert row["steps"] == {"gan": 3, "encoder": 3}
    assert row["target_spacing"] == run.cfg.preprocessing.target_spacing
    assert row["run_id"] == run.run_id and len(row["run_id"]) == 12
    assert row["calibration"] == "maps" and row["maps_calibrated"] is True
    assert row["card"] is False
    weights = (tiny_run / "model.safetensors").stat().st_size / 1e6
    assert weights <= row["size_mb"] < weights + 1


def test_card_printed_when_present(tmp_path, tiny_run):
    run = _copy(tiny_run, tmp_path / "runs" / "carded")
    text = "# Model card\n\nTrained on phantoms; research use only.\n"
    (run / "MODEL_CARD.md").write_text(text, encoding="utf-8")
    by_path = runner.invoke(app, ["models", "--card", str(run)])
    assert by_path.exit_code == 0, by_path.output
    assert by_path.stdout == text
    by_name = runner.invoke(
        app, ["models", "--card", "carded", "--runs-dir", str(tmp_path / "runs")]
    )
    assert by_name.exit_code == 0 and by_name.stdout == text
    listed = runner.invoke(app, ["models", str(run), "--json"])
    assert [r["card"] for r in json.loads(listed.stdout) if not r["bundled"]] == [True]


def test_card_missing_is_one_line_error(tiny_run):
    res = runner.invoke(app, ["models", "--card", str(tiny_run)])
    assert res.exit_code == 2
    assert "MODEL_CARD.md" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_non_run_folder_is_one_line_error(tmp_path, tiny_run):
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    shutil.copy(tiny_run / "config.yaml", folder / "config.yaml")
    for args in (["models", str(folder)], ["models", "--card", str(folder)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "not_a_run" in lines[0] and "model.safetensors" in lines[0]
        assert "Traceback" not in res.output


def test_empty_runs_dir_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("octanomaly.runs.BUNDLED_DIR", tmp_path / "no-bundled")
    res = runner.invoke(app, ["models", "--runs-dir", str(tmp_path / "nothing")])
    assert res.exit_code == 0, res.output
    assert "no bundled model installed" in res.stdout and "no local runs" in res.stdout
    res = runner.invoke(app, ["models", "--runs-dir", str(tmp_path / "nothing"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout) == []


def test_bundled_models_listed_first_by_name_and_picked_by_name(tmp_path, tiny_run, monkeypatch):
    from octanomaly.cli.models import resolve_model

    root = tmp_path / "bundled"
    for name in ("ganomaly", "fanogan"):
        bundled = _copy(tiny_run, root / name)
        (bundled / "MODEL_CARD.md").write_text(f"# {name} card\n", encoding="utf-8")
    (root / "half-copied").mkdir()  # no weights: not a bundled model
    monkeypatch.setattr("octanomaly.runs.BUNDLED_DIR", root)
    monkeypatch.setattr("octanomaly.runs.DEFAULT_BUNDLED", "ganomaly")
    _copy(tiny_run, tmp_path / "runs" / "mine")
    res = runner.invoke(app, ["models", "--runs-dir", str(tmp_path / "runs"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [(r["name"], r["bundled"], r["card"]) for r in rows] == [
        ("fanogan", True, True),
        ("ganomaly (default)", True, True),
        ("mine", False, False),
    ]
    for name, card in (("default", "ganomaly"), ("fanogan", "fanogan")):
        res = runner.invoke(app, ["models", "--card", name])
        assert res.exit_code == 0 and res.stdout == f"# {card} card\n"
    assert resolve_model(None) == resolve_model("default") == root / "ganomaly"
    assert resolve_model("fanogan") == root / "fanogan"
    with pytest.raises(InputError, match="default, fanogan, ganomaly"):
        resolve_model("anogan", tmp_path / "runs")
    table = runner.invoke(app, ["models", "--runs-dir", str(tmp_path / "runs")])
    assert "no bundled model" not in table.stdout and "default" in table.stdout
