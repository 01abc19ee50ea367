"""AnoGAN: image AUROC and time against the number of latent-mapping steps, warm vs random start.

Usage::

    python benchmarks/anogan_steps.py RUN_DIR HEALTHY... [--data ../shared/data/kermany/dev]
        [--steps 0 10 25 50 100 500] [--limit-per-class 20] [--out benchmarks/results/anogan-steps]

For each setting (``init`` = encoder or random, ``steps``) a copy of the AnoGAN run with that
mapping is calibrated on the held-out ``HEALTHY`` B-scans (normative model, feature bank and
thresholds fitted with the same mapping, exactly as ``octanomaly calibrate`` does) and
evaluated on a seeded random ``--limit-per-class`` B-scans of each class of ``--data``
(``octanomaly evaluate``'s code). Steps 0 = the starting code itself (the encoder's ``E(x)``:
one step at a learning rate of 1e-12; not run for random starts). Prints a markdown table
(AUROC overall / per class, seconds per B-scan, calibration time) and writes
``anogan-steps.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/kermany/dev"


def _variant(run_dir: Path, work: Path, init: str, steps: int) -> Path:
    """A copy of the run (weights + config) whose mapping uses ``init`` and ``steps``."""
    import yaml

    dst = work / f"{init}-{steps}"
    dst.mkdir(parents=True)
    shutil.copy2(run_dir / "model.safetensors", dst / "model.safetensors")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    cfg["model"]["mapping"].update(init=init, steps=max(steps, 1))
    if steps == 0:  # the starting code only: one step of lr 0 (the loop needs one)
        cfg["model"]["mapping"]["lr"] = 1e-12
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    (dst / "calibration.json").write_text("{}", encoding="utf-8")
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("healthy", type=Path, nargs="+")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--steps", type=int, nargs="+", default=[0, 10, 25, 50, 100, 500])
    p.add_argument("--inits", nargs="+", default=["encoder", "random"])
    p.add_argument("--limit-per-class", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "anogan-steps")
    a = p.parse_args(argv)

    from octanomaly.evaluation.runner import RunScorer, evaluate_folder
    from octanomaly.scoring.calibration import calibrate_run

    rows = []
    with tempfile.TemporaryDirectory(prefix="anogan-steps-") as tmp:
        for init in a.inits:
            for steps in a.steps:
                if init == "random" and steps == 0:
                    continue
                variant = _variant(a.run_dir, Path(tmp), init, steps)
                cal = Path(tmp) / f"{variant.name}-cal"
                t0 = time.perf_counter()
                calibrate_run(variant, a.healthy, out=cal, device=a.device, progress=False)
                t_cal = time.perf_counter() - t0
                scorer = RunScorer(cal, device=a.device)
                t0 = time.perf_counter()
                ev = evaluate_folder(a.data, scorer, "NORMAL", limit_per_class=a.limit_per_class)
                t_eval = time.perf_counter() - t0
                m = ev.metrics
                n = m["n_normal"] + m["n_abnormal"]
                row = {
                    "init": init,
                    "steps": steps,
                    "image_auroc": m["image_auroc"],
                    "per_class_auroc": m["per_class_auroc"],
                    "n_bscans": n,
                    "seconds_per_bscan": t_eval / max(n, 1),
                    "calibration_seconds": t_cal,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "anogan-steps.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print("| start | steps | AUROC | CNV | DME | DRUSEN | s / B-scan | calibration |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        pc = r["per_class_auroc"]
        print(
            f"| {r['init']} | {r['steps']} | {r['image_auroc']:.3f} | "
            + " | ".join(f"{pc[c]:.3f}" for c in ("CNV", "DME", "DRUSEN"))
            + f" | {r['seconds_per_bscan']:.2f} | {r['calibration_seconds']:.0f} s |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
