"""One console on stderr for logs and progress, so that stdout stays machine-readable."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console

__all__ = ["console", "track"]

console = Console(stderr=True)
T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """A transient rich progress bar over `items`."""
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, console=console, transient=True)
