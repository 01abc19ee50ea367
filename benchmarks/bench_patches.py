"""Patches per second drawn by :class:`~octanomaly.data.healthy.PatchSampler` from cached B-scans.

Usage: ``python benchmarks/bench_patches.py [--bscans 100] [--batch 64] [--draws 2000]``.
Synthetic cache of 496x768 B-scans with a retina band (the sampler never looks at content),
64x64 patches, CPU; prints patches/s for the default thread count and for one thread.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from octanomaly.data.healthy import PatchSampler
from octanomaly.transforms.preprocess import PreprocessingConfig


def rate(sampler: PatchSampler, batch: int, draws: int) -> float:
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        sampler.sample(batch, gen)
    t0 = time.perf_counter()
    for _ in range(draws):
        sampler.sample(batch, gen)
    return batch * draws / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bscans", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--draws", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    imgs = [rng.uniform(-1, 1, (496, 768)).astype(np.float32) for _ in range(args.bscans)]
    masks = []
    for _ in range(args.bscans):
        m = np.zeros((496, 768), dtype=bool)
        m[200:340] = True
        masks.append(m)
    t0 = time.perf_counter()
    sampler = PatchSampler(imgs, masks, PreprocessingConfig())
    build = time.perf_counter() - t0
    print(f"cache: {args.bscans} B-scans 496x768, {sampler.n_positions} positions, {build:.1f} s")
    r = rate(sampler, args.batch, args.draws)
    print(
        f"batch {args.batch} of 64x64, {torch.get_num_threads()} torch threads: {r:,.0f} patches/s"
    )
    torch.set_num_threads(1)
    r1 = rate(sampler, args.batch, args.draws)
    print(f"batch {args.batch} of 64x64, 1 torch thread: {r1:,.0f} patches/s")


if __name__ == "__main__":
    main()
