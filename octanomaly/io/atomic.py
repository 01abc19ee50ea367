"""Atomic outputs: write to a temporary sibling, rename into place only on success."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from octanomaly.errors import InputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_not_input(dest: Path, protect: tuple[Path, ...]) -> None:
    for p in protect:
        if p is not None and Path(p).exists() and dest.exists() and dest.samefile(p):
            raise InputError(dest, "refusing to overwrite an input file")


@contextlib.contextmanager
def atomic_path(dest: str | Path, protect: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it to ``dest``.

    The suffix of ``dest`` is kept (``.nii.gz`` included) so writers that look at the
    extension behave. On error the temporary file is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    _check_not_input(dest, protect)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(dest.suffixes) or ""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp (and some writers) make 0600
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str, protect: tuple[Path, ...] = ()) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path, protect=protect) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; on success it replaces ``dest`` as a whole."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        for f in tmp.rglob("*"):
            if f.is_file():
                os.chmod(f, 0o666 & ~_umask())
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
