"""En-face PNG with the thickness panel and the ETDRS grid centred on the fovea."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.patches import Circle

from octanomaly.data.phantom import make_phantom
from octanomaly.findings import find_regions
from octanomaly.report.enface import enface_figure, save_enface


def test_enface_has_thickness_panel_and_etdrs_circles(tmp_path):
    ph = make_phantom(seed=0, lesions="drusen", n_bscans=16, depth=256, width=256,
                      spacing=(0.12, 0.0078, 0.0224))  # fmt: skip
    mask = ph.lesion_mask
    f = find_regions(mask, mask * 5.0, ph.volume, ph.ilm, ph.bm)
    fovea = (f.fovea.bscan, f.fovea.column)
    fig = enface_figure(ph.volume.data, mask * 5.0, ph.volume.spacing, threshold=2.0,
                        thickness=f.thickness, fovea=fovea, laterality="OD")  # fmt: skip
    panels = fig.axes[:3]
    assert "thickness" in panels[2].get_title()
    sb, _, sl = ph.volume.spacing
    for ax in panels:
        circles = [p for p in ax.patches if isinstance(p, Circle)]
        assert sorted(c.get_radius() for c in circles) == [0.5, 1.5, 3.0]
        assert circles[0].center == pytest.approx(((fovea[1] + 0.5) * sl, (fovea[0] + 0.5) * sb))
        assert {t.get_text() for t in ax.texts} == {"N", "T"}
    # the thickness panel shows the thickness map itself
    shown = panels[2].get_images()[0].get_array()
    np.testing.assert_allclose(np.ma.filled(shown, np.nan), f.thickness, equal_nan=True)
    path = save_enface(ph.volume.data, mask * 5.0, ph.volume.spacing, tmp_path / "e.png",
                       thickness=f.thickness, fovea=fovea)  # fmt: skip
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="thickness map"):
        enface_figure(ph.volume.data, mask * 5.0, ph.volume.spacing, thickness=f.thickness[:3])
