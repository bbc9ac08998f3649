"""How every `sharedml` command reports a user's mistake: one red ``error:`` line on stderr and an exit
status, no traceback.

Why: a wrong path, a bad config field or a refused request is the user's to fix, and the message says
how; a traceback would bury it. `sharedml --debug` prints the traceback as well, for whoever debugs the
tool itself. The top-level command line and those of deploy, serving and the TEE route all report
through `fail`, so they look and behave the same.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

err_console = Console(stderr=True)
_show_tracebacks = False


def show_tracebacks(shown: bool) -> None:
    """Whether `fail` also prints the traceback of the exception being handled (`--debug`)."""
    global _show_tracebacks
    _show_tracebacks = shown


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` as an error and end the command with exit status `code`."""
    if _show_tracebacks and sys.exc_info()[1] is not None:
        err_console.print_exception()
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
