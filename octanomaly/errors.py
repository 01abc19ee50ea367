"""Exceptions that the CLI turns into one-line messages with exit code 2."""

from __future__ import annotations

from pathlib import Path


class OctanomalyError(Exception):
    """An expected failure with a message meant for the user (no traceback needed)."""


class InputError(OctanomalyError):
    """A file or folder that cannot be used; the message names it and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


class MissingSpacing(InputError):
    """A file whose voxels were read but which carries no usable spacing; ``volume`` is the
    :class:`~octanomaly.volume.OCTVolume` read as stored, for a caller that has a spacing."""

    def __init__(self, path: str | Path, problem: str, volume: object):
        super().__init__(path, problem)
        self.volume = volume


class ConfigError(OctanomalyError):
    """A configuration file or value that does not validate."""
