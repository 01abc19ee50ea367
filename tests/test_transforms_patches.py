"""Patch grid/random transforms, stitching, the healthy PatchSampler and its split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from octanomaly.data.healthy import PatchSampler, group_of, load_healthy
from octanomaly.transforms.patches import (
    GridPatches,
    GridPatchesd,
    RandRetinaPatches,
    RandRetinaPatchesd,
    coverage,
    grid_coords,
    stitch,
)
from octanomaly.transforms.preprocess import PreprocessingConfig


def _toy(n: int = 2, d: int = 60, w: int = 90):
    img = np.random.default_rng(0).uniform(-1, 1, (n, d, w)).astype(np.float32)
    mask = np.zeros((n, d, w), dtype=bool)
    mask[:, 20:40, 10:80] = True
    mask[1] = False  # a B-scan without retina
    return img, mask


def test_grid_covers_mask_and_only_mask() -> None:
    img, mask = _toy()
    patches, coords = GridPatches(16, 8)(img, mask)
    assert patches.shape == (len(coords), 1, 16, 16) and (coords[:, 0] == 0).all()
    covered = np.zeros_like(mask)
    for b, r, c in coords:
        covered[b, r : r + 16, c : c + 16] = True
        assert mask[b, r : r + 16, c : c + 16].any()
    assert covered[mask].all()
    b, r, c = coords[3]
    np.testing.assert_array_equal(patches[3, 0], img[b, r : r + 16, c : c + 16])
    d = GridPatchesd("image", patch_size=16, stride=8)({"image": img, "mask": mask})
    np.testing.assert_array_equal(d["coords"], coords)
    np.testing.assert_array_equal(d["patches"], patches)


def test_stitch_averages_exactly() -> None:
    coords = grid_coords(np.ones((2, 40, 50), bool), 16, 6)
    vals = np.where(coords[:, 0] == 0, 3.0, -2.0)
    out = stitch(vals, coords, (2, 40, 50), 16)
    np.testing.assert_allclose(out[0], 3.0)
    np.testing.assert_allclose(out[1], -2.0)
    maps = np.broadcast_to(np.arange(16.0)[None, None, :], (len(coords), 16, 16))
    stitched = stitch(maps, coords, (2, 40, 50), 16)  # per-pixel maps: averages of columns
    assert stitched.shape == (2, 40, 50) and np.isfinite(stitched).all()
    one = stitch(np.ones(1), np.array([[0, 5, 5]]), (1, 30, 30), 16, fill=0.0)
    assert one[0, 5:21, 5:21].min() == 1.0 and one.sum() == 256


def test_random_patches_coverage_and_determinism() -> None:
    img, mask = _toy()
    t = RandRetinaPatches(num_samples=32, patch_size=16, min_coverage=0.75)
    t.set_random_state(5)
    p1, c1 = t(img, mask)
    t.set_random_state(5)
    p2, c2 = t(img, mask)
    np.testing.assert_array_equal(c1, c2)
    cov = coverage(mask, 16)
    assert all(cov[b, r, c] >= 0.75 for b, r, c in c1) and (c1[:, 0] == 0).all()
    td = RandRetinaPatchesd("image", num_samples=32, patch_size=16, min_coverage=0.75)
    td.set_random_state(5)
    d = td({"image": img, "mask": mask})
    np.testing.assert_array_equal(d["coords"], c1)
    np.testing.assert_array_equal(d["patches"], p1)
    empty, ec = t(img, np.zeros_like(mask))
    assert empty.shape == (0, 1, 16, 16) and ec.shape == (0, 3)


def test_sampler_shapes_determinism_and_content() -> None:
    img, mask = _toy()
    cfg = PreprocessingConfig(patch_size=16, min_retina_coverage=0.5, train_stride=1)
    small = [img[0, :50, :70], img[1]]  # different sizes share one padded cache
    s = PatchSampler(small, [mask[0, :50, :70], mask[1]], cfg)
    x1 = s.sample(64, torch.Generator().manual_seed(1))
    x2 = s.sample(64, torch.Generator().manual_seed(1))
    x3 = s.sample(64, torch.Generator().manual_seed(2))
    assert x1.shape == (64, 1, 16, 16) and x1.dtype == torch.float32
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    b, r, c = s.positions[5].tolist()
    assert torch.equal(s.take(torch.tensor([5]))[0, 0], s.images[b, r : r + 16, c : c + 16])
    assert (s.positions[:, 0] == 0).all()  # the B-scan without retina gives no patches


def test_group_names() -> None:
    from pathlib import Path

    assert group_of(Path("/d/NORMAL-123-4.jpeg")) == group_of(Path("/e/NORMAL-123-7.jpeg"))
    assert group_of(Path("/d/amd_1084498_1.jpg")) == "patient:amd_1084498"
    assert group_of(Path("/d/1-Input.tif")) != group_of(Path("/d/2-Input.tif"))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_load_healthy_splits_by_group(tmp_path) -> None:
    from octanomaly.data.phantom import make_phantom

    ph = make_phantom(seed=4, n_bscans=6, depth=128, width=128)
    for i in range(6):  # 3 patients x 2 B-scans each, in a nested folder
        sub = tmp_path / "a" if i % 2 else tmp_path
        sub.mkdir(exist_ok=True)
        Image.fromarray(ph.volume.data[i]).save(sub / f"NORMAL-{100 + i // 2}-{i}.png")
    cfg = PreprocessingConfig(patch_size=32, train_stride=4)
    train, val = load_healthy([tmp_path], cfg, val_fraction=0.34, seed=0)
    assert len(train) + len(val) == 6 and len(val) >= 1
    assert not set(train.groups) & set(val.groups)
    for name in val.sources:
        stem = name.split("/")[-1].split("#")[0]
        assert not any(stem.rsplit("-", 1)[0] in t for t in train.sources)
    x = train.sample(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 32, 32) and x.min() >= -1 and x.max() <= 1
    t2, v2 = load_healthy([tmp_path], cfg, val_fraction=0.34, seed=0)
    assert t2.sources == train.sources and v2.sources == val.sources
