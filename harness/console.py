"""One console on stderr for logs and progress, so that stdout stays machine-readable, and the one
way a command reports bad input or an environment fault: a line naming the path, exit 2."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from common.errors import WorkbenchError

__all__ = ["console", "describe_error", "fail", "track", "user_errors"]

console = Console(stderr=True)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 160  # logs and CI: wide enough for a full results table
T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """A transient rich progress bar over `items`."""
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, console=console, transient=True)


def describe_error(exc: BaseException) -> str:
    """One line for bad input or an environment fault, naming the path where there is one."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, sqlite3.Error):
        return f"the leaderboard database: {exc}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` and give the exit to raise."""
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Around a command's body: bad input (`WorkbenchError`) and environment faults (a path that
    is missing, a file where a folder should be, no permission, a full disk, a database error)
    end the command in one line and exit 2, never in a traceback."""
    try:
        yield
    except (WorkbenchError, OSError, sqlite3.Error) as exc:
        raise fail(describe_error(exc)) from None
