"""The per-volume JSON summary of ``octanomaly map``: schema, numpy-safe writing, PHI guard."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from octanomaly.errors import OctanomalyError
from octanomaly.io.atomic import write_text

#: Shorter PHI values (e.g. sex 'M') are not searched for: they would match everywhere.
_MIN_PHI_LEN = 3


class ModelInfo(BaseModel):
    """Which model produced the map."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: str
    run_id: str | None = None


class MapSummary(BaseModel):
    """Required keys of ``<stem>_summary.json``; extra keys are allowed and kept."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    input: str = Field(description="path of the input volume")
    shape: tuple[int, int, int] = Field(description="(n_bscans, depth, width)")
    spacing_mm: tuple[float, float, float] = Field(description="(bscan, axial, lateral) mm")
    model: ModelInfo
    threshold: float = Field(description="calibrated threshold on the z-score map")
    volume_score: float | None
    bscan_scores: list[float | None]
    flagged_bscans: list[int]
    anomalous_volume_mm3: float
    timings_s: dict[str, float]


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy values, tuples, paths and models as JSON types; NaN/inf -> None."""
    if isinstance(obj, BaseModel):
        return to_jsonable(obj.model_dump(mode="python"))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [to_jsonable(v) for v in items]
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def anomalous_volume_mm3(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume (mm^3) of the voxels set in ``mask``; ``spacing`` is ``(bscan, axial, lateral)``."""
    return float(np.count_nonzero(mask)) * float(np.prod([float(s) for s in spacing]))


def _phi_needles(phi: Mapping[str, Any]) -> list[tuple[str, str]]:
    needles: list[tuple[str, str]] = []
    for key, value in phi.items():
        text = "" if value is None else str(value).strip()
        parts = [p for p in re.split(r"[\^,\s]+", text) if p]
        for needle in sorted({text, *parts}):
            if len(needle) >= _MIN_PHI_LEN:
                needles.append((key, needle))
        if re.fullmatch(r"\d{8}", text):  # DICOM date YYYYMMDD: also its ISO form
            needles.append((key, f"{text[:4]}-{text[4:6]}-{text[6:]}"))
    return needles


def assert_no_phi(text: str, phi: Mapping[str, Any], numbers: bool = True) -> None:
    """Raise :class:`OctanomalyError` naming the field if a value of ``phi`` appears in ``text``.

    Looks for whole values, name components and DICOM dates in ISO form as separate tokens
    (case-insensitive, at least 3 characters; all-digit ones only with ``numbers``); the
    message never repeats the value itself.
    """
    for key, needle in _phi_needles(phi):
        if not numbers and needle.isdigit():
            continue
        pattern = rf"(?<![0-9A-Za-z]){re.escape(needle)}(?![0-9A-Za-z])"
        if re.search(pattern, text, flags=re.IGNORECASE):
            raise OctanomalyError(f"patient-identifying field {key!r} would be written; refused")


def summary_json(summary: Mapping[str, Any] | MapSummary) -> str:
    """Validated, stable JSON text (sorted keys, indent 2, NaN as null) of a map summary."""
    data = to_jsonable(summary)
    try:
        MapSummary.model_validate(data)
    except ValidationError as exc:
        raise OctanomalyError(f"invalid map summary: {exc}") from exc
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _strings(obj: Any, exempt: Sequence[str] = ()) -> Iterator[str]:
    """Every string value in a JSON-able ``obj`` (not keys, not numbers), skipping top-level
    keys ``exempt``."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            if k not in exempt:
                yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def assert_no_phi_values(
    summary: Mapping[str, Any], phi: Mapping[str, Any], exempt: Sequence[str] = ()
) -> None:
    """:func:`assert_no_phi` on each string value of ``summary``, skipping top-level keys
    ``exempt`` (e.g. the user's own file names); numbers, and all-digit values (a short numeric
    PatientID), are never searched: they would match scores and sizes by chance."""
    for text in _strings(to_jsonable(summary), exempt):
        assert_no_phi(text, phi, numbers=False)


def summary_text(
    summary: Mapping[str, Any] | MapSummary,
    *,
    phi: Mapping[str, Any] | None = None,
    exempt: Sequence[str] = (),
) -> str:
    """:func:`summary_json` of ``summary`` after checking its string values for ``phi``."""
    text = summary_json(summary)
    if phi:
        assert_no_phi_values(json.loads(text), phi, exempt)
    return text


def write_summary(
    path: str | Path,
    summary: Mapping[str, Any] | MapSummary,
    *,
    phi: Mapping[str, Any] | None = None,
    protect: tuple[Path, ...] = (),
    exempt: Sequence[str] = (),
) -> Path:
    """Write ``summary`` atomically as JSON; refuse if a value of ``phi`` would appear in one of
    its strings (top-level keys ``exempt`` are not searched)."""
    return write_text(path, summary_text(summary, phi=phi, exempt=exempt), protect=protect)
