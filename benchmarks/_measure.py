"""Shared by the benchmarks: run a measurement in a fresh process and add its peak memory."""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measured(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    result = fn(*args)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def in_subprocess(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """`fn(*args)` in a fresh (spawned) process; its dict result gets that process's peak RSS."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_measured, fn, *args).result()
