"""Synthetic Spectralis-like OCT volumes with known layers and lesion masks (test and demo data).

Geometry is physical: layer thicknesses and lesion sizes are in mm and become voxels through the
spacing; the fovea lies in the middle B-scan. Each voxel gets a tissue class (vitreous, NFL, ...,
RPE, Bruch's membrane, choroid); the image is the class reflectivity (with choroid texture, vessel
shadows and lesions) times correlated gamma speckle, log-compressed to 8 bits like a vendor
display. The same seed gives the same anatomy and speckle with or without lesions, so a lesion
phantom differs from its healthy twin only where the lesions are and above them (raised layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from octanomaly.errors import ConfigError
from octanomaly.volume import OCTVolume

LESION_TYPES: tuple[str, ...] = ("cyst", "srf", "drusen", "hrf")

#: Tissue classes from the vitreous down; class ``i`` lies between boundary ``i`` and ``i + 1``.
REGIONS: tuple[str, ...] = (
    "vitreous", "nfl", "gcl", "ipl", "inl", "opl", "onl", "elm", "is", "ez", "os", "iz",
    "srf", "rpe", "drusen", "bm", "choroid",
)  # fmt: skip
_R = {name: i for i, name in enumerate(REGIONS)}

#: Mean display brightness (0-255 after log compression) of each class, from Spectralis B-scans.
_DISPLAY = {
    "nfl": 172.0, "gcl": 128.0, "ipl": 138.0, "inl": 82.0, "opl": 128.0, "onl": 70.0,
    "elm": 138.0, "is": 96.0, "ez": 215.0, "os": 148.0, "iz": 188.0, "srf": 30.0,
    "rpe": 226.0, "drusen": 145.0, "bm": 180.0,
}  # fmt: skip
_CYST_D, _HRF_D, _VESSEL_D, _SCLERA_D = 10.0, 222.0, 150.0, 8.0
_LOG_SCALE = 32.0  # display units per natural-log unit of reflectivity
_FLOOR_D = -4.0  # noise floor (vitreous) in display units before speckle


@dataclass
class Phantom:
    """A synthetic volume with its ground truth.

    Attributes:
        volume: uint8 ``(n_bscans, depth, width)`` volume, ``source_format="phantom"``.
        masks: per lesion type (``LESION_TYPES``) a bool ``(n_bscans, depth, width)`` mask of the
            voxels drawn as that lesion's material (empty when the type was not requested).
        ilm: ``(n_bscans, width)`` row of the inner limiting membrane (float, voxels).
        bm: ``(n_bscans, width)`` row of Bruch's membrane (top of the membrane).
        boundaries: top row of every class in ``REGIONS[1:]`` (``"rpe"``, ``"drusen"``, ...).
    """

    volume: OCTVolume
    masks: dict[str, np.ndarray]
    ilm: np.ndarray
    bm: np.ndarray
    boundaries: dict[str, np.ndarray]

    @property
    def lesion_mask(self) -> np.ndarray:
        """Union of all lesion masks (bool)."""
        out = np.zeros(self.volume.shape, dtype=bool)
        for mask in self.masks.values():
            out |= mask
        return out


def parse_lesions(lesions: str | Sequence[str] | None) -> tuple[str, ...]:
    """Lesion names from ``"cyst,srf"``, ``"all"`` or a sequence; unknown ones: ConfigError."""
    if lesions is None:
        return ()
    items = lesions.split(",") if isinstance(lesions, str) else list(lesions)
    names = [s.strip().lower() for s in items if s.strip()]
    if names == ["all"]:
        return LESION_TYPES
    bad = [s for s in names if s not in LESION_TYPES]
    if bad:
        raise ConfigError(
            f"unknown lesion type {bad[0]!r} (choose from {', '.join(LESION_TYPES)} or 'all')"
        )
    return tuple(t for t in LESION_TYPES if t in names)


def make_phantom(
    seed: int = 0,
    n_bscans: int = 16,
    depth: int = 496,
    width: int = 512,
    spacing: tuple[float, float, float] = (0.12, 0.0039, 0.0112),
    lesions: Sequence[str] | str = (),
    laterality: str = "OD",
) -> Phantom:
    """A deterministic synthetic SD-OCT volume of the macula (fovea in the middle B-scan).

    ``lesions`` picks from ``LESION_TYPES`` (or ``"all"``); when ``depth`` is too small to hold
    retina and choroid, axial sizes are compressed to fit (``metadata["axial_scale"] < 1``).
    """
    kinds = parse_lesions(lesions)
    if laterality not in ("OD", "OS"):
        raise ConfigError(f"laterality must be OD or OS, got {laterality!r}")
    if n_bscans < 1 or depth < 32 or width < 16:
        raise ConfigError("phantom too small: need n_bscans>=1, depth>=32, width>=16")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ConfigError(f"invalid spacing {tuple(spacing)} (need 3 positive mm values)")
    sb, sa, sl = (float(s) for s in spacing)
    seqs = np.random.SeedSequence(int(seed)).spawn(8)
    rng_anat, rng_vessel, rng_noise, rng_chor = (np.random.default_rng(s) for s in seqs[:4])
    rng_les = {k: np.random.default_rng(s) for k, s in zip(LESION_TYPES, seqs[4:], strict=True)}

    g = _Grid(n_bscans, width, sb, sl, laterality, rng_anat)
    thick = _healthy_thickness(g, rng_anat)
    z_bm = _bm_surface(g, rng_anat)
    chor_mm = _choroid_thickness(g, rng_anat)
    vessels = _vessels(g, rng_vessel)

    lesion_params = {k: _draw_lesions(k, g, rng_les[k]) for k in kinds}
    for kind, params in lesion_params.items():
        _apply_lesion_thickness(kind, params, g, thick, rng_les[kind])

    rows, scale = _place_rows(thick, z_bm, depth, sa, rng_anat)
    n, w = n_bscans, width
    z = np.arange(depth, dtype=np.float32)[None, :, None]
    label = np.zeros((n, depth, w), dtype=np.uint8)
    for i in range(1, len(REGIONS)):
        label += z >= rows[i][:, None, :].astype(np.float32)

    jitter = rng_anat.normal(0.0, 5.0, len(REGIONS))
    lut = np.zeros(len(REGIONS), dtype=np.float32)
    for name, d in _DISPLAY.items():
        lut[_R[name]] = np.exp((d + jitter[_R[name]]) / _LOG_SCALE)
    lut[_R["choroid"]] = np.exp(_SCLERA_D / _LOG_SCALE)
    refl = lut[label]
    _partial_volume(refl, rows, lut)

    _paint_choroid(refl, rows[_R["choroid"]], chor_mm, scale, sa, sl, sb, rng_chor)
    masks = {k: np.zeros((n, depth, w), dtype=bool) for k in LESION_TYPES}
    for kind in ("cyst", "hrf"):
        if kind in lesion_params:
            _paint_blobs(kind, lesion_params[kind], g, rows, label, refl, masks, scale, sa)
    if "srf" in kinds:
        masks["srf"] = label == _R["srf"]
    if "drusen" in kinds:
        masks["drusen"] = label == _R["drusen"]
    _paint_vessels(refl, vessels, rows, scale, sa)

    # gain: slow fall-off with depth, dimmer lateral edges, per-B-scan brightness
    falloff = np.exp(-14.0 * np.arange(depth, dtype=np.float32) / depth / _LOG_SCALE)
    edge = ((np.arange(w) - (w - 1) / 2) / max((w - 1) / 2, 1)) ** 2 * min(w * sl / 5.7, 1.0)
    gain_d = (
        -14.0 * edge[None, :] + rng_anat.normal(0.0, 3.0, (n, 1)) + 4.0 * g.field(rng_anat, 0.4)
    )
    refl *= falloff[None, :, None]
    refl *= np.exp(gain_d / _LOG_SCALE).astype(np.float32)[:, None, :]

    refl = ndimage.gaussian_filter(refl, (0, 0.7, 0.8), output=np.float32)  # optical PSF
    image = _speckle_and_log(refl, rng_noise)
    volume = OCTVolume(
        data=image,
        spacing=(sb, sa, sl),
        laterality=laterality,
        source_format="phantom",
        metadata={"phantom_seed": int(seed), "lesions": list(kinds), "axial_scale": scale},
    )
    names = REGIONS[1:]
    boundaries = {name: rows[i + 1] for i, name in enumerate(names)}
    return Phantom(volume, masks, rows[_R["nfl"]], rows[_R["bm"]], boundaries)


class _Grid:
    """En-face coordinates (mm) of every A-scan, relative to the fovea; shape (n_bscans, width)."""

    def __init__(self, n: int, w: int, sb: float, sl: float, laterality: str, rng) -> None:
        self.n, self.w, self.sb, self.sl = n, w, sb, sl
        half_w = (w - 1) / 2 * sl
        self.xf = rng.uniform(-0.04, 0.04) * min(w * sl, 5.7)
        x = (np.arange(w) - (w - 1) / 2) * sl
        y = (np.arange(n) - n // 2) * sb
        self.x_lim = (-half_w - self.xf, half_w - self.xf)
        self.y_lim = (float(y[0]), float(y[-1]))
        self.y_scans = y
        self.X, self.Y = np.meshgrid(x - self.xf, y)
        self.nasal = self.X if laterality == "OD" else -self.X
        self.r = np.hypot(self.X, self.Y / 1.1)

    def field(self, rng, wavelength: float, modes: int = 12) -> np.ndarray:
        """A smooth random field of unit variance (sum of random plane waves)."""
        return _waves(rng, self.X, self.Y, wavelength, modes)[0]


def _waves(rng, X, Y, wavelength: float, modes: int):
    k = 2 * np.pi / (wavelength * rng.uniform(0.7, 1.4, modes))
    theta = rng.uniform(0, np.pi, modes)
    kx, ky = k * np.cos(theta), k * np.sin(theta)
    phase = rng.uniform(0, 2 * np.pi, modes)
    amp = rng.normal(0, 1, modes) * np.sqrt(2.0 / modes)
    arg = X[..., None] * kx + Y[..., None] * ky + phase
    f = np.cos(arg) @ amp
    s = np.sin(arg)
    return f, -(s @ (amp * kx)), -(s @ (amp * ky))


def _pit(r: np.ndarray, r0: float) -> np.ndarray:
    return 1.0 - np.exp(-((r / r0) ** 2))


def _healthy_thickness(g: _Grid, rng) -> dict[str, np.ndarray]:
    """Thickness in mm of every class from NFL to BM (foveal pit, nasal NFL)."""
    r, xn = g.r, g.nasal
    bump = np.exp(-(((r - 0.95) / 0.6) ** 2))
    nasal = 1.0 / (1.0 + np.exp(-(xn - 0.9) / 0.6))
    t = {
        "nfl": (0.012 + 0.034 * nasal + 0.006 * np.minimum((g.Y / 2.0) ** 2, 1.0)) * _pit(r, 0.8),
        "gcl": 0.036 * _pit(r, 0.38) * (1 + 0.5 * bump),
        "ipl": 0.031 * _pit(r, 0.36) * (1 + 0.2 * bump),
        "inl": 0.031 * _pit(r, 0.33) * (1 + 0.2 * bump),
        "opl": 0.006 + 0.020 * _pit(r, 0.3),
        "onl": 0.062 + 0.058 * np.exp(-((r / 0.55) ** 2)),
        "elm": np.full_like(r, 0.0045),
        "is": 0.022 + 0.005 * np.exp(-((r / 0.4) ** 2)),
        "ez": np.full_like(r, 0.010),
        "os": 0.026 + 0.014 * np.exp(-((r / 0.35) ** 2)),
        "iz": np.full_like(r, 0.007),
        "srf": np.zeros_like(r),
        "rpe": np.full_like(r, 0.018),
        "drusen": np.zeros_like(r),
        "bm": np.full_like(r, 0.005),
    }
    for name in t:
        if name in ("srf", "drusen"):
            continue
        t[name] = t[name] * rng.uniform(0.9, 1.1) * (1 + 0.04 * g.field(rng, 2.5, 6))
    return t


def _bm_surface(g: _Grid, rng) -> np.ndarray:
    """Depth (mm, downwards) of Bruch's membrane: eye curvature, tilt, slow waviness."""
    curv = rng.uniform(0.005, 0.03)
    tilt_x, tilt_y = rng.uniform(-0.045, 0.045, 2)
    wav = 0.008 * g.field(rng, 3.0, 8)
    return -curv * (g.X**2 + 0.8 * g.Y**2) + tilt_x * g.X + tilt_y * g.Y + wav


def _choroid_thickness(g: _Grid, rng) -> np.ndarray:
    base = rng.uniform(0.2, 0.32)
    return base * (1 - 0.05 * np.clip(g.nasal, -3, 3)) * (1 + 0.1 * g.field(rng, 3.0, 8))


def _vessels(g: _Grid, rng) -> dict[str, np.ndarray]:
    """Inner retinal vessels: zero lines of a random field, as chord fraction and width (mm)."""
    f, fx, fy = _waves(rng, g.X, g.Y, rng.uniform(2.2, 3.2), 14)
    grad = np.hypot(fx, fy)
    dist = f / np.maximum(grad, 0.4 * np.sqrt(np.mean(grad**2)) + 1e-9)
    width = rng.uniform(0.05, 0.09) * (1 + 0.35 * g.field(rng, 3.0, 6)).clip(0.5, 1.6)
    chord = np.sqrt(np.clip(1 - (2 * dist / width) ** 2, 0, 1))
    chord *= np.clip((g.r - 0.3) / 0.3, 0, 1)  # foveal avascular zone
    chord *= np.clip(g.field(rng, 4.0, 6) + 0.6, 0, 1)  # vessels end / leave the scan plane
    return {"chord": chord, "width": width}


def _draw_lesions(kind: str, g: _Grid, rng) -> list[dict[str, float]]:
    """Random lesion parameters (centres near the fovea, inside the scanned field)."""
    count, radius = {"cyst": (7, 1.4), "srf": (1, 0.3), "drusen": (10, 2.0), "hrf": (14, 1.6)}[kind]
    count = int(rng.integers(max(1, count - 3), count + 4)) if kind != "srf" else 1
    field_w = g.x_lim[1] - g.x_lim[0]
    # fewer lesions when the scanned field covers little of the lesion zone around the fovea
    covered = min(field_w, 2 * radius) * min(g.y_lim[1] - g.y_lim[0] + 0.3, 2 * radius)
    count = max(1, int(round(count * min(1.0, covered / (2 * radius) ** 2 * 2.5))))
    out = []
    for _ in range(count):
        margin = min(0.1 * field_w, 0.2)
        lo, hi = max(g.x_lim[0] + margin, -radius), min(g.x_lim[1] - margin, radius)
        xc = rng.uniform(lo, hi) if hi > lo else 0.5 * (g.x_lim[0] + g.x_lim[1])
        ys = g.y_scans[np.abs(g.y_scans) <= max(radius, np.abs(g.y_scans).min())]
        yc = rng.choice(ys) + rng.uniform(-0.25, 0.25) * g.sb * (g.n > 1)
        p = {"x": float(xc), "y": float(yc)}
        ry_min = 1.05 * g.sb if g.n > 1 else 0.0
        if kind == "cyst":
            rx = rng.uniform(0.04, 0.16)
            host = _R["onl"] if rng.random() < 0.6 else _R["inl"]
            rz = rx * rng.uniform(0.35, 0.6) * (1.0 if host == _R["onl"] else 0.7)
            p.update(rx=rx, ry=max(rx * rng.uniform(0.8, 1.3), ry_min), rz=rz, host=float(host))
        elif kind == "hrf":
            rx = rng.uniform(0.014, 0.03)
            host = float(rng.choice([_R["ipl"], _R["inl"], _R["opl"], _R["onl"]]))
            p.update(rx=rx, ry=max(rx, 0.8 * g.sb * (g.n > 1)), rz=rng.uniform(0.009, 0.016))
            p.update(host=host, rel=rng.uniform(0.25, 0.75))
        elif kind == "drusen":
            a = rng.uniform(0.08, 0.25)
            p.update(rx=a, ry=max(a * rng.uniform(0.8, 1.2), 1.2 * ry_min))
            p.update(h=rng.uniform(0.025, 0.075))
        else:  # srf
            a = min(rng.uniform(0.45, 1.1), 0.4 * field_w)
            p.update(rx=a, ry=max(a * rng.uniform(0.7, 1.0), 1.6 * ry_min))
            p.update(h=rng.uniform(0.07, 0.17))
        out.append(p)
    return out


def _rho2(p: dict[str, float], X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return ((X - p["x"]) / p["rx"]) ** 2 + ((Y - p["y"]) / max(p["ry"], 1e-9)) ** 2


def _apply_lesion_thickness(kind: str, params, g: _Grid, thick: dict, rng) -> None:
    """Lesions that take room: drusen and fluid lift the layers above, cysts swell their layer."""
    if kind == "drusen":
        h = np.zeros_like(g.X)
        for p in params:
            h = np.maximum(h, p["h"] * np.clip(1 - _rho2(p, g.X, g.Y), 0, 1) ** 0.6)
        thick["drusen"] = h
        thick["onl"] = np.maximum(thick["onl"] - 0.4 * h, 0.4 * thick["onl"])
    elif kind == "srf":
        ragged = 1 + 0.06 * g.field(rng, 0.35, 16)  # uneven photoreceptor tips over the fluid
        for p in params:
            dome = np.clip(1 - _rho2(p, g.X, g.Y), 0, 1) ** 0.8
            thick["srf"] = thick["srf"] + p["h"] * dome * ragged
    elif kind == "cyst":
        for p in params:
            # smooth swelling, never thinner than the cyst's chord sqrt(1 - rho2) <= exp(-rho2/2)
            swell = 2 * p["rz"] * np.exp(-_rho2(p, g.X, g.Y) / 3.0)
            host = REGIONS[int(p["host"])]
            thick[host] = thick[host] + swell


def _place_rows(thick, z_bm, depth: int, sa: float, rng) -> tuple[list[np.ndarray], float]:
    """Top row (float voxels) of every class; axial sizes shrink when ``depth`` is too small."""
    names = REGIONS[1:16]  # nfl .. bm
    tops = {"bm": z_bm, "choroid": z_bm + thick["bm"]}
    above = z_bm
    for name in reversed(names[:-1]):  # bm's neighbour upwards first
        above = above - thick[name]
        tops[name] = above
    top_lim, bot_lim = 0.06 * depth, 0.86 * depth
    lo, hi = tops["nfl"].min() / sa, tops["bm"].max() / sa
    scale = float(min(1.0, (bot_lim - top_lim) / max(hi - lo, 1e-9)))
    row0 = rng.uniform(0.5, 0.58) * depth
    row0 = float(np.clip(row0, top_lim - scale * lo, bot_lim - scale * hi))
    rows = [np.zeros_like(z_bm)]  # vitreous has no top
    for name in REGIONS[1:]:
        rows.append(row0 + scale * tops[name] / sa)
    return rows, scale


def _partial_volume(refl: np.ndarray, rows: list[np.ndarray], lut: np.ndarray) -> None:
    """Anti-alias layer edges: the voxel a boundary cuts mixes the two classes by coverage."""
    n, depth, w = refl.shape
    bi, xi = np.meshgrid(np.arange(n), np.arange(w), indexing="ij")
    for i in range(1, _R["choroid"]):
        zi = np.floor(rows[i]).astype(np.int64)
        ok = (zi >= 0) & (zi < depth)
        cover = (zi + 1 - rows[i])[ok].astype(np.float32)
        b, z, x = bi[ok], zi[ok], xi[ok]
        refl[b, z, x] = refl[b, z, x] * (1 - cover) + lut[i] * cover


def _smooth_noise(rng, shape, sigma) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    return f / max(float(f.std()), 1e-6)


def _paint_choroid(refl, top, chor_mm, scale, sa, sl, sb, rng) -> None:
    """Choroid below BM: bright choriocapillaris, dark vessel lumens growing with depth, sclera."""
    n, depth, w = refl.shape
    chor_px = chor_mm * scale / sa
    height = int(min(depth, np.ceil(chor_px.max() + 0.12 * scale / sa)))
    t = np.arange(height, dtype=np.float32)[None, :, None]
    small = _smooth_noise(rng, (n, height, w), (0.03 / sb, 0.012 * scale / sa, 0.035 / sl))
    large = _smooth_noise(rng, (n, height, w), (0.06 / sb, 0.028 * scale / sa, 0.09 / sl))
    frac = np.clip(t / chor_px[:, None, :], 0, 1.5)
    field = (1 - np.minimum(frac, 1)) * small + np.minimum(frac, 1) * large
    t_mm = t * sa / scale
    lumen = 1 / (1 + np.exp(-(field - 0.1) * 4.0)) * np.clip(t_mm / 0.03, 0, 1)
    d = 30.0 + 130.0 * np.exp(-t_mm / 0.1) - 55.0 * lumen
    below = t - chor_px[:, None, :]
    sclera = np.clip(below / 8.0, 0, 1)
    d = (1 - sclera) * d + sclera * (_SCLERA_D + 22 * np.exp(-np.maximum(below, 0) * sa / 0.08))
    band = np.exp(d / _LOG_SCALE).astype(np.float32)
    start = np.ceil(top).astype(np.int64)
    bi, xi = np.meshgrid(np.arange(n), np.arange(w), indexing="ij")
    for k in range(height):
        rr = start + k
        ok = (rr >= 0) & (rr < depth)
        refl[bi[ok], rr[ok], xi[ok]] = band[:, k, :][ok]


def _paint_blobs(kind, params, g, rows, label, refl, masks, scale, sa) -> None:
    """Cysts (dark ellipsoids centred in their swollen layer) and hyperreflective foci."""
    n, depth, w = refl.shape
    value = np.float32(np.exp((_CYST_D if kind == "cyst" else _HRF_D) / _LOG_SCALE))
    xs = (np.arange(w) - (w - 1) / 2) * g.sl - g.xf
    for p in params:
        bsel = np.nonzero(np.abs(g.y_scans - p["y"]) <= p["ry"])[0]
        xsel = np.nonzero(np.abs(xs - p["x"]) <= p["rx"])[0]
        if len(bsel) == 0 or len(xsel) == 0:
            continue
        b0, b1, x0, x1 = bsel[0], bsel[-1] + 1, xsel[0], xsel[-1] + 1
        X, Y = g.X[b0:b1, x0:x1], g.Y[b0:b1, x0:x1]
        host = int(p["host"])
        top, bot = rows[host][b0:b1, x0:x1], rows[host + 1][b0:b1, x0:x1]
        centre = (top + bot) / 2 if kind == "cyst" else top + p["rel"] * (bot - top)
        rz = p["rz"] * scale / sa
        z0 = int(max(np.floor(centre.min() - rz), 0))
        z1 = int(min(np.ceil(centre.max() + rz) + 1, depth))
        if z1 <= z0:
            continue
        z = np.arange(z0, z1)[None, :, None]
        inside = _rho2(p, X, Y)[:, None, :] + ((z - centre[:, None, :]) / rz) ** 2 <= 1
        lab = label[b0:b1, z0:z1, x0:x1]
        if kind == "cyst":
            inside &= lab == host
        else:
            inside &= (lab >= _R["ipl"]) & (lab <= _R["onl"])
            inside &= ~masks["cyst"][b0:b1, z0:z1, x0:x1]
        masks[kind][b0:b1, z0:z1, x0:x1] |= inside
        refl[b0:b1, z0:z1, x0:x1][inside] = value


def _paint_vessels(refl, vessels, rows, scale, sa) -> None:
    """Vessel cross-sections just under the ILM and the shadow columns they cast below."""
    depth = refl.shape[1]
    chord, width = vessels["chord"], vessels["width"]
    bi, xi = np.nonzero(chord > 0.02)
    if len(bi) == 0:
        return
    c = chord[bi, xi][:, None]
    radius = (width[bi, xi] * scale / sa / 2)[:, None]
    centre = rows[_R["nfl"]][bi, xi][:, None] + radius * 1.1 + 1.0
    z = np.arange(depth)[None, :]
    cols = refl[bi, :, xi]
    inside = np.abs(z - centre) <= radius * c
    cols[inside] = np.float32(np.exp(_VESSEL_D / _LOG_SCALE))
    shade = 1 - 0.72 * c * np.clip(width[bi, xi][:, None] / 0.07, 0.6, 1.0)
    cols *= np.where(z > centre + radius * c, shade, 1.0).astype(np.float32)
    refl[bi, :, xi] = cols


def _speckle_and_log(refl: np.ndarray, rng) -> np.ndarray:
    """Correlated gamma speckle on reflectivity plus noise floor, log-compressed to uint8."""
    shape_k = 0.5
    speckle = rng.standard_gamma(shape_k, refl.shape, dtype=np.float32)
    speckle = ndimage.gaussian_filter(speckle, (0, 0.9, 1.3), output=np.float32)
    speckle /= np.float32(shape_k)
    intensity = (refl + np.float32(np.exp(_FLOOR_D / _LOG_SCALE))) * speckle
    np.log(intensity, out=intensity)
    bias = -float(np.log(speckle.ravel()[:: max(1, speckle.size // 20000)]).mean())
    intensity *= np.float32(_LOG_SCALE)
    intensity += np.float32(_LOG_SCALE * bias)
    np.clip(intensity, 0, 255, out=intensity)
    return np.rint(intensity).astype(np.uint8)
