"""``octanomaly layers`` and ``octanomaly patches`` end to end on tiny phantom data."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from octanomaly.cli import app
from octanomaly.data.phantom import make_phantom
from octanomaly.io import nifti


def test_layers_cli_writes_npz(tmp_path) -> None:
    ph = make_phantom(seed=6, n_bscans=2, depth=128, width=96)
    src = tmp_path / "vol.nii.gz"
    nifti.write_volume(ph.volume, src)
    out = tmp_path / "layers.npz"
    res = CliRunner().invoke(app, ["layers", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    z = np.load(out)
    assert z["ilm"].shape == z["bm"].shape == (2, 96)
    assert np.median(np.abs(z["bm"] - ph.bm)) < 3
    bad = CliRunner().invoke(app, ["layers", str(src), "-o", str(tmp_path / "x.txt")])
    assert bad.exit_code == 2 and not (tmp_path / "x.txt").exists()


def test_patches_cli_preview(tmp_path) -> None:
    ph = make_phantom(seed=7, n_bscans=2, depth=128, width=128)
    for i in range(2):
        Image.fromarray(ph.volume.data[i]).save(tmp_path / f"NORMAL-{i}-1.png")
    out = tmp_path / "prev.png"
    res = CliRunner().invoke(
        app, ["patches", str(tmp_path), "--preview", str(out), "--n", "9", "--patch-size", "32"]
    )
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 1000 and Image.open(out).size[0] > 100
