"""``report.html`` of a cohort: one self-contained page (images inlined, no script, no network)
with the cluster map, one section per cluster (montage and descriptors) and the volume table."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f0f0f0}td.num{text-align:right}.failed{color:#b00}img{max-width:100%}
nav a{margin-right:.8em}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f'<td class="num">{v:.4g}</td>'
    if isinstance(v, int):
        return f'<td class="num">{v}</td>'
    return f"<td>{html.escape('' if v is None else str(v))}</td>"


def _table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    links: Mapping[str, str] | None = None,
) -> str:
    """HTML table; a ``volume`` cell links to ``links[volume]`` (a relative path) when given."""
    links = links or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cls = ' class="failed"' if r.get("status") == "failed" else ""
        cells = []
        for c in columns:
            v = r.get(c)
            if c == "volume" and v in links:
                text = html.escape(str(v))
                cells.append(f'<td><a href="{html.escape(links[v])}">{text}</a></td>')
            else:
                cells.append(_cell(v))
        body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_report(
    out: Path,
    summary: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    montages: Mapping[int, Path],
    files: Mapping[str, Path],
) -> Path:
    """Write ``out/report.html`` and return its path."""
    import csv

    from octanomaly.io.atomic import write_text

    c = summary["clustering"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>octanomaly cohort</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>octanomaly cohort report</h1>",
        f"<p>{summary['n_volumes']} volumes mapped, {summary['n_regions']} regions, "
        f"{c['k']} clusters ({html.escape(c['criterion'])}; BIC by k: "
        f"{html.escape(', '.join(f'{k}: {v}' for k, v in c['bic'].items()) or 'n/a')})."
        f" Embedding: {html.escape(summary['embedding'])}.</p>",
        "<nav>"
        + "".join(f'<a href="#cluster{k}">cluster {k}</a>' for k in montages)
        + '<a href="#volumes">volumes</a></nav>',
        "<h2>Regions on a 2-D map</h2>",
        _img(files["cluster_map"]) if "cluster_map" in files else "",
        "<h2>ETDRS burden</h2>",
        _img(files["burden_map"]) if "burden_map" in files else "",
    ]
    line_cols = [
        "n_regions",
        "n_volumes",
        "band",
        "band_fraction",
        "reflectivity",
        "median_volume_mm3",
        "median_height_above_bm_um",
        "median_max_z",
        "median_eccentricity_mm",
    ]  # the full line of descriptors is in clusters.json
    for k, path in montages.items():
        line = summary["clusters"][k]
        parts += [f'<h2 id="cluster{k}">Cluster {k}</h2>', _table([line], line_cols), _img(path)]
    vol_path = out / "volumes.csv"
    vol_rows: list[dict[str, Any]] = []
    if vol_path.is_file():
        with open(vol_path, newline="", encoding="utf-8") as f:
            vol_rows = list(csv.DictReader(f))
    cols = ["volume", "status", "error", "volume_score", "n_flagged", "anomalous_volume_mm3",
            "n_regions", "fovea_method", "laterality"]  # fmt: skip
    links = {}
    for r in vol_rows:
        enface = Path("volumes") / r["volume"] / f"{r['volume']}_enface.png"
        if (out / enface).is_file():
            links[r["volume"]] = enface.as_posix()
    parts += [
        '<h2 id="volumes">Volumes</h2>',
        "<p>A volume's name opens its en-face image (anomaly, thickness, ETDRS grid).</p>",
        _table(vol_rows, cols, links),
    ]
    parts += [
        "<p>Per volume: <code>volumes/NAME/</code> holds its maps, en-face PNG with the ETDRS "
        "grid, regions CSV and label map. All regions: <code>regions.csv</code>; clusters: "
        "<code>clusters.csv</code>, <code>clusters.json</code>.</p></body></html>",
    ]
    return write_text(out / "report.html", "\n".join(parts))
