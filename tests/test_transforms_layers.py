"""ILM/BM detection: phantom ground truth, blank/noise B-scans, mask, array/dict parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from octanomaly.data.phantom import make_phantom
from octanomaly.transforms.layers import (
    BScanWarning,
    DetectLayers,
    DetectLayersd,
    detect_layers,
    retina_mask,
)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(seed=3, n_bscans=3, depth=248, width=256)


def test_boundaries_match_phantom(phantom) -> None:
    ilm, bm = detect_layers(phantom.volume.data)
    assert ilm.shape == bm.shape == (3, 256)
    e_ilm, e_bm = np.abs(ilm - phantom.ilm), np.abs(bm - phantom.bm)
    assert np.median(e_ilm) < 3 and np.percentile(e_ilm, 95) < 6
    assert np.median(e_bm) < 3 and np.percentile(e_bm, 95) < 6
    assert (bm > ilm).all()


def test_layered_toy_with_tilt_and_speckle() -> None:
    rng = np.random.default_rng(0)
    d, w = 160, 200
    cols = np.arange(w)
    ilm_true = 40 + 0.15 * cols  # tilted retina
    bm_true = ilm_true + 60 + 8 * np.sin(cols / 30)
    rows = np.arange(d)[:, None]
    img = np.where((rows >= ilm_true) & (rows < bm_true), 0.45, 0.05)
    img = img + np.where((rows >= bm_true - 8) & (rows < bm_true), 0.5, 0.0)  # RPE band
    img = img * rng.gamma(4.0, 0.25, size=(d, w))  # speckle
    ilm, bm = detect_layers(img.astype(np.float32))
    assert np.median(np.abs(ilm - ilm_true)) < 2
    assert np.median(np.abs(bm - bm_true)) < 2


def test_blank_and_noise_bscans_warn_and_give_nan(phantom) -> None:
    vol = phantom.volume.data.copy()
    vol[0] = 0
    vol[2] = np.random.default_rng(1).integers(0, 256, vol[2].shape)
    with pytest.warns(BScanWarning) as rec:
        ilm, bm = detect_layers(vol)
    text = " ".join(str(r.message) for r in rec)
    assert "B-scan 0" in text and "B-scan 2" in text and "B-scan 1" not in text
    assert np.isnan(ilm[[0, 2]]).all() and np.isnan(bm[[0, 2]]).all()
    assert np.isfinite(bm[1]).all()
    mask = retina_mask(ilm, bm, vol.shape[1])
    assert not mask[0].any() and not mask[2].any() and mask[1].any()


def test_retina_mask_rows() -> None:
    ilm = np.array([[10.0, 12.0, np.nan]])
    bm = np.array([[20.0, 22.0, 30.0]])
    m = retina_mask(ilm, bm, 40, margin_px=2)
    assert m.shape == (1, 40, 3)
    assert np.nonzero(m[0, :, 0])[0].tolist() == list(range(8, 23))
    assert not m[0, :, 2].any()


def test_array_dict_parity(phantom) -> None:
    data = phantom.volume.data[:1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ilm, bm = DetectLayers()(data)
        d = DetectLayersd("image", margin_px=4)({"image": data})
    np.testing.assert_array_equal(d["ilm"], ilm)
    np.testing.assert_array_equal(d["bm"], bm)
    np.testing.assert_array_equal(d["mask"], retina_mask(ilm, bm, data.shape[1], 4))


# ---- fast paths: same values as the plain computation (issue 13: speed-only changes are exact)


def _wedged(phantom) -> np.ndarray:
    """Phantom B-scans with saturated export wedges in two corners (Kermany-like padding)."""
    x = phantom.volume.data.astype(np.float32).copy()
    d, w = x.shape[1:]
    rows, cols = np.mgrid[:d, :w]
    x[:, (rows + cols) < 60] = x.max() * 1.05
    x[1, (rows - cols) > d - 70] = x.max() * 1.05
    return x


def test_padding_precheck_changes_nothing(phantom, monkeypatch) -> None:
    from octanomaly.transforms import intensity

    for x in (phantom.volume.data.astype(np.float32), _wedged(phantom)):
        fast = intensity.padding_mask(x)
        with monkeypatch.context() as m:
            m.setattr(intensity, "_may_hold_padding", lambda *a: True)
            full = intensity.padding_mask(x)
        np.testing.assert_array_equal(fast, full)
    assert fast.any()  # the wedges were found, so the full path ran where it must


def test_per_bscan_threads_equal_one_call(phantom) -> None:
    from octanomaly.transforms.layers import _abs_p99, _per_bscan

    g = np.gradient(_wedged(phantom), axis=1)
    np.testing.assert_array_equal(_per_bscan(_abs_p99, g), _abs_p99(g))


def test_band_refine_equals_refine_on_full_score(phantom) -> None:
    from octanomaly.transforms.layers import _band, _dp_path, _refine

    g = np.gradient(phantom.volume.data.astype(np.float32), axis=1)
    gs = np.maximum(np.percentile(np.abs(g), 99, axis=(1, 2), keepdims=True), 1e-6)
    full = np.clip(g, 0, None) / gs
    start = np.asarray(phantom.ilm, dtype=float) + 2.0
    got = _refine(lambda v: np.clip(v, 0, None) / gs, g, start, 7, 3.0)
    # plain form: the DP and the parabola on the whole score array
    band, rows = _band(full, start, 7)
    r_int = np.take_along_axis(rows, _dp_path(-band, 3, 0.02)[:, None], 1)[:, 0]
    r0 = np.clip(r_int, 1, full.shape[1] - 2)
    gm, g0, gp = (np.take_along_axis(full, (r0 + k)[:, None], 1)[:, 0] for k in (-1, 0, 1))
    den = gm - 2 * g0 + gp
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(den < 0, 0.5 * (gm - gp) / den, 0.0)
    np.testing.assert_array_equal(got, r_int + np.clip(off, -0.5, 0.5))
