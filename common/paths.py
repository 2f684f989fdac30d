"""Where the workbench keeps what it downloads and builds."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """Where downloads and indexes live: $WORKBENCH_CACHE, else ~/.cache/ko-splade-workbench."""
    env = os.environ.get("WORKBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ko-splade-workbench"
