"""Intensity, flatten/unflatten, resampling, preprocess_volume/restore_map, config."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from monai.transforms import Compose
from pydantic import ValidationError

from octanomaly.data.phantom import make_phantom
from octanomaly.transforms.flatten import Flatten, Flattend, Unflatten, Unflattend, flatten_shifts
from octanomaly.transforms.intensity import (
    LogIntensity,
    LogIntensityd,
    MedianDenoise,
    MedianDenoised,
    PercentileWindow,
    PercentileWindowd,
    padding_mask,
)
from octanomaly.transforms.layers import retina_mask
from octanomaly.transforms.preprocess import PreprocessingConfig, preprocess_volume, restore_map
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
    d = Flattend(["image", "mask"], bm_key="bm", target_row=110)(
        {"image": data, "mask": mask, "bm": phantom.bm}
    )
    np.testing.assert_array_equal(d["image"], flat)
    assert d["mask"].dtype == bool and d["mask"].sum() == mask.sum()
    d = Unflattend(["image", "mask"])(d)
    np.testing.assert_array_equal(d["mask"], mask)
    np.testing.assert_array_equal(d["image"][mask], data[mask])


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
