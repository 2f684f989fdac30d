"""The benchmark history: every figure of a run appended to `benchmarks/history.jsonl`.

One JSON line per figure: {"figure", "value", "unit", "better", "git_revision", "machine", "time"}.
`record` appends a run's figures and returns, for each, the change against the previous record of
the same figure on the same machine; `changes_table` renders those changes (worse by more than the
threshold in red). `WORKBENCH_BENCH_HISTORY` names another file (the tests use it).
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.provenance import git_revision  # noqa: E402

__all__ = [
    "DEFAULT_PATH",
    "THRESHOLD",
    "Change",
    "Figure",
    "HistoryWarning",
    "changes_table",
    "figures_from",
    "history_path",
    "machine_id",
    "record",
    "record_and_print",
]

DEFAULT_PATH = Path(__file__).resolve().parent / "history.jsonl"
THRESHOLD = 0.10  # a figure worse by more than this fraction of its previous value is marked

Better = Literal["lower", "higher"]


class HistoryWarning(UserWarning):
    """A line of the history file that cannot be read; it is skipped."""


@dataclass(frozen=True)
class Figure:
    """One measured figure: a stable dotted name, its value and unit, and which way is better."""

    name: str
    value: float
    unit: str
    better: Better = "higher"

    def __post_init__(self) -> None:
        if self.better not in ("lower", "higher"):
            raise ValueError(f"{self.name}: better must be 'lower' or 'higher', not {self.better!r}")


@dataclass(frozen=True)
class Change:
    """A figure against the previous record of the same figure on the same machine."""

    figure: Figure
    previous: float | None
    threshold: float = THRESHOLD

    @property
    def change(self) -> float | None:
        """(now - previous) / |previous|; None without a previous record or from a previous 0."""
        if self.previous is None:
            return None
        if self.previous == 0:
            return 0.0 if self.figure.value == 0 else None
        return (self.figure.value - self.previous) / abs(self.previous)

    @property
    def status(self) -> Literal["new", "worse", "better", "same"]:
        """'new' without a previous record; 'worse'/'better' beyond the threshold; else 'same'."""
        if self.previous is None:
            return "new"
        change = self.change
        if change is None:  # from 0 to something: any move counts
            change = math.copysign(math.inf, self.figure.value)
        signed = change if self.figure.better == "higher" else -change
        if signed < -self.threshold:
            return "worse"
        if signed > self.threshold:
            return "better"
        return "same"

    @property
    def worse(self) -> bool:
        return self.status == "worse"


def history_path() -> Path:
    """`WORKBENCH_BENCH_HISTORY` when set, else benchmarks/history.jsonl."""
    env = os.environ.get("WORKBENCH_BENCH_HISTORY")
    return Path(env) if env else DEFAULT_PATH


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def machine_id() -> str:
    """A stable id of this machine: hostname, CPU model and core count."""
    return f"{socket.gethostname()} | {_cpu_model()} | {os.cpu_count() or 0} cores"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read(path: Path) -> list[dict[str, Any]]:
    """The readable records of the history; a malformed line is skipped with a HistoryWarning."""
    if not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                warnings.warn(f"{path}:{number}: not JSON ({exc.msg}), skipped", HistoryWarning, stacklevel=3)
                continue
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("figure"), str)
                or not isinstance(item.get("machine"), str)
                or not _is_number(item.get("value"))
            ):
                warnings.warn(
                    f"{path}:{number}: not a record (needs figure, machine and a numeric value), skipped",
                    HistoryWarning,
                    stacklevel=3,
                )
                continue
            records.append(item)
    return records


def record(
    figures: Iterable[Figure],
    path: Path | None = None,
    *,
    machine: str | None = None,
    revision: str | None = None,
    time: datetime | None = None,
    threshold: float = THRESHOLD,
) -> list[Change]:
    """Append `figures` to the history and return each one's change against the previous record of
    the same figure on the same machine (read before appending). A figure whose value is not a
    finite number is left out with a warning. The records go in one write, in append mode."""
    path = path or history_path()
    machine = machine or machine_id()
    revision = revision if revision is not None else git_revision(ROOT)
    stamp = (time or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    kept = []
    for figure in figures:
        if _is_number(figure.value):
            kept.append(figure)
        else:
            warnings.warn(f"{figure.name}: value {figure.value!r} is not a finite number, not recorded",
                          HistoryWarning, stacklevel=2)  # fmt: skip
    previous: dict[str, float] = {}
    for item in _read(path):
        if item["machine"] == machine:
            previous[item["figure"]] = float(item["value"])  # later lines overwrite: the last one wins
    changes = [Change(f, previous.get(f.name), threshold) for f in kept]
    if not kept:
        return changes
    lines = "".join(
        json.dumps({
            "figure": f.name, "value": f.value, "unit": f.unit, "better": f.better,
            "git_revision": revision, "machine": machine, "time": stamp,
        }) + "\n"
        for f in kept
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as f:  # an earlier run cut short mid-line: start on a line of our own
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                lines = "\n" + lines
    with path.open("ab") as f:
        f.write(lines.encode("utf-8"))
    return changes


def figures_from(
    prefix: str, result: Mapping[str, Any] | None, spec: Mapping[str, tuple[str, str]]
) -> list[Figure]:
    """`prefix.key` for each `key: (unit, better)` of `spec` that `result` holds as a number;
    missing or non-numeric keys are left out (better: "lower" or "higher")."""
    if not isinstance(result, Mapping):
        return []
    return [
        Figure(f"{prefix}.{key}", float(result[key]), unit, cast(Better, better))
        for key, (unit, better) in spec.items()
        if _is_number(result.get(key))
    ]


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def changes_table(changes: list[Change], title: str | None = None) -> Any:
    """A rich table: figure, unit, previous, now, change %; worse beyond the threshold in red."""
    from rich.table import Table

    threshold = changes[0].threshold if changes else THRESHOLD
    table = Table(title=title or "Against the previous run on this machine")
    table.add_column("figure", overflow="fold")  # names are long: wrap them, never cut them
    for col in ("unit", "better", "previous", "now", "change %"):
        table.add_column(col, justify="left" if col in ("unit", "better") else "right", no_wrap=True)
    for c in changes:
        change = c.change
        if c.previous is None:
            cell = "new"
        elif change is None:
            cell = "from 0"
        else:
            cell = f"{change * 100:+.1f}"
        style = {"worse": "red", "better": "green"}.get(c.status)
        table.add_row(
            c.figure.name,
            c.figure.unit,
            c.figure.better,
            "-" if c.previous is None else _number(c.previous),
            _number(c.figure.value),
            cell,
            style=style,
        )
    worse = sum(c.worse for c in changes)
    table.caption = f"{worse} of {len(changes)} worse by more than {threshold:.0%} (red)"
    return table


def record_and_print(figures: list[Figure], console: Any, enabled: bool = True) -> list[Change]:
    """What each benchmark's main() ends with: record the figures and print the changes table."""
    if not enabled or not figures:
        return []
    path = history_path()
    changes = record(figures, path)
    console.print(changes_table(changes, title=f"Against the previous run on this machine ({path.name})"))
    return changes
