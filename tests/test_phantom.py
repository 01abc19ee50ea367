"""The synthetic OCT phantom: determinism, geometry, anatomy, lesion masks and the CLI."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from octanomaly.cli.app import app
from octanomaly.data.phantom import LESION_TYPES, make_phantom, parse_lesions
from octanomaly.errors import ConfigError

SMALL = {"n_bscans": 5, "depth": 160, "width": 128}
# deep enough that nothing is compressed, wide enough to reach the parafovea (2.9 mm field)
MEDIUM = {"n_bscans": 7, "depth": 320, "width": 256, "spacing": (0.12, 0.0039, 0.0112)}


@pytest.fixture(scope="module")
def healthy():
    return make_phantom(seed=5, **MEDIUM)


@pytest.fixture(scope="module")
def sick():
    return make_phantom(seed=5, lesions="all", **MEDIUM)


def _retina(ph) -> np.ndarray:
    """Voxels between ILM and BM, outside every lesion."""
    z = np.arange(ph.volume.shape[1])[None, :, None]
    inside = (z >= ph.ilm[:, None, :]) & (z < ph.bm[:, None, :])
    return inside & ~ph.lesion_mask


def test_deterministic_per_seed():
    a = make_phantom(seed=11, lesions=("cyst", "hrf"), **SMALL)
    b = make_phantom(seed=11, lesions=("cyst", "hrf"), **SMALL)
    c = make_phantom(seed=12, lesions=("cyst", "hrf"), **SMALL)
    np.testing.assert_array_equal(a.volume.data, b.volume.data)
    np.testing.assert_array_equal(a.ilm, b.ilm)
    np.testing.assert_array_equal(a.bm, b.bm)
    for kind in LESION_TYPES:
        np.testing.assert_array_equal(a.masks[kind], b.masks[kind])
    assert np.mean(a.volume.data != c.volume.data) > 0.5
    assert not np.array_equal(a.masks["cyst"], c.masks["cyst"])
    assert not np.allclose(a.ilm, c.ilm)


def test_shape_dtype_spacing():
    ph = make_phantom(seed=0, n_bscans=4, depth=128, width=128)
    vol = ph.volume
    assert vol.shape == (4, 128, 128)
    assert vol.data.dtype == np.uint8
    assert vol.spacing == (0.12, 0.0039, 0.0112)
    assert vol.source_format == "phantom" and vol.laterality == "OD"
    assert ph.ilm.shape == ph.bm.shape == (4, 128)
    assert all(m.shape == vol.shape and m.dtype == bool for m in ph.masks.values())
    vol.validate()


def test_layers_ordered_and_plausible(healthy):
    ph = healthy
    assert ph.volume.metadata["axial_scale"] == 1.0
    assert (ph.ilm < ph.bm).all()
    names = list(ph.boundaries)
    rows = np.stack([ph.boundaries[n] for n in names])
    assert (np.diff(rows, axis=0) >= -1e-9).all(), "boundaries must run top to bottom"
    axial = ph.volume.spacing[1]
    thickness_mm = (ph.bm - ph.ilm) * axial
    assert 0.15 < thickness_mm.min() and thickness_mm.max() < 0.40
    centre = thickness_mm[ph.volume.n_bscans // 2]
    pit = np.min(centre)
    rim = np.max(centre)
    assert rim - pit > 0.05, f"foveal pit too shallow: {pit:.3f} vs {rim:.3f} mm"
    # the pit is in the middle B-scan, near the middle column
    assert abs(int(np.argmin(centre)) - centre.size // 2) < 0.15 * centre.size
    assert thickness_mm.min() == pytest.approx(pit)
    # vitreous is dark, RPE is the brightest band
    data = ph.volume.data.astype(float)
    z = np.arange(data.shape[1])[None, :, None]
    vitreous = data[z < ph.ilm[:, None, :] - 5]
    rpe = (z >= ph.boundaries["rpe"][:, None, :] + 1) & (z < ph.boundaries["drusen"][:, None, :])
    onl = (z >= ph.boundaries["onl"][:, None, :] + 2) & (z < ph.boundaries["elm"][:, None, :] - 2)
    assert vitreous.mean() < 15
    assert data[rpe].mean() > data[_retina(ph)].mean() + 50
    assert data[onl].mean() < data[rpe].mean() - 80


def test_nfl_thicker_nasally():
    for lat, nasal_side in (("OD", 1), ("OS", -1)):
        ph = make_phantom(seed=2, laterality=lat, **MEDIUM)
        nfl = ph.boundaries["gcl"] - ph.ilm
        left, right = nfl[:, :30].mean(), nfl[:, -30:].mean()
        assert (right - left) * nasal_side > 2, (lat, left, right)


def test_masks_only_for_requested_types(healthy):
    assert not healthy.lesion_mask.any()
    for kind in LESION_TYPES:
        ph = make_phantom(seed=1, lesions=[kind], **SMALL)
        assert ph.masks[kind].any(), kind
        assert not any(ph.masks[k].any() for k in LESION_TYPES if k != kind)
        assert ph.volume.metadata["lesions"] == [kind]


def test_lesions_span_neighbouring_bscans(sick):
    for kind in LESION_TYPES:
        touched = sick.masks[kind].any(axis=(1, 2)).sum()
        assert touched >= 2, (kind, touched)
    for kind in ("cyst", "srf", "drusen"):
        labels, n = ndimage.label(sick.masks[kind])
        spans = [len(np.unique(np.nonzero(labels == i)[0])) for i in range(1, n + 1)]
        assert max(spans) >= 2, (kind, spans)


def test_drusen_raise_rpe_above_bm(healthy, sick):
    mask = sick.masks["drusen"]
    z = np.arange(mask.shape[1])[None, :, None]
    raised_rpe_bottom = sick.boundaries["drusen"][:, None, :]
    assert (z >= np.floor(raised_rpe_bottom))[mask].all()
    assert (z < sick.bm[:, None, :])[mask].all()
    cols = mask.any(axis=1)
    # the RPE moved up over the drusen, Bruch's membrane stayed where it was
    lift = healthy.boundaries["rpe"] - sick.boundaries["rpe"]
    assert lift[cols].max() > 5 and np.median(lift[cols]) > 1
    np.testing.assert_allclose(sick.bm, healthy.bm)
    # deposit is medium-bright, unlike the dark fluid
    data = sick.volume.data.astype(float)
    assert data[mask].mean() > data[sick.masks["srf"]].mean() + 50


def test_fluid_and_cysts_dark_foci_bright(healthy, sick):
    data = sick.volume.data.astype(float)
    retina = data[_retina(sick)].mean()
    assert data[sick.masks["cyst"]].mean() < retina - 30
    assert data[sick.masks["srf"]].mean() < retina - 40
    assert data[sick.masks["hrf"]].mean() > retina + 40
    # cysts sit in the nuclear/plexiform layers, fluid between photoreceptors and RPE
    z = np.arange(data.shape[1])[None, :, None]
    in_inner = z >= np.floor(sick.boundaries["inl"][:, None, :])
    above_elm = z < np.ceil(sick.boundaries["elm"][:, None, :])
    assert (in_inner & above_elm)[sick.masks["cyst"]].all()
    srf = sick.masks["srf"]
    assert (z < np.ceil(sick.boundaries["rpe"][:, None, :]))[srf].all()
    assert (z >= np.floor(sick.boundaries["iz"][:, None, :]))[srf].all()
    # fluid lifts the retina: the ILM is higher than in the healthy twin over it
    cols = srf.any(axis=1)
    assert (healthy.ilm - sick.ilm)[cols].max() > 10


def test_masks_mark_changed_voxels(healthy, sick):
    """Every cyst / focus voxel differs from the healthy twin's tissue at that place."""
    diff = np.abs(sick.volume.data.astype(int) - healthy.volume.data.astype(int))
    for kind in ("cyst", "hrf"):
        assert diff[sick.masks[kind]].mean() > 30, kind
    # foci move no layer: the image changes only at the mask and its optical blur (3 voxels)
    foci = make_phantom(seed=5, lesions=["hrf"], **MEDIUM)
    np.testing.assert_array_equal(foci.ilm, healthy.ilm)
    changed = foci.volume.data != healthy.volume.data
    near = ndimage.binary_dilation(foci.masks["hrf"], np.ones((1, 7, 7), bool))
    assert changed[foci.masks["hrf"]].mean() > 0.9
    assert not changed[~near].any()


def test_parse_lesions():
    assert parse_lesions("all") == LESION_TYPES
    assert parse_lesions("drusen, cyst") == ("cyst", "drusen")
    assert parse_lesions("") == ()
    with pytest.raises(ConfigError, match="unknown lesion type 'cist'"):
        parse_lesions("cyst,cist")
    with pytest.raises(ConfigError):
        make_phantom(lesions=["tumour"], **SMALL)
    with pytest.raises(ConfigError):
        make_phantom(laterality="left", **SMALL)


def test_cli_writes_volume_masks_layers(tmp_path):
    from octanomaly.io import load_volume

    out = tmp_path / "ph"
    args = ["phantom", str(out), "--seed", "3", "--n-bscans", "3", "--depth", "128"]
    result = CliRunner().invoke(app, [*args, "--width", "96", "--lesions", "cyst,drusen"])
    assert result.exit_code == 0, result.output
    ph = make_phantom(seed=3, n_bscans=3, depth=128, width=96, lesions=("cyst", "drusen"))
    vol = nib.load(out / "phantom.nii.gz")
    np.testing.assert_array_equal(np.asarray(vol.dataobj), ph.volume.data.transpose(2, 1, 0))
    union = np.zeros(vol.shape, dtype=np.uint8)
    for name in ("phantom_mask", "phantom_mask_cyst", "phantom_mask_drusen"):
        mask = nib.load(out / f"{name}.nii.gz")
        assert mask.shape == vol.shape and mask.get_data_dtype() == np.uint8
        np.testing.assert_allclose(mask.affine, vol.affine)
        if name != "phantom_mask":
            union |= np.asarray(mask.dataobj)
    np.testing.assert_array_equal(np.asarray(nib.load(out / "phantom_mask.nii.gz").dataobj), union)
    assert union.any()
    assert not (out / "phantom_mask_srf.nii.gz").exists()
    layers = np.load(out / "phantom_layers.npz")
    np.testing.assert_allclose(layers["ilm"], ph.ilm, atol=1e-3)
    np.testing.assert_allclose(layers["bm"], ph.bm, atol=1e-3)
    dcm = load_volume(out / "phantom.dcm")
    np.testing.assert_array_equal(dcm.data, ph.volume.data)
    np.testing.assert_allclose(dcm.spacing, ph.volume.spacing)


def test_cli_rejects_unknown_lesion(tmp_path):
    out = tmp_path / "ph"
    result = CliRunner().invoke(app, ["phantom", str(out), "--lesions", "cyst,tumour"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "tumour" in lines[0]
    assert not out.exists()
