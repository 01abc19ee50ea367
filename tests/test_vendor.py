"""Vendor reader: Heyex .vol / .mat, magic sniffing of .e2e, Topcon, Zeiss; missing extra."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from octanomaly.errors import InputError
from octanomaly.io import vendor
from octanomaly.volume import DEFAULT_SPACING

pytest.importorskip("eyepy")


def make_vol(
    path: Path,
    n: int = 3,
    h: int = 8,
    w: int = 10,
    distance: float = 0.12,
    scale_x: float = 0.0115,
    scale_z: float = 0.0039,
    pattern: int = 3,
    invalid: bool = False,
) -> Path:
    """A small Heyex raw .vol written field by field after the published HSF-OCT-103 layout."""
    hdr = bytearray(2048)
    struct.pack_into("<12sIII3d", hdr, 0, b"HSF-OCT-103", w, n, h, scale_x, distance, scale_z)
    struct.pack_into("<II2dId4sQiI", hdr, 48, 4, 4, 0.01, 0.01, 30, 0.0, b"OS", 0, pattern, 256)
    struct.pack_into("<16s16sI24sd", hdr, 104, b"42", b"", 7, b"SECRET-ID", 18000.0)
    out = [bytes(hdr), bytes(16)]  # header, 4x4 SLO
    for i in range(n):
        bh = bytearray(256)
        y = 2.0 + 0.2 * i
        struct.pack_into("<12sI4dIIfI", bh, 0, b"HSF-BS-103", 256, 1.0, y, 5.0, y, 0, 256, 20, 0)
        data = np.full((h, w), i / 10, np.float32)
        data[-1, -1] = 0.5
        if invalid and i == 0:
            data[0, :3] = np.finfo(np.float32).max
        out += [bytes(bh), data.tobytes()]
    path.write_bytes(b"".join(out))
    return path


def test_heyex_vol_volume(tmp_path: Path) -> None:
    p = make_vol(tmp_path / "scan.vol", invalid=True)
    assert vendor.kind(p) == "heyex-vol" and vendor.sniff(p)
    vol = vendor.read(p).validate()
    assert vol.shape == (3, 8, 10) and vol.data.dtype == np.float32
    np.testing.assert_allclose(vol.data[:, 2, 2], [0.0, 0.1, 0.2], rtol=1e-6)
    assert vol.spacing == pytest.approx((0.12, 0.0039, 0.0115))
    assert not vol.spacing_is_default
    assert vol.laterality == "OS"
    assert vol.metadata["intensity"] == "linear"
    assert vol.metadata["invalid_pixels_zeroed"] == 3 and vol.data[0, 0, :3].max() == 0
    assert vol.phi["patient_id"] == "SECRET-ID"
    assert "SECRET" not in str(vol.summary())
    assert "SECRET" in str(vol.summary(phi=True))


def test_heyex_vol_distance_zero_uses_start_points(tmp_path: Path) -> None:
    vol = vendor.read(make_vol(tmp_path / "s.vol", distance=0.0))
    assert vol.spacing[0] == pytest.approx(0.2)
    assert "start points" in vol.metadata["bscan_spacing"]


def test_heyex_vol_without_scales_uses_flagged_defaults(tmp_path: Path) -> None:
    vol = vendor.read(make_vol(tmp_path / "s.vol", scale_x=0.0, scale_z=0.0))
    assert vol.spacing == DEFAULT_SPACING and vol.spacing_is_default


def test_truncated_vol_is_input_error(tmp_path: Path) -> None:
    p = make_vol(tmp_path / "t.vol")
    p.write_bytes(p.read_bytes()[:3000])
    with pytest.raises(InputError, match="damaged Heidelberg .vol") as err:
        vendor.read(p)
    assert err.value.path == p


def test_heyex_mat(tmp_path: Path) -> None:
    p = tmp_path / "circ.mat"
    b0 = np.linspace(0, 1, 6 * 9, dtype=np.float32).reshape(6, 9)
    fields = {"B0": b0, "SizeX": 9, "SizeZ": 6, "ScaleX": 0.014, "ScaleZ": 0.0039}
    savemat(p, {**fields, "Distance": 0.0, "NumBScans": 1, "ScanPosition": "OD  "})
    savemat(tmp_path / "other.mat", {"x": np.zeros(3)})
    assert vendor.kind(p) == "heyex-mat"
    assert not vendor.sniff(tmp_path / "other.mat")
    vol = vendor.read(p).validate()
    assert vol.shape == (1, 6, 9)
    np.testing.assert_array_equal(vol.data[0], b0)
    assert vol.spacing[1:] == pytest.approx((0.0039, 0.014)) and not vol.spacing_is_default
    assert vol.laterality == "OD" and vol.metadata["intensity"] == "linear"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"CMDb\x00\x00\x00\x00\x00\x00\x00\x00", "heyex-e2e"),
        (b"E2EMultipleVolumeFile", "heyex-e2e"),
        (b"FOCTFDA\x01\x00\x00\x00", "topcon"),
        (b"FOCTFDS\x01\x00\x00\x00", "topcon"),
        (b"FOCTXYZ\x01\x00\x00\x00", None),
        (b"HSF-OCT-103", "heyex-vol"),
        (b"\x00" * 16, None),
    ],
)
def test_sniff_by_magic(tmp_path: Path, head: bytes, expected: str | None) -> None:
    p = tmp_path / "file.bin"  # extension says nothing
    p.write_bytes(head + bytes(200))
    assert vendor.kind(p) == expected


def test_damaged_e2e_and_topcon_are_input_errors(tmp_path: Path) -> None:
    e2e = tmp_path / "x.e2e"
    e2e.write_bytes(b"CMDb" + np.random.default_rng(0).bytes(500))
    with pytest.raises(InputError, match=r"x\.e2e: unreadable Heidelberg \.e2e"):
        vendor.read(e2e)
    fda = tmp_path / "x.fda"
    fda.write_bytes(b"FOCTFDA" + np.random.default_rng(1).bytes(500))
    with pytest.raises(InputError, match=r"x\.fda: unreadable Topcon file"):
        vendor.read(fda)


def test_zeiss_img_by_extension_and_size(tmp_path: Path) -> None:
    p = tmp_path / "P1_Macular Cube 200x200_OD.img"
    data = np.zeros((200, 200, 1024), np.uint8)  # (n_bscans, width, depth), depth fastest
    data[3, 5, 7] = 9
    p.write_bytes(data.tobytes())
    wrong = tmp_path / "small.img"
    wrong.write_bytes(bytes(1000))
    assert vendor.kind(p) == "zeiss-img" and not vendor.sniff(wrong)
    vol = vendor.read(p)
    assert vol.shape == (200, 1024, 200) and vol.data.dtype == np.uint8
    assert vol.data[3, 7, 5] == 9  # oct-converter layout: slice k is depth x width
    assert vol.spacing_is_default  # Cirrus .img carries no spacing


def test_missing_library_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_vol(tmp_path / "s.vol")
    monkeypatch.setitem(sys.modules, "eyepy.io.he.vol_reader", None)
    with pytest.raises(InputError, match=r"pip install 'octanomaly\[vendor\]'"):
        vendor.read(p)


# ----------------------------------------------------------------- real data (skipped if absent)


def test_real_heyex_optic_disc_vol(shared_data: Path) -> None:
    p = shared_data / "vendor" / "heyex-optic-disc.vol"
    vol = vendor.read(p).validate()
    assert vol.shape == (1, 496, 768) and vol.data.dtype == np.float32
    _bscan, axial, lateral = vol.spacing
    assert axial == pytest.approx(0.0038717, rel=1e-4)  # header ScaleZ
    assert lateral == pytest.approx(0.0178910, rel=1e-4)  # header ScaleX
    assert not vol.spacing_is_default
    assert vol.laterality == "OD"
    assert vol.metadata["scan_pattern"].startswith("2 ")
    assert "birth_date" in vol.phi and "phi" not in vol.summary()


def test_real_spectralis_circular_mat(shared_data: Path) -> None:
    p = shared_data / "vendor" / "spectralis-circular-scan.mat"
    assert vendor.kind(p) == "heyex-mat"
    vol = vendor.read(p).validate()
    assert vol.shape == (1, 496, 768)
    assert vol.spacing[1:] == pytest.approx((0.00387167, 0.0142414), rel=1e-4)
    assert vol.laterality == "OD"
    assert 0.0 <= vol.data.min() and vol.data.max() <= 1.0
