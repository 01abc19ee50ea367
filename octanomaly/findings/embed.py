"""Per-region embeddings from the model's own features, and B-scan crops for montages.

Model features: patches of the *preprocessed* volume (what the model saw when scoring) centred on
up to :data:`SAMPLES` voxels of each region go through the discriminator's feature layers
(``model.D.features``: the convolutional trunk every bundled model has, the layer f-AnoGAN's
feature score uses), are averaged over space (f-AnoGAN's critic gives them flattened: kept as
they are) and then over the region's patches.
Crops: a window of :data:`CROP_MM` around the region's centre on its central B-scan, resized to
:data:`CROP_PX`, with the region's own mask as a second channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from octanomaly.findings.regions import VolumeFindings
from octanomaly.volume import OCTVolume

#: Voxels of a region that patches are centred on (evenly spaced through the region).
SAMPLES: int = 16
#: Crop window (axial mm, lateral mm) and its stored size (rows, cols).
CROP_MM: tuple[float, float] = (0.6, 1.8)
CROP_PX: tuple[int, int] = (64, 160)


def _to_prep(b: np.ndarray, z: np.ndarray, c: np.ndarray, prep: dict[str, Any]):
    """Input-volume voxel coordinates -> coordinates in the preprocessed (resampled, flat) grid."""
    n, depth, width = prep["original_shape"]
    _, d2, w2 = prep["image"].shape
    zp = (z + 0.5) * d2 / depth - 0.5
    cp = np.clip(np.round((c + 0.5) * w2 / width - 0.5).astype(np.int64), 0, w2 - 1)
    shifts = prep.get("flatten_shifts")
    if shifts is not None:
        zp = zp + np.asarray(shifts)[b, cp]
    return b, np.clip(np.round(zp).astype(np.int64), 0, d2 - 1), cp


def _feature_net(model: Any) -> Any:
    """``model.D.features`` or None (a model without a discriminator, e.g. a plugin)."""
    return getattr(getattr(model, "D", None), "features", None)


def region_features(
    model: Any, prep: dict[str, Any], findings: VolumeFindings, batch_size: int = 256
) -> np.ndarray:
    """``(n_regions, C)`` float32: the model's pooled features over each region's patches;
    ``(n_regions, 0)`` for a model without ``D.features`` (clustering then uses descriptors)."""
    regions = findings.regions
    net = _feature_net(model)
    if net is None:
        return np.zeros((len(regions), 0), np.float32)
    p = int(model.patch_size)
    image = prep["image"]
    _, d2, w2 = image.shape
    half = p // 2
    padded = np.pad(image, ((0, 0), (half, half), (half, half)), constant_values=-1.0)
    coords, owner = [], []
    for k, r in enumerate(regions):
        b, z, c = np.nonzero(
            findings.labels[r["bscan_first"] : r["bscan_last"] + 1] == r["region_id"]
        )
        b = b + r["bscan_first"]
        pick = np.linspace(0, b.size - 1, min(SAMPLES, b.size)).round().astype(np.int64)
        coords.append(np.stack(_to_prep(b[pick], z[pick], c[pick], prep), axis=1))
        owner.append(np.full(pick.size, k))
    if not regions:
        return np.zeros((0, 0), np.float32)
    coords_a, owner_a = np.concatenate(coords), np.concatenate(owner)
    device = model.device
    feats = []
    with model.evaluating(), torch.inference_mode():
        for s in range(0, len(coords_a), batch_size):
            cb = coords_a[s : s + batch_size]
            x = np.stack([padded[b, z : z + p, c : c + p] for b, z, c in cb])[:, None]
            f = net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device))
            f = f.float().mean(dim=(2, 3)) if f.ndim == 4 else f.float().flatten(1)
            feats.append(f.cpu().numpy())
    f_all = np.concatenate(feats)
    out = np.zeros((len(regions), f_all.shape[1]), np.float32)
    np.add.at(out, owner_a, f_all)
    out /= np.bincount(owner_a, minlength=len(regions))[:, None]
    return out


def region_crops(volume: OCTVolume, findings: VolumeFindings) -> np.ndarray:
    """``(n_regions, 2, rows, cols)`` uint8: B-scan crop (display scaled) and region mask (255)."""
    from octanomaly.transforms.flatten import resize_bscans

    _, sa, sl = volume.spacing
    h, w = max(int(round(CROP_MM[0] / sa)), 8), max(int(round(CROP_MM[1] / sl)), 8)
    data = np.asarray(volume.data, dtype=np.float32)
    lo, hi = np.percentile(data[:, ::4, ::4], (1, 99.5))
    out = np.zeros((len(findings.regions), 2, *CROP_PX), np.uint8)
    for k, r in enumerate(findings.regions):
        b, z, c = r["centre_bscan"], r["centre_row"], r["centre_column"]
        img = np.full((h, w), lo, np.float32)
        lab = np.zeros((h, w), np.float32)
        z0, c0 = z - h // 2, c - w // 2
        zs, cs = (
            slice(max(z0, 0), min(z0 + h, data.shape[1])),
            slice(max(c0, 0), min(c0 + w, data.shape[2])),
        )
        dst = (slice(zs.start - z0, zs.stop - z0), slice(cs.start - c0, cs.stop - c0))
        img[dst] = data[b, zs, cs]
        lab[dst] = findings.labels[b, zs, cs] == r["region_id"]
        both = resize_bscans(np.stack([img, lab]), CROP_PX)
        out[k, 0] = np.clip((both[0] - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
        out[k, 1] = (both[1] > 0.5).astype(np.uint8) * 255
    return out
