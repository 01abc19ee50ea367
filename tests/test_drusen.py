"""Drusen masks from RPE/BM lines: exact masks on synthetic lines, the real Spectralis volume."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from octanomaly.errors import InputError
from octanomaly.evaluation.drusen import (
    drusen_mask_from_lines,
    lines_from_layer_image,
    load_drusen_mask,
    load_spectralis_layer_lines,
)


def test_mask_exact_on_synthetic_lines():
    rpe = np.array([[10.0, 10.0, 5.0, 2.0, np.nan], [0.0, 4.0, 4.0, 4.0, 4.0]])
    bm = np.array([[17.0, 18.0, 18.0, 19.0, 19.0], [5.0, 11.0, 12.0, 20.0, 10.0]])
    mask = drusen_mask_from_lines(rpe, bm, depth=24, min_thickness_px=7)
    expected = np.zeros((2, 24, 5), bool)
    expected[0, 10:18, 1] = True  # thickness 8 > 7
    expected[0, 5:18, 2] = True  # 13
    expected[0, 2:19, 3] = True  # 17; column 0 (7, not > 7) and 4 (no RPE) stay empty
    expected[1, 4:12, 2] = True  # 8
    expected[1, 4:20, 3] = True  # 16
    assert mask.shape == (2, 24, 5) and mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)


def test_mask_threshold_and_rounding():
    rpe = np.array([[3.4, 3.6]])
    bm = np.array([[9.6, 9.4]])  # thickness 6.2 and 5.8
    assert not drusen_mask_from_lines(rpe, bm, 12, 7).any()
    m = drusen_mask_from_lines(rpe, bm, 12, 6)
    np.testing.assert_array_equal(np.flatnonzero(m[0, :, 0]), np.arange(3, 10))
    assert not m[0, :, 1].any()
    with pytest.raises(ValueError):
        drusen_mask_from_lines(rpe, bm[:, :1], 12)


def test_lines_from_layer_image_steps_meets_and_gaps():
    lab = np.zeros((20, 6), np.uint8)
    lab[5, 0] = 255
    lab[[4, 5, 6], 1] = 255  # a step: mean row 5
    lab[12, [0, 1, 2, 4]] = 127
    lab[12, 5] = 170  # lines meet: both at 12
    lab[3, 4] = 255
    rpe, bm = lines_from_layer_image(lab)
    # columns 2 and 3 have no RPE pixel: interpolated between 5 (column 1) and 3 (column 4)
    np.testing.assert_allclose(rpe, [5, 5, 5 - 2 / 3, 5 - 4 / 3, 3, 12])
    np.testing.assert_allclose(bm, [12, 12, 12, 12, 12, 12])
    lab2 = np.zeros((20, 4), np.uint8)
    lab2[8, 1:3] = 255
    rpe2, _ = lines_from_layer_image(lab2)
    assert np.isnan(rpe2[[0, 3]]).all() and (rpe2[1:3] == 8).all()


def test_loader_on_written_pngs(tmp_path):
    layers = tmp_path / "RPE-BM-Layers"
    layers.mkdir()
    for i in (1, 2, 10):
        lab = np.zeros((30, 8), np.uint8)
        lab[10 - (i == 2) * 5, :] = 255
        lab[20, :] = 127
        Image.fromarray(lab).save(layers / f"{i}-layers.png")
    with pytest.raises(InputError, match="consecutively"):
        load_spectralis_layer_lines(tmp_path)
    (layers / "10-layers.png").rename(layers / "3-layers.png")
    rpe, bm = load_spectralis_layer_lines(tmp_path)
    assert rpe.shape == (3, 8)
    np.testing.assert_array_equal(rpe[:, 0], [10, 5, 10])
    mask = load_drusen_mask(layers, min_thickness_px=7)
    assert mask.shape == (3, 30, 8)
    assert mask[0].sum() == 10 * 8 and mask[1].sum() == 15 * 8
    with pytest.raises(InputError):
        load_spectralis_layer_lines(tmp_path / "nope")


def test_real_spectralis_drusen_volume(shared_data):
    folder = shared_data / "volumes" / "spectralis-drusen"
    rpe, bm = load_spectralis_layer_lines(folder)
    assert rpe.shape == bm.shape == (145, 512)
    both = np.isfinite(rpe) & np.isfinite(bm)
    assert both.mean() > 0.98
    assert np.nanmedian(bm - rpe) > 3 and (bm - rpe)[both].min() >= -1  # RPE lies above BM
    mask = load_drusen_mask(folder)
    assert mask.shape == (145, 496, 512)
    frac = mask.mean()
    assert 0.001 < frac < 0.03, frac
    per_bscan = mask.any(axis=(1, 2))
    assert per_bscan.mean() > 0.8
    # drusen sit between the lines: every drusen pixel row is within [rpe, bm] of its column
    n, z, x = np.nonzero(mask[::20])
    assert (z >= np.rint(rpe[::20][n, x])).all() and (z < np.rint(bm[::20][n, x])).all()
    # a stricter thickness gives a subset
    strict = load_drusen_mask(folder, min_thickness_px=10)
    assert strict.sum() < mask.sum() and not (strict & ~mask).any()
