"""A non-editable install (a built wheel) carries the shipped configs and the bundled model.

The wheel is built from a copy of the sources (nothing is written into the checkout) and
installed with ``pip install --target`` (no dependencies: the test's own environment has them);
``load_config(model=...)``, what ``octanomaly train --model NAME`` calls, must then give the
shipped ``configs/<model>.yaml`` values, not the pydantic fallbacks (10,000 steps per stage).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from octanomaly.models import MODELS

ROOT = Path(__file__).resolve().parents[1]


def _pip(*args: str, cwd: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``site`` folder holding octanomaly installed from a wheel built from a source copy."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "octanomaly", src / "octanomaly", ignore=ignore)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src), cwd=tmp)
    (wheel,) = (tmp / "dist").glob("octanomaly-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in MODELS:  # each method: its configs and its bundled, calibrated, carded run
        assert {f"octanomaly/configs/{model}.yaml", f"octanomaly/configs/{model}-cpu.yaml"} <= names
        for f in ("model.safetensors", "config.yaml", "calibration.json", "normative.safetensors",
                  "feature_bank.safetensors", "MODEL_CARD.md"):  # fmt: skip
            assert f"octanomaly/bundled/{model}/{f}" in names
    site = tmp / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=tmp)
    return site


def test_wheel_install_loads_the_shipped_configs(installed, tmp_path):
    code = (
        "import json, octanomaly.config as c, octanomaly.scoring as s\n"
        "print(json.dumps({'module': c.__file__, 'bundled': str(s.default_model_dir()),\n"
        "    'configs': {m: c.load_config(model=m).model_dump(mode='json')\n"
        "                for m in c.MODELS}}))"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.splitlines()[-1])
    assert Path(got["module"]).is_relative_to(installed), got["module"]  # not the checkout
    assert Path(got["bundled"]).is_relative_to(installed)
    for model, cfg in got["configs"].items():
        shipped = yaml.safe_load((ROOT / "octanomaly" / "configs" / f"{model}.yaml").read_text())
        for section, values in shipped.items():
            for key, value in values.items():
                assert cfg[section][key] == _json(value), f"{model}: {section}.{key}"
    assert got["configs"]["fanogan"]["training"]["steps"] == {"gan": 100000, "encoder": 50000}


def _json(value):
    """``value`` as it comes back from JSON (tuples are lists)."""
    return json.loads(json.dumps(value))


def test_wheel_install_trains_fanogan_with_the_shipped_config(installed, tmp_path):
    from octanomaly.data.phantom import make_phantom
    from octanomaly.io.nifti import write_volume

    data = tmp_path / "healthy"
    data.mkdir()
    for seed in (0, 1):
        vol = make_phantom(seed, n_bscans=2, depth=128, width=128).volume
        write_volume(vol, data / f"h{seed}.nii.gz")
    out = tmp_path / "run"
    args = ["train", str(data), "--model", "fanogan", "--max-steps", "2", "--batch-size", "2"]
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "2"}
    res = subprocess.run(
        [sys.executable, "-m", "octanomaly", *args, "--out", str(out), "--device", "cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    shipped = yaml.safe_load((ROOT / "octanomaly" / "configs" / "fanogan.yaml").read_text())
    shipped["training"]["batch_size"] = 2  # the one value the command line overrides
    for section, values in shipped.items():
        for key, value in values.items():
            assert saved[section][key] == _json(value), f"{section}.{key}"
    assert (out / "model.safetensors").is_file()
