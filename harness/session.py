"""One evaluation from start to end: evaluate, write the report, record it on the leaderboard.

`evaluate.py` and the training hook (`harness.training.checkpoint_evaluator`) both call
`evaluate_report_record`, so every evaluation states its provenance the same way and lands on the
leaderboard the same way; `record_report` records a written report afterwards (where recording
failed: a leaderboard that was locked, read-only or elsewhere).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from common.errors import WorkbenchError
from common.faults import fault_point
from common.files import atomic_dir
from common.provenance import provenance
from harness.datasets import DatasetSpec
from harness.leaderboard import Leaderboard
from harness.reports import results_document, write_report
from harness.retrievers.base import RetrieverSpec
from harness.runner import EvalConfig, Row, evaluate_all

__all__ = ["Evaluation", "NotRecorded", "evaluate_report_record", "record_report"]


class NotRecorded(WorkbenchError):
    """The report is written but the leaderboard refused the rows; `rows` are the results."""

    def __init__(self, message: str, rows: list[Row]) -> None:
        super().__init__(message)
        self.rows = rows


@dataclass(frozen=True)
class Evaluation:
    rows: list[Row]  # one per dataset split x retriever, as in the report
    recorded: int  # leaderboard rows written


def evaluate_report_record(
    datasets: list[DatasetSpec],
    retrievers: list[RetrieverSpec],
    config: EvalConfig,
    report_dir: Path,
    leaderboard: Path,
    *,
    match_languages: bool = False,
    replace: bool = False,
    run: dict[str, Any] | None = None,
) -> Evaluation:
    """Evaluate into `report_dir` (written whole or not at all), then record the rows.

    `run` names a training checkpoint on the leaderboard (run_id, step, checkpoint_kind,
    config_hash). A report that is written but cannot be recorded raises NotRecorded, which holds
    the rows.
    """
    Leaderboard(leaderboard).close()  # an unusable leaderboard fails now, not after the evaluation
    started = time.perf_counter()
    origin = provenance()
    with atomic_dir(report_dir, replace=replace) as tmp:
        rows, warnings = evaluate_all(datasets, retrievers, config, tmp, match_languages=match_languages)
        document = results_document(rows, config, warnings, time.perf_counter() - started, origin, run)
        write_report(tmp, document, rows, config)
    fault_point("evaluation-written")
    try:
        with Leaderboard(leaderboard) as board:
            ids = board.record(rows, report_dir, **origin, **(run or {}))
    except (WorkbenchError, sqlite3.Error) as exc:
        message = str(exc) if isinstance(exc, WorkbenchError) else f"{leaderboard}: {exc}"
        raise NotRecorded(
            f"the report {report_dir} is written but not recorded in the leaderboard: {message}; "
            f"record it later with `python evaluate.py record {report_dir}`",
            rows,
        ) from None
    return Evaluation(rows, len(ids))


def record_report(report_dir: Path, leaderboard: Path) -> int:
    """Record a written report (its results.json) into `leaderboard`, as the evaluation that made
    it would have; returns the rows recorded. A report already recorded there is refused."""
    path = Path(report_dir) / "results.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        rows = [Row(**{f.name: result[f.name] for f in fields(Row)}) for result in document["results"]]
        origin = {"git_revision": document["git_revision"], "versions": document["versions"]}
        run = document.get("run") or {}
    except FileNotFoundError:
        raise WorkbenchError(f"{path}: not found (a report folder of evaluate.py holds one)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"{path}: not a results file ({exc})") from None
    except (KeyError, TypeError) as exc:
        raise WorkbenchError(f"{path}: not a results file of this workbench (missing {exc})") from None
    with Leaderboard(leaderboard) as board:
        where = str(Path(report_dir).resolve())
        already = [r["id"] for r in board.rows() if r["per_query_path"] == where]
        if already:
            raise WorkbenchError(
                f"{report_dir} is already recorded in {leaderboard} (rows {', '.join(map(str, already))})"
            )
        return len(board.record(rows, report_dir, **origin, **run))
