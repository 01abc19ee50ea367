"""Command-line interface: ``octanomaly COMMAND``. Each command is one module here."""

from __future__ import annotations

from octanomaly.cli import calibrate, cohort, evaluate, info, layers, map, models, phantom, train  # noqa: F401  (registers commands)
from octanomaly.cli.app import app


def main() -> None:
    """Console-script entry point."""
    from octanomaly.devices import tune_malloc

    tune_malloc()  # before any worker thread exists
    app()


__all__ = ["app", "main"]
