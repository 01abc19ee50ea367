"""B-scan overlays: the sparse heat blend and the threaded writer give the plain results exactly."""

from __future__ import annotations

import numpy as np

from octanomaly.report import overlays


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bscan = (rng.random((60, 80)) * 255).astype(np.uint8)
    anomaly = np.zeros((60, 80), np.float32)
    anomaly[20:45] = rng.normal(0, 3, (25, 80))
    anomaly[21, 5], anomaly[22, 6] = np.nan, np.inf
    return bscan, anomaly, anomaly > 3


def test_sparse_blend_equals_blend_over_every_pixel() -> None:
    bscan, anomaly, mask = _inputs()
    vmax = 8.0
    a = np.nan_to_num(anomaly, nan=0.0, posinf=vmax, neginf=0.0)
    rgb = np.repeat(bscan[..., None], 3, axis=2).astype(np.float32)
    t = np.clip(a * (1.0 / vmax), 0.0, 1.0)
    alpha = np.where(a > 0, 0.2 + (0.85 - 0.2) * t, 0.0).astype(np.float32)
    rgb += alpha[..., None] * (overlays._lut()[np.rint(t * 255).astype(np.intp)] - rgb)
    plain = np.rint(rgb).astype(np.uint8)
    plain[overlays.inner_boundary(mask)] = overlays.CONTOUR_RGB
    assert overlays.ALPHA_RANGE == (0.2, 0.85)
    np.testing.assert_array_equal(overlays.overlay_rgb(bscan, anomaly, mask, vmax=vmax), plain)
    zero = np.zeros_like(anomaly)
    gray = overlays.overlay_rgb(bscan, zero, zero > 0, vmax=vmax)
    np.testing.assert_array_equal(gray, np.repeat(bscan[..., None], 3, axis=2))


def test_threaded_overlays_write_the_same_files(tmp_path) -> None:
    spacing = (0.0039, 0.0112)
    items = []
    for i in range(5):
        bscan, anomaly, mask = _inputs(i)
        items.append((bscan, anomaly, mask, tmp_path / "many" / f"b{i}.png", f"B-scan {i}"))
    paths = overlays.save_bscan_overlays(items, spacing, vmax=6.0, workers=3)
    assert paths == [item[3] for item in items]
    for bscan, anomaly, mask, path, title in items:
        one = overlays.save_bscan_overlay(
            bscan, anomaly, mask, spacing, tmp_path / "one.png", title=title, vmax=6.0
        )
        assert path.read_bytes() == one.read_bytes()
