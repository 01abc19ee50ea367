"""Benchmark ``octanomaly map`` end to end on the real drusen volume, and AnoGAN batched mapping.

    python benchmarks/bench_map.py [--run RUN_DIR] [--device auto|cpu|cuda] [--stride S]
                                   [--anogan-steps 20] [--anogan-patches 8]

Without ``--run`` an untrained default-config f-AnoGAN (``configs/fanogan.yaml``) is built and
given a patch-level calibration: timings do not depend on training. Part 2 times AnoGAN latent
mapping of the same patches one at a time (as the reference implementations do) and all at once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from octanomaly.config import load_config
from octanomaly.devices import resolve_device, tune_malloc
from octanomaly.io import load_volume
from octanomaly.models import build_model
from octanomaly.runs import save_model
from octanomaly.scoring import calibrate_run, load_run, map_volume, output_stem, write_outputs
from octanomaly.transforms.patches import extract, grid_coords
from octanomaly.transforms.preprocess import preprocess_volume

VOLUME = (
    Path(__file__).resolve().parents[2] / "shared/data/volumes/spectralis-drusen/OCT-Volume-Scan"
)
console = Console()


def _untrained_run(model: str, root: Path, volume, overrides: dict | None = None) -> Path:
    """A run folder with untrained default-config weights, calibrated on ``volume`` (timing)."""
    cfg = load_config(model=model, overrides=overrides)
    torch.manual_seed(0)
    net = build_model(cfg.model).eval()
    run = save_model(root / model, net, cfg, {})
    calibrate_run(run, [volume], device="cpu", progress=False)
    return run


def bench_map(run_dir: Path, device: str, stride: int | None, out: Path) -> None:
    t0 = time.perf_counter()
    volume = load_volume(VOLUME)
    t_read = time.perf_counter() - t0
    run = load_run(run_dir, device)
    if run.model.device.type == "cuda":
        map_volume(volume, run, stride=stride)  # warm-up (CUDA context, cuDNN autotune)
    t1 = time.perf_counter()
    res = map_volume(volume, run, stride=stride, progress=True)
    write_outputs(res, volume, out, output_stem(VOLUME), timings={"read": t_read})
    t_map_write = time.perf_counter() - t1
    timings = {"read": t_read, **res.timings}
    timings["write"] = t_map_write - sum(res.timings.values())
    table = Table(
        title=f"map {VOLUME.name} {list(volume.shape)}: {run.model.name} width "
        f"{run.cfg.model.width}, stride {res.stride}, {res.n_patches} patches, "
        f"device {run.model.device}, {torch.get_num_threads()} CPU threads"
    )
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for k, v in timings.items():
        table.add_row(k, f"{v:.2f}")
    table.add_row("[bold]total (read -> files written)", f"[bold]{t_read + t_map_write:.2f}")
    table.add_row("patches / s (score stage)", f"{res.n_patches / res.timings['score']:.0f}")
    console.print(table)


def bench_anogan(volume, device: str, steps: int, n_patches: int, root: Path) -> None:
    run = load_run(_untrained_run("anogan", root, volume), device)
    model, pre = run.model, run.cfg.preprocessing
    dev = model.device
    prep = preprocess_volume(volume, pre)
    coords = grid_coords(prep["mask"], model.patch_size, pre.score_stride)
    pick = coords[np.linspace(0, len(coords) - 1, n_patches).astype(int)]
    x = torch.from_numpy(extract(prep["image"], pick, model.patch_size)).to(dev)
    kw = {"steps": steps, "early_stop": False}

    def timed(fn) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    model.map(x[:1], **kw)  # warm-up
    t_single = timed(lambda: [model.map(x[i : i + 1], **kw) for i in range(n_patches)])
    t_batch = timed(lambda: model.map(x, **kw))
    per_patch_step = t_batch / (n_patches * steps)
    gamma = run.cfg.model.mapping.steps
    table = Table(title=f"AnoGAN latent mapping, {n_patches} patches x {steps} steps on {dev}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("one patch at a time (s)", f"{t_single:.2f}")
    table.add_row("all patches batched (s)", f"{t_batch:.2f}")
    table.add_row("speed-up", f"{t_single / t_batch:.1f}x")
    table.add_row(
        f"volume estimate: {len(coords)} patches x Gamma {gamma} batched (s)",
        f"{per_patch_step * len(coords) * gamma:.0f}",
    )
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="trained run folder (default: untrained f-AnoGAN)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--stride", type=int, default=None)
    ap.add_argument("--anogan-steps", type=int, default=20)
    ap.add_argument("--anogan-patches", type=int, default=8)
    ap.add_argument("--skip-anogan", action="store_true")
    args = ap.parse_args()
    tune_malloc()  # as the `octanomaly` command does, before any thread starts
    if not VOLUME.exists():
        console.print(f"skipped: the drusen volume is absent ({VOLUME})")
        return
    device = str(resolve_device(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = args.run or _untrained_run("fanogan", root, load_volume(VOLUME))
        bench_map(run_dir, device, args.stride, root / "out")
        if not args.skip_anogan:
            bench_anogan(load_volume(VOLUME), device, args.anogan_steps, args.anogan_patches, root)


if __name__ == "__main__":
    main()
