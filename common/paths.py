"""Where the workbench keeps what it downloads and builds."""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import WorkbenchError

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """Where downloads and indexes live: $WORKBENCH_CACHE, else ~/.cache/ko-splade-workbench.
    A location that exists but is not a folder is an error naming where it came from."""
    env = os.environ.get("WORKBENCH_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "ko-splade-workbench"
    if path.exists() and not path.is_dir():
        where = "$WORKBENCH_CACHE" if env else "the default cache location"
        raise WorkbenchError(f"{path}: {where} is a file, not a folder; set WORKBENCH_CACHE to a folder")
    return path
