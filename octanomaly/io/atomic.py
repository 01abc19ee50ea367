"""Atomic outputs: write to a temporary sibling, rename into place only on success; a set of
files moves in as one transaction (:func:`commit_entries`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
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


def commit_entries(
    tmp: str | Path, dest: str | Path, names: Sequence[str], remove: Sequence[str] = ()
) -> None:
    """Move the entries ``names`` (files or folders) of ``tmp`` into ``dest`` as one set.

    Entries of ``dest`` named in ``names`` or ``remove`` are first moved aside; if anything
    fails (Ctrl-C included) the new entries are taken back and the old ones restored, so
    ``dest`` shows either the whole new set or the old state. On success the old ones are
    deleted. ``tmp`` must be on the same file system (a sibling folder): every move is a rename.
    """
    tmp, dest = Path(tmp), Path(dest)
    aside = Path(tempfile.mkdtemp(prefix=".octanomaly-old-", suffix=".tmp", dir=dest))
    moved: list[str] = []
    placed: list[str] = []
    try:
        for name in dict.fromkeys([*names, *remove]):
            if (dest / name).exists() or (dest / name).is_symlink():
                os.replace(dest / name, aside / name)
                moved.append(name)
        for name in names:
            target = dest / name
            if target.exists() or target.is_symlink():
                raise FileExistsError(f"{target} appeared while the outputs were being written")
            os.replace(tmp / name, target)
            placed.append(name)
    except BaseException:
        for name in reversed(placed):
            with contextlib.suppress(OSError):
                os.replace(dest / name, tmp / name)
        for name in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(aside / name, dest / name)
        with contextlib.suppress(OSError):
            aside.rmdir()  # empty once everything is restored; else kept, nothing is lost
        raise
    shutil.rmtree(aside, ignore_errors=True)
