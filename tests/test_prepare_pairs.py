"""The pairs step: kinds of pair, stable ids, split by article, sampling, re-runs and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from common.errors import WorkbenchError
from common.files import read_jsonl, read_qrels
from harness.prepare.pairs import (
    PairOptions,
    article_pairs,
    article_split,
    build_pairs,
    build_pairs_preset,
    register,
    split_sentences,
)

P1 = "서울은 대한민국의 수도이다. 한강이 도시를 가로지른다."
P2 = "조선 시대에는 한양이라고 불렸다. 인구는 약 천만 명이다! 정말 그런가?"
P3 = "짧다."


def article(
    aid: str, title: str, paragraphs: list[str], sections: list[tuple[str, str]] = ()
) -> dict[str, Any]:
    return {
        "id": aid,
        "title": title,
        "language": "ko",
        "source": "wikipedia",
        "timestamp": "2024-01-01T00:00:00Z",
        "text": "\n\n".join(paragraphs),
        "first_paragraph": paragraphs[0],
        "sections": [{"title": "", "level": 0, "text": paragraphs[0]}]
        + [{"title": t, "level": 2, "text": x} for t, x in sections],
    }


def write_articles(path: Path, articles: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles), encoding="utf-8")
    return path


def test_korean_sentences_split_on_endings_not_on_initials_or_decimals() -> None:
    assert split_sentences(P2) == [
        "조선 시대에는 한양이라고 불렸다.",
        "인구는 약 천만 명이다!",
        "정말 그런가?",
    ]
    assert split_sentences('그는 "좋다." 라고 했다. 값은 3.5이다') == [
        '그는 "좋다."',
        "라고 했다.",
        "값은 3.5이다",
    ]
    assert split_sentences("J. R. R. Tolkien wrote it. Then he slept.") == [
        "J. R. R. Tolkien wrote it.",
        "Then he slept.",
    ]
    assert split_sentences("끝。다음？") == ["끝。다음？"]  # full-width ends need white space after them too
    assert split_sentences("끝。 다음？") == ["끝。", "다음？"]


def test_each_kind_of_pair_by_hand() -> None:
    art = article("7", "서울", [P1, P2, P3], [("역사", P2), ("짧은 절", "너무 짧다")])
    pairs = article_pairs(art, PairOptions(seed=0, min_doc_chars=10))
    got = [(p.kind, p.index, p.query, p.title, p.text) for p in pairs]
    # the ict sentence is drawn per (seed, article, paragraph): recompute the draw here
    import random

    first_draw = random.Random("0:7:0").randrange(2)
    second_draw = random.Random("0:7:1").randrange(3)
    s1, s2 = split_sentences(P1), split_sentences(P2)
    assert got == [
        ("title-summary", 0, "서울", "", P1),
        ("title-paragraph", 0, "서울", "", P2),  # P3 is shorter than min_doc_chars
        ("section", 0, "서울 역사", "", P2),  # "짧은 절" too short; the lead is not a section pair
        ("ict", 0, s1[first_draw], "서울", s1[1 - first_draw]),
        ("ict", 1, s2[second_draw], "서울", " ".join(s for i, s in enumerate(s2) if i != second_draw)),
    ]
    only = article_pairs(art, PairOptions(kinds=("section",), section_prefix=False, min_doc_chars=10))
    assert [(p.query, p.text) for p in only] == [("역사", P2)]
    capped = article_pairs(art, PairOptions(kinds=("ict",), max_ict=1, min_doc_chars=10))
    assert len(capped) == 1


def test_folder_dedups_documents_and_queries_and_splits_by_article(tmp_path: Path) -> None:
    arts = [
        article(f"a {i}", f"제목{i}", [P1 if i % 2 else P2, f"문단 {i}: 이 문단은 충분히 길다. 정말로 길다."])
        for i in range(40)
    ]
    src = write_articles(tmp_path / "ko.jsonl", arts)
    options = PairOptions(kinds=("title-summary", "title-paragraph"), dev=0.2, test=0.2, seed=3)
    manifest = build_pairs([src], tmp_path / "out", options)
    out = tmp_path / "out"
    corpus = {o["_id"]: o for _, o in read_jsonl(out / "corpus.jsonl")}
    queries = {o["_id"]: o["text"] for _, o in read_jsonl(out / "queries.jsonl")}
    # P1 and P2 are each one document (first ids "a%201/..." and "a%200/..."), plus 40 paragraphs
    assert len(corpus) == 42 and corpus["a%200/title-summary/0"]["text"] == P2
    assert corpus["a%201/title-summary/0"]["text"] == P1 and "a%202/title-summary/0" not in corpus
    assert corpus["a%205/title-paragraph/0"] == {
        "_id": "a%205/title-paragraph/0",
        "title": "",
        "text": arts[5]["text"].split("\n\n")[1],
    }
    # one title query per article, judging its summary and its paragraph
    assert len(queries) == 40 and queries["a%2012/title-summary/0"] == "제목12"
    rows = {split: read_qrels(out / "qrels" / f"{split}.tsv") for split in ("train", "dev", "test")}
    assert sum(map(len, rows.values())) == 80
    for split, judged in rows.items():
        for _, qid, _, rel in judged:
            aid = qid.split("/")[0].replace("%20", " ")
            assert article_split(aid, 3, 0.2, 0.2) == split and rel == 1
    by_split = {s: {q.split("/")[0] for _, q, _, _ in r} for s, r in rows.items()}
    expected = {
        s: {f"a%20{i}" for i in range(40) if article_split(f"a {i}", 3, 0.2, 0.2) == s} for s in by_split
    }
    assert by_split == expected and all(by_split.values())
    assert manifest["counts"]["articles"] == 40
    assert (
        manifest["counts"]["pairs title-summary"] == 40 and manifest["counts"]["pairs title-paragraph"] == 40
    )
    assert sum(manifest["counts"][f"qrels {s}"] for s in ("train", "dev", "test")) == 80


def test_article_split_is_a_seeded_hash_of_the_id() -> None:
    splits = [article_split(str(i), 0, 0.1, 0.1) for i in range(2000)]
    assert 0.75 < splits.count("train") / 2000 < 0.85 and splits.count("dev") > 150
    assert splits == [article_split(str(i), 0, 0.1, 0.1) for i in range(2000)]
    assert splits != [article_split(str(i), 1, 0.1, 0.1) for i in range(2000)]
    assert {article_split(str(i), 0, 0.0, 0.0) for i in range(100)} == {"train"}


def test_sampling_is_seeded_and_per_input(tmp_path: Path) -> None:
    arts = [
        article(str(i), f"제목{i}", [f"요약 {i} 은 충분히 긴 문단이다. 정말로 그렇다."]) for i in range(50)
    ]
    a = write_articles(tmp_path / "a.jsonl", arts)
    b = write_articles(tmp_path / "b.jsonl", [dict(x, id=f"b{x['id']}") for x in arts])
    options = PairOptions(kinds=("title-summary",))
    build_pairs([a, b], tmp_path / "s1", options, sample=7)
    build_pairs([a, b], tmp_path / "s2", options, sample=7)
    build_pairs([a, b], tmp_path / "s3", PairOptions(kinds=("title-summary",), seed=1), sample=7)
    ids = [[o["_id"] for _, o in read_jsonl(tmp_path / s / "queries.jsonl")] for s in ("s1", "s2", "s3")]
    assert ids[0] == ids[1] != ids[2]
    assert len(ids[0]) == 14 and sum(i.startswith("b") for i in ids[0]) == 7
    # the reservoir keeps stream order
    numbers = [int(i.split("/")[0].lstrip("b")) for i in ids[0] if not i.startswith("b")]
    assert numbers == sorted(numbers)


def test_rerun_is_a_no_op_and_a_change_rebuilds(tmp_path: Path) -> None:
    src = write_articles(tmp_path / "ko.jsonl", [article("1", "서울", [P1, P2])])
    first = build_pairs([src], tmp_path / "out")
    mtime = (tmp_path / "out" / "corpus.jsonl").stat().st_mtime_ns
    again = build_pairs([src], tmp_path / "out")
    assert again == first and (tmp_path / "out" / "corpus.jsonl").stat().st_mtime_ns == mtime
    changed = build_pairs([src], tmp_path / "out", PairOptions(kinds=("ict",), min_doc_chars=5))
    assert changed["params"]["kinds"] == ["ict"] and "pairs title-summary" not in changed["counts"]


def test_bad_input(tmp_path: Path) -> None:
    good = json.dumps(article("1", "서울", [P1, P2]), ensure_ascii=False)
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(WorkbenchError, match=r"bad.jsonl:2: malformed JSON"):
        build_pairs([bad_json], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    skipped = tmp_path / "skipped.jsonl"
    no_title = {"id": "2", "text": P1}
    skipped.write_text("\n".join([good, json.dumps(no_title), good]) + "\n", encoding="utf-8")
    manifest = build_pairs([skipped], tmp_path / "out2")
    assert manifest["problems"] == {
        "bad article": {"count": 1, "examples": [f"{skipped}: line 2: 'title' missing or not a string"]},
        "duplicate article id": {"count": 1, "examples": [f"{skipped}: line 3: '1'"]},
    }
    assert manifest["counts"]["articles"] == 1
    with pytest.raises(WorkbenchError, match="unknown kind 'summary'"):
        PairOptions(kinds=("summary",))


def test_preset_writes_the_folders_the_configs_name(tmp_path: Path) -> None:
    from common.config import load_yaml_model
    from models.config import TrainingConfig

    ko = write_articles(
        tmp_path / "ko.jsonl", [article(str(i), f"위키{i}", [P1 + f" {i}", P2]) for i in range(3)]
    )
    namu = write_articles(
        tmp_path / "namu.jsonl", [article(f"n{i}", f"나무{i}", [P2 + f" {i}"]) for i in range(2)]
    )
    with pytest.raises(WorkbenchError, match="missing namuwiki"):
        build_pairs_preset("baseline", {"kowiki": ko}, tmp_path / "prepared")
    manifests = build_pairs_preset("baseline", {"kowiki": ko, "namuwiki": namu}, tmp_path / "prepared")
    assert manifests["kowiki"]["params"]["sample"] == 5000
    folders = sorted(p.name for p in (tmp_path / "prepared").iterdir())
    assert folders == ["baseline-kowiki-pairs", "baseline-namuwiki-pairs"]
    config = load_yaml_model(
        Path(__file__).resolve().parents[1] / "configs/baseline_dgx.yaml", TrainingConfig
    )
    assert [f"data/prepared/{f}" for f in folders] == config.data.train


def test_cli(tmp_path: Path) -> None:
    src = write_articles(tmp_path / "ko.jsonl", [article("1", "서울", [P1, P2])])
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    result = runner.invoke(
        app, ["pairs", str(src), "--out", str(tmp_path / "out"), "--kinds", "title-summary"]
    )
    assert result.exit_code == 0, result.output
    assert [o["text"] for _, o in read_jsonl(tmp_path / "out" / "corpus.jsonl")] == [P1]
    result = runner.invoke(app, ["pairs", str(src), "--out", str(tmp_path / "o2"), "--kinds", "nope"])
    assert result.exit_code == 2 and "unknown kind 'nope'" in result.output
    result = runner.invoke(app, ["pairs-preset", "baseline", "--input", "kowiki"])
    assert result.exit_code == 2 and "expected NAME=FILE" in result.output
