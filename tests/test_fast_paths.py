"""Issue 13: the faster `map` paths give exactly the values of the plain ones they replace."""

from __future__ import annotations

import os

import numpy as np
import pytest

from octanomaly.data.phantom import make_phantom
from octanomaly.transforms.preprocess import (
    PreprocessingConfig,
    preprocess_volume,
    restore_map,
    restore_maps,
)


@pytest.fixture(scope="module")
def volume():
    return make_phantom(seed=5, n_bscans=3, depth=160, width=192, lesions="all").volume


@pytest.mark.parametrize("target", [None, (0.0078, 0.0224)])
def test_restore_maps_equals_restore_map(volume, target) -> None:
    prep = preprocess_volume(volume, PreprocessingConfig(patch_size=32, target_spacing=target))
    rng = np.random.default_rng(0)
    z = rng.normal(size=prep["image"].shape).astype(np.float32)
    retina, got = restore_maps((prep["mask"], z), prep)
    assert retina.dtype == bool and got.dtype == np.float32 and got.shape == volume.shape
    np.testing.assert_array_equal(retina, restore_map(prep["mask"], prep).astype(bool))
    np.testing.assert_array_equal(got, restore_map(z, prep))


def test_map_restores_what_it_writes_with_the_eager_values(tiny_run) -> None:
    """anomaly, mask and retina as restored before; residual/score_map restored on access."""
    from octanomaly.scoring import load_run, map_volume
    from octanomaly.scoring.calibration import clean_mask
    from octanomaly.scoring.masks import core_percentile, keep_cored_regions
    from octanomaly.scoring.pipeline import DEFAULT_MIN_SIZE, _score_prepped, _threshold

    run = load_run(tiny_run, device="cpu")
    vol = make_phantom(seed=11, n_bscans=4, depth=128, width=128, lesions="all").volume
    result = map_volume(vol, run)
    # the eager restore of every map (the code before issue 13)
    prep = preprocess_volume(vol, run.cfg.preprocessing)
    _, maps, z, _ = _score_prepped(run, prep, None, None, False, {})
    retina = restore_map(prep["mask"], prep).astype(bool)
    anomaly = np.where(retina, np.maximum(restore_map(z, prep), 0.0), 0.0).astype(np.float32)
    residual = np.where(retina, restore_map(maps.residual, prep), 0.0).astype(np.float32)
    score_map = np.where(retina, restore_map(maps.score, prep), 0.0).astype(np.float32)
    mask = clean_mask(anomaly, _threshold(run, None)[1], DEFAULT_MIN_SIZE) * retina
    core = run.calibration.thresholds(core_percentile(_threshold(run, None)[0]))[0]
    mask = keep_cored_regions(mask.astype(np.uint8), anomaly, core)
    np.testing.assert_array_equal(result.retina, retina)
    np.testing.assert_array_equal(result.anomaly, anomaly)
    np.testing.assert_array_equal(result.mask, mask.astype(np.uint8))
    assert result.mask.dtype == np.uint8 and result.anomaly.dtype == np.float32
    np.testing.assert_array_equal(result.residual, residual)
    np.testing.assert_array_equal(result.score_map, score_map)
    assert result.residual is result.residual  # restored once


def _one_call(fn, x, *more, per_chunk=None):
    """``per_bscan`` without threads or chunks: the plain whole-array computation."""
    return fn(x, *more)


def _one_range(fn, n, per_chunk=None):
    """``per_range`` without threads or chunks."""
    return [fn(slice(0, n))]


def _wedged(volume) -> np.ndarray:
    """B-scans with saturated export wedges in two corners (Kermany-like padding)."""
    x = volume.data.astype(np.float32).copy()
    d, w = x.shape[1:]
    rows, cols = np.mgrid[:d, :w]
    x[:, (rows + cols) < 60] = x.max() * 1.05
    x[1, (rows - cols) > d - 70] = x.max() * 1.05
    return x


def test_threaded_layers_and_window_equal_one_call(volume, monkeypatch) -> None:
    from octanomaly.transforms import _threads, intensity, layers

    plain = volume.data.astype(np.float32)
    for x in (plain, _wedged(volume), np.concatenate([plain, _wedged(volume)])):

        def run(x=x):
            return (
                layers.detect_layers(x),
                intensity.percentile_window(x),
                intensity.padding_mask(x),
            )

        fast = run()
        with monkeypatch.context() as m:
            m.setattr(layers, "_per_bscan", _one_call)
            m.setattr(layers, "_per_range", _one_range)
            m.setattr(_threads, "per_bscan", _one_call)
            m.setattr(_threads, "per_range", _one_range)
            slow = run()
        for a, b in zip(fast[0], slow[0], strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fast[1], slow[1])
        np.testing.assert_array_equal(fast[2], slow[2])
    assert fast[2].any()  # the wedges were found


def test_padding_searched_once_gives_the_same_preprocessing(volume, monkeypatch) -> None:
    """DetectLayersd reuses FillPaddingd's mask: same ILM/BM/mask as searching everything."""
    from octanomaly.transforms import layers
    from octanomaly.transforms.intensity import fill_padding, padding_mask

    x = _wedged(volume)  # padding in every B-scan, two patterns
    x[0] = volume.data[0]  # and one B-scan without
    pad = padding_mask(x)
    filled = fill_padding(x, pad)
    assert not pad[0].any() and pad[1].any()
    np.testing.assert_array_equal(layers.refilled_padding(filled, pad), padding_mask(filled))
    vol = volume.with_data(x)
    cfg = PreprocessingConfig(patch_size=32)
    fast = preprocess_volume(vol, cfg)
    with monkeypatch.context() as m:
        m.setattr(layers, "refilled_padding", lambda img, src: padding_mask(img))
        slow = preprocess_volume(vol, cfg)
    for k in ("image", "mask", "ilm", "bm", "flatten_shifts"):
        np.testing.assert_array_equal(fast[k], slow[k])


def test_row_gradient_and_window_equal_the_numpy_formulas(volume) -> None:
    from octanomaly.transforms.intensity import percentile_window
    from octanomaly.transforms.layers import _row_gradient

    rng = np.random.default_rng(1)
    for f in (
        volume.data.astype(np.float32),
        rng.normal(size=(3, 2, 5)).astype(np.float32),
        rng.normal(size=(2, 7, 4)).astype(np.float32) * 1e3,
    ):
        out = np.full(f.shape, np.nan, dtype=np.float32)
        np.testing.assert_array_equal(_row_gradient(f, out), np.gradient(f, axis=1))
        # the window before issue 13: one whole-array expression
        lo, hi = np.percentile(f.ravel(), [1.0, 99.5])
        plain = np.clip((f - lo) * np.float32(2.0 / (hi - lo)) - 1.0, -1.0, 1.0)
        np.testing.assert_array_equal(percentile_window(f), plain.astype(np.float32))


@pytest.mark.parametrize("density", [0.02, 0.3, 0.6])
def test_region_labels_equal_scipy_labels(density) -> None:
    """cc3d numbers 26-connected regions exactly as ndimage.label with a 3x3x3 structure."""
    from scipy import ndimage

    from octanomaly.findings import label_regions

    rng = np.random.default_rng(int(density * 100))
    mask = ndimage.binary_opening(rng.random((9, 40, 50)) < density + 0.2) | (
        rng.random((9, 40, 50)) < density / 4
    )
    labels, n = label_regions(mask)
    ref, n_ref = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    assert labels.dtype == np.uint16 and n == n_ref > 3
    np.testing.assert_array_equal(labels, ref)


def test_threaded_image_folder_reads_the_frames_in_order(tmp_path) -> None:
    """B-scan files decoded on threads come back in name order, each its own frame."""
    from PIL import Image

    from octanomaly.io import load_volume

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 255, size=(25, 30, 40), dtype=np.uint8)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"bscan_{i}.png")  # natural sort: 2 before 10
    np.testing.assert_array_equal(np.asarray(load_volume(tmp_path).data), frames)


def test_threaded_scoring_and_mask_cleaning_equal_one_call(tiny_run, monkeypatch) -> None:
    """Calibrated scoring and mask cleaning on chunks of B-scans: the same maps as one call."""
    from octanomaly.scoring import calibration, load_run, map_volume

    run = load_run(tiny_run, device="cpu")
    vol = make_phantom(seed=12, n_bscans=5, depth=128, width=128, lesions="all").volume
    fast = map_volume(vol, run, threshold=80)
    with monkeypatch.context() as m:
        m.setattr(calibration, "per_bscan", _one_call)
        slow = map_volume(vol, run, threshold=80)
    np.testing.assert_array_equal(fast.anomaly, slow.anomaly)
    np.testing.assert_array_equal(fast.mask, slow.mask)
    np.testing.assert_array_equal(fast.bscan_scores, slow.bscan_scores)
    assert fast.mask.any() and fast.anomaly.max() > 0


def _stitch_one_by_one(vals, coords, shape, p, fill=0.0):
    """The plain stitch: every patch added on its own, in order."""
    n, d, w = shape
    vals = np.asarray(vals, dtype=np.float64)
    acc, cnt = np.zeros((n, max(d, p), max(w, p))), np.zeros((n, max(d, p), max(w, p)))
    for k, (b, r, c) in enumerate(coords):
        acc[b, r : r + p, c : c + p] += vals[k]
        cnt[b, r : r + p, c : c + p] += 1
    out = np.full(acc.shape, float(fill))
    np.divide(acc, cnt, out=out, where=cnt > 0)
    return out[:, :d, :w].astype(np.float32)


def test_grid_coords_and_stitch_equal_the_plain_computations() -> None:
    """Grid positions read from the integral image at grid points only: the same as full
    coverage maps; stitching averages overlapping patches (a patch given twice counts twice)."""
    from octanomaly.transforms.patches import coverage, grid_coords, stitch

    rng = np.random.default_rng(4)
    mask = np.zeros((4, 70, 90), bool)
    mask[:, 20:45, 5:80] = rng.random((4, 25, 75)) < 0.7
    mask[2] = False  # a B-scan without retina: no patches
    p, s = 16, 8
    coords = grid_coords(mask, p, s)
    cov = coverage(mask, p)
    rows = np.r_[np.arange(0, 70 - p + 1, s), 70 - p]
    cols = np.r_[np.arange(0, 90 - p + 1, s), 90 - p]
    want = [(b, r, c) for b in range(4) for r in np.unique(rows) for c in np.unique(cols)
            if cov[b, r, c] > 0]  # fmt: skip
    np.testing.assert_array_equal(coords, np.array(want))
    scalars = rng.random(len(coords)).astype(np.float32)
    maps = rng.random((len(coords), 1, p, p)).astype(np.float32)
    for vals, plain in ((scalars, scalars), (maps, maps[:, 0])):
        want = _stitch_one_by_one(plain, coords, mask.shape, p)
        np.testing.assert_array_equal(stitch(vals, coords, mask.shape, p), want)
    shuffled = rng.permutation(len(coords))  # B-scan by B-scan, in the given order: exact
    np.testing.assert_array_equal(
        stitch(scalars[shuffled], coords[shuffled], mask.shape, p),
        _stitch_one_by_one(scalars[shuffled], coords[shuffled], mask.shape, p),
    )
    twice = np.concatenate([coords, coords[:5]])  # the same patch twice counts twice
    v = rng.random(len(twice)).astype(np.float32)
    np.testing.assert_allclose(
        stitch(v, twice, mask.shape, p, fill=-1), _stitch_one_by_one(v, twice, mask.shape, p, -1),
        rtol=1e-6,
    )  # fmt: skip


def test_allocator_keeps_large_arrays_for_reuse_where_glibc_allows_it() -> None:
    """With the CLI's allocator settings a freed 64 MB array's memory is reused by the next one
    (no fresh pages to fault in); elsewhere the settings report that nothing changed."""
    import platform
    import subprocess
    import sys

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    code = (
        "import resource, numpy as np;"
        "from octanomaly.devices import tune_malloc;"
        "print(tune_malloc());"
        "a = np.ones(16 * 2**20, np.float32); del a;"
        "f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt;"
        "a = np.ones(16 * 2**20, np.float32); del a;"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    assert applied == str(glibc)
    if glibc:
        assert int(faults) < 64  # 16,384 pages if the memory were fresh


def test_percentile_window_samples_the_valid_pixels_as_the_plain_formula() -> None:
    """The window's percentiles come from every k-th valid pixel, gathered B-scan by B-scan:
    the same sample as ``x[valid][::k]`` (k > 1 here), so the same window."""
    from octanomaly.transforms.intensity import _every_kth_valid, percentile_window

    rng = np.random.default_rng(7)
    x = rng.gamma(2.0, 20.0, size=(10, 640, 700)).astype(np.float32)
    valid = rng.random(x.shape) < 0.95
    step = int(valid.sum()) // 2_000_000
    assert step >= 2
    np.testing.assert_array_equal(_every_kth_valid(x, valid), x[valid][::step])
    lo, hi = np.percentile(x[valid][::step], [1.0, 99.5])
    want = np.clip((x - lo) * np.float32(2.0 / (hi - lo)) - 1.0, -1.0, 1.0)
    np.testing.assert_allclose(percentile_window(x, 1.0, 99.5, valid), want, atol=1e-6)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_thread_pools_follow_the_cpus_the_process_may_use() -> None:
    """Pinned to one CPU (taskset, a scheduler's allocation), the pools get one thread."""
    import subprocess
    import sys

    code = (
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]});"
        "from octanomaly.cpus import available_cpus;"
        "from octanomaly.transforms._threads import workers;"
        "print(available_cpus(), workers(50))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_padding_morphology_equals_binary_morphology() -> None:
    """The padding search's closing and opening as max/min filters: the same masks as scipy's
    binary morphology with square elements, on wedges, borders and speckle."""
    from scipy import ndimage

    from octanomaly.transforms.intensity import _padding_mask

    rng = np.random.default_rng(11)
    x = rng.normal(100, 30, size=(6, 120, 140)).astype(np.float32)
    x[[0, 1, 3, 4], :30, :50] = 255  # corner wedges of saturated padding
    x[1, -25:, -40:] = 255
    x[2] = np.where(rng.random((120, 140)) < 0.05, 255, x[2])  # saturated speckle only
    x[3, :, :3] = 255  # a thin border strip

    def plain(img):
        raw = img >= img.max() - 0.1 * (img.max() - img.min())
        se5, se3 = np.ones((5, 5), bool), np.ones((3, 3), bool)
        sat = ndimage.binary_erosion(ndimage.binary_dilation(raw, se5), se5, border_value=1)
        return ndimage.binary_dilation(ndimage.binary_erosion(sat, se3, border_value=1), se3)

    for img in x:
        u = (img >= img.max() - 0.1 * (img.max() - img.min())).view(np.uint8)
        fast = ndimage.maximum_filter(u, size=5, mode="constant", cval=0)
        fast = ndimage.minimum_filter(fast, size=5, mode="constant", cval=1)
        fast = ndimage.minimum_filter(fast, size=3, mode="constant", cval=1)
        fast = ndimage.maximum_filter(fast, size=3, mode="constant", cval=0).view(bool)
        np.testing.assert_array_equal(fast, plain(img))
    pad = _padding_mask(x, 16, 200)
    assert pad[0, :20, :40].all() and pad[1, -15:, -30:].all() and not pad[2].any()


def test_map_result_carries_the_preprocessing_a_fresh_call_gives(tiny_run) -> None:
    """The cohort reuses ``MapResult.preprocessed`` for region features instead of
    preprocessing again: it must be what a fresh ``preprocess_volume`` gives, unchanged by
    scoring."""
    from octanomaly.scoring import load_run, map_volume

    run = load_run(tiny_run, device="cpu")
    vol = make_phantom(seed=13, n_bscans=4, depth=128, width=128, lesions="all").volume
    kept = map_volume(vol, run).preprocessed
    fresh = preprocess_volume(vol, run.cfg.preprocessing)
    assert kept.keys() == fresh.keys()
    for k, v in fresh.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(kept[k], v, err_msg=k)
        else:
            assert kept[k] == v, k


def test_region_labels_in_a_box_and_compact_dtype() -> None:
    """Labelling within the mask's bounding box gives ndimage.label's labels over the whole
    volume; more than 65,535 regions come back int32, an empty mask as zeros."""
    from scipy import ndimage

    from octanomaly.findings import label_regions

    rng = np.random.default_rng(3)
    mask = np.zeros((7, 60, 70), bool)
    mask[2:6, 15:40, 9:55] = rng.random((4, 25, 46)) < 0.35
    labels, n = label_regions(mask.astype(np.uint8))
    ref, n_ref = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    assert labels.dtype == np.uint16 and n == n_ref > 3
    np.testing.assert_array_equal(labels, ref)
    many = np.zeros((1, 600, 600), bool)
    many[0, ::2, ::2] = True  # 90,000 single voxels
    labels, n = label_regions(many)
    assert n == 90_000 and labels.dtype == np.int32 and labels.max() == 90_000
    labels, n = label_regions(np.zeros((2, 5, 5), np.uint8))
    assert n == 0 and not labels.any()


@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_region_statistics_equal_whole_region_formulas(seed, monkeypatch) -> None:
    """Region statistics gathered slab by slab (two-pass exact medians, float64 running means,
    merged shell variance) equal ``np.nanmedian``/``np.mean``/``np.std`` over the region's
    whole arrays, for a region spanning many slabs, one in a single B-scan, and NaN band tops."""
    from scipy import ndimage

    from octanomaly.findings import regions as R

    monkeypatch.setattr(R, "SLAB_BSCANS", 3)
    monkeypatch.setattr(R, "MEDIAN_BINS", 64)  # many values share a bin: the pick must be exact
    rng = np.random.default_rng(seed)
    n, depth, width = 11, 60, 40
    labels = np.zeros((n, depth, width), np.int32)
    labels[1:10, 20:45, 5:35] = rng.random((9, 25, 30)) < 0.6
    labels[4, 5:8, 2:4] = 2
    anomaly = rng.random((n, depth, width)).astype(np.float32) * 6
    data = rng.integers(0, 255, (n, depth, width)).astype(np.uint8)
    ilm = 10 + rng.random((n, width)) * 5
    bm = 48 + rng.random((n, width)) * 3
    band = rng.random(n * width) * 90
    band[rng.random(n * width) < 0.2] = np.nan
    x, y = rng.normal(size=n * width), rng.normal(size=n * width)
    struct = np.zeros((1, 3, 3), bool)
    struct[0] = True
    for rid in (1, 2):
        reg = labels == rid
        box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(reg))
        box = (box[0], slice(max(box[1].start - 6, 0), min(box[1].stop + 6, depth)),
               slice(max(box[2].start - 6, 0), min(box[2].stop + 6, width)))  # fmt: skip
        v = R._region_values(rid, labels, box, anomaly, data, (ilm, bm), (x, y, band), 0.004)
        b, z, c = np.nonzero(reg)
        a = b * width + c
        height = (bm.ravel()[a] - z) * 0.004 * 1000.0
        rel = (z - ilm.ravel()[a]) / np.maximum(bm.ravel()[a] - ilm.ravel()[a], 1e-6)
        grown = ndimage.binary_dilation(reg, struct, iterations=R.SHELL_PX)
        rows = np.arange(depth)[None, :, None]
        in_ret = (rows >= np.floor(ilm[:, None, :])) & (rows <= np.ceil(bm[:, None, :]) + 6)
        sub = np.zeros_like(reg)
        sub[box] = True
        shell = data[grown & ~reg & in_ret & sub].astype(np.float64)
        st = v.stats
        assert v.n == b.size
        assert st["height"] == np.nanmedian(height) and st["rel"] == np.nanmedian(rel)
        assert st["band"] == np.nanmedian(band[a])
        assert st["z_max"] == anomaly[reg].max()
        for got, want in ((st["z_mean"], anomaly[reg].astype(np.float64).mean()),
                          (st["x"], x[a].mean()), (st["y"], y[a].mean()),
                          (st["inside"], data[reg].astype(np.float64).mean()),
                          (st["shell"], shell.mean()), (st["shell_std"], shell.std())):  # fmt: skip
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert st["n_shell"] == shell.size


def test_window_in_place_gives_the_same_image_and_leaves_the_input_alone(volume) -> None:
    """The intensity window writes into the pipeline's own float32 copy: the same values as a
    second array, and a float32 volume handed to ``preprocess_volume`` is never overwritten."""
    from dataclasses import replace

    from octanomaly.transforms.intensity import percentile_window

    x = np.asarray(volume.data, dtype=np.float32) * np.float32(1.5)
    plain = percentile_window(x)
    y = x.copy()
    same = percentile_window(y, in_place=True)
    assert same is y
    np.testing.assert_array_equal(same, plain)
    flat = np.zeros_like(x[:1])  # no contrast: all -1, in place too
    assert (percentile_window(flat, in_place=True) == -1).all() and (flat == -1).all()
    vol32 = replace(volume, data=x)  # float32 data, no padding: no copy on the way
    before = x.copy()
    prep = preprocess_volume(vol32, PreprocessingConfig(patch_size=32))
    np.testing.assert_array_equal(x, before)
    ref = preprocess_volume(replace(volume, data=before), PreprocessingConfig(patch_size=32))
    np.testing.assert_array_equal(prep["image"], ref["image"])
