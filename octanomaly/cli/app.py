"""The typer application, its global options and the error policy shared by every command.

Commands live in one module each beside this file and register with :func:`command`.
Expected failures (:class:`~octanomaly.errors.OctanomalyError`) print one line on stderr and
exit with code 2; so do unexpected exceptions (their type and message, no traceback);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Annotated, Any

import click
import typer
from rich.console import Console

from octanomaly import __version__
from octanomaly.errors import OctanomalyError

app = typer.Typer(
    name="octanomaly",
    help="Find and localise anomalies in retinal OCT volumes with GANs trained on healthy scans.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
_state: dict[str, bool] = {"debug": False}

EXIT_BAD_INPUT = 2
#: Exceptions typer/click use for control flow (exit codes, usage errors): passed through.
_CONTROL = (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.Abort)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings (e.g. a B-scan without retina) as one plain line on stderr."""
    err_console.print(f"octanomaly: warning: {message}", markup=False, highlight=False)


def debug_enabled() -> bool:
    """True when ``--debug`` was given (show tracebacks instead of one-line errors)."""
    return _state["debug"]


def fail(message: str) -> None:
    """Print ``message`` as one error line on stderr and exit with code 2."""
    err_console.print(f"octanomaly: error: {message}", markup=False, highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT)


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``app.command`` with the error policy: one line + exit 2 for expected failures."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                return func(*a, **kw)
            except OctanomalyError as exc:
                if _state["debug"]:
                    raise
                fail(" ".join(str(exc).split()))
            except _CONTROL:
                raise  # typer.Exit and usage errors are RuntimeErrors too: not failures here
            except Exception as exc:
                if _state["debug"]:
                    raise
                fail(
                    f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())} "
                    "(run with --debug for the traceback)"
                )
            except KeyboardInterrupt:
                err_console.print("octanomaly: interrupted", markup=False)
                raise typer.Exit(130) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorate


def _version(value: bool) -> None:
    if value:
        typer.echo(f"octanomaly {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    _state["debug"] = debug
    if not debug:
        warnings.showwarning = _show_warning
