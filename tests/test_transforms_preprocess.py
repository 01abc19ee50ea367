"""Intensity, flatten/unflatten, resampling, preprocess_volume/restore_map, config."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from monai.transforms import Compose
from pydantic import ValidationError

from octanomaly.data.phantom import make_phantom
from octanomaly.transforms.flatten import (
    Flatten,
    Flattend,
    Resample,
    Resampled,
    Unflatten,
    Unflattend,
    flatten_shifts,
    rows_to_grid,
    target_row,
)
from octanomaly.transforms.intensity import (
    FillPadding,
    FillPaddingd,
    LogIntensity,
    LogIntensityd,
    MedianDenoise,
    MedianDenoised,
    PercentileWindow,
    PercentileWindowd,
    padding_mask,
)
from octanomaly.transforms.layers import DetectLayers, DetectLayersd, retina_mask
from octanomaly.transforms.preprocess import (
    PreprocessingConfig,
    RetinaMaskd,
    preprocess_volume,
    preprocessing_transform,
    restore_map,
)
from octanomaly.volume import OCTVolume


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(seed=2, n_bscans=2, depth=160, width=128)


def test_window_range_and_dict_parity() -> None:
    x = np.random.default_rng(0).gamma(2.0, 10.0, size=(2, 40, 50)).astype(np.float32)
    y = PercentileWindow(1, 99)(x)
    assert y.dtype == np.float32 and y.min() == -1.0 and y.max() == 1.0
    assert 0.005 < (y == 1.0).mean() < 0.02  # about 1 % clipped at the top
    chain = Compose(
        [LogIntensityd("image"), MedianDenoised("image", 3), PercentileWindowd("image")]
    )
    ref = PercentileWindow()(MedianDenoise(3)(LogIntensity()(x)))
    np.testing.assert_array_equal(chain({"image": x})["image"], ref)


def test_window_ignores_export_padding() -> None:
    x = np.random.default_rng(1).integers(0, 120, size=(1, 100, 100)).astype(np.uint8)
    x[:, :30, :40] = 255  # a saturated corner wedge
    assert padding_mask(x)[0, :25, :35].all() and not padding_mask(x)[0, 60:, 60:].any()
    y = PercentileWindow(1, 99.5)(x)
    assert np.median(y[0, 60:, 60:]) > -0.2  # the window follows the tissue, not the 255s


def test_flatten_unflatten_exact_on_retina(phantom) -> None:
    data = phantom.volume.data.astype(np.float32)
    mask = retina_mask(phantom.ilm, phantom.bm, data.shape[1], 8)
    shifts = flatten_shifts(phantom.bm, target_row=110)
    flat = Flatten(fill=-1)(data, shifts)
    # BM lands on the target row within rounding
    bm_flat = phantom.bm + shifts
    assert np.abs(bm_flat - 110).max() <= 0.5
    back = Unflatten(fill=0)(flat, shifts)
    np.testing.assert_array_equal(back[mask], data[mask])
    flattend = Flattend(["image", "mask"], bm_key="bm", target_row=110, rows_keys=("ilm",))
    d = flattend({"image": data, "mask": mask, "bm": phantom.bm, "ilm": phantom.ilm})
    np.testing.assert_array_equal(d["image"], flat)
    assert d["mask"].dtype == bool and d["mask"].sum() == mask.sum()
    # the boundary rows move with the image: BM now lies on the target row
    np.testing.assert_array_equal(d["bm"], bm_flat)
    np.testing.assert_array_equal(d["ilm"], phantom.ilm + shifts)
    d = flattend.inverse(d)
    np.testing.assert_array_equal(d["mask"], mask)
    np.testing.assert_array_equal(d["image"][mask], data[mask])
    np.testing.assert_array_equal(d["bm"], phantom.bm)
    np.testing.assert_array_equal(d["ilm"], phantom.ilm)


def test_flattend_target_row_as_fraction_matches_preprocessing(phantom) -> None:
    depth = phantom.volume.shape[1]
    assert target_row(0.7, depth) == round(0.7 * depth) and target_row(110, depth) == 110
    data = phantom.volume.data.astype(np.float32)
    d = Flattend("image", target_row=0.7)({"image": data, "bm": phantom.bm})
    assert np.abs(d["bm"] - target_row(0.7, depth)).max() <= 0.5
    # Unflattend alone (rows not named) leaves rows where they are
    d2 = Unflattend("image")(d)
    np.testing.assert_array_equal(d2["bm"], d["bm"])


def test_resampled_moves_rows_and_inverse_restores_the_exact_grid() -> None:
    rng = np.random.default_rng(3)
    img = rng.random((2, 96, 100)).astype(np.float32)
    bm = np.tile(np.linspace(50.0, 60.0, 100), (2, 1))
    bm[1, :30] = np.nan  # no retina there
    data = {"image": img, "mask": img > 0.5, "bm": bm, "spacing": (0.1, 0.004, 0.01)}
    t = Resampled(("image", "mask"), (0.008, 0.02), rows_keys=("bm",))
    d = t(data)
    assert d["image"].shape == d["mask"].shape == (2, 48, 50) and d["mask"].dtype == bool
    assert d["spacing"] == (0.1, 0.008, 0.02) and d["original_shape"] == (2, 96, 100)
    np.testing.assert_array_equal(d["image"], Resample((0.004, 0.01), (0.008, 0.02))(img))
    np.testing.assert_array_equal(d["bm"], rows_to_grid(bm, (96, 100), (48, 50)))
    assert np.isnan(d["bm"][1, :14]).all() and np.isfinite(d["bm"][1, 16:]).all()
    assert np.abs(d["bm"][0] - (np.linspace(50, 60, 50) + 0.5) / 2 + 0.5).max() < 0.2
    back = t.inverse(d)
    assert back["image"].shape == back["mask"].shape == img.shape
    assert back["mask"].dtype == bool
    assert np.abs(back["image"] - img).mean() < 0.25  # a blur of the input, on its own grid
    const = t.inverse({**d, "image": np.full((2, 48, 50), 3.5, np.float32)})["image"]
    np.testing.assert_array_equal(const, np.full(img.shape, 3.5, np.float32))


def test_padding_found_before_filling_drives_the_window() -> None:
    x = np.random.default_rng(1).integers(0, 120, size=(1, 100, 100)).astype(np.float32)
    x[:, :30, :40] = 255
    filled, pad = FillPadding()(x)
    assert pad[0, :25, :35].all() and filled.max() < 255 and not padding_mask(filled).any()
    d = Compose([FillPaddingd("image"), PercentileWindowd("image", 1, 99.5)])({"image": x})
    np.testing.assert_array_equal(d["pad"], pad)
    np.testing.assert_array_equal(d["image"], PercentileWindow(1, 99.5)(filled, pad))
    # the 255 wedge, were it counted, would pull the window up
    counted = PercentileWindow(1, 99.5, ignore_padding=False)(x)
    assert np.median(counted[0, 60:, 60:]) < np.median(d["image"][0, 60:, 60:]) - 0.1


@pytest.mark.parametrize("spacing", [None, (0.0078, 0.0224)])
def test_preprocess_volume_is_the_composition_of_the_transforms(phantom, spacing) -> None:
    cfg = PreprocessingConfig(target_spacing=spacing, median_size=3)
    prep = preprocess_volume(phantom.volume, cfg)
    names = [type(t).__name__ for t in preprocessing_transform(cfg).transforms]
    assert names[:5] == [
        "OwnFloat32d",
        "FillPaddingd",
        "MedianDenoised",
        "DetectLayersd",
        "PercentileWindowd",
    ]
    assert names[-2:] == ["RetinaMaskd", "Flattend"] and ("Resampled" in names) == bool(spacing)
    # the same steps by hand with the array transforms
    x, pad = FillPadding()(phantom.volume.data.astype(np.float32))
    x = MedianDenoise(3)(x)
    ilm, bm = DetectLayers()(x)
    img = PercentileWindow(*cfg.percentiles)(x, pad)
    grid = img.shape[1:]
    if spacing:
        resample = Resample(phantom.volume.spacing[1:], spacing)
        img, pad = resample(img), resample(pad)
        grid = img.shape[1:]
    ilm_g, bm_g = (rows_to_grid(r, x.shape[1:], grid) for r in (ilm, bm))
    mask = retina_mask(ilm_g, bm_g, grid[0], cfg.margin_px) & ~pad
    shifts = flatten_shifts(bm_g, target_row(cfg.flatten_row, grid[0]))
    np.testing.assert_array_equal(prep["image"], Flatten(-1.0)(img, shifts))
    np.testing.assert_array_equal(prep["mask"], Flatten(False)(mask, shifts))
    np.testing.assert_array_equal(prep["flatten_shifts"], shifts)
    np.testing.assert_array_equal(prep["bm"], bm)
    # DetectLayersd's own mask is the input-grid one; RetinaMaskd recomputes it on the grid
    d = DetectLayersd("image", margin_px=cfg.margin_px)({"image": x})
    np.testing.assert_array_equal(d["mask"], retina_mask(ilm, bm, x.shape[1], cfg.margin_px))
    d = RetinaMaskd("image", cfg.margin_px)({"image": x, "ilm": ilm, "bm": bm})
    np.testing.assert_array_equal(d["mask"], retina_mask(ilm, bm, x.shape[1], cfg.margin_px))


def test_preprocess_and_restore_map(phantom) -> None:
    cfg = PreprocessingConfig(flatten=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prep = preprocess_volume(phantom.volume, cfg)
    img, mask = prep["image"], prep["mask"]
    assert img.dtype == np.float32 and img.shape == phantom.volume.shape
    assert img.min() >= -1 and img.max() <= 1 and np.isfinite(img).all()
    assert prep["ilm"].shape == prep["bm"].shape == (2, 128) and prep["valid"].all()
    # a map of row indices made in flattened space comes back to the input geometry exactly
    orig_rows = np.broadcast_to(np.arange(160)[None, :, None], img.shape).astype(np.float32)
    fake = restore_map(orig_rows, {**prep, "flatten_shifts": None})
    np.testing.assert_array_equal(fake, orig_rows)
    back_mask = restore_map(mask, prep)
    ref_mask = retina_mask(prep["ilm"], prep["bm"], 160, cfg.margin_px)
    np.testing.assert_array_equal(back_mask, ref_mask)
    restored = restore_map(img, prep)
    windowed = preprocess_volume(phantom.volume, cfg.model_copy(update={"flatten": False}))
    np.testing.assert_array_equal(restored[ref_mask], windowed["image"][ref_mask])


def test_resampling_restores_exact_shape(phantom) -> None:
    cfg = PreprocessingConfig(target_spacing=(0.0078, 0.0224))  # half resolution both ways
    prep = preprocess_volume(phantom.volume, cfg)
    assert prep["image"].shape == (2, 80, 64)
    assert prep["spacing"][1:] == (0.0078, 0.0224)
    m = restore_map(np.ones_like(prep["image"]), prep, fill=0.0)
    assert m.shape == phantom.volume.shape and np.isfinite(m).all()


def test_blank_volume_is_nan_free() -> None:
    vol = OCTVolume(np.zeros((2, 64, 80), dtype=np.uint8), (0.1, 0.0039, 0.0112))
    with pytest.warns(UserWarning, match="B-scan 1"):
        prep = preprocess_volume(vol, PreprocessingConfig())
    assert np.isfinite(prep["image"]).all() and not prep["mask"].any()
    assert not prep["valid"].any()
    assert np.isfinite(restore_map(prep["image"], prep)).all()


def test_config_forbids_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="patchsize"):
        PreprocessingConfig(patchsize=32)
    with pytest.raises(ValidationError):
        PreprocessingConfig(percentiles=(99, 1))
    assert PreprocessingConfig().patch_size == 64
