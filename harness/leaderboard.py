"""The evaluation leaderboard: every evaluation ever run, one SQLite row per dataset split x retriever.

`python evaluate.py` records each evaluation here, and a training run records each checkpoint it
evaluates, possibly at the same time. The database is opened in WAL mode with a busy timeout:
readers never block writers, and a writer that finds the database locked by another one waits
(up to `BUSY_TIMEOUT_S`, saying so) instead of failing, so concurrent processes lose nothing. All
rows of one evaluation go in with one transaction, so a reader sees an evaluation whole or not at
all. A reader opens the file read-only (`readonly=True`): a leaderboard in a folder it may not
write to can still be read.

An evaluation of the same model (`model_hash`), dataset split and checksum, with the same code
(a clean git revision) and library versions as an earlier row is a repeat: `ranking` shows the
first such row only, with the count of its repeats, unless asked for every row.

JSON columns (metrics, stats, versions) hold strict JSON: non-finite floats are stored as null,
so that SQLite's own `json_extract` can read them.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from common.errors import WorkbenchError
from common.files import make_folder

if TYPE_CHECKING:
    from harness.runner import Row

__all__ = [
    "BUSY_TIMEOUT_S",
    "CHECKPOINT_KINDS",
    "SCHEMA_VERSION",
    "Leaderboard",
    "default_path",
    "metric_names",
]

SCHEMA_VERSION = 1  # kept in PRAGMA user_version
BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another one before "database is locked"
CHECKPOINT_KINDS = ("step", "final")  # what the trainer evaluates (schema v1 also admits a legacy 'best')

_SCHEMA = (
    """
    CREATE TABLE evaluations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created TEXT NOT NULL,               -- UTC, ISO 8601
        model TEXT NOT NULL,                 -- retriever name or checkpoint path
        model_hash TEXT,                     -- retriever parameters + model content (the index key)
        family TEXT,
        run_id TEXT,                         -- training run; NULL for evaluate.py runs
        step INTEGER,
        checkpoint_kind TEXT CHECK (checkpoint_kind IS NULL OR checkpoint_kind IN ('step', 'best', 'final')),
        config_hash TEXT,
        dataset TEXT NOT NULL,
        split TEXT NOT NULL,
        dataset_checksum TEXT NOT NULL,
        n_queries INTEGER,
        metrics TEXT NOT NULL,               -- JSON object: metric -> mean value
        stats TEXT NOT NULL,                 -- JSON object: efficiency figures
        per_query_path TEXT NOT NULL,        -- results.json / report directory with per-query values
        git_revision TEXT,
        versions TEXT                        -- JSON object: library -> version
    )
    """,
    "CREATE INDEX evaluations_dataset_split ON evaluations (dataset, split)",
    "CREATE INDEX evaluations_run ON evaluations (run_id)",
)

# the columns record() fills, in order (id is assigned by SQLite)
_COLUMNS = (
    "created",
    "model",
    "model_hash",
    "family",
    "run_id",
    "step",
    "checkpoint_kind",
    "config_hash",
    "dataset",
    "split",
    "dataset_checksum",
    "n_queries",
    "metrics",
    "stats",
    "per_query_path",
    "git_revision",
    "versions",
)
_JSON_COLUMNS = ("metrics", "stats", "versions")
_INSERT = f"INSERT INTO evaluations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def default_path() -> Path:
    """`$WORKBENCH_LEADERBOARD` if set, else `reports/leaderboard.sqlite` in the repository."""
    env = os.environ.get("WORKBENCH_LEADERBOARD")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1] / "reports" / "leaderboard.sqlite"


def _finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (strict JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)


class Leaderboard:
    """A leaderboard database, created with its schema where the file does not exist yet.

    Use as a context manager (or call `close`). A file that is not a SQLite database, a SQLite
    database that is not a leaderboard, or one of another schema version raises WorkbenchError.
    """

    def __init__(self, path: Path | str, timeout_s: float = BUSY_TIMEOUT_S, readonly: bool = False) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        if self.path.is_dir():
            raise WorkbenchError(f"{self.path}: is a directory, not a leaderboard database")
        if readonly and not self.path.is_file():
            raise WorkbenchError(f"{self.path}: no leaderboard database there")
        if not readonly:
            make_folder(self.path.parent)
        try:
            if readonly:
                self._conn = _connect_readonly(self.path, timeout_s)
            else:
                # isolation_level=None: no implicit transactions; record() opens its own
                self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
                raise WorkbenchError(f"{self.path}: not a usable leaderboard database ({exc})") from None
            raise WorkbenchError(f"{self.path}: cannot open the leaderboard ({exc})") from None
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            if readonly:
                self._check_schema()
            else:
                self._open_schema()
                self._switch_to_wal(timeout_s)
        except WorkbenchError:
            self._conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if _is_readonly_error(exc):
                raise WorkbenchError(
                    f"{self.path}: the leaderboard cannot be written here ({exc}); record into another "
                    "with --leaderboard or $WORKBENCH_LEADERBOARD"
                ) from None
            raise WorkbenchError(f"{self.path}: not a usable leaderboard database ({exc})") from None
        self._conn.row_factory = sqlite3.Row

    def _check_schema(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise WorkbenchError(
                f"{self.path}: leaderboard schema version {version}, this code reads version {SCHEMA_VERSION}"
            )

    def _switch_to_wal(self, timeout_s: float) -> None:
        """WAL mode, which the file keeps once set. Switching needs the file to itself and SQLite
        does not wait for that under the busy timeout (two writers opening a new file at once
        see "database is locked" at once), so the switch is retried here until `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _open_schema(self) -> None:
        """Check the schema version; create the schema in a file that has none yet."""
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]  # reads the header
        if version == SCHEMA_VERSION:
            return
        if version != 0:
            raise WorkbenchError(
                f"{self.path}: leaderboard schema version {version}, this code reads version {SCHEMA_VERSION}"
            )
        # a new (or empty) file: create the schema, unless another process just did
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                tables = [
                    r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                if tables:
                    raise WorkbenchError(
                        f"{self.path}: a SQLite database but not a leaderboard (tables {', '.join(tables)})"
                    )
                for statement in _SCHEMA:
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise WorkbenchError(
                    f"{self.path}: leaderboard schema version {version}, "
                    f"this code reads version {SCHEMA_VERSION}"
                )
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ connection

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Leaderboard({str(self.path)!r})"

    # ------------------------------------------------------------------ writing

    def record(
        self,
        rows: Iterable[Row],
        report_dir: Path | str,
        *,
        run_id: str | None = None,
        step: int | None = None,
        checkpoint_kind: str | None = None,
        config_hash: str | None = None,
        git_revision: str | None = None,
        versions: dict[str, str] | None = None,
    ) -> list[int]:
        """Insert the rows of one evaluation in one transaction; returns their ids.

        `report_dir` (the report directory or results.json holding the per-query values) is
        stored as an absolute path. `run_id`, `step` and `checkpoint_kind` ('step' or 'final') name
        a training run's checkpoint; they stay NULL for `evaluate.py` runs. Each row's `model_hash`
        is stored with it.
        A locked database is waited for (busy timeout); any other SQLite error is raised.
        """
        if checkpoint_kind is not None and checkpoint_kind not in CHECKPOINT_KINDS:
            raise WorkbenchError(
                f"checkpoint kind {checkpoint_kind!r}; valid: {', '.join(CHECKPOINT_KINDS)} or None"
            )
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise WorkbenchError(f"step must be an integer or None, not {step!r}")
        created = datetime.now(UTC).isoformat(timespec="seconds")
        per_query_path = str(Path(report_dir).resolve())
        values = [
            (
                created,
                row.retriever,
                row.model_hash,
                row.spec.get("family"),
                run_id,
                step,
                checkpoint_kind,
                config_hash,
                row.dataset,
                row.split,
                row.dataset_checksum,
                row.n_queries,
                _json(row.metrics),
                _json(row.stats),
                per_query_path,
                git_revision,
                _json(versions),
            )
            for row in rows
        ]
        if not values:
            return []
        self._begin_writing()
        try:
            ids = [int(self._conn.execute(_INSERT, value).lastrowid or 0) for value in values]
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        return ids

    def _begin_writing(self) -> None:
        """BEGIN IMMEDIATE: the write lock at once, so a transaction never has to upgrade a read
        lock and fail. Where another process holds it, say so, then wait under the busy timeout."""
        self._conn.execute(f"PRAGMA busy_timeout = {_FIRST_TRY_MS}")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        finally:
            self._conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
        from harness.console import console

        console.log(
            f"waiting for the leaderboard {self.path}: another process is writing to it "
            f"(up to {self.timeout_s:.0f} s)"
        )
        self._conn.execute("BEGIN IMMEDIATE")

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        """The number of rows (dataset split x retriever evaluations) recorded."""
        return int(self._conn.execute("SELECT count(*) FROM evaluations").fetchone()[0])

    def rows(self, dataset: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
        """Every row (optionally of one dataset and split) in insertion order, JSON decoded."""
        query = "SELECT * FROM evaluations WHERE 1 = 1"
        params: list[str] = []
        if dataset is not None:
            query += " AND dataset = ?"
            params.append(dataset)
        if split is not None:
            query += " AND split = ?"
            params.append(split)
        decoded = []
        for record in self._conn.execute(query + " ORDER BY id", params):
            row = dict(record)
            for column in _JSON_COLUMNS:
                if row[column] is not None:
                    row[column] = json.loads(row[column])
            decoded.append(row)
        return decoded

    def ranking(
        self,
        dataset: str | None = None,
        split: str | None = None,
        metric: str = "ndcg@10",
        limit: int | None = None,
        repeats: bool = False,
    ) -> list[dict[str, Any]]:
        """Rows sorted by `metric`, best first (ties: earliest recorded first).

        Rows lacking the metric are left out. Each row has its columns decoded (metrics, stats
        and versions as dicts), `is_best_of_run`: whether it has the highest value of the
        metric among the rows of the same training run, dataset and split (ties are all best;
        always False outside a training run), `repeat_of`: the id of the first row it repeats
        (None for a first), and `repeats`: how many later rows repeat it. Repeats are left out
        unless `repeats`. An empty selection gives []; a metric that no selected row has raises
        WorkbenchError listing the metrics present.
        """
        if limit is not None and limit < 1:
            raise WorkbenchError(f"limit must be positive, not {limit}")
        rows = self.rows(dataset, split)
        scored = [r for r in rows if isinstance(r["metrics"].get(metric), int | float)]
        if rows and not scored:
            present = sorted({m for r in rows for m in r["metrics"]})
            raise WorkbenchError(
                f"{self.path}: no evaluation has metric {metric!r}; metrics present: {', '.join(present)}"
            )
        best: dict[tuple[str, str, str], float] = {}
        for r in scored:
            if r["run_id"] is not None:
                key = (r["run_id"], r["dataset"], r["split"])
                best[key] = max(best.get(key, -math.inf), r["metrics"][metric])
        for r in scored:
            key = (r["run_id"], r["dataset"], r["split"])
            r["is_best_of_run"] = r["run_id"] is not None and r["metrics"][metric] == best[key]
        first: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in scored:  # in id order
            key = _repeat_key(r)
            original = first.setdefault(key, r) if key is not None else r
            r["repeat_of"] = original["id"] if original is not r else None
            r["repeats"] = 0
            if original is not r:
                original["repeats"] += 1
        if not repeats:
            scored = [r for r in scored if r["repeat_of"] is None]
        scored.sort(key=lambda r: (-r["metrics"][metric], r["id"]))
        return scored[:limit] if limit is not None else scored


_FIRST_TRY_MS = 100  # a writer tries this long before saying that it waits


def _connect_readonly(path: Path, timeout_s: float) -> sqlite3.Connection:
    """Read-only; a WAL database in a folder this process cannot write to (no -shm file can be
    made) is read as immutable."""
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout_s, isolation_level=None)
        conn.execute("PRAGMA user_version").fetchone()
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout_s, isolation_level=None)


def _is_readonly_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def _repeat_key(row: dict[str, Any]) -> tuple[Any, ...] | None:
    """What makes two rows the same evaluation; None where the code is not known exactly."""
    revision = row["git_revision"]
    if row["model_hash"] is None or revision is None or revision.endswith("-dirty"):
        return None
    return (
        row["model_hash"],
        row["dataset"],
        row["split"],
        row["dataset_checksum"],
        revision,
        json.dumps(row["versions"], sort_keys=True),
        tuple(sorted(row["metrics"])),
    )


def metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Metric names of `rows`, the most frequent first (ties: first seen first)."""
    counts: dict[str, int] = {}
    for row in rows:
        for name in row["metrics"]:
            counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda name: -counts[name])
