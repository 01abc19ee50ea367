"""Map the bundled example B-scans and a synthetic phantom volume with the default model.

    python examples/map_examples.py [OUT_DIR]

Writes, per input, the NIfTI volume / anomaly map / mask, the en-face PNG, B-scan overlays and
the JSON summary into OUT_DIR (default ``octanomaly-out/examples``), then prints a score table
and where the overlays are. The phantom has ground-truth lesion masks, so the script also says
how much of the lesion volume the anomaly mask found.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from octanomaly import load_volume
from octanomaly.data.phantom import make_phantom
from octanomaly.scoring import default_model_dir, load_run, map_volume, write_outputs

HERE = Path(__file__).resolve().parent


def main(out_dir: Path) -> None:
    """Map every example and the phantom; print scores and output folders."""
    model_dir = default_model_dir()
    if model_dir is None:
        sys.exit("no bundled default model installed (octanomaly/bundled/)")
    run = load_run(model_dir, device="auto")
    print(f"model: {run.model.name} (run {run.run_id}) from {model_dir}")

    for path in sorted((HERE / "bscans").glob("*.jpeg")):
        volume = load_volume(path)
        result = map_volume(volume, run)
        files = write_outputs(result, volume, out_dir, path.stem, all_bscans=True)
        flag = "FLAGGED" if len(result.flagged) else "normal"
        print(f"{path.name:28s} score {result.volume_score:6.2f} z  {flag:8s} {files['summary']}")

    phantom = make_phantom(seed=3, n_bscans=9, lesions=("cyst", "srf", "drusen", "hrf"))
    result = map_volume(phantom.volume, run)
    files = write_outputs(result, phantom.volume, out_dir, "phantom", all_bscans=False)
    lesion = phantom.lesion_mask
    found = float(np.logical_and(result.mask > 0, lesion).sum() / max(int(lesion.sum()), 1))
    print(
        f"{'phantom (9 B-scans)':28s} score {result.volume_score:6.2f} z  "
        f"flagged B-scans {list(result.flagged)}; lesion voxels in the mask {found:.0%}"
    )
    print(f"overlays: {out_dir}/*_bscans/*.png, en-face maps: {out_dir}/*_enface.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("octanomaly-out/examples"))
