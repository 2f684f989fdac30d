"""The `wikipedia` and `namuwiki` steps: dumps written by the tests in their real formats (MediaWiki
XML export in bz2, NamuWiki JSON array and JSON lines), exact plain text and sections expected."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
import typer
from typer.testing import CliRunner

from harness.prepare import namuwiki, wikipedia
from harness.prepare.namumark import namumark_sections
from harness.prepare.step import MANIFEST
from harness.prepare.wikitext import wikitext_sections

KO_ARTICLE = """{{Infobox 국가
| 이름 = {{lang|ko|대한민국}}
| 수도 = [[서울특별시|서울]]
}}
'''대한민국'''(大韓民國, {{llang|en|Republic of Korea}})은 [[동아시아]]의 [[한반도]] 남부에 있는 나라이다.\
<ref>{{웹 인용|url=http://example.org|제목=출처}}</ref> 수도는 [[서울특별시|서울]]이다.<ref name="capital" />
[[파일:Flag of South Korea.svg|섬네일|[[태극기]]]]

둘째 문단은 [http://www.korea.net 공식 누리집]을 가리킨다.<!-- 주석 -->

== 역사 ==
{| class="wikitable"
! 연도 !! 사건
|-
| 1948 || 정부 수립
|}
[[고조선 (국가)|]]에서 시작한 ''긴'' 역사가 있다.
* 삼국 시대
* 고려

=== 현대 ===
1948년에 정부가 수립되었다.

== 각주 ==
<references />

[[분류:대한민국]]
[[en:South Korea]]
"""
KO_LEAD = "대한민국(大韓民國, Republic of Korea)은 동아시아의 한반도 남부에 있는 나라이다. 수도는 서울이다."
KO_SECTIONS = [
    {"title": "", "level": 0, "text": KO_LEAD + "\n\n둘째 문단은 공식 누리집을 가리킨다."},
    {"title": "역사", "level": 2, "text": "고조선에서 시작한 긴 역사가 있다.\n삼국 시대\n고려"},
    {"title": "현대", "level": 3, "text": "1948년에 정부가 수립되었다."},
]
EN_ARTICLE = """{{Short description|Capital of South Korea}}
'''Seoul''' ({{lang-ko|서울}}) is the capital of [[South Korea]].{{efn|Officially {{lang|ko|서울특별시}}.}} \
It has a population of about 9.4&nbsp;million.

== Geography ==
The [[Han River (Korea)|Han River]] flows through the city.<ref group="n">See [[Han River]].</ref>

== See also ==
* [[Busan]]
"""
EN_LEAD = "Seoul (서울) is the capital of South Korea. It has a population of about 9.4 million."


def _page(
    title: str | None, text: str | None, ns: int = 0, page_id: int = 1, redirect: str | None = None
) -> str:
    parts = ["  <page>"]
    if title is not None:
        parts.append(f"    <title>{escape(title)}</title>")
    parts.append(f"    <ns>{ns}</ns>\n    <id>{page_id}</id>")
    if redirect is not None:
        parts.append(f'    <redirect title="{escape(redirect)}" />')
    parts.append(
        f"    <revision>\n      <id>{page_id * 10}</id>\n      <timestamp>2024-05-01T12:00:00Z</timestamp>"
    )
    parts.append("      <model>wikitext</model>\n      <format>text/x-wiki</format>")
    if text is not None:
        parts.append(f'      <text bytes="{len(text.encode())}" xml:space="preserve">{escape(text)}</text>')
    parts.append("    </revision>\n  </page>")
    return "\n".join(parts) + "\n"


def _dump(pages: list[str], dbname: str, schema: str = "0.10") -> str:
    lang = dbname.removesuffix("wiki")
    return (
        f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-{schema}/" version="{schema}" '
        f'xml:lang="{lang}">\n'
        f"  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <dbname>{dbname}</dbname>\n"
        f"    <base>https://{lang}.wikipedia.org/wiki/Main_Page</base>\n  </siteinfo>\n"
        + "".join(pages)
        + "</mediawiki>\n"
    )


KO_PAGES = [
    _page("대한민국", KO_ARTICLE, page_id=9),
    _page("한국", "#REDIRECT [[대한민국]]", page_id=10, redirect="대한민국"),
    _page("남한", "#넘겨주기 [[대한민국]]", page_id=11),
    _page("토론:대한민국", "토론 문서이다.", ns=1, page_id=12),
    _page(None, "제목 없는 문서", page_id=13),
    _page("빈 문서", "{{삭제 요청|이유=내용 없음}}\n[[분류:삭제 요청]]", page_id=14),
]


def _write_bz2(path: Path, xml: str) -> Path:
    path.write_bytes(bz2.compress(xml.encode("utf-8"), compresslevel=1))
    return path


def _app() -> typer.Typer:
    app = typer.Typer()
    wikipedia.register(app)
    namuwiki.register(app)
    return app


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(_app(), [str(a) for a in args])


def _articles(folder: Path) -> list[dict[str, Any]]:
    with gzip.open(folder / "articles.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def test_korean_dump_gives_the_exact_article_and_counts_what_it_skips(tmp_path: Path) -> None:
    dump = _write_bz2(tmp_path / "kowiki-pages-articles.xml.bz2", _dump(KO_PAGES, "kowiki"))
    result = _invoke("wikipedia", dump, "--out", tmp_path / "ko", "--language", "ko")
    assert result.exit_code == 0, result.output
    assert _articles(tmp_path / "ko") == [
        {
            "id": "kowiki-9",
            "title": "대한민국",
            "language": "ko",
            "source": "wikipedia",
            "timestamp": "2024-05-01T12:00:00Z",
            "text": "\n\n".join(s["text"] for s in KO_SECTIONS),
            "first_paragraph": KO_LEAD,
            "sections": KO_SECTIONS,
        }
    ]
    manifest = _manifest(tmp_path / "ko")
    assert manifest["counts"] == {
        "pages": 6, "articles": 1, "redirects": 2, "non_article": 1, "malformed": 1, "empty": 1,
    }  # fmt: skip
    assert manifest["problems"] == {"malformed page": {"count": 1, "examples": ["page id 13: no title"]}}
    assert manifest["dbname"] == "kowiki" and manifest["complete"] is True
    assert manifest["export_schema"] == "http://www.mediawiki.org/xml/export-0.10/"


def test_english_dump_of_schema_0_11_as_plain_xml(tmp_path: Path) -> None:
    pages = [_page("Seoul", EN_ARTICLE, page_id=5), _page("Soul city", "#redirect [[Seoul]]", page_id=6)]
    dump = tmp_path / "enwiki.xml"
    dump.write_text(_dump(pages, "enwiki", schema="0.11"), encoding="utf-8")
    manifest = wikipedia.build_wikipedia(dump, tmp_path / "en", language="en")
    [article] = _articles(tmp_path / "en")
    assert article["id"] == "enwiki-5" and article["language"] == "en"
    assert article["first_paragraph"] == EN_LEAD
    assert article["sections"] == [
        {"title": "", "level": 0, "text": EN_LEAD},
        {"title": "Geography", "level": 2, "text": "The Han River flows through the city."},
    ]  # "See also" is a list of links: dropped
    assert manifest["counts"] == {"pages": 2, "articles": 1, "redirects": 1}


def test_a_dump_of_the_other_language_is_refused(tmp_path: Path) -> None:
    dump = _write_bz2(tmp_path / "kowiki.xml.bz2", _dump(KO_PAGES, "kowiki"))
    result = _invoke("wikipedia", dump, "--out", tmp_path / "out", "--language", "en")
    assert result.exit_code == 2
    assert "the dump is of kowiki (language 'ko'), not of --language 'en'" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_rerun_with_the_same_inputs_is_a_noop_and_workers_change_nothing(tmp_path: Path) -> None:
    dump = _write_bz2(tmp_path / "kowiki.xml.bz2", _dump(KO_PAGES, "kowiki"))
    out = tmp_path / "ko"
    assert _invoke("wikipedia", dump, "--out", out, "--language", "ko").exit_code == 0
    manifest_text = (out / MANIFEST).read_text(encoding="utf-8")
    stamp = (out / "articles.jsonl.gz").stat().st_mtime_ns
    articles = (out / "articles.jsonl.gz").read_bytes()
    result = _invoke("wikipedia", dump, "--out", out, "--language", "ko", "--workers", "2")
    assert result.exit_code == 0 and "up to date" in result.output
    assert (out / MANIFEST).read_text(encoding="utf-8") == manifest_text
    assert (out / "articles.jsonl.gz").stat().st_mtime_ns == stamp
    forced = _invoke("wikipedia", dump, "--out", out, "--language", "ko", "--workers", "2", "--force")
    assert forced.exit_code == 0, forced.output
    assert (out / "articles.jsonl.gz").read_bytes() == articles  # two worker processes, same bytes


def _filler(n: int) -> list[str]:
    """Pages of about 2 KB each, so that a dump of many spans several bz2 blocks (100 kB at level 1)."""
    body = "== 개요 ==\n" + " ".join(f"[[낱말{i}|단어{i}]] 문장 {i}." for i in range(120))
    return [
        _page(f"문서 {k}", f"'''문서 {k}'''는 시험 문서이다.\n\n{body}", page_id=100 + k) for k in range(n)
    ]


def test_a_truncated_bz2_keeps_the_pages_before_the_cut(tmp_path: Path) -> None:
    xml = _dump(_filler(600), "kowiki")
    assert len(xml.encode()) > 1_000_000
    whole = _write_bz2(tmp_path / "whole.xml.bz2", xml)
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    full = wikipedia.build_wikipedia(whole, tmp_path / "full", language="ko")
    assert full["counts"]["articles"] == 600 and full["complete"] is True
    result = _invoke("wikipedia", cut, "--out", tmp_path / "part", "--language", "ko")
    assert result.exit_code == 0, result.output
    assert "truncated" in result.output
    manifest = _manifest(tmp_path / "part")
    kept = _articles(tmp_path / "part")
    assert 0 < len(kept) < 600 and kept == _articles(tmp_path / "full")[: len(kept)]
    assert manifest["counts"]["truncated"] == 1 and manifest["complete"] is False
    assert manifest["counts"]["articles"] == len(kept) == manifest["counts"]["pages"]
    [where] = manifest["problems"]["truncated dump"]["examples"]
    assert (
        where.startswith("cut.xml.bz2: byte ") and f"after {len(kept)} pages" in where and "EOFError" in where
    )


def test_a_truncated_xml_tail_keeps_every_complete_page(tmp_path: Path) -> None:
    xml = _dump(_filler(10), "kowiki")
    dump = tmp_path / "cut.xml"
    dump.write_text(xml[: xml.index("<title>문서 7</title>") + 10], encoding="utf-8")  # inside page 8
    manifest = wikipedia.build_wikipedia(dump, tmp_path / "part", language="ko")
    assert [a["title"] for a in _articles(tmp_path / "part")] == [f"문서 {k}" for k in range(7)]
    assert manifest["counts"] == {"pages": 7, "articles": 7, "truncated": 1}
    assert "ParseError" in manifest["problems"]["truncated dump"]["examples"][0]


def test_not_a_mediawiki_dump_is_an_error(tmp_path: Path) -> None:
    dump = tmp_path / "other.xml"
    dump.write_text("<html><body>no</body></html>", encoding="utf-8")
    result = _invoke("wikipedia", dump, "--out", tmp_path / "out", "--language", "ko")
    assert result.exit_code == 2 and "not a MediaWiki XML export" in result.output
    garbage = tmp_path / "garbage.xml.bz2"
    garbage.write_bytes(b"this is not bz2 data at all" * 100)
    result = _invoke("wikipedia", garbage, "--out", tmp_path / "out", "--language", "ko")
    assert result.exit_code == 2 and "not a MediaWiki XML export (Invalid data stream)" in result.output


def test_wikitext_cleaning_details() -> None:
    [lead] = wikitext_sections(
        "A {{a|{{b|c}}|d}}b [[x|y]] <nowiki>[[raw]] ''q''</nowiki>\n{|\n| t\n|}\n<small>s</small> &lt;3 "
        "[[Image:p.png|thumb|cap [[z]]]] [[:Category:Cats|cats]] [[fr:Chat]] ----\n# one\n# two"
    )
    assert lead.paragraphs == ["A b y [[raw]] ''q''", "s <3 cats ----\none\ntwo"]


NAMU_TREE = """[목차]
[include(틀:식물 분류)]
== 개요 ==
'''나무'''는 [[식물|여러해살이 식물]]이다.[* 풀과 구별된다.] ~~사실은 풀이다~~ \
__단단한__ 줄기가 있다.[br]오래 산다.

== 종류 ==#
|| <tablealign=center> '''이름''' || '''특징''' ||
|| 소나무 || 늘푸른 ||
 * [[참나무]] --도토리--
 * [[파일:나무.jpg]]
{{{#!html <div>숨김</div>}}}
{{{+1 큰 나무}}}와 {{{#red 붉은 나무}}}가 있다.
{{{#!wiki style="border:1px"
[[은행나무|은행]]은 오래 산다.
}}}
[[분류:식물]]
"""
NAMU_DOCS: list[Any] = [
    {"namespace": "0", "title": "나무", "text": NAMU_TREE, "contributors": ["a", "b"]},
    {"namespace": "0", "title": "나무위키로", "text": "#redirect 나무", "contributors": []},
    {"namespace": "1", "title": "틀:식물 분류", "text": "[[나무]] · [[풀]]", "contributors": []},
    {"namespace": "0", "title": 5, "text": "제목이 숫자", "contributors": []},
    {"namespace": "", "title": "소나무", "text": "'''소나무'''는 [[나무]]의 하나이다.", "contributors": []},
]
TREE_FIRST = "나무는 여러해살이 식물이다. 단단한 줄기가 있다. 오래 산다."
TREE = {
    "id": namuwiki.namu_id("나무"),
    "title": "나무",
    "language": "ko",
    "source": "namuwiki",
    "timestamp": None,
    "text": TREE_FIRST
    + "\n\n이름 특징\n소나무 늘푸른\n참나무\n\n큰 나무와 붉은 나무가 있다.\n\n은행은 오래 산다.",
    "first_paragraph": TREE_FIRST,
    "sections": [
        {"title": "", "level": 0, "text": ""},
        {"title": "개요", "level": 2, "text": TREE_FIRST},
        {
            "title": "종류",
            "level": 2,
            "text": "이름 특징\n소나무 늘푸른\n참나무\n\n큰 나무와 붉은 나무가 있다.\n\n은행은 오래 산다.",
        },
    ],
}


def _array(docs: list[Any]) -> str:
    return "[" + ",".join(json.dumps(d, ensure_ascii=False) for d in docs) + "]"


def test_namuwiki_array_gives_the_exact_articles(tmp_path: Path) -> None:
    dump = tmp_path / "namuwiki.json"
    dump.write_text(_array(NAMU_DOCS), encoding="utf-8")
    result = _invoke("namuwiki", dump, "--out", tmp_path / "namu")
    assert result.exit_code == 0, result.output
    tree, pine = _articles(tmp_path / "namu")
    assert tree == TREE
    assert (
        pine["title"] == "소나무" and pine["text"] == pine["first_paragraph"] == "소나무는 나무의 하나이다."
    )
    manifest = _manifest(tmp_path / "namu")
    assert manifest["counts"] == {
        "documents": 5,
        "articles": 2,
        "redirects": 1,
        "non_article": 1,
        "malformed": 1,
    }
    assert manifest["problems"]["malformed document"]["examples"][0].startswith(
        "namuwiki.json: element 3 (character "
    )
    assert manifest["complete"] is True


def test_namuwiki_json_lines_give_the_same_articles_and_skip_a_bad_line(tmp_path: Path) -> None:
    lines = [json.dumps(d, ensure_ascii=False) for d in NAMU_DOCS]
    lines.insert(3, '{"namespace": "0", "title": "깨진 줄", "text": ')
    dump = tmp_path / "namuwiki.jsonl"
    dump.write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = namuwiki.build_namuwiki(dump, tmp_path / "namu", workers=2)
    assert _articles(tmp_path / "namu")[0] == TREE and len(_articles(tmp_path / "namu")) == 2
    assert manifest["counts"] == {
        "documents": 5,
        "articles": 2,
        "redirects": 1,
        "non_article": 1,
        "malformed": 2,
    }
    assert manifest["problems"]["malformed JSON line"]["examples"] == [
        "namuwiki.jsonl: line 4: Expecting value"
    ]
    assert manifest["problems"]["malformed document"]["examples"] == [
        "namuwiki.jsonl: line 5: not an object with a string title and text"
    ]


def test_a_truncated_namuwiki_array_keeps_the_documents_before_the_cut(tmp_path: Path) -> None:
    text = _array(NAMU_DOCS)
    dump = tmp_path / "namuwiki.json"
    dump.write_text(text[: text.index("하나이다")], encoding="utf-8")  # inside the last document
    manifest = namuwiki.build_namuwiki(dump, tmp_path / "namu")
    assert _articles(tmp_path / "namu") == [TREE]
    assert manifest["counts"]["truncated"] == 1 and manifest["complete"] is False
    [where] = manifest["problems"]["truncated dump"]["examples"]
    assert where.startswith("namuwiki.json: element 4 (character ") and "Unterminated string" in where


def test_a_malformed_element_inside_the_array_stops_with_its_position(tmp_path: Path) -> None:
    text = _array(NAMU_DOCS[:1])[:-1] + ', {"namespace": "0", "title": 나무}, ' + _array(NAMU_DOCS[1:])[1:]
    dump = tmp_path / "namuwiki.json"
    dump.write_text(text, encoding="utf-8")
    result = _invoke("namuwiki", dump, "--out", tmp_path / "namu")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "namuwiki.json: element 1 (character" in message and "Expecting value" in message
    assert not (tmp_path / "namu").exists()


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("[[a#s|b]] [[c#d]] [[#e]] \\[\\[x]]", "b c e [[x]]"),
        ("{{{literal [[not a link]]}}} [ruby(漢字, ruby=한자)]", "literal [[not a link]] 漢字"),
        ("> 인용문\n## 주석\n 1. 첫째", "인용문\n첫째"),
    ],
)
def test_namumark_details(markup: str, expected: str) -> None:
    assert namumark_sections(markup)[0].text == expected
