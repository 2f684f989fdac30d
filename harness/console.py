"""One console on stderr for logs and progress, so that stdout stays machine-readable, and the one
way a command reports bad input or an environment fault: a line naming the path, exit 2."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from common.errors import WorkbenchError

__all__ = ["Meter", "console", "describe_error", "fail", "meter", "track", "user_errors"]

console = Console(stderr=True)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 160  # logs and CI: wide enough for a full results table
T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """A transient rich progress bar over `items`."""
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, console=console, transient=True)


class Meter:
    """Progress of a stream whose end may be unknown: a rich bar on a terminal, else a plain log
    line every `every_s` seconds (CI logs, `nohup`, a pipe) and one at the end."""

    def __init__(self, description: str, total: float | None, unit: str, every_s: float) -> None:
        import time

        self.description, self.total, self.unit, self.every_s = description, total, unit, every_s
        self.done = 0.0
        self._clock = time.monotonic
        self._started = self._last = self._clock()
        self._bar: Any = None
        if console.is_terminal:
            from rich.progress import Progress

            self._bar = Progress(console=console, transient=True)
            self._task = self._bar.add_task(description, total=total)
            self._bar.start()

    def advance(self, amount: float = 1) -> None:
        self.done += amount
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self._clock() - self._last >= self.every_s:
            self._last = self._clock()
            self._log()

    def _log(self) -> None:
        seconds = max(self._clock() - self._started, 1e-9)
        of = f" of {self.total:,.0f}" if self.total else ""
        console.log(f"{self.description}: {self.done:,.0f}{of} {self.unit} ({self.done / seconds:,.0f}/s)")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._log()


@contextlib.contextmanager
def meter(
    description: str, total: float | None = None, unit: str = "items", every_s: float = 30
) -> Iterator[Meter]:
    """`with meter("pages", unit="pages") as m: ... m.advance()`: see `Meter`."""
    progress = Meter(description, total, unit, every_s)
    try:
        yield progress
    finally:
        progress.close()


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
