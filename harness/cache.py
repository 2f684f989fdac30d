"""Reading the on-disk caches (analyzed corpora, indexes, document vectors) under `cache_dir()`.

A cache entry that cannot be read (a file truncated by a full disk or a kill, bytes changed) is
not an error: it is named in a warning, removed, and built again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harness.console import console

__all__ = ["read_cache"]

T = TypeVar("T")


def read_cache(entry: Path, load: Callable[[], T]) -> T | None:
    """`load()` of the cache `entry` (a file or folder); where it fails, a warning naming the entry,
    the entry removed, and None: the caller rebuilds it."""
    try:
        return load()
    except Exception as exc:  # a damaged file fails in its reader's own way (zip, numpy, json, pickle)
        console.log(
            f"[yellow]warning[/] {entry}: unreadable cache ({type(exc).__name__}: {exc}); "
            "building it again (--no-cache skips the cache)"
        )
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        return None
