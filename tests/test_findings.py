"""Regions, fovea and ETDRS grid on phantoms whose lesion masks and layer lines are exact."""

from __future__ import annotations

import numpy as np
import pytest

from octanomaly.data.phantom import LESION_TYPES, make_phantom
from octanomaly.findings import find_fovea, find_regions, label_regions, sector_map
from octanomaly.findings.regions import volume_layers

SMALL = {"n_bscans": 16, "depth": 256, "width": 256, "spacing": (0.12, 0.0078, 0.0224)}


@pytest.fixture(scope="module")
def lesion_phantom():
    return make_phantom(seed=3, lesions="all", **SMALL)


def _true_type(ph, labels, rid):
    counts = [int((ph.masks[k] & (labels == rid)).sum()) for k in LESION_TYPES]
    return LESION_TYPES[int(np.argmax(counts))]


def test_regions_are_the_lesions_with_their_descriptors(lesion_phantom):
    ph = lesion_phantom
    truth = ph.lesion_mask
    f = find_regions(truth, truth * 5.0, ph.volume, ph.ilm, ph.bm)
    sb, sa, sl = ph.volume.spacing
    # every lesion voxel is in exactly one region; volumes add up to the mask volume
    assert np.array_equal(f.labels > 0, truth)
    assert sum(r["volume_mm3"] for r in f.regions) == pytest.approx(truth.sum() * sb * sa * sl)
    assert [r["region_id"] for r in f.regions] == list(range(1, len(f.regions) + 1))
    kinds = {}
    for r in f.regions:
        kinds.setdefault(_true_type(ph, f.labels, r["region_id"]), []).append(r)
        b = np.nonzero((f.labels == r["region_id"]).any(axis=(1, 2)))[0]
        assert (r["bscan_first"], r["bscan_last"]) == (b.min(), b.max())
        assert r["mean_z"] == pytest.approx(5.0) and r["max_z"] == pytest.approx(5.0)
    assert set(kinds) == set(LESION_TYPES)
    assert all(r["band"] == "RPE-BM" for r in kinds["drusen"])
    assert all(r["band"] in ("inner retina", "outer retina") for r in kinds["cyst"] + kinds["hrf"])
    assert all(r["reflectivity"] == "hypo" for r in kinds["cyst"] + kinds["srf"])
    assert all(r["reflectivity"] == "hyper" for r in kinds["hrf"])
    # subretinal fluid sits above the RPE, deeper than every cyst and focus
    srf_depth = min(r["relative_depth"] for r in kinds["srf"])
    assert srf_depth > max(r["relative_depth"] for r in kinds["cyst"] + kinds["hrf"])


def test_regions_connect_across_bscans_not_across_gaps():
    mask = np.zeros((5, 40, 40), dtype=np.uint8)
    mask[1, 10:14, 10:14] = 1
    mask[2, 12:16, 12:16] = 1  # overlaps the first one: same region
    mask[4, 10:14, 10:14] = 1  # a B-scan gap: another region
    labels, n = label_regions(mask)
    assert n == 2
    assert labels[1, 10, 10] == labels[2, 15, 15] != labels[4, 10, 10]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("lesions", ["", "drusen"])
def test_fovea_is_found_from_the_thickness_map(seed, lesions):
    ph = make_phantom(seed=seed, lesions=lesions, **SMALL)
    # the phantom's fovea: middle B-scan, column offset by its random decentring
    f, thickness = find_fovea(ph.ilm, ph.bm, ph.volume.spacing)
    true_b = SMALL["n_bscans"] // 2
    true_c = np.unravel_index(np.argmin(np.where(np.isfinite(thickness), thickness, 1e9)),
                              thickness.shape)[1]  # fmt: skip
    assert f.method == "thickness-pit"
    assert abs(f.bscan - true_b) <= 1
    assert abs(f.column - true_c) <= 0.15 / 0.0224
    # from detected (not true) layer lines the same place is found
    f2, _ = find_fovea(*volume_layers(ph.volume), ph.volume.spacing)
    assert f2.method == "thickness-pit"
    assert abs(f2.bscan - f.bscan) <= 1 and abs(f2.column - f.column) <= 4


def test_fovea_falls_back_to_the_scan_centre():
    narrow = make_phantom(seed=0, n_bscans=4, depth=128, width=64, spacing=(0.12, 0.0078, 0.0224))
    f, _ = find_fovea(narrow.ilm, narrow.bm, narrow.volume.spacing)
    assert (f.method, f.bscan, f.column) == ("scan-centre", 1.5, 31.5)
    assert "mm wide" in f.note
    # a flat retina has no pit
    ilm = np.full((9, 256), 50.0)
    f, _ = find_fovea(ilm, ilm + 60, (0.12, 0.0078, 0.0224))
    assert f.method == "scan-centre" and "no foveal pit" in f.note


def test_etdrs_sectors_follow_laterality():
    x = np.array([0.0, 1.0, -1.0, 0.0, 0.0, 2.0, 4.0])
    y = np.array([0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0])  # later B-scans are superior
    od = sector_map(x, y, "OD")
    os_ = sector_map(x, y, "OS")
    assert list(od) == ["central", "inner_nasal", "inner_temporal", "inner_superior",
                        "inner_inferior", "outer_nasal", "outside"]  # fmt: skip
    assert list(os_[1:3]) == ["inner_temporal", "inner_nasal"]
    assert list(sector_map(x, y, None)[1:4]) == ["inner_unknown", "inner_unknown", "inner_superior"]


def test_sector_statistics_add_up(lesion_phantom):
    ph = lesion_phantom
    truth = ph.lesion_mask
    f = find_regions(truth, truth * 5.0, ph.volume, ph.ilm, ph.bm)
    sb, sa, sl = ph.volume.spacing
    inside_6mm = sum(s["anomalous_volume_mm3"] or 0.0 for s in f.sectors.values())
    unscanned = [k for k, s in f.sectors.items() if s["area_mm2"] == 0]
    assert unscanned == ["outer_superior", "outer_inferior"]  # a 1.9 mm tall scan
    assert all(f.sectors[k]["anomalous_volume_mm3"] is None for k in unscanned)
    assert inside_6mm == pytest.approx(truth.sum() * sb * sa * sl, rel=1e-3)  # scan < 6 mm wide
    assert f.sectors["central"]["area_mm2"] == pytest.approx(np.pi * 0.25, rel=0.15)
    for s in f.sectors.values():
        assert s["mean_thickness_um"] is None or 150 < s["mean_thickness_um"] < 600
    summary = f.summary()
    assert summary["n_regions"] == len(f.regions)
    assert sum(summary["regions_by_band"].values()) == len(f.regions)
    assert f.csv_text().splitlines()[0].startswith("region_id,n_voxels,volume_mm3")


def test_region_features_and_crops_follow_the_regions(lesion_phantom, tiny_run):
    from octanomaly.findings.embed import CROP_PX, region_crops, region_features
    from octanomaly.scoring import load_run
    from octanomaly.transforms.preprocess import preprocess_volume

    ph = lesion_phantom
    run = load_run(tiny_run, "cpu")
    truth = ph.lesion_mask
    f = find_regions(truth, truth * 5.0, ph.volume, ph.ilm, ph.bm)
    prep = preprocess_volume(ph.volume, run.cfg.preprocessing)
    feats = region_features(run.model, prep, f)
    assert feats.shape[0] == len(f.regions) and feats.shape[1] > 0
    assert np.isfinite(feats).all()
    np.testing.assert_array_equal(region_features(run.model, prep, f), feats)  # deterministic
    # different lesions give different features; a region's own features do not depend on others
    assert len(np.unique(feats.round(5), axis=0)) == len(f.regions)
    crops = region_crops(ph.volume, f)
    assert crops.shape == (len(f.regions), 2, *CROP_PX) and crops.dtype == np.uint8
    centre = crops[
        :, 1, CROP_PX[0] // 2 - 4 : CROP_PX[0] // 2 + 4, CROP_PX[1] // 2 - 8 : CROP_PX[1] // 2 + 8
    ]
    assert (centre.reshape(len(f.regions), -1).max(axis=1) == 255).mean() > 0.9  # region at centre


def test_single_bscan_and_no_retina():
    ph = make_phantom(seed=2, n_bscans=1, depth=256, width=256, spacing=(0.12, 0.0078, 0.0224),
                      lesions="cyst,hrf")  # fmt: skip
    m = ph.lesion_mask
    f = find_regions(m, m * 5.0, ph.volume, ph.ilm, ph.bm)
    assert f.regions and all(r["n_bscans"] == 1 for r in f.regions)
    assert all(r["y_mm"] == 0.0 for r in f.regions)  # the fovea is on the B-scan
    assert {r["etdrs_sector"].split("_")[-1] for r in f.regions} <= {"central", "nasal", "temporal"}
    # no retina found: NaN lines -> scan-centre fovea, regions without band or reflectivity
    nan = np.full((1, 256), np.nan)
    g = find_regions(m, m * 5.0, ph.volume, nan, nan)
    assert g.fovea.method == "scan-centre"
    assert {r["band"] for r in g.regions} == {"unknown"}
    assert {r["reflectivity"] for r in g.regions} == {"unknown"}


def test_model_without_discriminator_gives_empty_features(lesion_phantom):
    from types import SimpleNamespace

    from octanomaly.findings.cluster import cluster_regions
    from octanomaly.findings.embed import region_features

    ph = lesion_phantom
    m = ph.lesion_mask
    f = find_regions(m, m * 5.0, ph.volume, ph.ilm, ph.bm)
    feats = region_features(SimpleNamespace(name="toy", patch_size=32), {}, f)
    assert feats.shape == (len(f.regions), 0)
    assert len(cluster_regions(f.regions, feats).labels) == len(f.regions)  # descriptors only


def test_region_band_top_is_the_outer_band_under_it(lesion_phantom):
    """Drusen regions sit under a lifted outer band; without the band map the column is NaN."""
    from octanomaly.findings.regions import band_top_en_face
    from octanomaly.transforms.preprocess import PreprocessingConfig, preprocess_volume

    ph = lesion_phantom
    prep = preprocess_volume(ph.volume, PreprocessingConfig())
    band = band_top_en_face(prep, ph.volume.shape[2])
    assert band.shape == (ph.volume.shape[0], ph.volume.shape[2])
    truth = ph.lesion_mask
    f = find_regions(truth, truth * 5.0, ph.volume, ph.ilm, ph.bm, band)
    kinds = {}
    for r in f.regions:
        kinds.setdefault(_true_type(ph, f.labels, r["region_id"]), []).append(r["band_top_um"])
    healthy = np.nanmedian(band[~ph.masks["drusen"].any(axis=1)])
    assert np.median(kinds["drusen"]) > healthy + 15.0
    assert np.median(kinds["hrf"]) < healthy + 10.0
    plain = find_regions(truth, truth * 5.0, ph.volume, ph.ilm, ph.bm)
    assert all(np.isnan(r["band_top_um"]) for r in plain.regions)
    assert band_top_en_face({**prep, "bm_row": None}, ph.volume.shape[2]) is None
