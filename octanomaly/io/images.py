"""B-scan images: a folder of PNG/TIFF/JPEG/BMP B-scans, a multi-page TIFF, or one 2-D image.

Files are recognised by their magic bytes. A folder is sorted naturally (``b2`` before ``b10``).
Gray stored as RGB(A) collapses to one channel (:func:`gray_channel`, shared with the DICOM
reader); a real colour image is converted to luminance (ITU-R 601, as Pillow's ``"L"`` mode)
and the volume's metadata says so. Bit depth is kept (uint8, uint16; float TIFFs stay float32).
Images carry no spacing: it comes from a Heidelberg (Heyex) XML export in the folder or its
parent, else :data:`~octanomaly.volume.DEFAULT_SPACING` with ``spacing_is_default=True``
(``load_volume(..., spacing=)`` overrides either).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from octanomaly.cpus import available_cpus
from octanomaly.errors import InputError
from octanomaly.progress import track
from octanomaly.volume import DEFAULT_SPACING, OCTVolume, eye

FORMAT = "images"
#: Image suffixes: in a folder, files with these are read (and must decode) even if their magic
#: is wrong (OME-TIFF's double suffix is listed so that output names drop all of it).
SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".ome.tif", ".ome.tiff", ".bmp"
)  # fmt: skip
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "bigtiff"),
    (b"MM\x00+", "bigtiff"),
)


def image_kind(path: Path) -> str | None:
    """The image kind from the magic bytes (png, jpeg, tiff, bigtiff, bmp), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    # BMP: "BM", file size, two reserved 16-bit zeros, then the pixel-data offset.
    if len(head) >= 14 and head[:2] == b"BM" and head[6:10] == b"\x00\x00\x00\x00":
        return "bmp"
    return None


def _candidates(folder: Path) -> list[Path]:
    """Non-hidden files directly in ``folder`` that are images by magic or by extension, less
    the outputs of an earlier ``octanomaly map`` there (e.g. ``STEM_enface.png``)."""
    outputs = octanomaly_outputs(folder)
    out = []
    for p in folder.iterdir():
        if p.name.startswith(".") or not p.is_file() or p.name in outputs:
            continue
        if p.suffix.lower() in SUFFIXES or image_kind(p) is not None:
            out.append(p)
    return sorted(out, key=natural_key)


def octanomaly_outputs(folder: Path) -> set[str]:
    """Names of the files in ``folder`` that octanomaly's result manifests there list."""
    from octanomaly.io.manifest import read_manifest

    names: set[str] = set()
    for summary in folder.glob("*_summary.json"):
        manifest = read_manifest(summary)
        if manifest is not None:
            names.update(k for k in manifest["files"] if "/" not in k)
    return names


def natural_key(path: Path) -> tuple:
    """Sort key comparing the digit runs of the name as numbers (``b2`` before ``b10``)."""
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple((0, int(s), "") if s.isdigit() else (1, 0, s) for s in parts if s)


def sniff(path: Path) -> bool:
    """True for an image file (by magic) or a folder that directly holds image files."""
    if path.is_file():
        return image_kind(path) is not None
    if path.is_dir():
        try:
            return bool(_candidates(path))
        except OSError:
            return False
    return False


def read(path: Path) -> OCTVolume:
    """Read a folder of B-scans, a multi-page TIFF or one 2-D image as ``(n, depth, width)``."""
    path = Path(path)
    notes: list[str] = []
    if path.is_dir():
        files = _candidates(path)
        if not files:
            raise InputError(path, "folder holds no PNG/TIFF/JPEG/BMP images")
        # Pillow decodes with the GIL released: a few threads read the files (in order)
        with ThreadPoolExecutor(min(4, available_cpus())) as pool:
            decoded = pool.map(lambda f: _read_single(f, notes), files)
            frames = list(track(decoded, f"reading {path.name}", total=len(files)))
        _check_same(files, frames, path)
        data = np.stack(frames)
        n_files = len(files)
    else:
        data = _read_pages(path, notes)
        n_files = 1
    metadata: dict[str, object] = {"n_files": n_files}
    n_colour = sum(1 for n in notes if n == "colour")
    if n_colour:
        metadata["colour_converted"] = (
            f"{n_colour} colour image(s) converted to luminance (ITU-R 601); "
            "gray OCT is expected, check the source"
        )
    laterality = None
    phi: dict[str, object] = {}
    spacing_is_default = False
    info = find_heyex_xml(path, data.shape[0]) if path.is_dir() else None
    if info is not None and info.spacing is not None:
        used = info.spacing
        metadata["spacing_source"] = info.path.name
        laterality, phi = info.laterality, info.phi
    else:
        used = DEFAULT_SPACING
        spacing_is_default = True
        metadata["spacing_source"] = "default (images carry none; pass --spacing)"
    if info is not None:
        metadata.update(info.notes)
    return OCTVolume(
        data=data,
        spacing=used,  # type: ignore[arg-type]
        laterality=laterality,
        source_format=FORMAT,
        source_path=path,
        metadata=metadata,
        phi=phi,
        spacing_is_default=spacing_is_default,
    )


@dataclass
class HeyexXml:
    """What a Heidelberg XML export says about the B-scans of a folder."""

    path: Path
    spacing: tuple[float, float, float] | None
    laterality: str | None = None
    phi: dict[str, object] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)


def find_heyex_xml(folder: Path, n_images: int) -> HeyexXml | None:
    """The Heyex XML export in ``folder`` or its parent describing ``n_images`` B-scans, if any.

    B-scan entries are the ``Image`` elements with ``Start``/``End`` coordinates (the SLO
    localizer has none). Spacing: ScaleX = lateral, ScaleY = axial, B-scan distance = mean
    distance between the start points of consecutive B-scans. A count mismatch with the
    folder means the XML does not describe it: spacing is then not taken from it.
    """
    for where in (folder, folder.parent):
        for xml in sorted(where.glob("*.xml"), key=natural_key):
            info = _parse_heyex_xml(xml, n_images)
            if info is not None:
                return info
    return None


def _parse_heyex_xml(xml: Path, n_images: int) -> HeyexXml | None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError):
        return None
    if root.find(".//Image/OphthalmicAcquisitionContext") is None:
        return None
    bscans = []
    for image in root.iter("Image"):
        ctx = image.find("OphthalmicAcquisitionContext")
        if ctx is None or ctx.find("Start/Coord") is None:
            continue  # the SLO / localizer image
        try:
            start = [float(ctx.findtext(f"Start/Coord/{a}", "nan")) for a in ("X", "Y")]
            scale = (float(ctx.findtext("ScaleX", "nan")), float(ctx.findtext("ScaleY", "nan")))
        except ValueError:
            return None
        bscans.append((start, scale))
    laterality = eye(root.findtext(".//Laterality"))
    phi = {
        key: root.findtext(f".//Patient/{tag}").strip()
        for key, tag in (
            ("patient_id", "PatientID"),
            ("last_name", "LastName"),
            ("first_names", "FirstNames"),
            ("birth_date", "BirthDate/Date"),
        )
        if (root.findtext(f".//Patient/{tag}") or "").strip()
    }
    if len(bscans) != n_images:
        note = (
            f"{xml.name} lists {len(bscans)} B-scans but the folder holds {n_images} images; "
            "its spacing was not used"
        )
        return HeyexXml(xml, None, notes={"spacing_note": note})
    lateral, axial = bscans[0][1]
    if n_images > 1:
        starts = np.array([b[0] for b in bscans])
        steps = np.linalg.norm(np.diff(starts, axis=0), axis=1)
        bscan = float(steps.mean())
    else:
        bscan = DEFAULT_SPACING[0]  # one B-scan: the distance between B-scans is meaningless
    spacing = (bscan, axial, lateral)
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        note = f"{xml.name} gives no usable spacing {spacing}; not used"
        return HeyexXml(xml, None, notes={"spacing_note": note})
    notes: dict[str, object] = {}
    if n_images > 1:
        notes["bscan_distance_range_mm"] = [
            round(float(steps.min()), 6),
            round(float(steps.max()), 6),
        ]
    return HeyexXml(xml, spacing, laterality, phi, notes)


def _check_same(files: list[Path], frames: list[np.ndarray], folder: Path) -> None:
    """Every B-scan must have the first one's size and bit depth."""
    first, ref = files[0], frames[0]
    for f, a in zip(files[1:], frames[1:], strict=True):
        if a.shape != ref.shape:
            raise InputError(
                folder,
                f"images of mixed sizes: {first.name} is {ref.shape[1]}x{ref.shape[0]} but "
                f"{f.name} is {a.shape[1]}x{a.shape[0]} (width x height)",
            )
        if a.dtype != ref.dtype:
            raise InputError(
                folder,
                f"images of mixed bit depth: {first.name} is {ref.dtype}, {f.name} is {a.dtype}",
            )


def _read_single(path: Path, notes: list[str]) -> np.ndarray:
    """One 2-D B-scan from ``path`` (a multi-page file inside a folder is refused)."""
    pages = _read_pages(path, notes)
    if pages.shape[0] != 1:
        raise InputError(
            path,
            f"multi-page image ({pages.shape[0]} pages) inside a folder of B-scans; "
            "give the file itself as the volume",
        )
    return pages[0]


def _read_pages(path: Path, notes: list[str]) -> np.ndarray:
    """All pages of an image file as ``(n_pages, height, width)``; InputError if it won't decode."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    kind = image_kind(path)
    if kind is None:
        if not os.access(path, os.R_OK):
            raise InputError(path, "permission denied (cannot read it)")
        raise InputError(path, "not a PNG/TIFF/JPEG/BMP image (unrecognised header)")
    try:
        with Image.open(path) as im:
            pages = [_page_array(page, notes) for page in ImageSequence.Iterator(im)]
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        if kind not in ("tiff", "bigtiff"):
            raise InputError(path, f"corrupt or unreadable {kind} image ({exc})") from exc
        pages = _read_tiff_fallback(path, notes, exc)
    shapes = {p.shape for p in pages}
    if len(shapes) != 1:
        sizes = ", ".join(f"page {i}: {p.shape[1]}x{p.shape[0]}" for i, p in enumerate(pages[:3]))
        raise InputError(path, f"pages of mixed sizes ({sizes}, width x height)")
    return np.stack(pages)


def _read_tiff_fallback(path: Path, notes: list[str], first: Exception) -> list[np.ndarray]:
    """tifffile for TIFFs Pillow cannot decode (e.g. float16, unusual layouts)."""
    import logging

    import tifffile

    tiff_log = logging.getLogger("tifffile")
    level = tiff_log.level
    tiff_log.setLevel(logging.ERROR)  # its "contains no pages" warning would be a second line
    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) == 0:
                raise InputError(path, "TIFF holds no images (zero pages)")
            arr = tif.asarray()
    except InputError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputError(path, f"corrupt or unreadable TIFF image ({first}; {exc})") from exc
    finally:
        tiff_log.setLevel(level)
    if arr.ndim == 2:
        return [np.asarray(arr)]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return [_collapse_rgb(arr, notes)]
    if arr.ndim == 3:
        return list(arr)
    raise InputError(path, f"unsupported TIFF layout, array shape {arr.shape}")


def _page_array(im, notes: list[str]) -> np.ndarray:
    """A Pillow image as a 2-D array: gray kept, gray-as-RGB collapsed, colour to luminance."""
    mode = im.mode
    if mode in ("L", "I;16", "I;16B", "I;16L", "F"):
        return np.array(im)
    if mode in ("I", "I;16N", "I;32"):
        arr = np.array(im)
        if arr.size and arr.min() >= 0 and arr.max() <= np.iinfo(np.uint16).max:
            return arr.astype(np.uint16)
        return arr.astype(np.int32)
    if mode == "1":
        return np.array(im.convert("L"))
    if mode == "LA":
        return np.array(im)[..., 0]
    if mode == "P" or mode == "PA":
        im = im.convert("RGB")
    elif mode not in ("RGB", "RGBA", "RGBX"):
        im = im.convert("RGB")
    return _collapse_rgb(np.array(im), notes)


def gray_channel(rgb: np.ndarray, tolerance: int = 0) -> np.ndarray | None:
    """``(h, w, 3|4)`` gray stored as colour -> ``(h, w)``, or None for a real colour image.

    R == G == B: the R channel. Channels at most ``tolerance`` apart (lossy YCbCr rounding of a
    gray image): their rounded mean, in the input's type. The alpha channel is ignored.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if np.array_equal(r, g) and np.array_equal(r, b):
        return np.ascontiguousarray(r)
    if tolerance <= 0:
        return None
    c = rgb[..., :3].astype(np.int32)
    spread = max(np.abs(c[..., 0] - c[..., 1]).max(), np.abs(c[..., 1] - c[..., 2]).max())
    return np.rint(c.mean(axis=-1)).astype(rgb.dtype) if spread <= tolerance else None


def _collapse_rgb(rgb: np.ndarray, notes: list[str]) -> np.ndarray:
    """``(h, w, 3|4)`` to ``(h, w)``: :func:`gray_channel`, else ITU-R 601 luminance."""
    gray = gray_channel(rgb)
    if gray is not None:
        return gray
    notes.append("colour")
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = (r * 299.0 + g * 587.0 + b * 114.0) / 1000.0
    if np.issubdtype(rgb.dtype, np.integer):
        return np.rint(lum).astype(rgb.dtype)
    return lum.astype(np.float32)
