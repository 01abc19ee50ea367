"""NIfTI geometry: the octanomaly layout round-trips exactly, and others' NIfTI is reoriented."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from octanomaly.errors import InputError
from octanomaly.io import nifti
from octanomaly.volume import OCTVolume


def _volume(shape=(5, 40, 30), spacing=(0.12, 0.0039, 0.0112)) -> OCTVolume:
    rng = np.random.default_rng(0)
    return OCTVolume(rng.integers(0, 255, shape, dtype=np.uint8), spacing)


def test_layout_and_affine_match_methods(tmp_path):
    vol = _volume()
    path = nifti.write_volume(vol, tmp_path / "v.nii.gz")
    img = nib.load(str(path))
    assert img.shape == (30, 40, 5)
    np.testing.assert_array_equal(np.asarray(img.dataobj), vol.data.transpose(2, 1, 0))
    np.testing.assert_allclose(img.affine, np.diag([-0.0112, -0.0039, 0.12, 1.0]))
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.header.get_zooms(), (0.0112, 0.0039, 0.12), rtol=1e-6)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")


def test_roundtrip_exact(tmp_path):
    vol = _volume()
    back = nifti.read(nifti.write_volume(vol, tmp_path / "v.nii"))
    assert back.shape == vol.shape
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-6)
    assert back.data.dtype == np.uint8


def test_map_has_same_shape_and_affine(tmp_path):
    vol = _volume()
    m = nifti.write_map(np.random.default_rng(1).random(vol.shape), vol, tmp_path / "m.nii.gz")
    k = nifti.write_map(np.zeros(vol.shape, bool), vol, tmp_path / "k.nii.gz")
    v = nifti.write_volume(vol, tmp_path / "v.nii.gz")
    imgs = [nib.load(str(p)) for p in (m, k, v)]
    assert imgs[0].get_data_dtype() == np.float32
    assert imgs[1].get_data_dtype() == np.uint8
    for img in imgs[:2]:
        assert img.shape == imgs[2].shape
        np.testing.assert_array_equal(img.affine, imgs[2].affine)
    with pytest.raises(ValueError):
        nifti.write_map(np.zeros((1, 2, 3)), vol, tmp_path / "bad.nii.gz")


def test_foreign_orientation_is_reoriented(tmp_path):
    """A RAS NIfTI with axes (n_bscans, width, depth) reads back to the same anatomy."""
    vol = _volume()
    # Store as (bscan, width, depth) with a RAS-like permuted, flipped affine.
    arr = vol.data.transpose(0, 2, 1)[::-1, ::-1, ::-1]
    b, a, lat = vol.spacing
    # axis0 = bscan reversed -> points I; axis1 = width reversed -> R; axis2 = depth reversed -> A
    aff = np.array([[0, lat, 0, 0], [0, 0, a, 0], [-b, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr), aff), str(tmp_path / "f.nii.gz"))
    back = nifti.read(tmp_path / "f.nii.gz")
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.spacing, vol.spacing)


def test_4d_nifti_is_refused(tmp_path):
    nib.save(
        nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), str(tmp_path / "4d.nii")
    )
    with pytest.raises(InputError, match="4d.nii.*3-D"):
        nifti.read(tmp_path / "4d.nii")


def test_sniff_by_content_not_extension(tmp_path):
    vol = _volume()
    p = nifti.write_volume(vol, tmp_path / "v.nii.gz").rename(tmp_path / "renamed.dat")
    assert nifti.sniff(p)
    np.testing.assert_array_equal(nifti.read(p).data, vol.data)
    (tmp_path / "x.nii").write_bytes(b"\x00" * 400)
    assert not nifti.sniff(tmp_path / "x.nii")


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_fast_gzip_writes_nibabels_exact_bytes(tmp_path, dtype):
    """The ISA-L writer emits plain gzip whose payload is byte for byte nibabel's own NIfTI."""
    import gzip

    rng = np.random.default_rng(1)
    arr = (rng.random((5, 40, 30)) * 200).astype(dtype)
    spacing = (0.12, 0.0039, 0.0114)
    path = nifti.write(arr, spacing, tmp_path / "m.nii.gz", description="octanomaly map")
    payload = gzip.decompress(path.read_bytes())  # any gzip reader (ITK, Slicer, zlib) reads it
    ref_img = nifti.to_nifti_image(arr, spacing, "octanomaly map")
    reference = nib.Nifti1Image(
        np.ascontiguousarray(arr.transpose(2, 1, 0)), ref_img.affine, ref_img.header
    )
    assert payload == reference.to_bytes()
    plain = nifti.write(arr, spacing, tmp_path / "m.nii", description="octanomaly map")
    assert plain.read_bytes() == payload
