"""Score a labelled folder with a model and compute image- (and pixel-) level metrics.

:func:`evaluate_folder` reads every item of ``DATA/<CLASS>/`` (see
:mod:`octanomaly.evaluation.dataset`), scores it with a :class:`Scorer` (a trained run:
:class:`RunScorer`), and returns an :class:`Evaluation`; :func:`write_evaluation` writes
``metrics.json``, ``scores.csv``, ``roc.png`` and ``scores_hist.png`` atomically. An item's
image score is its B-scan score (a single B-scan) or the volume score (mean of the top three
B-scan scores); it is flagged above the run's calibrated B-scan threshold.
"""

from __future__ import annotations

import csv
import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from octanomaly.cpus import available_cpus
from octanomaly.errors import InputError, OctanomalyError
from octanomaly.evaluation.dataset import Item, discover, match_masks
from octanomaly.evaluation.metrics import PixelAccumulator, image_metrics
from octanomaly.scoring.calibration import VOLUME_TOP_K, volume_score
from octanomaly.volume import OCTVolume

#: Files that ``write_evaluation`` writes.
OUTPUT_FILES = ("metrics.json", "scores.csv", "roc.png", "scores_hist.png")


@dataclass
class VolumeMaps:
    """What pixel-level evaluation needs from a scorer, in the volume's geometry."""

    bscan_scores: np.ndarray  #: (n,) calibrated, NaN where no retina
    anomaly: np.ndarray  #: (n, depth, width) float anomaly map
    mask: np.ndarray  #: (n, depth, width) bool map above the calibrated threshold
    retina: np.ndarray | None = None  #: (n, depth, width) bool region the map covers


class Scorer(Protocol):
    """Scores volumes; :class:`RunScorer` is the real one (tests plug in their own)."""

    bscan_threshold: float
    info: dict[str, Any]

    def bscan_scores(self, volume: OCTVolume) -> np.ndarray:
        """Calibrated score of every B-scan, ``(n,)`` (NaN where it cannot be scored)."""
        ...

    def maps(self, volume: OCTVolume) -> VolumeMaps:
        """B-scan scores and anomaly maps."""
        ...


class RunScorer:
    """A :class:`Scorer` backed by a trained run folder (``None``: the bundled default model)."""

    def __init__(
        self,
        run_dir: str | Path | None = None,
        device: str = "auto",
        percentile: float = 99.0,
        stride: int | None = None,
    ):
        from octanomaly.scoring import default_model_dir, load_run

        if run_dir is None:
            run_dir = default_model_dir()
            if run_dir is None:
                raise OctanomalyError("no --model given and no bundled default model installed")
        self.run = load_run(run_dir, device)
        self.percentile = float(percentile)
        self.stride = stride
        self.pixel_threshold, self.bscan_threshold = self.run.calibration.thresholds(percentile)
        self.info = {
            **self.run.info,
            "run_dir": str(run_dir),
            "percentile": self.percentile,
            "bscan_threshold": self.bscan_threshold,
            "pixel_threshold": self.pixel_threshold,
            "stride": self.run.calibration.check_stride(stride),
        }

    def bscan_scores(self, volume: OCTVolume) -> np.ndarray:
        from octanomaly.scoring import score_bscans

        return score_bscans(volume, self.run, stride=self.stride)

    def maps(self, volume: OCTVolume) -> VolumeMaps:
        from octanomaly.scoring import map_volume

        r = map_volume(volume, self.run, stride=self.stride, threshold=self.percentile)
        return VolumeMaps(r.bscan_scores, r.anomaly, r.mask.astype(bool), r.retina)


@dataclass
class Row:
    """One scored item."""

    file: str  #: path relative to DATA
    cls: str
    label: int
    width: int
    n_bscans: int
    score: float  #: NaN when unscored
    flagged: bool


@dataclass
class Evaluation:
    """Rows of scored items and the metrics computed from them."""

    rows: list[Row]
    metrics: dict[str, Any]
    normal_class: str
    bad_files: list[dict[str, str]] = field(default_factory=list)


def image_score(bscan_scores: np.ndarray) -> float:
    """A B-scan's score, or a volume's: mean of its :data:`VOLUME_TOP_K` best (NaN if none)."""
    score = volume_score(bscan_scores, VOLUME_TOP_K)
    return float("nan") if score is None else score


def _load(path: Path) -> OCTVolume:
    from octanomaly.io import load_volume

    return load_volume(path)


def _load_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    data = np.asarray(_load(path).data)
    if data.shape != shape:
        raise InputError(path, f"mask shape {data.shape} differs from the data's {shape}")
    return data > 0


def _problem(exc: Exception, path: Path | None = None) -> str:
    """One line; an :class:`InputError` about ``path`` itself gives just its problem."""
    if isinstance(exc, InputError) and path is not None and exc.path == path:
        text = exc.problem
    elif isinstance(exc, (OctanomalyError, OSError, ValueError)):
        text = str(exc)
    else:  # an unexpected error: its type tells the developer where to look
        text = f"unexpected {type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def evaluate_folder(
    data: str | Path,
    scorer: Scorer,
    normal_class: str = "NORMAL",
    masks: str | Path | None = None,
    limit_per_class: int | None = None,
    progress: Any | None = None,
    warn: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> Evaluation:
    """Score every item of ``data`` with ``scorer``; image metrics, and pixel metrics with masks.

    ``progress`` is a started ``rich.progress.Progress`` (or ``None``); ``warn`` receives one
    line per file that cannot be read or scored (it is skipped and listed in the metrics).
    ``workers`` items are scored at a time on threads (default: one per core, at most 2); the
    results are the same and come in the same order as one at a time.
    """
    data = Path(data)
    items = discover(data, normal_class, limit_per_class)
    workers = min(2, available_cpus()) if workers is None else workers
    mask_of = match_masks(masks, items) if masks is not None else {}
    warn = warn or (lambda _msg: None)
    whole, retina = PixelAccumulator(), PixelAccumulator()
    rows: list[Row] = []
    bad: list[dict[str, str]] = []
    bad_masks: list[dict[str, str]] = []
    task = progress.add_task("evaluating", total=len(items)) if progress is not None else None
    t_start = time.perf_counter()
    n_bscans = 0

    def scored_item(item: Item) -> tuple[Any, Exception | None]:
        try:
            return _score_item(item, scorer, mask_of.get(item.path)), None
        except Exception as exc:  # one bad file never stops the evaluation
            return None, exc

    for item, (done, exc) in zip(items, _in_order(scored_item, items, workers), strict=True):
        rel = item.path.relative_to(data).as_posix()
        if exc is not None:
            bad.append({"file": rel, "error": _problem(exc, item.path)})
            warn(f"skipped {rel}: {_problem(exc, item.path)}")
        else:
            vol_shape, bscan, maps, truth, mask_error = done
            if mask_error is not None:
                bad_masks.append({"file": rel, "error": _problem(mask_error)})
            if maps is not None:
                whole.add(maps.anomaly, truth, maps.mask)
                if maps.retina is not None:
                    retina.add(maps.anomaly, truth, maps.mask, region=maps.retina)
            score = image_score(bscan)
            row = Row(
                file=rel,
                cls=item.cls,
                label=item.label,
                width=vol_shape[2],
                n_bscans=vol_shape[0],
                score=score,
                flagged=bool(np.isfinite(score) and score > scorer.bscan_threshold),
            )
            rows.append(row)
            n_bscans += row.n_bscans
            if not np.isfinite(row.score):
                warn(f"unscored {rel}: no retina found in any B-scan")
        if progress is not None:
            progress.advance(task)
    seconds = time.perf_counter() - t_start
    for b in bad_masks:
        warn(f"mask ignored for {b['file']}: {b['error']}")
    scored = [r for r in rows if np.isfinite(r.score)]
    if not scored:
        raise InputError(data, f"none of the {len(items)} files could be scored")
    metrics = image_metrics(
        [r.score for r in scored], [r.cls for r in scored], normal_class, [r.width for r in scored]
    )
    metrics = {
        "data": str(data),
        "normal_class": normal_class,
        **metrics,
        "n_files": len(items),
        "n_scored": len(scored),
        "bscan_threshold": float(scorer.bscan_threshold),
        "flagged_fraction": _flagged_fraction(scored),
        "model": scorer.info,
        "limit_per_class": limit_per_class,
        "timing": {
            "seconds_total": seconds,
            "seconds_per_file": seconds / max(len(rows), 1),
            "seconds_per_bscan": seconds / max(n_bscans, 1),
        },
        "n_bad_files": len(bad),
        "bad_files": bad,
        "unscored": [r.file for r in rows if not np.isfinite(r.score)],
    }
    if masks is not None:
        metrics.update(_pixel_section(whole, retina, mask_of, bad_masks))
    return Evaluation(rows, metrics, normal_class, bad)


def _score_item(
    item: Item, scorer: Scorer, mask_path: Path | None
) -> tuple[tuple[int, ...], np.ndarray, VolumeMaps | None, np.ndarray | None, Exception | None]:
    """``(shape, B-scan scores, maps, truth mask, mask error)`` of one item (any thread)."""
    vol = _load(item.path)
    truth, mask_error = None, None
    if mask_path is not None:
        try:
            truth = _load_mask(mask_path, vol.shape)
        except (OctanomalyError, OSError, ValueError) as exc:
            mask_error = exc
    if truth is not None:
        maps = scorer.maps(vol)
        return vol.shape, maps.bscan_scores, maps, truth, mask_error
    return vol.shape, scorer.bscan_scores(vol), None, None, mask_error


def _in_order(fn: Callable[[Any], Any], items: list[Any], workers: int) -> Iterator[Any]:
    """``fn`` of each item, in order, with up to ``workers`` items in flight on threads
    (numpy, scipy and torch release the GIL: one item's preprocessing overlaps another's
    network)."""
    if workers < 2 or len(items) < 2:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        todo = iter(items)
        pending = deque(pool.submit(fn, x) for x in islice(todo, workers))
        while pending:
            done = pending.popleft().result()
            nxt = next(todo, _END)
            if nxt is not _END:
                pending.append(pool.submit(fn, nxt))
            yield done


_END = object()


def _flagged_fraction(rows: list[Row]) -> dict[str, float]:
    out: dict[str, float] = {}
    for cls in sorted({r.cls for r in rows}):
        flags = [r.flagged for r in rows if r.cls == cls]
        out[cls] = float(np.mean(flags))
    return out


def _pixel_section(
    whole: PixelAccumulator,
    retina: PixelAccumulator,
    mask_of: dict[Path, Path],
    bad_masks: list[dict[str, str]],
) -> dict[str, Any]:
    w = whole.result()
    out: dict[str, Any] = {
        "pixel_auroc": w["pixel_auroc"],
        "pixel_ap": w["pixel_ap"],
        "dice": w.get("dice"),
        "pixel": w,
        "pixel_retina": retina.result() if retina.n_maps else None,
        "n_masks_matched": len(mask_of),
        "bad_masks": bad_masks,
    }
    if whole.n_maps == 0:
        raise InputError(None, "no mask could be used (see the warnings)")
    return out


# ----------------------------------------------------------------------------- outputs
def default_out_dir(data: str | Path) -> Path:
    """``./octanomaly-eval-<data folder name>`` in the current directory."""
    return Path.cwd() / f"octanomaly-eval-{Path(data).resolve().name}"


def check_out_dir(out: Path, data: Path) -> None:
    """Refuse an output folder inside DATA, or an existing folder that is not an evaluation."""
    o, d = out.resolve(), data.resolve()
    if o == d or d in o.parents:
        raise InputError(out, f"output folder must not be inside the data folder {data}")
    if o in d.parents:
        raise InputError(out, f"output folder would replace a parent of the data folder {data}")
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "metrics.json").is_file())
    ):
        raise InputError(out, "exists and is not an earlier evaluation; refusing to replace it")


def write_evaluation(ev: Evaluation, out: str | Path, data: str | Path) -> Path:
    """Write :data:`OUTPUT_FILES` into ``out`` as a whole (atomic folder replace); ``out``."""
    from octanomaly.evaluation.plots import histogram_figure, roc_figure
    from octanomaly.io.atomic import atomic_dir

    out = Path(out)
    check_out_dir(out, Path(data))
    scored = [r for r in ev.rows if np.isfinite(r.score)]
    scores = [r.score for r in scored]
    classes = [r.cls for r in scored]
    with atomic_dir(out) as tmp:
        (tmp / "metrics.json").write_text(
            json.dumps(ev.metrics, indent=1, default=float), encoding="utf-8"
        )
        with open(tmp / "scores.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["file", "class", "width", "n_bscans", "score", "flagged"])
            for r in ev.rows:
                score = f"{r.score:.6g}" if np.isfinite(r.score) else ""
                w.writerow([r.file, r.cls, r.width, r.n_bscans, score, int(r.flagged)])
        name = Path(data).name
        roc_figure(
            scores, classes, ev.normal_class, tmp / "roc.png",
            ev.metrics["per_class_auroc"], ev.metrics["image_auroc"], title=f"ROC: {name}",
        )  # fmt: skip
        histogram_figure(
            scores, classes, tmp / "scores_hist.png", ev.metrics["bscan_threshold"],
            title=f"image scores: {name}",
        )  # fmt: skip
    return out
