"""The SQLite leaderboard: round trip, best checkpoint of a run, clear errors, concurrent writers."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from common.errors import WorkbenchError
from evaluate import app
from harness.leaderboard import SCHEMA_VERSION, Leaderboard, default_path
from harness.runner import Row

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def make_row(
    retriever: str = "bm25-ko",
    dataset: str = "gimp-ko",
    split: str = "test",
    metrics: dict[str, float] | None = None,
    stats: dict[str, float] | None = None,
    family: str = "bm25",
    model_hash: str | None = None,
) -> Row:
    return Row(
        dataset=dataset,
        split=split,
        dataset_checksum=f"sha256-{dataset}",
        retriever=retriever,
        spec={"name": retriever, "family": family, "description": "test", "languages": [], "params": {}},
        model_hash=model_hash or f"hash-{retriever}",
        n_queries=4,
        metrics={"ndcg@10": 0.5, "mrr@10": 0.4} if metrics is None else metrics,
        per_query={},
        timing={"index_s": 0.1, "search_s": 0.1, "queries_per_s": 40.0},
        stats=stats or {},
        run_file=f"runs/{dataset}.{split}.{retriever}.trec.gz",
    )


def test_default_path_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WORKBENCH_LEADERBOARD", str(tmp_path / "board.sqlite"))
    assert default_path() == tmp_path / "board.sqlite"
    monkeypatch.delenv("WORKBENCH_LEADERBOARD")
    assert default_path() == ROOT / "reports" / "leaderboard.sqlite"


def test_record_and_rank_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "board.sqlite"
    report = tmp_path / "report"
    with Leaderboard(path) as board:
        assert board.ranking() == []
        ids = board.record(
            [
                make_row("bm25-ko", metrics={"ndcg@10": 0.61, "mrr@10": 0.7}, stats={"index_bytes": 1e6}),
                make_row("bm25-plain", metrics={"ndcg@10": 0.42, "mrr@10": 0.5}, stats={"flops": math.inf}),
                make_row("bm25-ko", dataset="gimp-en", metrics={"ndcg@10": 0.8}),
                make_row("splade", split="dev", metrics={"recall@100": 0.9}, family="splade-doc"),
            ],
            report,
            git_revision="abc123",
            versions={"python": "3.11.9", "ranx": "0.3.20"},
        )
        assert len(ids) == 4 and len(set(ids)) == 4 and board.count() == 4
        assert board.record([], report) == []
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

    with Leaderboard(path) as board:  # reopened: the schema is kept, not recreated
        ranked = board.ranking()
        assert [(r["model"], r["dataset"]) for r in ranked] == [
            ("bm25-ko", "gimp-en"),
            ("bm25-ko", "gimp-ko"),
            ("bm25-plain", "gimp-ko"),
        ]  # the dev row has no ndcg@10: left out
        first = ranked[1]
        assert first["metrics"] == {"ndcg@10": 0.61, "mrr@10": 0.7}
        assert first["stats"] == {"index_bytes": 1e6}
        assert first["versions"] == {"python": "3.11.9", "ranx": "0.3.20"}
        assert first["family"] == "bm25" and first["n_queries"] == 4
        assert first["dataset_checksum"] == "sha256-gimp-ko" and first["split"] == "test"
        assert first["per_query_path"] == str(report.resolve()) and first["git_revision"] == "abc123"
        assert first["run_id"] is first["step"] is first["checkpoint_kind"] is None
        assert first["config_hash"] is None and first["model_hash"] == "hash-bm25-ko"
        assert first["is_best_of_run"] is False
        assert datetime.fromisoformat(first["created"]).utcoffset().total_seconds() == 0
        assert ranked[2]["stats"] == {"flops": None}  # strict JSON: infinities become null
        assert [r["model"] for r in board.ranking(dataset="gimp-ko", split="test")] == [
            "bm25-ko",
            "bm25-plain",
        ]
        assert [r["model"] for r in board.ranking(metric="mrr@10", limit=1)] == ["bm25-ko"]
        assert [r["split"] for r in board.ranking(split="dev", metric="recall@100")] == ["dev"]
        assert board.ranking(dataset="nope") == []
    with closing(sqlite3.connect(path)) as conn:  # strict JSON: SQLite's own functions read it
        raw = conn.execute("SELECT json_extract(metrics, '$.\"ndcg@10\"') FROM evaluations").fetchall()
    assert sorted(v for (v,) in raw if v is not None) == [0.42, 0.61, 0.8]


def test_best_checkpoint_of_each_run(tmp_path: Path) -> None:
    def rows(ko: float, en: float | None = None, model_hash: str | None = None) -> list[Row]:
        out = [make_row("ckpt", metrics={"ndcg@10": ko}, family="splade-doc", model_hash=model_hash)]
        if en is not None:
            out.append(make_row("ckpt", dataset="gimp-en", metrics={"ndcg@10": en}, family="splade-doc"))
        return out

    with Leaderboard(tmp_path / "board.sqlite") as board:
        board.record(rows(0.3, 0.9), tmp_path, run_id="run-a", step=100, checkpoint_kind="step")
        board.record(rows(0.5, 0.2), tmp_path, run_id="run-a", step=200, checkpoint_kind="step")
        board.record(rows(0.5), tmp_path, run_id="run-a", step=200, checkpoint_kind="final", config_hash="c1")
        board.record(rows(0.4, model_hash="m1"), tmp_path, run_id="run-b", step=50, checkpoint_kind="final")
        board.record(rows(0.35), tmp_path, run_id="run-b", step=10)
        board.record([make_row("bm25-ko", metrics={"ndcg@10": 0.95})], tmp_path)  # evaluate.py: no run
        for kind in ("latest", "best"):  # 'best' is a copy of a step, never evaluated as such
            with pytest.raises(WorkbenchError, match=f"checkpoint kind '{kind}'"):
                board.record(rows(0.1), tmp_path, run_id="run-a", checkpoint_kind=kind)
        assert board.count() == 8

        marks = {
            (r["run_id"], r["step"], r["checkpoint_kind"], r["dataset"]): r["is_best_of_run"]
            for r in board.ranking()
        }
        assert marks == {
            (None, None, None, "gimp-ko"): False,  # best overall, but of no training run
            ("run-a", 100, "step", "gimp-ko"): False,
            ("run-a", 200, "step", "gimp-ko"): True,  # tied with the final evaluation of the same step
            ("run-a", 200, "final", "gimp-ko"): True,
            ("run-b", 50, "final", "gimp-ko"): True,
            ("run-b", 10, None, "gimp-ko"): False,
            ("run-a", 100, "step", "gimp-en"): True,  # judged per dataset split
            ("run-a", 200, "step", "gimp-en"): False,
        }
        ko = board.ranking(dataset="gimp-ko")
        assert [r["metrics"]["ndcg@10"] for r in ko] == [0.95, 0.5, 0.5, 0.4, 0.35, 0.3]
        assert [r["checkpoint_kind"] for r in ko[1:3]] == ["step", "final"]  # ties: earliest first
        assert ko[2]["config_hash"] == "c1" and ko[3]["model_hash"] == "m1"
        # the mark is computed over the whole run, not only the rows a limit keeps
        assert [r["is_best_of_run"] for r in board.ranking(dataset="gimp-en", limit=1)] == [True]


def test_unknown_metric_lists_the_present_ones(tmp_path: Path) -> None:
    with Leaderboard(tmp_path / "board.sqlite") as board:
        board.record([make_row(metrics={"ndcg@10": 0.5, "mrr@10": 0.4})], tmp_path)
        with pytest.raises(
            WorkbenchError, match=r"no evaluation has metric 'map@5'; metrics present: mrr@10, ndcg@10"
        ):
            board.ranking(metric="map@5")


def test_files_that_are_not_leaderboards_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all\n" * 100)
    with pytest.raises(WorkbenchError, match=r"notes\.sqlite: not a usable leaderboard database"):
        Leaderboard(text)
    assert text.read_text() == "not a database at all\n" * 100  # left untouched

    other = tmp_path / "other.sqlite"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE things (x)")
        conn.commit()
    with pytest.raises(WorkbenchError, match=r"other\.sqlite: a SQLite database but not a leaderboard"):
        Leaderboard(other)

    newer = tmp_path / "newer.sqlite"
    Leaderboard(newer).close()
    with closing(sqlite3.connect(newer)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(
        WorkbenchError, match=rf"newer\.sqlite: leaderboard schema version {SCHEMA_VERSION + 1}"
    ):
        Leaderboard(newer)

    with pytest.raises(WorkbenchError, match="is a directory"):
        Leaderboard(tmp_path)


def test_evaluate_records_and_the_leaderboard_command_ranks(tiny_beir: Path, tmp_path: Path) -> None:
    board = default_path()  # conftest: a private file per test
    assert board.name == "leaderboard.sqlite" and not board.is_relative_to(ROOT)
    result = runner.invoke(app, ["leaderboard"])
    assert result.exit_code == 0 and "no leaderboard at" in result.output

    out = tmp_path / "report"
    result = runner.invoke(app, ["--dataset", str(tiny_beir), "--model", "bm25-plain", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "leaderboard: 1 row recorded in" in result.output
    with Leaderboard(board) as db:
        (row,) = db.ranking()
        assert row["model"] == "bm25-plain" and row["family"] == "bm25"
        assert (row["dataset"], row["split"]) == ("tiny", "test")
        assert row["per_query_path"] == str(out.resolve()) and (out / "results.json").is_file()
        doc = json.loads((out / "results.json").read_text())
        assert row["metrics"] == doc["results"][0]["metrics"] and row["versions"] == doc["versions"]
        assert row["git_revision"] == doc["git_revision"]
        # a training run's checkpoints on the same split, recorded beside it
        for step, value in ((1, 0.1), (2, 0.2)):
            metrics = {"ndcg@10": value, "mrr@10": value, "recall@100": value}
            rows = [make_row("/ckpt/run-a/step", dataset="tiny", metrics=metrics, family="splade-doc")]
            db.record(rows, tmp_path, run_id="run-a", step=step, checkpoint_kind="step")

    result = runner.invoke(app, ["leaderboard", "--metric", "mrr@10"], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    body = [line for line in lines if "tiny" in line]
    assert len(body) == 3 and "bm25-plain" in body[0]
    assert "★" in body[1] and "run-a/2" in body[1] and "★" not in body[2] and "run-a/1" in body[2]
    header = next(line for line in lines if "rank" in line)
    assert all(m in header for m in ("mrr@10", "ndcg@10", "recall@100", "created (UTC)"))
    result = runner.invoke(app, ["leaderboard", "--dataset", "tiny", "--split", "test", "--limit", "1"])
    assert result.exit_code == 0 and result.output.count("tiny") == 1
    result = runner.invoke(app, ["leaderboard", "--dataset", "elsewhere"])
    assert result.exit_code == 0 and "holds no evaluations of dataset elsewhere" in result.output

    result = runner.invoke(app, ["leaderboard", "--metric", "map@5"])
    assert result.exit_code == 2 and "metrics present:" in " ".join(result.output.split())

    # --leaderboard puts an evaluation elsewhere; an empty database is a message, not an error
    other = tmp_path / "other.sqlite"
    args = ["--dataset", str(tiny_beir), "--model", "bm25-plain", "--output", str(tmp_path / "r2")]
    result = runner.invoke(app, [*args, "--leaderboard", str(other)])
    assert result.exit_code == 0, result.output
    with Leaderboard(other) as db:
        assert db.count() == 1
    empty = tmp_path / "empty.sqlite"
    Leaderboard(empty).close()
    result = runner.invoke(app, ["leaderboard", "--db", str(empty)])
    assert result.exit_code == 0 and "holds no evaluations" in result.output

    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\x00garbage" * 200)
    result = runner.invoke(app, ["leaderboard", "--db", str(junk)])
    assert result.exit_code == 2 and "not a usable leaderboard database" in " ".join(result.output.split())
    result = runner.invoke(app, [*args[:-1], str(tmp_path / "r3"), "--leaderboard", str(junk)])
    assert result.exit_code == 2 and "not a usable leaderboard database" in " ".join(result.output.split())
    assert not (tmp_path / "r3").exists()  # found before evaluating, not after


WRITER = textwrap.dedent(
    """
    import sys
    from harness.leaderboard import Leaderboard
    from harness.runner import Row

    path, name = sys.argv[1], sys.argv[2]
    rows = [
        Row(dataset=f"d{i}", split="test", dataset_checksum="c", retriever=name, spec={"family": "x"},
            model_hash="h", n_queries=1, metrics={"ndcg@10": i / 10}, per_query={}, timing={}, stats={},
            run_file="")
        for i in range(3)
    ]
    print("ready", flush=True)
    sys.stdin.readline()  # both writers start together
    with Leaderboard(path) as board:  # the first one creates the database, the other waits
        for step in range(50):
            assert len(board.record(rows, path, run_id=name, step=step)) == 3
    print("done", flush=True)
    """
)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "board.sqlite"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("writer-a", "writer-b")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0 and stdout.strip() == "done", stderr
        assert "Error" not in stderr, stderr
    with Leaderboard(path) as board:
        assert board.count() == 300
        rows: list[dict[str, Any]] = board.rows()
    assert len({r["id"] for r in rows}) == 300
    for name in ("writer-a", "writer-b"):
        mine = [r for r in rows if r["run_id"] == name]
        assert sorted((r["step"], r["dataset"]) for r in mine) == [
            (step, f"d{i}") for step in range(50) for i in range(3)
        ]
    # each evaluation's three rows went in with one transaction: consecutive ids
    by_eval: dict[tuple[str, int], list[int]] = {}
    for r in rows:
        by_eval.setdefault((r["run_id"], r["step"]), []).append(r["id"])
    assert all(ids == list(range(ids[0], ids[0] + 3)) for ids in by_eval.values())


def test_repeats_are_marked_and_hidden_by_default(tmp_path: Path) -> None:
    path, report = tmp_path / "board.sqlite", tmp_path / "r"
    same = {"git_revision": "abc123", "versions": {"ranx": "0.3.20"}}
    with Leaderboard(path) as board:
        first = board.record([make_row(metrics={"ndcg@10": 0.5})], report, **same)[0]
        board.record([make_row(metrics={"ndcg@10": 0.5})], report, **same)  # the same again
        board.record([make_row(metrics={"ndcg@10": 0.5})], report, **same, run_id="r", step=3)  # and again
        other_code = board.record([make_row()], report, git_revision="def456", versions=same["versions"])[0]
        dirty = {"git_revision": "abc123-dirty", "versions": same["versions"]}
        dirty_ids = [board.record([make_row()], report, **dirty)[0] for _ in range(2)]
        shown = board.ranking()
        assert sorted(r["id"] for r in shown) == sorted([first, other_code, *dirty_ids])
        assert next(r for r in shown if r["id"] == first)["repeats"] == 2
        every = board.ranking(repeats=True)
        assert len(every) == 6
        assert [r["repeat_of"] for r in every if r["repeat_of"]] == [first, first]
    result = runner.invoke(app, ["leaderboard", "--db", str(path)], terminal_width=200)
    assert result.exit_code == 0 and result.output.count("gimp-ko") == 4 and "×2" in result.output
    result = runner.invoke(app, ["leaderboard", "--db", str(path), "--repeats"], terminal_width=200)
    assert result.output.count("gimp-ko") == 6 and result.output.count(f"repeat of #{first}") == 2


def test_reading_opens_read_only_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "board.sqlite"
    with Leaderboard(path) as board:
        board.record([make_row()], tmp_path)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with Leaderboard(path, readonly=True) as board:
        assert [r["model"] for r in board.ranking()] == ["bm25-ko"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            board.record([make_row()], tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name in before}
    assert after == before
    with pytest.raises(WorkbenchError, match="no leaderboard database there"):
        Leaderboard(tmp_path / "absent.sqlite", readonly=True)
    assert not (tmp_path / "absent.sqlite").exists()


def test_a_locked_leaderboard_says_that_it_waits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "board.sqlite"
    Leaderboard(path).close()
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with Leaderboard(path, timeout_s=0.3) as board:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                board.record([make_row()], tmp_path)
            assert "waiting for the leaderboard" in " ".join(capsys.readouterr().err.split())
            other.execute("COMMIT")
            assert len(board.record([make_row()], tmp_path)) == 1
            assert "waiting" not in capsys.readouterr().err


def test_a_report_is_recorded_afterwards_where_recording_failed(
    tiny_beir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, board = tmp_path / "report", tmp_path / "board.sqlite"
    args = ["--dataset", str(tiny_beir), "--model", "bm25-plain", "--output", str(out)]

    def locked(*args: object, **kwargs: object) -> None:  # another writer held it past the timeout
        raise sqlite3.OperationalError("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(Leaderboard, "record", locked)
        result = runner.invoke(app, [*args, "--leaderboard", str(board)])
    assert result.exit_code == 2
    assert f"python evaluate.py record {out}" in " ".join(result.output.split())
    result = runner.invoke(app, ["record", str(out), "--leaderboard", str(board)])
    assert result.exit_code == 0, result.output
    assert "1 row of" in result.output
    doc = json.loads((out / "results.json").read_text())
    with Leaderboard(board) as db:
        (row,) = db.rows()
        assert (
            row["metrics"] == doc["results"][0]["metrics"]
            and row["model_hash"] == doc["results"][0]["model_hash"]
        )
        assert row["per_query_path"] == str(out.resolve()) and row["git_revision"] == doc["git_revision"]
    again = runner.invoke(app, ["record", str(out), "--leaderboard", str(board)])
    assert again.exit_code == 2 and "already recorded" in again.output
    missing = runner.invoke(app, ["record", str(tmp_path / "nothing"), "--leaderboard", str(board)])
    assert missing.exit_code == 2 and "results.json: not found" in " ".join(missing.output.split())
    with Leaderboard(board) as db:
        assert db.count() == 1
