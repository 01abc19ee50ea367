"""Regions of phantom lesion masks with their true lesion type: the clustering's upper bound."""

from __future__ import annotations

import numpy as np

#: Lesion mixes of the six phantoms (one per seed) the clustering benchmark and test use.
LESION_MIXES = ("cyst,hrf", "drusen,hrf", "srf,drusen", "cyst,srf", "all", "drusen,cyst")


def lesion_mask_regions(mixes=LESION_MIXES) -> tuple[list[dict], list[str]]:
    """The regions of each phantom's exact lesion mask (seed = position in ``mixes``) and the
    lesion type covering most of each region."""
    from octanomaly.data.phantom import LESION_TYPES, make_phantom
    from octanomaly.findings.regions import find_regions

    regions, truth = [], []
    for seed, lesions in enumerate(mixes):
        ph = make_phantom(seed, lesions=lesions, n_bscans=16, depth=256, width=256,
                          spacing=(0.12, 0.0078, 0.0224))  # fmt: skip
        m = ph.lesion_mask
        f = find_regions(m, m * 5.0, ph.volume, ph.ilm, ph.bm)
        for r in f.regions:
            lab = f.labels == r["region_id"]
            overlap = [(ph.masks[k] & lab).sum() for k in LESION_TYPES]
            truth.append(LESION_TYPES[int(np.argmax(overlap))])
            regions.append(r)
    return regions, truth
