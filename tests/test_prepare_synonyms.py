"""The `synonyms` step: the MySQL dump reader, gold split, groups, Solr format, precision."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from common.errors import WorkbenchError
from harness.prepare.langlinks import iter_langlinks, iter_sql_rows, read_page_titles, unescape_mysql
from harness.prepare.synonyms import (
    build_synonyms,
    cluster_tokens,
    format_solr_line,
    parse_solr,
    precision_report,
    register,
    solr_lines,
    vocabulary_terms,
)

FIXTURES = Path(__file__).parent / "fixtures" / "prepare" / "synonyms"

LANGLINK_PAIRS = [
    ("지미 카터", "Jimmy Carter"),
    ("수학", "Mathematics"),
    ("로큰롤", "Rock 'n' roll"),
    ("서울", "Seoul"),
    ("서울", 'Path\\to "x"'),
    ("크로스비, 스틸스, 내시 앤드 영", "Crosby, Stills, Nash & Young"),
]
ALIGNED_PAIRS = [
    ("파일", "File"),
    ("편집", "Edit"),
    ("보기", "View"),
    ("북마크", "Bookmarks"),
    ("도구", "Tools"),
    ("도움말", "Help"),
    ("새 탭", "New Tab"),
    ("새 창", "New Window"),
    ("인쇄", "Print"),
    ("설정", "Settings"),
    ("받은 편지함", "Inbox"),
    ("보낸 편지함", "Sent"),
    ("검색 엔진", "Search engine"),
    ("휴지통", "Trash"),
    ("주소록", "Address Book"),
    ("첨부 파일", "Attachments"),
]


def _gz(tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"{name}.gz"
    # mtime 0: the header holds no clock second, so the same fixture always gives the same bytes
    # (the re-run test compares manifests that hold each input's sha256)
    target.write_bytes(gzip.compress((FIXTURES / name).read_bytes(), mtime=0))
    return target


class Problems:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, kind: str, where: str, detail: str = "") -> None:
        self.seen.append((kind, where, detail))


# --------------------------------------------------------------------------- the SQL dump reader


def test_unescape_resolves_mysql_escapes() -> None:
    assert unescape_mysql(rb"Rock \'n\' roll \\ \"q\" a\nb \0") == b"Rock 'n' roll \\ \"q\" a\nb \0"


def test_langlinks_join_page_titles_from_gzipped_dumps(tmp_path: Path) -> None:
    problems = Problems()
    titles = read_page_titles(_gz(tmp_path, "kowiki-page.sql"), problems)
    # namespace 0 without redirects: 11 is a talk page, 12 a redirect
    assert titles == {
        5: "지미 카터",
        9: "수학",
        10: "수성 (행성)",
        13: "로큰롤",
        14: "서울",
        15: "BMW",
        16: "검색 엔진",
        17: "크로스비, 스틸스, 내시 앤드 영",
    }
    counted: list[str] = []
    links = list(
        iter_langlinks(_gz(tmp_path, "kowiki-langlinks.sql"), titles, "en", problems, counted.append)
    )
    assert [(ko, en) for ko, en, _ in links] == [*LANGLINK_PAIRS[:4], ("BMW", "BMW"), *LANGLINK_PAIRS[4:]]
    # 10 (qualified) left out; 11, 12 and 99 are not articles; Category: is another namespace
    assert sorted(counted) == ["links from other pages"] * 3 + [
        "links to other namespaces",
        "qualified titles left out",
    ]
    # the unterminated string of page 16 is one malformed tuple, reported at its byte; the tuples
    # after it are read, a `),(` inside a quoted title splits nothing
    raw = (FIXTURES / "kowiki-langlinks.sql").read_bytes()
    at = raw.index(b"(16,'en','Search engine)")
    assert len(problems.seen) == 1
    kind, where, _ = problems.seen[0]
    assert kind == "malformed tuple" and where.endswith(f"kowiki-langlinks.sql.gz: byte {at}")
    rows = [row for _, row in iter_sql_rows(FIXTURES / "kowiki-langlinks.sql", "langlinks", Problems())]
    assert (16, "ko", "검색),(엔진") in rows and len(rows) == 17


def test_page_titles_from_tsv_and_articles_jsonl(tmp_path: Path) -> None:
    tsv = tmp_path / "pages.tsv"
    tsv.write_text("page_id\ttitle\n5\t지미_카터\nx\tbroken\n9\t수학\n", encoding="utf-8")
    problems = Problems()
    assert read_page_titles(tsv, problems) == {5: "지미 카터", 9: "수학"}
    assert problems.seen == [("malformed page row", f"{tsv}: line 3", "expected page_id<TAB>title")]
    articles = tmp_path / "articles.jsonl"
    lines = [{"id": "5", "title": "지미 카터", "language": "ko"}, {"id": "abc", "title": "x"}]
    articles.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in lines), encoding="utf-8")
    problems = Problems()
    assert read_page_titles(articles, problems) == {5: "지미 카터"}
    assert problems.seen[0][1] == f"{articles}: line 2"
    with pytest.raises(WorkbenchError, match=r"page\.sql"):
        read_page_titles(tmp_path / "pages.xml", problems)


# --------------------------------------------------------------------------- the Solr format


def test_solr_lines_escape_and_parse_back() -> None:
    groups = [
        ["크로스비, 스틸스, 내시 앤드 영", "Crosby, Stills, Nash & Young"],
        ["a=>b", "back\\slash", "#hash"],
        ["서울", "Seoul", "seoul"],  # the case-folded duplicate goes
        ["Seoul", "서울"],  # the same group again: written once
        ["alone"],  # one term: no line
    ]
    lines = solr_lines(groups)
    assert lines[0] == "크로스비\\, 스틸스\\, 내시 앤드 영, Crosby\\, Stills\\, Nash & Young"
    assert lines[1] == "a\\=>b, back\\\\slash, \\#hash"
    assert len(lines) == 3 and all(line.strip() for line in lines)
    assert parse_solr("\n".join(lines)) == [groups[0], groups[1], ["서울", "Seoul"]]
    assert parse_solr("# comment\n\na, b\n") == [["a", "b"]]
    with pytest.raises(WorkbenchError, match="line 1"):
        parse_solr("a => b")
    assert format_solr_line(["x,y", "z"]) == "x\\,y, z"


# --------------------------------------------------------------------------- precision


def test_precision_and_coverage_by_hand() -> None:
    groups = [["파일", "File"], ["편집", "Edit", "보기"], ["View", "Help"]]
    gold = [
        {"ko": "파일", "en": "file"},  # covered, same group (case-folded)
        {"ko": "보기", "en": "View"},  # covered, different groups
        {"ko": "편집", "en": "Edit"},  # covered, same group
        {"ko": "도구", "en": "Tools"},  # not covered
    ]
    assert precision_report(groups, gold) == {
        "groups": 3,
        "terms": 7,
        "gold_pairs": 4,
        "covered": 3,
        "correct": 2,
        "coverage": 0.75,
        "precision": 0.6667,
    }
    assert precision_report(groups, [])["precision"] is None


# --------------------------------------------------------------------------- the step


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_build_from_langlinks_and_aligned_strings(tmp_path: Path) -> None:
    out = tmp_path / "synonyms"
    manifest = build_synonyms(
        out,
        langlinks=_gz(tmp_path, "kowiki-langlinks.sql"),
        pages=FIXTURES / "kowiki-page.sql",
        aligned=[FIXTURES / "aligned.jsonl"],
        gold_share=0.0,
    )
    pairs = _read_jsonl(out / "pairs.jsonl")
    assert [(p["ko"], p["en"]) for p in pairs] == LANGLINK_PAIRS + ALIGNED_PAIRS
    assert {p["source"] for p in pairs[:6]} == {"langlinks"}
    assert pairs[6]["source"] == "firefox" and pairs[-1]["source"] == "thunderbird"
    groups = json.loads((out / "groups.json").read_text(encoding="utf-8"))
    assert {g["method"] for g in groups} == {"pairs"}
    seoul = [g["terms"] for g in groups if "서울" in g["terms"]]
    assert seoul == [["서울", "Seoul", 'Path\\to "x"']]  # two links of one page: one group
    assert len(groups) == 5 + 16
    text = (out / "synonyms.txt").read_text(encoding="utf-8")
    assert parse_solr(text) == [g["terms"] for g in groups]
    assert "\n\n" not in text and text.endswith("\n")
    counts = manifest["counts"]
    assert counts["term pairs"] == 22 and counts["gold pairs"] == 0 and counts["aligned strings"] == 20
    assert counts["untranslated strings"] == 1 and counts["identical titles left out"] == 1
    assert manifest["problems"]["malformed tuple"]["count"] == 1
    assert manifest["problems"]["malformed aligned line"]["examples"] == [
        f"{FIXTURES / 'aligned.jsonl'}: line 21: needs string ko, en and an id"
    ]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["pairs"]["gold_pairs"] == 0 and report["pairs"]["precision"] is None
    # a re-run with the same inputs and parameters is a no-op
    before = (out / "manifest.json").read_bytes()
    assert (
        build_synonyms(
            out,
            _gz(tmp_path, "kowiki-langlinks.sql"),
            FIXTURES / "kowiki-page.sql",
            [FIXTURES / "aligned.jsonl"],
            gold_share=0.0,
        )
        == manifest
    )
    assert (out / "manifest.json").read_bytes() == before


def test_gold_is_split_off_first_by_message_id(tmp_path: Path) -> None:
    aligned = [FIXTURES / "aligned.jsonl"]
    build_synonyms(tmp_path / "all", aligned=aligned, gold_share=0.0)
    build_synonyms(tmp_path / "a", aligned=aligned, gold_share=0.5, seed=1)
    build_synonyms(tmp_path / "b", aligned=aligned, gold_share=0.5, seed=1, force=True)
    build_synonyms(tmp_path / "c", aligned=aligned, gold_share=0.5, seed=2)
    gold = _read_jsonl(tmp_path / "a" / "gold.jsonl")
    train = {(p["ko"], p["en"]) for p in _read_jsonl(tmp_path / "a" / "pairs.jsonl")}
    everything = {(p["ko"], p["en"]) for p in _read_jsonl(tmp_path / "all" / "pairs.jsonl")}
    held = {(g["ko"], g["en"]) for g in gold}
    assert gold and train and not held & train and held | train == everything
    assert _read_jsonl(tmp_path / "b" / "gold.jsonl") == gold  # seeded: the same split again
    assert _read_jsonl(tmp_path / "c" / "gold.jsonl") != gold
    grouped = {t for g in json.loads((tmp_path / "a" / "groups.json").read_text()) for t in g["terms"]}
    for pair in gold:  # no gold pair feeds a group
        assert not (pair["ko"] in grouped and pair["en"] in grouped)
    assert {g["id"] for g in gold} <= {
        json.loads(line).get("id") for line in aligned[0].read_text().splitlines()
    }


# --------------------------------------------------------------------------- embedding clusters


def _circle(degrees: list[float]) -> np.ndarray:
    angles = np.radians(degrees)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


OPTIONS = {
    "seed": 0,
    "n_clusters": 2,
    "eps": 0.05,
    "min_samples": 2,
    "distance_threshold": 0.05,
    "max_group_size": 10,
}


def test_kmeans_sample_weights_move_the_clusters() -> None:
    x, terms = _circle([0, 45, 80]), ["a", "b", "c"]
    assert cluster_tokens(x, terms, None, "kmeans", OPTIONS) == [["b", "c"]]
    assert cluster_tokens(x, terms, [1, 1, 100], "kmeans", OPTIONS) == [["a", "b"]]


def test_dbscan_weights_count_towards_density_and_agglomerative_cuts() -> None:
    x, terms = _circle([0, 2, 90, 92, 180]), ["a", "b", "c", "d", "e"]
    assert cluster_tokens(x, terms, None, "dbscan", OPTIONS) == [["a", "b"], ["c", "d"]]
    # recent a, b count as ~1.8 samples each, old c, d as ~0.2: c and d are noise
    assert cluster_tokens(x, terms, [1, 1, 0.1, 0.1, 1], "dbscan", OPTIONS) == [["a", "b"]]
    assert cluster_tokens(x, terms, None, "agglomerative", OPTIONS) == [["a", "b"], ["c", "d"]]
    with pytest.raises(WorkbenchError, match="unknown clustering method 'spectral'"):
        cluster_tokens(x, terms, None, "spectral", OPTIONS)


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import build_tiny_mlm, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer))
    folder = tmp_path_factory.mktemp("mlm") / "tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


TINY_WHOLE_WORDS = [
    "검색",
    "모델",
    "한국어",
    "문서",
    "이미지",
    "레이어",
    "마스크",
    "도구",
    "투명",
    "자르기",
    "색상",
    "밝기",
    "조절",
    "the",
    "is",
    "of",
    "search",
    "model",
    "korean",
    "document",
    "image",
    "layer",
    "mask",
    "crop",
    "tool",
    "border",
    "transparent",
    "makes",
    "parts",
    "removes",
    "brightness",
    "query",
]


def test_checkpoint_clusters_with_time_weights(tmp_path: Path, tiny_mlm_dir: Path) -> None:
    from models.checkpoint import load_tokenizer

    assert [t for _, _, t in vocabulary_terms(load_tokenizer(tiny_mlm_dir), 2)] == TINY_WHOLE_WORDS
    weights = tmp_path / "weights.json"
    weights.write_text(
        json.dumps(
            {
                "image": 3.0,
                "이미지": 2.5,
                "layer": 2.0,
                "레이어": 1.5,
                "mask": 0.0,
                "##s": 9.0,
                "crop": 1.0,
                "자르기": 0.5,
            }
        ),
        encoding="utf-8",
    )
    out = tmp_path / "clusters"
    manifest = build_synonyms(
        out,
        aligned=[FIXTURES / "aligned.jsonl"],
        checkpoint=tiny_mlm_dir,
        weights=weights,
        gold_share=0.5,
        n_clusters=3,
        eps=0.9,
        distance_threshold=0.9,
        seed=3,
    )
    counts = manifest["counts"]
    assert (
        counts["whole-word tokens"] == 32
        and counts["weighted tokens"] == 6
        and counts["tokens clustered"] == 6
    )
    groups = json.loads((out / "groups.json").read_text(encoding="utf-8"))
    clustered = {"image", "이미지", "layer", "레이어", "crop", "자르기"}
    for group in groups:
        if group["method"] != "pairs":
            assert set(group["terms"]) <= clustered and 2 <= len(group["terms"]) <= 10
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert list(report) == ["pairs", "kmeans", "dbscan", "agglomerative"]
    kmeans = [g["terms"] for g in groups if g["method"] == "kmeans"]
    assert report["kmeans"]["groups"] == len(kmeans) and sum(map(len, kmeans)) <= 6
    assert parse_solr((out / "synonyms.txt").read_text(encoding="utf-8")) == solr_lines_parsed(groups)


def solr_lines_parsed(groups: list[dict]) -> list[list[str]]:
    return parse_solr("\n".join(solr_lines(g["terms"] for g in groups)))


# --------------------------------------------------------------------------- the command


def test_command_prints_precision_and_rejects_bad_input(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command, so that the step's name is a subcommand
    runner = CliRunner()
    aligned = tmp_path / "aligned.jsonl"
    shutil.copy(FIXTURES / "aligned.jsonl", aligned)
    result = runner.invoke(
        app, ["synonyms", "--out", str(tmp_path / "o"), "--aligned", str(aligned), "--gold-share", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "pairs: 16 groups" in result.output
    result = runner.invoke(app, ["synonyms", "--out", str(tmp_path / "p"), "--langlinks", str(aligned)])
    assert result.exit_code == 2 and "--langlinks needs --pages" in result.output
    result = runner.invoke(
        app,
        [
            "synonyms",
            "--out",
            str(tmp_path / "p"),
            "--aligned",
            str(aligned),
            "--checkpoint",
            str(tmp_path / "missing"),
            "--methods",
            "kmeans,spectral",
        ],
    )
    assert result.exit_code == 2 and "unknown clustering method 'spectral'" in result.output
