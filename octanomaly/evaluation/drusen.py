"""Drusen ground truth from expert RPE / Bruch's-membrane lines (pixel-level evaluation).

Drusen are elevations of the retinal pigment epithelium (RPE) above Bruch's membrane (BM): in a
column where the RPE–BM distance exceeds the normal RPE thickness, the pixels between the two
lines are drusen. :func:`drusen_mask_from_lines` turns line rows into that mask;
:func:`load_spectralis_layer_lines` reads the lines of the MedVisBonn Spectralis sample
(``RPE-BM-Layers/<i>-layers.png``: 255 = RPE line, 127 = BM line, 170 where they meet; file
``<i>-layers.png`` belongs to B-scan ``<i>-Input.tif``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from octanomaly.errors import InputError

#: Label values of the Spectralis layer PNGs.
RPE_VALUE, BM_VALUE, MEET_VALUE = 255, 127, 170
LAYER_FOLDER = "RPE-BM-Layers"
LAYER_SUFFIX = "-layers.png"


def drusen_mask_from_lines(
    rpe: np.ndarray, bm: np.ndarray, depth: int, min_thickness_px: float = 7.0
) -> np.ndarray:
    """Boolean drusen mask ``(n, depth, width)`` from RPE and BM rows ``(n, width)``.

    A pixel at row ``z`` of column ``x`` is drusen when ``bm - rpe > min_thickness_px`` in that
    column and ``round(rpe) <= z < round(bm)`` (RPE line included, BM line excluded). Columns
    where either line is NaN (absent) hold no drusen.
    """
    rpe = np.asarray(rpe, dtype=np.float64)
    bm = np.asarray(bm, dtype=np.float64)
    if rpe.ndim != 2 or rpe.shape != bm.shape:
        raise ValueError(f"rpe {rpe.shape} and bm {bm.shape} must both be (n_bscans, width)")
    ok = np.isfinite(rpe) & np.isfinite(bm)
    thick = np.where(ok, bm - rpe, -np.inf)
    elevated = thick > min_thickness_px
    top = np.where(ok, np.rint(rpe), 0)[:, None, :]
    bottom = np.where(ok, np.rint(bm), 0)[:, None, :]
    rows = np.arange(depth)[None, :, None]
    return (rows >= top) & (rows < bottom) & elevated[:, None, :]


def _natural_index(path: Path) -> int:
    stem = path.name[: -len(LAYER_SUFFIX)]
    if not stem.isdigit():
        raise InputError(path, f"layer file name must be <number>{LAYER_SUFFIX}")
    return int(stem)


def _column_rows(hit: np.ndarray) -> np.ndarray:
    """Mean row of the ``True`` pixels of each column (NaN where none), ``hit`` ``(depth, w)``."""
    rows = np.arange(hit.shape[0], dtype=np.float64)[:, None]
    count = hit.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (hit * rows).sum(axis=0) / count, np.nan)


def _fill_interior(line: np.ndarray) -> np.ndarray:
    """Linearly interpolate NaN gaps between defined columns; the ends stay NaN."""
    ok = np.isfinite(line)
    if ok.sum() < 2:
        return line
    cols = np.arange(line.size)
    first, last = cols[ok][0], cols[ok][-1]
    out = line.copy()
    inner = ~ok & (cols > first) & (cols < last)
    out[inner] = np.interp(cols[inner], cols[ok], line[ok])
    return out


def lines_from_layer_image(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RPE and BM rows ``(width,)`` from one layer label image ``(depth, width)``.

    Each line's row in a column is the mean row of its pixels there (a drawn polyline has
    several pixels in a column where it steps); 170 (lines meet) counts for both. Interior
    gaps are interpolated, columns beyond the drawn ends are NaN.
    """
    labels = np.asarray(labels)
    rpe = _column_rows((labels == RPE_VALUE) | (labels == MEET_VALUE))
    bm = _column_rows((labels == BM_VALUE) | (labels == MEET_VALUE))
    return _fill_interior(rpe), _fill_interior(bm)


def layer_files(folder: str | Path) -> list[Path]:
    """The ``<i>-layers.png`` files of ``folder`` (or of its ``RPE-BM-Layers/``), by number."""
    folder = Path(folder)
    if (folder / LAYER_FOLDER).is_dir():
        folder = folder / LAYER_FOLDER
    if not folder.is_dir():
        raise InputError(folder, "layer folder not found")
    files = [p for p in folder.iterdir() if p.name.endswith(LAYER_SUFFIX)]
    if not files:
        raise InputError(folder, f"no *{LAYER_SUFFIX} files")
    files.sort(key=_natural_index)
    numbers = [_natural_index(p) for p in files]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise InputError(folder, "layer files are not numbered consecutively")
    return files


def load_spectralis_layer_lines(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(rpe, bm)`` rows ``(n_bscans, width)`` (NaN where absent) from Spectralis layer PNGs.

    ``folder`` is the volume folder (holding ``RPE-BM-Layers/``) or the layer folder itself;
    B-scan ``i`` of the result belongs to ``<first + i>-Input.tif``.
    """
    from PIL import Image, UnidentifiedImageError

    rpe, bm = [], []
    shape = None
    for path in layer_files(folder):
        try:
            with Image.open(path) as im:
                labels = np.asarray(im.convert("L") if im.mode not in ("L", "P") else im)
        except (OSError, UnidentifiedImageError) as err:
            raise InputError(path, f"unreadable layer image ({err})") from None
        if shape is not None and labels.shape != shape:
            raise InputError(path, f"size {labels.shape} differs from the others {shape}")
        shape = labels.shape
        r, b = lines_from_layer_image(labels)
        rpe.append(r)
        bm.append(b)
    return np.stack(rpe), np.stack(bm)


def load_drusen_mask(folder: str | Path, min_thickness_px: float = 7.0) -> np.ndarray:
    """Drusen mask ``(n_bscans, depth, width)`` of a Spectralis volume folder with layer PNGs."""
    files = layer_files(folder)
    from PIL import Image

    with Image.open(files[0]) as im:
        depth = im.size[1]
    rpe, bm = load_spectralis_layer_lines(folder)
    return drusen_mask_from_lines(rpe, bm, depth, min_thickness_px)
