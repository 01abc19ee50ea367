"""Progress display for long jobs below the CLI (reading, calibrating, mapping): one helper.

:func:`progress_bar` gives a started transient ``rich.progress.Progress`` (or ``None`` when
disabled) that callers add their tasks to; :func:`track` wraps an iterable with a transient bar
on stderr when stderr is a terminal. Training's own bar (``training/progress.py``) is a
callback of the loop with its loss columns; it stays there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Any]:
    """A started transient ``rich.progress.Progress`` while the block runs, or ``None``."""
    if not enabled:
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        yield bar


def track(
    items: Iterable[T], description: str, min_items: int = 20, total: int | None = None
) -> Iterable[T]:
    """``items`` with a transient bar on stderr when it is a terminal and ``items`` is long
    (``total``: the length of an iterator, e.g. results of a thread pool, in order)."""
    from rich.console import Console
    from rich.progress import track as rich_track

    console = Console(stderr=True)
    n = len(items) if total is None else total  # type: ignore[arg-type]
    if not console.is_terminal or n < min_items:
        return items
    return rich_track(items, description=description, total=n, console=console, transient=True)
