"""Image-stack reader: folders of B-scans, multi-page TIFF, single images, Heyex XML spacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from octanomaly.errors import InputError
from octanomaly.io import images, load_volume
from octanomaly.volume import DEFAULT_SPACING

H, W = 12, 16


def _frame(value: int, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(value)
    a = rng.integers(0, 50, size=(H, W)).astype(dtype)
    a[0, 0] = value  # identifies the frame
    return a


def test_png_folder_natural_sort_and_ignores_other_files(tmp_path: Path) -> None:
    for i in (1, 2, 10, 11, 3):
        Image.fromarray(_frame(100 + i)).save(tmp_path / f"b{i}.png")
    (tmp_path / "OCT-Info.txt").write_text("notes")
    (tmp_path / "LICENSE").write_text("MIT")
    (tmp_path / "meta.xml").write_text("<root/>")
    (tmp_path / ".hidden.png").write_bytes(b"junk")
    assert images.sniff(tmp_path)
    vol = images.read(tmp_path)
    assert vol.shape == (5, H, W)
    assert vol.data.dtype == np.uint8
    assert list(vol.data[:, 0, 0]) == [101, 102, 103, 110, 111]  # b2 before b10
    np.testing.assert_array_equal(vol.data[3], _frame(110))
    assert vol.spacing == DEFAULT_SPACING and vol.spacing_is_default
    assert vol.summary()["spacing_is_default"] is True


def test_natural_key_orders_numbers() -> None:
    names = ["scan10.png", "scan2.png", "scan1.png", "scan20.png"]
    got = sorted((Path(n) for n in names), key=images.natural_key)
    assert [p.name for p in got] == ["scan1.png", "scan2.png", "scan10.png", "scan20.png"]


def test_spacing_argument_is_used(tmp_path: Path) -> None:
    Image.fromarray(_frame(1)).save(tmp_path / "a.png")
    vol = load_volume(tmp_path, spacing=(0.05, 0.004, 0.01))
    assert vol.spacing == (0.05, 0.004, 0.01) and not vol.spacing_is_default
    assert vol.metadata["spacing_source"] == "option"


def test_gray_stored_as_rgb_and_rgba_collapses(tmp_path: Path) -> None:
    g = _frame(7)
    Image.fromarray(np.stack([g, g, g], -1)).save(tmp_path / "1.png")
    Image.fromarray(np.stack([g, g, g, np.full_like(g, 255)], -1), "RGBA").save(tmp_path / "2.png")
    tifffile.imwrite(tmp_path / "3.tif", np.stack([g, g, g], -1), photometric="rgb")
    vol = images.read(tmp_path)
    assert vol.shape == (3, H, W) and vol.data.dtype == np.uint8
    for k in range(3):
        np.testing.assert_array_equal(vol.data[k], g)
    assert "colour_converted" not in vol.metadata


def test_real_colour_becomes_luminance_with_note(tmp_path: Path) -> None:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[..., 2] = 50
    p = tmp_path / "colour.png"
    Image.fromarray(rgb).save(p)
    vol = images.read(p)
    assert vol.shape == (1, H, W)
    expected = round((200 * 299 + 50 * 114) / 1000)
    assert int(vol.data[0, 0, 0]) == expected
    assert "luminance" in vol.metadata["colour_converted"]


def test_16bit_tiff_folder_keeps_uint16(tmp_path: Path) -> None:
    frames = [(_frame(i, np.uint16) * 1000 + 5000).astype(np.uint16) for i in range(3)]
    for i, f in enumerate(frames):
        tifffile.imwrite(tmp_path / f"img_{i}.tiff", f)
    vol = images.read(tmp_path)
    assert vol.data.dtype == np.uint16
    np.testing.assert_array_equal(vol.data, np.stack(frames))
    assert vol.data.max() > 255


def test_16bit_png_keeps_uint16(tmp_path: Path) -> None:
    a = (np.arange(H * W).reshape(H, W) * 300).astype(np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    vol = images.read(p)
    assert vol.data.dtype == np.uint16
    np.testing.assert_array_equal(vol.data[0], a)


@pytest.mark.parametrize("bigtiff", [False, True])
def test_multipage_tiff_is_a_volume(tmp_path: Path, bigtiff: bool) -> None:
    stack = np.stack([_frame(i) for i in range(4)])
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, stack, photometric="minisblack", bigtiff=bigtiff)
    assert images.image_kind(p) == ("bigtiff" if bigtiff else "tiff")
    vol = images.read(p)
    assert vol.shape == (4, H, W)
    np.testing.assert_array_equal(vol.data, stack)


def test_single_jpeg_is_one_bscan_and_sniffed_by_magic(tmp_path: Path) -> None:
    p = tmp_path / "bscan.dat"  # wrong extension: the magic decides
    Image.fromarray(_frame(3)).save(p, format="JPEG", quality=95)
    assert images.image_kind(p) == "jpeg" and images.sniff(p)
    vol = images.read(p)
    assert vol.shape == (1, H, W) and vol.data.dtype == np.uint8
    assert vol.spacing_is_default


def test_bmp_sniffed(tmp_path: Path) -> None:
    p = tmp_path / "x.bmp"
    Image.fromarray(_frame(2)).save(p)
    assert images.image_kind(p) == "bmp"
    np.testing.assert_array_equal(images.read(p).data[0], _frame(2))


def test_non_image_is_not_sniffed(tmp_path: Path) -> None:
    p = tmp_path / "notes.png"
    p.write_bytes(b"this is text, not a PNG")
    assert not images.sniff(p)
    d = tmp_path / "d"
    d.mkdir()
    (d / "readme.txt").write_text("x")
    assert not images.sniff(d)


def test_empty_folder_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no PNG/TIFF/JPEG/BMP images") as err:
        images.read(tmp_path)
    assert err.value.path == tmp_path


def test_mixed_sizes_names_both_files(tmp_path: Path) -> None:
    Image.fromarray(_frame(1)).save(tmp_path / "b1.png")
    Image.fromarray(np.zeros((H, W + 4), np.uint8)).save(tmp_path / "b2.png")
    with pytest.raises(InputError) as err:
        images.read(tmp_path)
    msg = str(err.value)
    assert "mixed sizes" in msg and "b1.png is 16x12" in msg and "b2.png is 20x12" in msg


def test_mixed_bit_depth_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "1.tif", _frame(1))
    tifffile.imwrite(tmp_path / "2.tif", _frame(2, np.uint16))
    with pytest.raises(InputError, match="mixed bit depth"):
        images.read(tmp_path)


def test_corrupt_image_in_folder_names_it(tmp_path: Path) -> None:
    Image.fromarray(_frame(1)).save(tmp_path / "1.png")
    good = (tmp_path / "1.png").read_bytes()
    (tmp_path / "2.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(InputError, match="2.png") as err:
        images.read(tmp_path)
    assert err.value.path == tmp_path / "2.png"
    (tmp_path / "2.png").write_bytes(b"not an image at all")  # right name, wrong bytes
    with pytest.raises(InputError, match="unrecognised header"):
        images.read(tmp_path)


def _heyex_xml(n_bscans: int, step: float = 0.03, laterality: str = "L") -> str:
    slo = (
        "<Image><ID>0</ID><OphthalmicAcquisitionContext><Width>768</Width>"
        "<ScaleX>0.0112</ScaleX><ScaleY>0.0112</ScaleY></OphthalmicAcquisitionContext></Image>"
    )
    scans = "".join(
        f"<Image><ID>{i + 1}</ID><OphthalmicAcquisitionContext><ScaleX>0.0115</ScaleX>"
        f"<ScaleY>0.0039</ScaleY><Start><Coord><X>1.0</X><Y>{5 - i * step}</Y></Coord></Start>"
        f"<End><Coord><X>7.0</X><Y>{5 - i * step}</Y></Coord></End>"
        "</OphthalmicAcquisitionContext></Image>"
        for i in range(n_bscans)
    )
    return (
        "<HEDX><BODY><Patient><PatientID>P123</PatientID><LastName>Doe</LastName><Study><Series>"
        f"<Laterality>{laterality}</Laterality>{slo}{scans}</Series></Study></Patient></BODY></HEDX>"
    )


def test_heyex_xml_in_parent_gives_spacing(tmp_path: Path) -> None:
    scans = tmp_path / "OCT-Volume-Scan"
    scans.mkdir()
    for i in range(1, 4):
        Image.fromarray(_frame(i)).save(scans / f"{i}-Input.png")
    (tmp_path / "OCT-Info.xml").write_text(_heyex_xml(3, step=0.06))
    vol = images.read(scans)
    assert vol.spacing == pytest.approx((0.06, 0.0039, 0.0115))
    assert not vol.spacing_is_default
    assert vol.laterality == "OS"
    assert vol.phi == {"patient_id": "P123", "last_name": "Doe"}
    assert "P123" not in str(vol.summary()) and "Doe" not in str(vol.summary())
    assert vol.metadata["spacing_source"] == "OCT-Info.xml"


def test_heyex_xml_count_mismatch_falls_back_to_defaults(tmp_path: Path) -> None:
    for i in range(1, 4):
        Image.fromarray(_frame(i)).save(tmp_path / f"{i}.png")
    (tmp_path / "OCT-Info.xml").write_text(_heyex_xml(5))
    vol = images.read(tmp_path)
    assert vol.spacing_is_default and vol.spacing == DEFAULT_SPACING
    assert "lists 5 B-scans but the folder holds 3" in vol.metadata["spacing_note"]


# ----------------------------------------------------------------- real data (skipped if absent)


def test_real_spectralis_drusen_folder(shared_data: Path) -> None:
    folder = shared_data / "volumes" / "spectralis-drusen" / "OCT-Volume-Scan"
    vol = images.read(folder).validate()
    assert vol.shape == (145, 496, 512)
    assert vol.data.dtype == np.uint8
    bscan, axial, lateral = vol.spacing
    assert bscan == pytest.approx(0.0298, abs=5e-4)
    assert axial == pytest.approx(0.003872) and lateral == pytest.approx(0.011182)
    assert not vol.spacing_is_default
    # natural order: frame k is file "k+1-Input.tif"
    ref = np.asarray(Image.open(folder / "10-Input.tif"))[..., 0]
    np.testing.assert_array_equal(vol.data[9], ref)


def test_real_kermany_jpeg_is_one_bscan(shared_data: Path) -> None:
    path = next(iter(sorted((shared_data / "samples" / "kermany").glob("*.jpeg"))))
    vol = images.read(path).validate()
    assert vol.n_bscans == 1 and vol.data.dtype == np.uint8
    assert vol.shape[1:] == np.asarray(Image.open(path)).shape[:2]
    assert vol.spacing_is_default


def test_real_octdl_colour_jpeg_loads_as_luminance(shared_data: Path) -> None:
    # Optovue exports are RGB JPEGs, mostly gray with coloured marks: luminance, with a note.
    path = next(iter(sorted((shared_data / "abnormal" / "octdl" / "AMD").glob("*.jpg"))))
    vol = images.read(path).validate()
    assert vol.n_bscans == 1 and vol.data.dtype == np.uint8
    assert "colour_converted" in vol.metadata
    expected = np.asarray(Image.open(path).convert("L")).astype(int)
    assert np.abs(vol.data[0].astype(int) - expected).max() <= 1  # Pillow's own ITU-R 601
