"""A test hook for interruptions at an exact place, instead of after a sleep.

With `WORKBENCH_FAULT=<point>[@<n>][:<signal>]` in the environment (signal KILL by default, or
INT, TERM, ...), the process sends itself that signal when it reaches the named point for the n-th
time (the first by default). The points:

    step-<N>             after optimizer step N (models.trainer)
    checkpoint-saving    a checkpoint folder written whole, not yet renamed into place
    evaluation-written   a checkpoint's report written, not yet recorded on the leaderboard

Unset (always, outside tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["FAULT_ENV", "fault_point"]

FAULT_ENV = "WORKBENCH_FAULT"
_reached: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Send this process the signal that $WORKBENCH_FAULT names for `name`, if it names `name`."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    where, _, signal_name = spec.partition(":")
    point, _, nth = where.partition("@")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, f"SIG{signal_name or 'KILL'}"))
