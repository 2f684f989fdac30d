"""One console on stderr for logs and progress, so that stdout stays machine-readable."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console

__all__ = ["console", "track"]

console = Console(stderr=True)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 160  # logs and CI: wide enough for a full results table
T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """A transient rich progress bar over `items`."""
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, console=console, transient=True)
