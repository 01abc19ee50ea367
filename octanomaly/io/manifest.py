"""Output manifests: which files octanomaly wrote, so a rerun replaces exactly those.

A manifest is a JSON object (kept inside a result's summary file) holding ``generator``
(``"octanomaly <version>"``), ``source_id`` (sha256 of the resolved input path: which input
the files belong to, without writing the path), ``files`` (name relative to the output
folder -> ``{"sha256", "bytes"}``) and ``summary_sha256``, the hash of the JSON file itself
written with that field empty. A file counts as octanomaly's own only when a valid manifest
lists it with its current size and hash: a stranger's file, or one edited since, does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Value of ``generator`` starts with this.
GENERATOR_PREFIX = "octanomaly"
_SELF_KEY = "summary_sha256"


def sha256_file(path: Path) -> str:
    """Hex sha256 of the bytes of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_id(path: str | Path) -> str:
    """A stable id of an input: sha256 of its resolved absolute path (no path is written)."""
    return hashlib.sha256(str(Path(path).resolve()).encode("utf-8", "surrogateescape")).hexdigest()


def file_records(root: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{relative name: {"sha256", "bytes"}}`` of the files ``names`` under ``root``; a folder
    contributes every file inside it (``folder/file``)."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        p = root / name
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            rel = f.relative_to(root).as_posix()
            out[rel] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    return out


def seal(text_with_placeholder: str) -> str:
    """Fill ``"summary_sha256": ""`` in a JSON text with the sha256 of that very text."""
    empty = f'"{_SELF_KEY}": ""'
    if text_with_placeholder.count(empty) != 1:
        raise ValueError(f"manifest text needs exactly one empty {_SELF_KEY!r}")
    digest = hashlib.sha256(text_with_placeholder.encode("utf-8")).hexdigest()
    return text_with_placeholder.replace(empty, f'"{_SELF_KEY}": "{digest}"')


def empty_manifest(generator: str, source: str | Path, files: Mapping[str, Any]) -> dict:
    """The manifest dict to embed (``summary_sha256`` empty until :func:`seal`)."""
    return {
        "generator": generator,
        "source_id": source_id(source),
        "files": dict(files),
        _SELF_KEY: "",
    }


def read_manifest(path: Path, key: str = "manifest") -> dict[str, Any] | None:
    """The manifest under ``key`` of the JSON file ``path`` if it is intact and octanomaly's,
    else None (missing, not JSON, no marker, or edited since it was written)."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        text = path.read_text(encoding="utf-8")
        man = json.loads(text).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(man, dict) or not str(man.get("generator", "")).startswith(GENERATOR_PREFIX):
        return None
    digest = man.get(_SELF_KEY)
    filled = f'"{_SELF_KEY}": "{digest}"'
    if not isinstance(digest, str) or text.count(filled) != 1:
        return None
    blank = text.replace(filled, f'"{_SELF_KEY}": ""')
    if hashlib.sha256(blank.encode("utf-8")).hexdigest() != digest:
        return None
    if not isinstance(man.get("files"), dict):
        return None
    return man


def is_listed(root: Path, name: str, manifest: Mapping[str, Any]) -> bool:
    """True if ``root / name`` (file, or folder and everything in it) is exactly as the
    manifest lists it: same sizes and hashes, nothing added, no links."""
    p = root / name
    files = manifest.get("files", {})
    if p.is_symlink():
        return False
    if p.is_dir():
        inside = list(p.rglob("*"))
        if any(f.is_symlink() or not (f.is_file() or f.is_dir()) for f in inside):
            return False
        entries = [f for f in inside if f.is_file()]
        listed = [k for k in files if k.startswith(f"{name}/")]
        if len(entries) != len(listed):
            return False
        return all(_matches(f, files.get(f.relative_to(root).as_posix())) for f in entries)
    return p.is_file() and _matches(p, files.get(name))


def _matches(path: Path, record: Any) -> bool:
    if not isinstance(record, dict):
        return False
    try:
        return path.stat().st_size == record.get("bytes") and sha256_file(path) == record.get(
            "sha256"
        )
    except OSError:
        return False
