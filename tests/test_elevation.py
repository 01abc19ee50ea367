"""The outer band elevation channel: band top per A-scan, its support, its normative z."""

from __future__ import annotations

import numpy as np
import pytest

from octanomaly.data.phantom import make_phantom
from octanomaly.scoring import channels as ch
from octanomaly.scoring.calibration import flatten_row
from octanomaly.scoring.normative import BinSpec, NormativeModel
from octanomaly.transforms.preprocess import PreprocessingConfig, preprocess_volume


@pytest.mark.parametrize("seed", [1, 2])
def test_band_top_rises_over_phantom_drusen(seed):
    ph = make_phantom(seed, n_bscans=6, width=256, lesions="drusen")
    pre = PreprocessingConfig()
    p = preprocess_volume(ph.volume, pre)
    top = ch.band_top(p["image"], p["mask"], flatten_row(pre, p["image"].shape[1]), 0.0039)
    drusen = ph.masks["drusen"].any(axis=1)  # native spacing: the same A-scans
    retina = p["mask"].any(axis=1)
    assert drusen.sum() > 50 and top.shape == drusen.shape
    assert np.median(top[drusen]) > np.median(top[retina & ~drusen]) + 20.0
    assert (top[~retina] == 0).all() and np.isfinite(top).all()


def test_band_top_of_a_synthetic_profile_is_its_half_maximum_edge():
    depth, bm, um = 100, 70, 4.0
    img = np.full((1, depth, 3), 0.1, dtype=np.float32)
    img[0, bm - 14 : bm + 1] = 0.9  # a bright band 15 rows (56 µm) thick on BM
    img[0, bm + 1 :] = 0.3
    top = ch.band_top(img, np.ones_like(img, dtype=bool), bm, um / 1000)
    # half-way from 0.9 down to 0.1 is crossed between row bm-14 and bm-15 (smoothed edge)
    assert np.allclose(top, 14.5 * um, atol=0.6 * um)


def test_elevation_fills_the_column_and_counts_from_bm_to_the_band_top():
    depth, bm, um = 60, 40, 5.0
    img = np.zeros((2, depth, 4), dtype=np.float32)
    img[:, bm - 9 : bm + 1] = 1.0
    mask = np.ones_like(img, dtype=bool)
    raw = ch.channel_maps(img, img, mask, ("elevation",), 0.0, bm_row=bm, axial_mm=um / 1000)
    e = raw["elevation"]
    assert e.shape == img.shape and (e == e[:, :1]).all()  # one value down each A-scan
    sup = ch.supports(raw, bm, um / 1000)["elevation"]
    rows = np.flatnonzero(sup[0, :, 0])
    height = (bm - rows) * um
    assert height.max() <= e[0, 0, 0] < height.max() + um  # up to the band top
    assert height.min() >= -ch.BELOW_BM_UM and height.min() < -ch.BELOW_BM_UM + um
    z = {"intensity": np.ones_like(e), "elevation": np.full_like(e, 4.0)}
    fused = ch.fuse(z, {"intensity": 1.0, "elevation": 1.0}, {"elevation": sup})
    assert np.allclose(fused[sup], 2.5) and np.allclose(fused[~sup], 0.5)
    with pytest.raises(ValueError, match="bm_row and axial_mm"):
        ch.channel_maps(img, img, mask, ("elevation",), 0.0)


def _elevation(ph, pre: PreprocessingConfig):
    p = preprocess_volume(ph.volume, pre)
    bm = flatten_row(pre, p["image"].shape[1])
    raw = ch.channel_maps(p["image"], p["image"], p["mask"], ("elevation",), 0.0,
                          bm_row=bm, axial_mm=p["spacing"][1])  # fmt: skip
    bins = ch.position_bins(p["mask"], bm, pre.margin_px, p["spacing"][1], BinSpec())
    return raw, bins, p["mask"], bm


def test_normative_elevation_scores_phantom_drusen_high_and_healthy_near_zero():
    """Fitted on healthy phantoms, drusen A-scans get an elevation z above 2, the others about 0."""
    pre = PreprocessingConfig()
    values, bins = [], []
    for seed in (11, 12, 13):
        raw, b, mask, _ = _elevation(make_phantom(seed, n_bscans=4, width=256), pre)
        values.append(raw["elevation"][mask])
        bins.append(b[mask])
    nm = NormativeModel.fit({"elevation": np.concatenate(values)}, np.concatenate(bins), BinSpec())
    ph = make_phantom(7, n_bscans=6, width=256, lesions="drusen")
    raw, b, mask, bm = _elevation(ph, pre)
    zc = nm.z(raw, b)["elevation"][:, bm]  # (n, w): one z per A-scan, read on the BM row
    drusen = ph.masks["drusen"].sum(axis=1) * 3.9 > 20.0  # drusen over 20 µm high
    healthy = mask.any(axis=1) & ~ph.masks["drusen"].any(axis=1)
    assert drusen.sum() > 20 and healthy.sum() > 200
    assert np.median(zc[drusen]) > 2.0 and abs(float(np.median(zc[healthy]))) < 1.0


@pytest.mark.parametrize("bm_row", [0, 3])
def test_band_top_near_the_top_of_the_grid_stays_in_bounds(bm_row):
    img = np.random.default_rng(0).random((2, 40, 5)).astype(np.float32)
    top = ch.band_top(img, np.ones_like(img, dtype=bool), bm_row, 0.0078)
    assert top.shape == (2, 5) and np.isfinite(top).all()
    assert (top >= 0).all() and (top <= bm_row * 7.8 + 1e-3).all()
