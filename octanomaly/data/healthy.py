"""Healthy training data: volumes or B-scan images from files/folders, preprocessed once,
cached as tensors, and sampled as random retina patches per training step.

A 2-D image file is its own 1-B-scan volume; its split group is the file stem without a
trailing ``-<n>``/``_<n>`` counter when the rest holds a patient number (``NORMAL-123-4`` ->
``NORMAL-123``, in whatever folder), so B-scans of one patient never straddle the
train/validation split. Every other readable file is a volume and its own group. B-scans
keep their native width (512 or 768 px Kermany scans are never resized to one shape).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from octanomaly.errors import InputError
from octanomaly.transforms.patches import valid_positions
from octanomaly.transforms.preprocess import PreprocessingConfig, preprocess_volume


@dataclass(frozen=True)
class HealthyFile:
    """One source: a file (or single-image volume) and its split group."""

    path: Path
    group: str


def group_of(path: Path) -> str:
    """Split group of a B-scan image: the stem minus a trailing counter if a patient id stays
    (same patient in any folder = one group), else the file itself."""
    m = re.match(r"^(.*\d.*?)[-_]\d+$", path.stem)
    return f"patient:{m.group(1)}" if m else str(path)


def source_group(path: Path) -> str:
    """Split group of a source file: a 2-D image's :func:`group_of`, else the file itself."""
    from octanomaly.io.images import image_kind

    return group_of(path) if image_kind(path) is not None else str(path)


def find_items(paths: Sequence[str | Path]) -> list[HealthyFile]:
    """Files under ``paths`` (recursive; side files and hidden ones skipped, see
    :func:`octanomaly.io.may_be_volume`), each with its split group; sorted, deterministic."""
    from octanomaly.io import may_be_volume

    items: list[HealthyFile] = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(p, "no such file or folder")
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            if any(part.startswith(".") for part in f.relative_to(p.parent).parts):
                continue
            if f == p or may_be_volume(f):
                items.append(HealthyFile(f, source_group(f)))
    if not items:
        raise InputError(Path(paths[0]) if paths else None, "no volumes or B-scan images found")
    return items


class PatchSampler:
    """Random ``P x P`` retina patches from cached B-scans, vectorised, on ``device``.

    B-scans of different sizes share one zero-padded tensor; valid top-left corners (retina
    coverage >= ``min_retina_coverage`` on a ``train_stride`` grid) are precomputed once.
    """

    def __init__(
        self,
        bscans: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        cfg: PreprocessingConfig,
        sources: Sequence[str] = (),
        groups: Sequence[str] = (),
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg, self.device = cfg, torch.device(device)
        self.patch_size = p = cfg.patch_size
        self.sources = list(sources)  #: "<path>#<bscan>" of each cached B-scan
        self.groups = sorted(set(groups))  #: split groups the B-scans came from
        n = len(bscans)
        d = max([b.shape[0] for b in bscans] + [p])
        w = max([b.shape[1] for b in bscans] + [p])
        img = np.full((n, d, w), -1.0, dtype=np.float32)
        msk = np.zeros((n, d, w), dtype=bool)
        for i, (b, m) in enumerate(zip(bscans, masks, strict=True)):
            img[i, : b.shape[0], : b.shape[1]] = b
            msk[i, : m.shape[0], : m.shape[1]] = m
        # positions per B-scan on its own extent: no patch reaches into the shared padding
        pos_list = [np.zeros((0, 3), dtype=np.int64)]
        for i, m in enumerate(masks):
            v = valid_positions(m[None], p, cfg.min_retina_coverage, cfg.train_stride)
            v = v[(v[:, 1] + p <= m.shape[0]) & (v[:, 2] + p <= m.shape[1])]
            v[:, 0] = i
            pos_list.append(v)
        pos = np.concatenate(pos_list)
        self.images = torch.from_numpy(img).to(self.device)
        self.masks = torch.from_numpy(msk).to(self.device)
        self.positions = torch.from_numpy(pos).to(self.device)
        self._pos_np = pos
        # (n, d-P+1, w-P+1, P, P) views of every window: gathering = one copy of n*P*P floats
        if self.device.type == "cpu":  # numpy fancy indexing: single-threaded, no overhead
            self._windows = np.lib.stride_tricks.sliding_window_view(img, (p, p), axis=(1, 2))
        else:
            self._windows = self.images.as_strided(
                (n, d - p + 1, w - p + 1, p, p), (d * w, w, 1, w, 1)
            )

    def __len__(self) -> int:
        """Number of cached B-scans."""
        return int(self.images.shape[0])

    @property
    def n_positions(self) -> int:
        """Number of valid patch positions."""
        return int(self.positions.shape[0])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, 1, P, P)`` float32 patches on the sampler's device, drawn uniformly."""
        if self.n_positions == 0:
            raise ValueError("no valid retina patch positions (empty dataset or masks)")
        gen_device = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randint(self.n_positions, (n,), generator=generator, device=gen_device)
        return self.take(idx.to(self.device))

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """Patches at position indices ``idx`` (``(n,)`` into :attr:`positions`)."""
        if self.device.type == "cpu":
            b, r, c = self._pos_np[idx.cpu().numpy()].T
            return torch.from_numpy(self._windows[b, r, c][:, None])
        b, r, c = self.positions[idx.to(self.device)].T
        return self._windows[b, r, c][:, None]


def load_healthy(
    paths: Sequence[str | Path],
    cfg: PreprocessingConfig,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[PatchSampler, PatchSampler]:
    """Read, preprocess and cache healthy data; split by group into (train, validation)."""
    from octanomaly.io import load_volume
    from octanomaly.progress import progress_bar

    items = find_items(paths)
    groups = sorted({it.group for it in items})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    n_val = int(round(val_fraction * len(groups)))
    if val_fraction > 0 and len(groups) >= 2:
        n_val = min(max(n_val, 1), len(groups) - 1)
    val_groups = {groups[i] for i in order[:n_val]}
    split: dict[bool, tuple[list, list, list]] = {False: ([], [], []), True: ([], [], [])}
    with progress_bar() as progress:
        task = progress.add_task("preprocessing healthy data", total=len(items))
        for it in items:
            try:
                vol = load_volume(it.path)
            except InputError as exc:
                if len(items) == 1:
                    raise
                warnings.warn(f"skipped {exc}", stacklevel=2)
                progress.advance(task)
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                prep = preprocess_volume(vol, cfg)
            for w in caught:
                warnings.warn(f"{it.path}: {w.message}", stacklevel=2)
            imgs, msks, srcs = split[it.group in val_groups]
            for b in range(prep["image"].shape[0]):
                if prep["mask"][b].any():
                    imgs.append(prep["image"][b])
                    msks.append(prep["mask"][b])
                    srcs.append(f"{it.path}#{b}")
            progress.advance(task)
    out = []
    for is_val in (False, True):
        imgs, msks, srcs = split[is_val]
        grp = val_groups if is_val else set(groups) - val_groups
        sampler = PatchSampler(imgs, msks, cfg, srcs, sorted(grp), device)
        if sampler.n_positions == 0 and (grp or not is_val):
            raise InputError(
                None,
                f"no retina found in the {'validation' if is_val else 'training'} healthy data "
                f"({len(items)} input(s)): no B-scan has a retina band wide enough for one "
                f"{cfg.patch_size}-px patch; are these OCT B-scans?",
            )
        out.append(sampler)
    return out[0], out[1]
