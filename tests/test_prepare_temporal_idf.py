"""The temporal-idf step: decay weights and idf by hand, trends by hand, the changelog reader, errors."""

from __future__ import annotations

import gzip
import json
import math
from datetime import date
from pathlib import Path

import pytest
import typer
from conftest import build_tiny_tokenizer
from typer.testing import CliRunner

from common.errors import WorkbenchError
from common.files import read_jsonl
from harness.prepare.temporal_idf import (
    build_changelog_corpus,
    build_temporal_idf,
    decay_weight,
    parse_date,
    register,
)

# ages 0, 30, 60, 90 days before 2024-01-31; a half-life of 30 days gives weights 1, 1/2, 1/4, 1/8
DOCS = [
    ("d1", "search model", "2024-01-31"),
    ("d2", "search image", "2024-01-01T23:59:00+09:00"),  # a datetime: its date as written
    ("d3", "image layer", "2023-12-02"),
    ("d4", "layer mask", "2023-11-02"),
]


def write_docs(path: Path, docs: list[tuple[str, str, str]] = DOCS) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t, "date": d}) + "\n" for i, t, d in docs))
    return path


@pytest.fixture
def tokenizer_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tok"
    build_tiny_tokenizer().save_pretrained(folder)
    return folder


def idf(n: float, df: float) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def test_decay_weights() -> None:
    assert decay_weight(0, 30) == 1.0 and decay_weight(30, 30) == 0.5 and decay_weight(90, 30) == 0.125
    assert decay_weight(45, 30) == pytest.approx(2**-1.5)
    assert parse_date("2024-02-29") == date(2024, 2, 29) and parse_date("2024-02-30") is None
    assert parse_date("2024-01-01T23:59:00+09:00") == date(2024, 1, 1) and parse_date(20240101) is None


def test_decayed_idf_and_trends_by_hand(tmp_path: Path, tokenizer_dir: Path) -> None:
    corpus = write_docs(tmp_path / "docs.jsonl")
    out = tmp_path / "idf"
    manifest = build_temporal_idf(
        corpus, out, tokenizer_dir, half_life_days=30, recent_days=31, min_count=1, z_threshold=1.5
    )
    weights = json.loads((out / "idf.json").read_text())
    n = 1 + 0.5 + 0.25 + 0.125
    expected = {  # df = the weights of the documents holding the token
        "search": idf(n, 1.5),
        "model": idf(n, 1.0),
        "image": idf(n, 0.75),
        "layer": idf(n, 0.375),
        "mask": idf(n, 0.125),
        "crop": idf(n, 0.0),
    }
    assert {k: weights[k] for k in expected} == pytest.approx(expected, rel=1e-6)
    assert "[CLS]" not in weights
    # recent: d1, d2 (age < 31); "search" 2 of 2 recent, 0 of 2 earlier: pooled 1/2,
    # se = sqrt(1/4 * (1/2 + 1/2)) = 1/2, z = (1 - 0) / (1/2) = 2; "model" z = 0.5 / sqrt(3/16) < 1.5
    trends = json.loads((out / "trends.json").read_text())
    assert trends["recent_documents"] == 2 and trends["earlier_documents"] == 2
    assert [(t["token"], t["recent_df"], t["earlier_df"]) for t in trends["trends"]] == [("search", 2, 0)]
    assert trends["trends"][0]["z"] == pytest.approx(2.0)
    assert trends["trends"][0]["p"] == pytest.approx(0.5 * math.erfc(2 / math.sqrt(2)))
    assert manifest["reference_date"] == "2024-01-31" and manifest["oldest_date"] == "2023-11-02"
    assert manifest["weighted_documents"] == n
    assert manifest["counts"] == {
        "documents": 4,
        "recent documents": 2,
        "earlier documents": 2,
        "trending tokens": 1,
    }
    # a lower threshold lets "model" in; min_count 2 keeps it out again; the boost multiplies idf
    build_temporal_idf(
        corpus, out, tokenizer_dir, 30, None, 31, min_count=1, z_threshold=1.0, trend_boost=2.0
    )
    assert [t["token"] for t in json.loads((out / "trends.json").read_text())["trends"]] == [
        "search",
        "model",
    ]
    boosted = json.loads((out / "idf.json").read_text())
    assert boosted["search"] == pytest.approx(2 * idf(n, 1.5), rel=1e-6)
    assert boosted["model"] == pytest.approx(2 * idf(n, 1.0), rel=1e-6)
    assert boosted["image"] == pytest.approx(idf(n, 0.75), rel=1e-6)
    build_temporal_idf(corpus, out, tokenizer_dir, 30, None, 31, min_count=2, z_threshold=1.0)
    assert [t["token"] for t in json.loads((out / "trends.json").read_text())["trends"]] == ["search"]


def test_reference_date_option_and_later_documents(tmp_path: Path, tokenizer_dir: Path) -> None:
    corpus = write_docs(tmp_path / "docs.jsonl")
    # 2024-03-01 is 30 days after 2024-01-31 (a leap February): every weight halves
    manifest = build_temporal_idf(corpus, tmp_path / "a", tokenizer_dir, 30, reference=date(2024, 3, 1))
    assert manifest["weighted_documents"] == (1 + 0.5 + 0.25 + 0.125) / 2
    manifest = build_temporal_idf(corpus, tmp_path / "b", tokenizer_dir, 30, reference=date(2024, 1, 1))
    assert manifest["problems"] == {
        "after the reference date": {"count": 1, "examples": [f"{corpus}: line 1: 2024-01-31"]}
    }
    assert manifest["weighted_documents"] == 1 + 0.5 + 0.25


def test_rerun_is_a_no_op(tmp_path: Path, tokenizer_dir: Path) -> None:
    corpus = write_docs(tmp_path / "docs.jsonl")
    first = build_temporal_idf(corpus, tmp_path / "o", tokenizer_dir, 30)
    stamp = (tmp_path / "o" / "idf.json").stat().st_mtime_ns
    assert build_temporal_idf(corpus, tmp_path / "o", tokenizer_dir, 30) == first
    assert (tmp_path / "o" / "idf.json").stat().st_mtime_ns == stamp
    assert build_temporal_idf(corpus, tmp_path / "o", tokenizer_dir, 60)["params"]["half_life_days"] == 60


def test_bad_input_names_the_line(tmp_path: Path, tokenizer_dir: Path) -> None:
    bad_date = write_docs(tmp_path / "d.jsonl", [*DOCS[:2], ("d3", "image", "2023-13-02")])
    with pytest.raises(WorkbenchError, match=r"d.jsonl:3: date '2023-13-02' is not an ISO 8601 date"):
        build_temporal_idf(bad_date, tmp_path / "o", tokenizer_dir)
    bad_json = tmp_path / "j.jsonl"
    bad_json.write_text(json.dumps({"id": "1", "text": "a", "date": "2024-01-01"}) + "\n{oops\n")
    with pytest.raises(WorkbenchError, match=r"j.jsonl:2: malformed JSON"):
        build_temporal_idf(bad_json, tmp_path / "o", tokenizer_dir)
    no_text = write_docs(tmp_path / "t.jsonl", [])
    no_text.write_text(json.dumps({"id": "1", "date": "2024-01-01"}) + "\n")
    with pytest.raises(WorkbenchError, match=r"t.jsonl:1: 'text' missing"):
        build_temporal_idf(no_text, tmp_path / "o", tokenizer_dir)
    with pytest.raises(WorkbenchError, match="no tokenizer.json"):
        build_temporal_idf(write_docs(tmp_path / "ok.jsonl"), tmp_path / "o", tmp_path)
    assert not (tmp_path / "o").exists()


CHANGELOG = """\
hello (2.0-1) unstable; urgency=medium

  * New upstream release.
  * Fix the  build.

 -- Jane Doe <jane@example.org>  Thu, 01 Feb 2024 23:30:00 -0200

hello (1.0-1) unstable; urgency=low

  * Broken date below.

 -- Jane Doe <jane@example.org>  Someday soon

hello (0.9-1) unstable; urgency=low

  * Initial release.

 -- Jane Doe <jane@example.org>  Mon, 01 Jan 2024 10:00:00 +0100
"""


def test_changelog_corpus(tmp_path: Path, tokenizer_dir: Path) -> None:
    path = tmp_path / "changelog.Debian.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(CHANGELOG)
    manifest = build_changelog_corpus([path, path], tmp_path / "c")
    records = [obj for _, obj in read_jsonl(tmp_path / "c" / "documents.jsonl")]
    assert records == [
        # 23:30 at -02:00 is 01:30 UTC the next day
        {"id": "hello/2.0-1#1", "text": "* New upstream release. * Fix the build.", "date": "2024-02-02"},
        {"id": "hello/0.9-1#3", "text": "* Initial release.", "date": "2024-01-01"},
    ]
    assert manifest["counts"] == {"entries": 2, "files": 1}
    assert manifest["problems"]["undated changelog entry"]["examples"] == [
        f"{path.resolve()}: line 12: Someday soon"
    ]
    cut = tmp_path / "cut.gz"
    with gzip.open(cut, "wt", encoding="utf-8") as f:
        f.write(CHANGELOG.split("\n\n -- Jane Doe <jane@example.org>  Someday")[0] + "\n")
    manifest = build_changelog_corpus([cut], tmp_path / "c2")
    assert manifest["counts"] == {"entries": 1, "files": 1}
    assert manifest["problems"]["changelog entry without trailer"]["examples"] == [
        f"{cut}: line 10: end of file"
    ]
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["temporal-idf", str(tmp_path / "c" / "documents.jsonl"), "--out", str(tmp_path / "t"),
         "--tokenizer", str(tokenizer_dir), "--reference", "2024-02-30"],
    )  # fmt: skip
    assert result.exit_code == 2 and "--reference '2024-02-30' is not an ISO 8601 date" in result.output
    args = ["temporal-idf", str(tmp_path / "c" / "documents.jsonl"), "--out", str(tmp_path / "t")]
    result = runner.invoke(app, [*args, "--tokenizer", str(tokenizer_dir), "--half-life-days", "31"])
    assert result.exit_code == 0, result.output
    weights = json.loads((tmp_path / "t" / "idf.json").read_text())
    n = 1 + 2 ** (-32 / 31)  # the other entry is 32 days older than the newest
    assert weights["the"] == pytest.approx(idf(n, 1.0), rel=1e-6)  # only the newest entry says "the"
