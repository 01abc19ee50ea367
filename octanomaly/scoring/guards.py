"""Up-front checks that a volume can be mapped by a run: size for its patches, memory.

Run before the expensive work so a refused volume costs nothing and says why in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from octanomaly.errors import InputError
from octanomaly.transforms.flatten import resample_shape
from octanomaly.transforms.preprocess import PreprocessingConfig
from octanomaly.volume import OCTVolume

#: Peak bytes of ``map`` per voxel of the input grid and per voxel of the preprocessed
#: (resampled) grid, plus a fixed base (Python, torch, the model). Fitted to measured peak RSS
#: (``/usr/bin/time -v octanomaly map``, bundled model, CPU): 0.46 GiB for a 3x128x128 phantom,
#: 1.09 GiB for 40x496x1024, 1.59 GiB for the 145x496x512 Spectralis volume, each resampled
#: to half size (the estimate is 1-7 % above each; see docs/benchmarks.md).
BYTES_PER_INPUT_VOXEL: int = 26
BYTES_PER_PREPROCESSED_VOXEL: int = 28
BASE_BYTES: int = 500 * 2**20


def preprocessed_shape(volume: OCTVolume, cfg: PreprocessingConfig) -> tuple[int, int, int]:
    """``(n, depth', width')`` of ``volume`` after the run's resampling to its target spacing."""
    n, depth, width = volume.shape
    if cfg.target_spacing is None:
        return n, depth, width
    d, w = resample_shape((depth, width), volume.spacing[1:], cfg.target_spacing)
    return n, d, w


def estimate_map_bytes(volume: OCTVolume, cfg: PreprocessingConfig) -> int:
    """Estimated peak memory (bytes) of mapping ``volume`` with preprocessing ``cfg``."""
    n, d, w = preprocessed_shape(volume, cfg)
    n0, d0, w0 = volume.shape
    return (
        BASE_BYTES + BYTES_PER_INPUT_VOXEL * n0 * d0 * w0 + BYTES_PER_PREPROCESSED_VOXEL * n * d * w
    )


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine, or the container's limit if lower; None if unknown."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            sizes.append(int(text))
    return min(sizes) if sizes else None


def check_mappable(
    volume: OCTVolume, cfg: PreprocessingConfig, memory_bytes: int | None = None
) -> None:
    """Raise :class:`InputError` naming the volume if, after resampling to the run's spacing,
    a B-scan is smaller than one model patch, or mapping would need more memory than the
    machine has (``memory_bytes``, default :func:`machine_memory_bytes`)."""
    where = volume.source_path or "<array>"
    n, d, w = preprocessed_shape(volume, cfg)
    patch = cfg.patch_size
    if d < patch or w < patch:
        raise InputError(
            where,
            f"B-scans of {volume.shape[2]}x{volume.shape[1]} px (width x height) become "
            f"{w}x{d} px at the model's spacing, smaller than its {patch}x{patch} px patches; "
            "too small to map (wrong --spacing?)",
        )
    need = estimate_map_bytes(volume, cfg)
    have = machine_memory_bytes() if memory_bytes is None else memory_bytes
    if have is not None and need > have:
        raise InputError(
            where,
            f"mapping {n}x{d}x{w} voxels (at the model's spacing) needs about "
            f"{need / 2**30:.1f} GiB of memory, more than this machine's {have / 2**30:.1f} GiB "
            "(wrong spacing? map fewer B-scans at a time)",
        )
