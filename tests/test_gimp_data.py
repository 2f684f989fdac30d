"""The shipped GIMP-manual tasks (harness/data/gimp) and the pure functions of their builder.

The data tests read the files with gzip/json/csv only; the builder tests run its sentence splitter
and section parser on small inline strings with hand-checked expectations.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from harness.prepare.gimp import (
    Block,
    Section,
    is_query_candidate,
    page_split,
    parse_page,
    query_id,
    remove_sentences,
    select_queries,
    split_sentences,
)

DATA = Path(__file__).resolve().parents[1] / "harness" / "data" / "gimp"
TASKS = ("gimp-ko", "gimp-ko-en", "gimp-en")
KOREAN_QUERY_TASKS = ("gimp-ko", "gimp-ko-en")
SAME_LANGUAGE_TASKS = ("gimp-ko", "gimp-en")  # corpus language == query language
HANGUL = re.compile("[\uac00-\ud7a3]")


def norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def read_jsonl_gz(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@cache
def corpus(task: str) -> dict[str, dict[str, str]]:
    rows = read_jsonl_gz(DATA / task / "corpus.jsonl.gz")
    by_id = {row["_id"]: row for row in rows}
    assert len(by_id) == len(rows), f"{task}: duplicate document ids"
    return by_id


@cache
def queries(task: str) -> dict[str, str]:
    rows = read_jsonl_gz(DATA / task / "queries.jsonl.gz")
    by_id = {row["_id"]: row["text"] for row in rows}
    assert len(by_id) == len(rows), f"{task}: duplicate query ids"
    return by_id


@cache
def qrels(task: str, split: str) -> tuple[tuple[str, str, str], ...]:
    with (DATA / task / "qrels" / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0] == ["query-id", "corpus-id", "score"], f"{task}/{split}: bad header"
    return tuple((qid, doc_id, score) for qid, doc_id, score in rows[1:])


def page(doc_id: str) -> str:
    return doc_id.split("#", 1)[0]


# ------------------------------------------------------------------------------------------
# shipped data


@pytest.mark.parametrize("task", TASKS)
def test_task_sizes(task: str) -> None:
    assert len(corpus(task)) >= 1000
    assert len(qrels(task, "test")) >= 200
    assert len(qrels(task, "train")) > 0


@pytest.mark.parametrize("task", TASKS)
def test_qrels_ids_exist_and_each_query_is_judged_once(task: str) -> None:
    seen: list[str] = []
    for split in ("test", "train"):
        for qid, doc_id, score in qrels(task, split):
            assert qid in queries(task), qid
            assert doc_id in corpus(task), doc_id
            assert score == "1"
            seen.append(qid)
    assert len(seen) == len(set(seen)), "a query is judged twice"
    assert set(seen) == set(queries(task)), "queries without judgments"


@pytest.mark.parametrize("task", TASKS)
def test_documents_and_queries_are_clean(task: str) -> None:
    for doc in corpus(task).values():
        assert set(doc) == {"_id", "title", "text"}
        assert doc["text"] == norm(doc["text"]) and len(doc["text"]) >= 1
        assert doc["title"] == norm(doc["title"])
    for text in queries(task).values():
        assert text == norm(text) and text


@pytest.mark.parametrize("task", KOREAN_QUERY_TASKS)
def test_korean_queries_are_mostly_hangul(task: str) -> None:
    for text in queries(task).values():
        syllables = len(HANGUL.findall(text))
        letters = sum(1 for char in text if char.isalpha())
        assert syllables > 0 and syllables >= 0.5 * letters, text


@pytest.mark.parametrize("task", TASKS)
def test_query_never_occurs_in_its_relevant_document(task: str) -> None:
    for split in ("test", "train"):
        for qid, doc_id, _ in qrels(task, split):
            doc = corpus(task)[doc_id]
            text = norm(queries(task)[qid])
            assert text not in norm(f"{doc['title']} {doc['text']}"), (qid, doc_id)


@pytest.mark.parametrize("task", SAME_LANGUAGE_TASKS)
def test_query_occurs_in_no_document_of_its_language(task: str) -> None:
    haystack = "\n".join(norm(f"{d['title']} {d['text']}") for d in corpus(task).values())
    leaked = [text for text in queries(task).values() if norm(text) in haystack]
    assert not leaked


@pytest.mark.parametrize("task", TASKS)
def test_train_and_test_pages_are_disjoint(task: str) -> None:
    pages = {split: {page(doc_id) for _, doc_id, _ in qrels(task, split)} for split in ("test", "train")}
    assert not pages["test"] & pages["train"]
    for split, stems in pages.items():
        assert all(page_split(stem) == split for stem in stems)


def test_korean_tasks_share_their_queries() -> None:
    assert queries("gimp-ko") == queries("gimp-ko-en")
    for split in ("test", "train"):
        assert qrels("gimp-ko", split) == qrels("gimp-ko-en", split)


def test_english_corpora_align_with_each_other() -> None:
    """gimp-ko-en's corpus is the unmodified English one: same ids as gimp-en, and each English
    query stands in its own section there (it was only removed from gimp-en's copy)."""
    assert list(corpus("gimp-ko-en")) == list(corpus("gimp-en"))
    for split in ("test", "train"):
        for qid, doc_id, _ in qrels("gimp-en", split):
            doc = corpus("gimp-ko-en")[doc_id]
            assert queries("gimp-en")[qid] in doc["text"], (qid, doc_id)


def test_query_ids_are_hashes_of_their_text() -> None:
    for task, lang in (("gimp-ko", "ko"), ("gimp-en", "en")):
        for qid, text in queries(task).items():
            assert qid == query_id(lang, text)


def test_readme_counts_match_the_files() -> None:
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    for split in ("test", "train"):
        counts = " | ".join(f"{len(qrels(task, split)):,}" for task in TASKS)
        assert f"| {split} queries (= {split} qrels) | {counts} |" in readme
    documents = " | ".join(f"{len(corpus(task)):,}" for task in TASKS)
    assert f"| documents | {documents} |" in readme
    assert "partly translated" in readme


def test_license_and_size() -> None:
    license_text = (DATA / "LICENSE").read_text(encoding="utf-8")
    assert "GNU Free Documentation License" in license_text
    assert "Version 1.2, November 2002" in license_text
    assert "The GIMP Documentation Team" in license_text
    assert "gimp-help-ko 2.10.34-2" in license_text
    total = sum(path.stat().st_size for path in DATA.rglob("*") if path.is_file())
    assert total <= 5 * 1024 * 1024


def test_gzip_members_carry_no_timestamp_or_name() -> None:
    for path in sorted(DATA.rglob("*.gz")):
        header = path.read_bytes()[:10]
        assert header[:3] == b"\x1f\x8b\x08"
        assert header[3] & 0x08 == 0, f"{path}: file name stored"
        assert header[4:8] == b"\0\0\0\0", f"{path}: mtime stored"


# ------------------------------------------------------------------------------------------
# builder functions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Use e.g. the Move tool. Then click OK.", ["Use e.g. the Move tool.", "Then click OK."]),
        ("See Figure 3.7. It shows a dock.", ["See Figure 3.7. It shows a dock."]),
        (
            "Brushes, Palettes, etc. Docks cannot hold them.",
            ["Brushes, Palettes, etc.", "Docks cannot hold them."],
        ),
        ("The maximum is 255. The minimum is 0.", ["The maximum is 255.", "The minimum is 0."]),
        ("Written by J. Smith. Really?  Yes!", ["Written by J. Smith.", "Really?", "Yes!"]),
        ("Press the key. then release it", ["Press the key. then release it"]),
        ("“Quoted.” Next sentence.", ["“Quoted.”", "Next sentence."]),
        ("One line\n   continues here.\tTwo.", ["One line continues here.", "Two."]),
        (
            "김프는 세 개의 독을 제공합니다. GIMP 창은 단일창입니다.",
            ["김프는 세 개의 독을 제공합니다.", "GIMP 창은 단일창입니다."],
        ),
        (
            "자세한 내용은 8.25절. “선택 도구”를 참고하세요. 다음으로 넘어갑니다.",
            ["자세한 내용은 8.25절. “선택 도구”를 참고하세요.", "다음으로 넘어갑니다."],
        ),
        ("끝에 마침표가 없는 문장입니다", ["끝에 마침표가 없는 문장입니다"]),
        ("", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("sentence", "lang", "expected"),
    [
        ("이 도구는 선택 영역을 만듭니다.", "ko", True),
        ("여러분은 이미지 메뉴에서 이 명령에 접근할 수 있습니다", "ko", True),
        ("GIMP Layer dialog를 엽니다.", "ko", False),  # 4 Hangul syllables, 15 Latin letters
        ("짧습니다.", "ko", False),
        ("The Stroke Path command strokes a path in the image.", "en", True),
        ("GIMP has three default docks:", "en", True),
        ("Brushes dialog and Palettes dialog", "en", False),  # no sentence ending
        ("Click here now.", "en", False),
    ],
)
def test_is_query_candidate(sentence: str, lang: str, expected: bool) -> None:
    assert is_query_candidate(sentence, lang) is expected


PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>2.3. Docks</title></head><body>
<div class="navheader"><table><tr><th>2.3. Docks</th></tr></table></div>
<div class="sect2">
  <div class="titlepage"><div><div>
    <h3 class="title"><a id="docks"></a>2.3. Docks</h3>
  </div></div></div>
  <a id="idm7" class="indexterm"></a>
  <p>A <span class="quote">“<span class="quote">dock</span>”</span> holds
     dialogs.</p>
  <div class="note"><table><tr><th>Note</th></tr>
    <tr><td><p>Docks can be closed.</p></td></tr></table></div>
  <div class="sect3">
    <div class="titlepage"><div><div>
      <h4 class="title"><a id="idm42"></a>2.3.1. Tabs</h4>
    </div></div></div>
    <div class="figure"><p class="title"><strong>Figure 1. A tab</strong></p></div>
    <ul><li><p>First item.</p></li><li>Second <em>item</em></li></ul>
    <p>Line one<br/>line two.</p>
  </div>
  <p>Back in the dock section.</p>
</div>
<div class="navfooter"><a class="reportbug" href="x">Report a bug</a></div>
</body></html>"""


def test_parse_page_sections_and_blocks() -> None:
    assert parse_page(PAGE, "page") == [
        Section(
            "page#docks",
            "Docks",
            (
                Block("A “dock” holds dialogs.", True),
                Block("Docks can be closed.", True),
                Block("Back in the dock section.", True),
            ),
        ),
        Section(
            "page#auto-1",  # DocBook's generated 'idm42' becomes positional
            "Tabs",
            (
                Block("Figure 1. A tab", False),
                Block("First item.", True),
                Block("Second item", False),
                Block("Line one line two.", True),
            ),
        ),
    ]


def test_parse_page_without_sections_and_refentry() -> None:
    plain = "<html><head><title>Plain page</title></head><body><p>Just text.</p></body></html>"
    assert parse_page(plain, "plain") == [Section("plain#auto-0", "Plain page", (Block("Just text.", True),))]
    refentry = (
        '<html><body><div class="refentry"><a id="key-ref"></a><div class="titlepage"></div>'
        '<div class="refnamediv"><h2>Name</h2><p>Edit — Key reference</p></div>'
        "<p>Body text.</p></div></body></html>"
    )
    assert parse_page(refentry, "k") == [
        Section("k#key-ref", "Edit — Key reference", (Block("Body text.", True),))
    ]


def test_remove_sentences() -> None:
    section = Section("p#a", "T", (Block("A b. Drop me now. C d.", True), Block("Drop me now.", False)))
    assert remove_sentences(section, ["Drop me now."]) == Section("p#a", "T", (Block("A b. C d.", True),))


def test_select_queries_skips_shared_sentences() -> None:
    shared = "The shared sentence appears in two sections."
    sections = [
        Section(
            "p1#a",
            "One",
            (
                Block(
                    "The first sentence is long enough to be a query. "
                    f"{shared} Some filler text follows here to keep the body long.",
                    True,
                ),
            ),
        ),
        Section(
            "p2#b",
            "Two",
            (
                Block(
                    f"{shared} Another unique sentence is written right here for testing. "
                    "Figure captions are not paragraphs at all.",
                    True,
                ),
                Block("This sentence sits in a table cell, not a paragraph.", False),
            ),
        ),
    ]
    chosen = select_queries(sections, "en", per_section=1)
    assert [q.doc_id for q in chosen] == ["p1#a", "p2#b"]
    for query in chosen:
        assert query.text != shared and "table cell" not in query.text
        assert query.qid == query_id("en", query.text)
        assert query.split == page_split(query.doc_id.split("#")[0])
    assert select_queries(sections, "en", per_section=1) == chosen  # deterministic
    assert len(select_queries(sections, "en", per_section=5)) == 4


def test_page_split_is_a_stable_hash() -> None:
    assert page_split("gimp-concepts-docks") == page_split("gimp-concepts-docks")
    stems = [f"page-{n}" for n in range(2000)]
    share = sum(page_split(stem) == "train" for stem in stems) / len(stems)
    assert 0.25 < share < 0.35


def test_shipped_tasks_match_their_pinned_checksums(tmp_path: Path) -> None:
    from harness.datasets import DATA_DIR
    from harness.prepare.check_embedded import check_embedded, main

    results = check_embedded(DATA_DIR / "gimp")
    assert set(results) == {"gimp-ko", "gimp-ko-en", "gimp-en"}
    assert all(pinned == found for pinned, found in results.values())
    assert main([str(DATA_DIR / "gimp")]) == 0
    assert main([str(tmp_path)]) == 1  # nothing rebuilt there
