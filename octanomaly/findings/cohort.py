"""Map a cohort of volumes on Dask, collect their regions, and cluster the regions.

One code path: the client submits one task per volume to a Dask scheduler, a local in-process
cluster by default (one worker, torch on all cores) or ``scheduler="tcp://host:port"`` (any
Dask cluster: dask-jobqueue on SLURM, dask-kubernetes, ``dask scheduler`` + ``dask worker``).
Each worker loads the model once (per model folder and device) and writes a volume's files into
``OUT/volumes/STEM/`` (a folder every worker and the client can reach); only small rows travel
back, and they are appended to ``OUT/volumes.csv`` / ``OUT/regions.csv`` as they arrive.
A volume is finished when its ``STEM_cohort.json`` exists (written last); a rerun with the same
model and settings skips it (resume). A volume that fails is recorded (status and error in
``volumes.csv``) and retried by the next run; the others go on.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octanomaly.errors import InputError, OctanomalyError
from octanomaly.findings.regions import COLUMNS
from octanomaly.io import may_be_volume

#: ``volumes.csv`` columns (ETDRS burden columns ``burden_<sector>_mm3`` follow these).
VOLUME_COLUMNS: tuple[str, ...] = (
    "volume", "input", "status", "error", "n_bscans", "volume_score", "n_flagged",
    "flagged_bscans", "anomalous_volume_mm3", "n_regions", "fovea_method", "laterality",
    "seconds",
)  # fmt: skip
REGION_COLUMNS: tuple[str, ...] = ("volume", *COLUMNS)
BURDEN_SECTORS: tuple[str, ...] = (
    "central", "inner_superior", "inner_nasal", "inner_inferior", "inner_temporal",
    "outer_superior", "outer_nasal", "outer_inferior", "outer_temporal",
)  # fmt: skip
MARKER = "_cohort.json"
FEATURES = "_features.npz"


#: Version of what mapping writes for a volume; raised when a change of octanomaly alters the
#: outputs of the same model and settings (2: the elevation channel, cored masks, band_top_um;
#: 3: the volume-referenced bank channel), so a resumed cohort maps such volumes again instead
#: of mixing old and new outputs.
OUTPUTS_VERSION: int = 3


@dataclass(frozen=True)
class Settings:
    """What decides a volume's outputs; a finished volume is reused only for equal settings."""

    model_dir: str
    run_id: str
    calibration_id: str
    stride: int | None = None
    threshold: float | None = None
    min_size: int = 50
    device: str = "auto"

    def key(self) -> dict[str, Any]:
        """The resume key (device excluded: it does not change results)."""
        return {"run_id": self.run_id, "calibration_id": self.calibration_id,
                "stride": self.stride, "threshold": self.threshold, "min_size": self.min_size,
                "outputs": OUTPUTS_VERSION}  # fmt: skip


# ---------------------------------------------------------------------------- inputs
def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Volumes named by ``inputs``: a CSV file lists paths (column ``path``, or its first
    column; relative to the CSV); a folder's entries are volumes (files and sub-folders); a
    glob pattern's matches are volumes (side files and hidden ones left out, as in a folder:
    :func:`octanomaly.io.may_be_volume`); any other path is one volume. Sorted within each input,
    duplicates dropped, order kept."""
    out: list[Path] = []
    for item in map(str, inputs):
        p = Path(item)
        if p.is_file() and p.suffix.lower() == ".csv":
            out += _csv_paths(p)
        elif p.is_dir():
            out += sorted(e for e in p.iterdir() if may_be_volume(e))
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(m) for m in glob.glob(item, recursive=True))
            matches = [m for m in found if may_be_volume(m)]
            if not matches:
                what = "only side files (.csv, .json, ...)" if found else "no file or folder"
                raise InputError(item, f"pattern matches {what}")
            out += matches
        else:
            out.append(p)  # missing paths are reported per volume, like any bad volume
    seen: set[Path] = set()
    unique = [q for q in out if not (q.resolve() in seen or seen.add(q.resolve()))]
    if not unique:
        raise InputError(inputs[0] if inputs else None, "no volumes found")
    return unique


def _csv_paths(path: Path) -> list[Path]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise InputError(path, "CSV list is empty")
    header = [h.strip().lower() for h in rows[0]]
    col = header.index("path") if "path" in header else 0
    body = rows[1:] if "path" in header else rows
    return [(path.parent / r[col].strip()) for r in body if r and r[col].strip()]


def volume_names(paths: Sequence[Path]) -> list[str]:
    """A unique output name per volume: its stem, with ``_2``, ``_3``... on repeats."""
    from octanomaly.scoring import output_stem

    names, count = [], {}
    for p in paths:
        stem = output_stem(p) or "volume"
        count[stem] = count.get(stem, 0) + 1
        names.append(stem if count[stem] == 1 else f"{stem}_{count[stem]}")
    return names


# ---------------------------------------------------------------------------- worker side
_RUNS: dict[tuple[str, str], Any] = {}


def _run(settings: Settings) -> Any:
    """The loaded model of ``settings``, once per worker process."""
    from octanomaly.scoring import load_run

    key = (settings.model_dir, settings.device)
    if key not in _RUNS:
        _RUNS[key] = load_run(settings.model_dir, settings.device)
    return _RUNS[key]


def process_volume(path: str, name: str, out_dir: str, settings: Settings) -> dict[str, Any]:
    """Map one volume and write its files and findings (runs on a worker); its rows back."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"volume": name, "input": str(path), "status": "failed"}
    try:
        result = _process(Path(path), name, Path(out_dir), settings, row)
    except OctanomalyError as exc:
        row["error"] = " ".join(str(exc).split())
        return {"volume": row, "regions": []}
    except Exception as exc:  # noqa: BLE001  (one bad volume never stops a batch)
        row["error"] = f"{Path(path).name}: unexpected {type(exc).__name__}: {exc}"
        return {"volume": row, "regions": []}
    row["seconds"] = round(time.perf_counter() - t0, 2)
    result["volume"] = row
    marker = Path(out_dir) / "volumes" / name / f"{name}{MARKER}"
    from octanomaly.io.atomic import write_text

    write_text(marker, json.dumps({"key": settings.key(), **result}, default=_json))
    return result


def _json(obj: Any) -> Any:
    from octanomaly.report.summary import to_jsonable

    return to_jsonable(obj)


def _process(path: Path, name: str, out: Path, settings: Settings, row: dict) -> dict[str, Any]:
    from octanomaly.findings.embed import region_crops, region_features
    from octanomaly.findings.regions import volume_findings
    from octanomaly.io import load_volume
    from octanomaly.io.atomic import atomic_path
    from octanomaly.scoring import map_volume, write_outputs

    run = _run(settings)
    volume = load_volume(path)
    result = map_volume(volume, run, stride=settings.stride, threshold=settings.threshold,
                        min_size=settings.min_size)  # fmt: skip
    prep = result.preprocessed  # what the maps came from: no second preprocessing
    findings = volume_findings(result, volume, (prep["ilm"], prep["bm"]))
    vdir = out / "volumes" / name
    write_outputs(result, volume, vdir, name, findings=findings)
    features = region_features(run.model, prep, findings)
    crops = region_crops(volume, findings)
    with atomic_path(vdir / f"{name}{FEATURES}") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, features=features, crops=crops)
    row.update(
        status="ok", error="", n_bscans=volume.n_bscans, volume_score=result.volume_score,
        n_flagged=len(result.flagged), flagged_bscans=" ".join(map(str, result.flagged)),
        anomalous_volume_mm3=float(result.mask.sum() * np.prod(volume.spacing)),
        n_regions=len(findings.regions), fovea_method=findings.fovea.method,
        laterality=volume.laterality or "unknown",
    )  # fmt: skip
    for s in BURDEN_SECTORS:
        row[f"burden_{s}_mm3"] = findings.sectors.get(s, {}).get("anomalous_volume_mm3")
    regions = [{"volume": name, **r} for r in findings.regions]
    return {"regions": regions, "summary": findings.summary()}


# ---------------------------------------------------------------------------- client side
def _finished(out: Path, name: str, settings: Settings) -> dict[str, Any] | None:
    marker = out / "volumes" / name / f"{name}{MARKER}"
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return done if done.get("key") == settings.key() else None


def _csv_lines(rows: Iterable[dict[str, Any]], columns: Sequence[str], header: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    if header:
        w.writeheader()
    for r in rows:
        w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


class _Appender:
    """``volumes.csv`` and ``regions.csv``: rewritten from finished volumes, then appended to."""

    def __init__(self, out: Path, done: list[dict[str, Any]]):
        from octanomaly.io.atomic import write_text

        self.paths = {"volumes": out / "volumes.csv", "regions": out / "regions.csv"}
        self.vcols = (*VOLUME_COLUMNS, *(f"burden_{s}_mm3" for s in BURDEN_SECTORS))
        write_text(self.paths["volumes"],
                   _csv_lines([d["volume"] for d in done], self.vcols, True))  # fmt: skip
        regions = [r for d in done for r in d["regions"]]
        write_text(self.paths["regions"], _csv_lines(regions, REGION_COLUMNS, True))

    def add(self, result: dict[str, Any]) -> None:
        with open(self.paths["volumes"], "a", encoding="utf-8") as f:
            f.write(_csv_lines([result["volume"]], self.vcols, False))
        with open(self.paths["regions"], "a", encoding="utf-8") as f:
            f.write(_csv_lines(result["regions"], REGION_COLUMNS, False))


def _client(scheduler: str | None):
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise OctanomalyError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address=":0")  # fmt: skip
    return Client(cluster)


@dataclass
class CohortResult:
    """What a cohort run produced: per-volume results (finished ones) and the counts."""

    out: Path
    results: list[dict[str, Any]]
    n_skipped: int
    n_failed: int
    files: dict[str, Path]


def run_cohort(
    inputs: Sequence[str | Path],
    out: str | Path,
    model_dir: str | Path,
    *,
    stride: int | None = None,
    threshold: float | None = None,
    min_size: int = 50,
    device: str = "auto",
    scheduler: str | None = None,
    on_result: Callable[[dict[str, Any] | None, int, int], None] | None = None,
) -> CohortResult:
    """Map every volume of ``inputs`` into ``out`` (resumable), then cluster all regions.

    ``on_result(result, done, total)`` is called once before mapping (``result`` None, ``done``
    the volumes already finished) and as each volume finishes (progress).
    """
    from dask.distributed import as_completed

    from octanomaly.scoring import load_run
    from octanomaly.scoring.outputs import check_out_dir

    out = Path(out)
    check_out_dir(out, [p for p in inputs if Path(p).is_dir()])  # not inside an input folder
    out.mkdir(parents=True, exist_ok=True)
    paths = expand_inputs(inputs)
    names = volume_names(paths)
    run = load_run(model_dir, device)  # fail early on a bad model, and get its run id
    settings = Settings(
        str(Path(model_dir).resolve()), str(run.run_id), str(run.calibration_id),
        stride, threshold, int(min_size), device,
    )  # fmt: skip
    _RUNS.setdefault((settings.model_dir, device), run)  # the local in-process worker reuses it
    done = [d for n in names if (d := _finished(out, n, settings)) is not None]
    done_names = {d["volume"]["volume"] for d in done}
    todo = [(p, n) for p, n in zip(paths, names, strict=True) if n not in done_names]
    table = _Appender(out, done)
    if on_result is not None:
        on_result(None, len(done), len(names))
    results = list(done)
    failed: list[dict[str, Any]] = []
    n_failed = 0
    if todo:
        client = _client(scheduler)
        try:
            futures = [
                client.submit(
                    process_volume,
                    str(p),
                    n,
                    str(out.resolve()),
                    settings,
                    key=f"octanomaly-volume-{n}-{time.time_ns()}",
                    pure=False,
                )  # fmt: skip
                for p, n in todo
            ]
            for k, fut in enumerate(as_completed(futures), start=1):
                res = fut.result()
                table.add(res)
                if res["volume"]["status"] == "ok":
                    results.append(res)
                else:
                    n_failed += 1
                    failed.append(res)
                if on_result is not None:
                    on_result(res, len(done) + k, len(names))
        finally:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and scheduler is None:
                cluster.close()
    order = {n: i for i, n in enumerate(names)}
    results.sort(key=lambda d: order.get(d["volume"]["volume"], 0))
    # rows streamed in completion order; the final tables are in input order (deterministic)
    table = _Appender(out, sorted(results + failed, key=lambda d: order[d["volume"]["volume"]]))
    files = dict(table.paths)
    files.update(cluster_cohort(out, results))
    return CohortResult(out, results, len(done), n_failed, files)


def cluster_cohort(out: Path, results: list[dict[str, Any]]) -> dict[str, Path]:
    """Cluster the regions of finished volumes; write clusters.csv/json, figures, report.html."""
    from octanomaly.findings.cluster import cluster_regions, describe_clusters, map_2d
    from octanomaly.findings.figures import save_burden_map, save_cluster_map, save_montage
    from octanomaly.findings.html import write_report
    from octanomaly.io.atomic import write_text

    regions, feats, crops = [], [], []
    for res in results:
        name = res["volume"]["volume"]
        if not res["regions"]:
            continue
        with np.load(out / "volumes" / name / f"{name}{FEATURES}", allow_pickle=False) as z:
            feats.append(z["features"])
            crops.append(z["crops"])
        regions += res["regions"]
    features = np.concatenate(feats) if feats else None
    crop_arr = np.concatenate(crops) if crops else np.zeros((0, 2, 1, 1), np.uint8)
    clustering = cluster_regions(regions, features)
    xy = map_2d(clustering.embedding) if regions else np.zeros((0, 2))
    lines = describe_clusters(regions, clustering.labels)
    rows = [{**r, "cluster": int(c), "map_x": float(p[0]), "map_y": float(p[1])}
            for r, c, p in zip(regions, clustering.labels, xy, strict=True)]  # fmt: skip
    files: dict[str, Path] = {}
    files["clusters_csv"] = write_text(
        out / "clusters.csv",
        _csv_lines(rows, ("volume", "region_id", "cluster", "map_x", "map_y"), True),
    )
    summary = {
        "n_volumes": len(results),
        "n_regions": len(regions),
        "embedding": "model D.features pooled over the region (PCA) + descriptors",
        "clustering": clustering.summary(),
        "clusters": lines,
    }
    files["clusters_json"] = write_text(out / "clusters.json", json.dumps(summary, indent=2,
                                        default=_json))  # fmt: skip
    montages = {}
    for c in range(clustering.k):
        sel = np.flatnonzero(clustering.labels == c)
        montages[c] = save_montage(crop_arr, [regions[i] for i in sel], sel, clustering.labels,
                                   out / "figures" / f"cluster_{c}.png", c, lines[c])  # fmt: skip
    files["cluster_map"] = save_cluster_map(xy, clustering.labels, out / "figures" / "map.png")
    files["burden_map"] = save_burden_map(
        [r["volume"] for r in results], out / "figures" / "etdrs_burden.png"
    )
    files["report"] = write_report(out, summary, results, montages, files)
    return files
