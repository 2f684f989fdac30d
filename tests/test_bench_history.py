"""The benchmark history: records appended, changes against the same figure on the same machine."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from history import (
    Change,
    Figure,
    HistoryWarning,
    changes_table,
    figures_from,
    history_path,
    machine_id,
    record,
    record_and_print,
)

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_records_are_appended_with_all_fields(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    figures = [
        Figure("sparse_search.1000x10.ours_p50_ms", 1.5, "ms", "lower"),
        Figure("bm25_throughput.synthetic.100x10.index_docs_per_s", 2000.0, "docs/s", "higher"),
    ]
    record(figures, path, machine="box | cpu | 4 cores", revision="abc123", time=WHEN)
    record(figures[:1], path, machine="box | cpu | 4 cores", revision="def456", time=WHEN)
    assert _lines(path) == [
        {"figure": "sparse_search.1000x10.ours_p50_ms", "value": 1.5, "unit": "ms", "better": "lower",
         "git_revision": "abc123", "machine": "box | cpu | 4 cores", "time": "2024-05-01T12:30:00+00:00"},
        {"figure": "bm25_throughput.synthetic.100x10.index_docs_per_s", "value": 2000.0, "unit": "docs/s",
         "better": "higher", "git_revision": "abc123", "machine": "box | cpu | 4 cores",
         "time": "2024-05-01T12:30:00+00:00"},
        {"figure": "sparse_search.1000x10.ours_p50_ms", "value": 1.5, "unit": "ms", "better": "lower",
         "git_revision": "def456", "machine": "box | cpu | 4 cores", "time": "2024-05-01T12:30:00+00:00"},
    ]  # fmt: skip


def test_defaults_fill_machine_revision_and_time(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    record([Figure("a.b", 1.0, "ms", "lower")], path)
    (item,) = _lines(path)
    assert item["machine"] == machine_id()
    assert str(__import__("os").cpu_count()) in item["machine"]
    assert "git_revision" in item  # a string inside a checkout, None outside
    assert datetime.fromisoformat(item["time"]).utcoffset().total_seconds() == 0


def test_change_is_against_the_same_figure_on_the_same_machine(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    record([Figure("x.latency_ms", 10.0, "ms", "lower")], path, machine="here")
    record([Figure("x.latency_ms", 20.0, "ms", "lower")], path, machine="here")  # the last one counts
    record([Figure("x.latency_ms", 1.0, "ms", "lower")], path, machine="elsewhere")
    record([Figure("x.other_ms", 1000.0, "ms", "lower")], path, machine="here")
    (change,) = record([Figure("x.latency_ms", 25.0, "ms", "lower")], path, machine="here")
    assert change.previous == 20.0
    assert change.change == pytest.approx(0.25)
    assert change.status == "worse"
    (other,) = record([Figure("x.latency_ms", 1.05, "ms", "lower")], path, machine="elsewhere")
    assert other.previous == 1.0
    assert other.change == pytest.approx(0.05)
    assert other.status == "same"


def test_first_run_is_new(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    (change,) = record([Figure("x.q_per_s", 5.0, "q/s", "higher")], path, machine="here")
    assert change.previous is None
    assert change.change is None
    assert change.status == "new"
    assert not change.worse
    console = Console(record=True, width=200)
    console.print(changes_table([change]))
    text = console.export_text()
    assert "x.q_per_s" in text
    assert "new" in text
    assert "0 of 1 worse" in text


@pytest.mark.parametrize(
    ("better", "previous", "now", "status"),
    [
        ("lower", 10.0, 11.5, "worse"),  # +15% latency
        ("lower", 10.0, 8.5, "better"),  # -15% latency
        ("lower", 10.0, 10.9, "same"),  # +9%: within the 10% threshold
        ("higher", 100.0, 85.0, "worse"),  # -15% throughput
        ("higher", 100.0, 115.0, "better"),  # +15% throughput
        ("higher", 100.0, 91.0, "same"),  # -9%
        ("higher", 0.0, 3.0, "better"),  # from 0
        ("lower", 0.0, 3.0, "worse"),
    ],
)
def test_which_way_is_worse(better: str, previous: float, now: float, status: str) -> None:
    change = Change(Figure("f", now, "u", better), previous)  # type: ignore[arg-type]
    assert change.status == status
    assert change.worse == (status == "worse")


def test_threshold_is_the_callers(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    record([Figure("f", 100.0, "q/s", "higher")], path, machine="m")
    (change,) = record([Figure("f", 96.0, "q/s", "higher")], path, machine="m", threshold=0.03)
    assert change.status == "worse"


def test_worse_rows_are_red(tmp_path: Path) -> None:
    changes = [
        Change(Figure("slow.p50_ms", 12.0, "ms", "lower"), 10.0),
        Change(Figure("fast.q_per_s", 120.0, "q/s", "higher"), 100.0),
    ]
    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    console.print(changes_table(changes))
    html = console.export_html(inline_styles=True)
    (slow,) = [line for line in html.splitlines() if "slow.p50_ms" in line]
    (fast,) = [line for line in html.splitlines() if "fast.q_per_s" in line]
    assert "color: #800000" in slow  # red: 20% slower
    assert "color: #800000" not in fast  # 20% more throughput is better, not red
    text = Console(record=True, width=200)
    text.print(changes_table(changes))
    out = text.export_text()
    assert "+20.0" in out
    assert "1 of 2 worse by more than 10%" in out


def test_a_malformed_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    good = {"figure": "f", "value": 10.0, "unit": "ms", "better": "lower", "machine": "m"}
    path.write_text(
        json.dumps(good) + "\n" + '{"figure": "f", "value": \n' + json.dumps({"figure": "f"}) + "\n"
    )
    with pytest.warns(HistoryWarning) as caught:
        (change,) = record([Figure("f", 12.0, "ms", "lower")], path, machine="m")
    messages = [str(w.message) for w in caught]
    assert any(m.startswith(f"{path}:2:") for m in messages)
    assert any(m.startswith(f"{path}:3:") for m in messages)
    assert change.previous == 10.0
    assert json.loads(path.read_text().splitlines()[-1])["value"] == 12.0


def test_a_cut_off_last_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"figure": "f", "val')  # no newline: an earlier run killed mid-write
    with pytest.warns(HistoryWarning, match=r":1: not JSON"):
        record([Figure("f", 1.0, "ms", "lower")], path, machine="m")
    lines = path.read_text().splitlines()
    assert lines[0] == '{"figure": "f", "val'
    assert json.loads(lines[1])["value"] == 1.0


def test_non_finite_values_are_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    with pytest.warns(HistoryWarning, match="not a finite number"):
        changes = record([Figure("f", float("nan"), "ms"), Figure("g", 2.0, "ms")], path, machine="m")
    assert [c.figure.name for c in changes] == ["g"]
    assert [item["figure"] for item in _lines(path)] == ["g"]


def test_figures_from_skips_missing_and_non_numeric_keys() -> None:
    result = {"ours_p50_ms": 1.25, "encode_tokens_per_s": 900, "same": "3/3", "flag": True}
    spec = {
        "ours_p50_ms": ("ms", "lower"),
        "encode_tokens_per_s": ("tokens/s", "higher"),
        "same": ("", "higher"),
        "flag": ("", "higher"),
        "peak_rss_mb": ("MB", "lower"),
    }
    assert figures_from("s.1x2", result, spec) == [
        Figure("s.1x2.ours_p50_ms", 1.25, "ms", "lower"),
        Figure("s.1x2.encode_tokens_per_s", 900.0, "tokens/s", "higher"),
    ]
    assert figures_from("s", None, spec) == []


def test_env_names_the_history_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "elsewhere" / "h.jsonl"
    monkeypatch.setenv("WORKBENCH_BENCH_HISTORY", str(target))
    assert history_path() == target
    console = Console(record=True, width=200)
    changes = record_and_print([Figure("f", 3.0, "q/s", "higher")], console)
    assert [c.status for c in changes] == ["new"]
    assert _lines(target)[0]["value"] == 3.0
    assert "new" in console.export_text()
    assert record_and_print([Figure("f", 3.0, "q/s")], console, enabled=False) == []
    assert len(_lines(target)) == 1


def test_better_must_be_lower_or_higher() -> None:
    with pytest.raises(ValueError, match="better must be"):
        Figure("f", 1.0, "ms", "faster")  # type: ignore[arg-type]
