"""What every `aisvc` command shares: the local run's state directory option, the exit codes,
and errors as plain lines on stderr.

Errors are never drawn in a box or wrapped to the terminal's width (typer's default with
rich): a script reading stderr, or a person with a narrow terminal, gets a long message or
path whole, on one line, as `kubectl` prints them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperGroup

DEFAULT_STATE_DIR = Path(".aisvc")
StateDirOpt = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        help="State directory of the local run (`aisvc up --state-dir`): its log, databases "
        "and local.json, which says where it listens.",
    ),
]

EXIT_HEALTHY = 0
EXIT_DEGRADED = 1
"""Also: the command failed (not found, refused by the API, the event store down)."""
EXIT_USAGE = 2
"""A bad command line, or nothing to talk to (no cluster configured, no local run)."""
EXIT_TIMEOUT = 3


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
"""What a terminal acts on instead of printing: C0 and C1 controls (escape sequences,
carriage return, backspace), line and paragraph separators, bidirectional overrides."""


def printable(text: object) -> str:
    """`text` safe to print to a terminal: control characters shown as escapes
    (``\\x1b``, ``\\u202e``), so event data cannot move the cursor, retitle the window,
    plant a hyperlink or hide text. Every human-readable output of untrusted text uses it."""
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


def shown(text: object) -> Text:
    """`text` as a rich table cell or tree label: printable, and never read as markup
    (``[link=...]`` in event data stays text)."""
    return Text(printable(text))


def one_line(text: object) -> str:
    """`text` with its line breaks folded, for a one-line error message (printable)."""
    return printable(" ".join(str(text).split()))


def fail(message: str, code: int = EXIT_DEGRADED) -> typer.Exit:
    """Print `error: message` to stderr; the caller raises the returned Exit."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _error_class(name: str) -> type[Exception]:
    """click's `name` exception as typer raises it (newer typers carry their own click)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


USAGE_ERROR = _error_class("UsageError")
CLI_ERRORS: tuple[type[Exception], ...] = (
    _error_class("ClickException"),
    *((typer.TyperException,) if hasattr(typer, "TyperException") else ()),
)


def report(err: Exception) -> None:
    """A click error as `error: ...` (and, for a usage error, where to find the usage)."""
    format_message = getattr(err, "format_message", None)
    message = format_message() if callable(format_message) else str(err)
    typer.echo(f"error: {one_line(message)}", err=True)
    ctx = getattr(err, "ctx", None)
    if isinstance(err, USAGE_ERROR) and ctx is not None:
        typer.echo(f"See '{ctx.command_path} --help' for usage.", err=True)


class PlainErrorsGroup(TyperGroup):
    """The `aisvc` group: typer's command handling, click's exit codes, plain error lines."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        # Run without click's standalone handling, then do its part here: plain lines.
        call = (args, prog_name, complete_var, False, windows_expand_args)
        if not standalone_mode:
            return super().main(*call, **extra)
        try:
            code = super().main(*call, **extra)
        except CLI_ERRORS as err:
            report(err)
            sys.exit(getattr(err, "exit_code", 1))
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
