"""Build the GIMP-manual retrieval tasks `gimp-ko`, `gimp-ko-en` and `gimp-en` (BEIR format).

Source: the Debian packages gimp-help-ko and gimp-help-en (GIMP 2.10 user manual, HTML, GFDL-1.2+),
whose pages are aligned by file name under usr/share/gimp/2.0/help/{ko,en}/.

* Documents are manual sections: a section's own title and text, without its nested subsections.
* Queries follow the inverse cloze task (Lee et al., 2019): a sentence is taken out of a section,
  becomes a query whose one relevant document is that section, and is removed from the section.
* `gimp-ko` asks Korean sentences against the Korean manual, `gimp-ko-en` asks the same Korean
  sentences against the (unmodified) English manual, `gimp-en` asks English sentences against the
  English manual. Train and test queries come from disjoint pages.

Run `python -m harness.prepare.gimp --out harness/data/gimp` (downloads the packages with apt-get)
or add `--from DIR` with DIR holding already extracted packages. The output is byte-identical on
every run. See harness/data/gimp/README.md, written by this module, for the exact rule and the
counts.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

__all__ = [
    "Block",
    "BuildError",
    "Query",
    "Section",
    "build",
    "hangul_count",
    "hangul_share",
    "is_query_candidate",
    "load_manual",
    "main",
    "manual_stats",
    "normalize_ws",
    "page_split",
    "parse_page",
    "query_id",
    "remove_sentences",
    "select_queries",
    "split_sentences",
    "task_stats",
]

VERSION = "2.10.34-2"
PACKAGES = ("gimp-help-ko", "gimp-help-en", "gimp-help-common")
HELP_DIR = Path("usr/share/gimp/2.0/help")
COPYRIGHT_FILES = tuple(
    Path(f"usr/share/doc/{name}/copyright") for name in ("gimp-help-common", "gimp-help-en", "gimp-help-ko")
)
GFDL_FILE = Path("/usr/share/common-licenses/GFDL-1.2")
LANGS = ("ko", "en")
TASKS = ("gimp-ko", "gimp-ko-en", "gimp-en")

# DocBook XSL output: the <div> classes that open a (sub)section of a page.
SECTION_CLASSES = frozenset(
    {
        "sect1",
        "sect2",
        "sect3",
        "sect4",
        "sect5",
        "section",
        "simplesect",
        "refsect1",
        "refsect2",
        "refsect3",
        "refentry",
        "chapter",
        "appendix",
        "part",
        "preface",
        "reference",
        "article",
    }
)
# Divisions that hold no text of the section itself (navigation, tables of contents).
SKIPPED_DIV_CLASSES = frozenset(
    {
        "navheader",
        "navfooter",
        "titlepage",
        "refnamediv",
        "toc",
        "list-of-figures",
        "list-of-tables",
        "list-of-examples",
        "list-of-equations",
        "list-of-procedures",
    }
)
ADMONITION_CLASSES = frozenset({"note", "tip", "warning", "caution", "important"})
BLOCK_TAGS = frozenset(
    {
        "body",
        "p",
        "div",
        "li",
        "dt",
        "dd",
        "td",
        "th",
        "tr",
        "table",
        "thead",
        "tbody",
        "tfoot",
        "ul",
        "ol",
        "dl",
        "pre",
        "blockquote",
        "caption",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
    }
)
# Pages that are not manual prose: the book's title page, the index, the bibliography, the
# glossary (one page of term lists, left untranslated in ko) and the GFDL licence pages.
SKIPPED_PAGES = frozenset({"index", "gimp-help-index", "bibliography", "glossary", "legal"})
SKIPPED_PAGE_PREFIXES = ("gfdl-",)

MIN_BODY_CHARS = 40
TRAIN_FRACTION = 0.3
# At most this many queries per section. The translated Korean text sits in few sections (about
# 160 sections hold Korean candidates), and with 2 the Korean test split falls short of 200.
MAX_QUERIES_PER_SECTION = {"ko": 3, "en": 2}
MIN_TEST_QUERIES = 200
MIN_DOCUMENTS = 1000

_AUTO_ANCHOR = re.compile(r"idm\d+")
_TITLE_LABEL = re.compile(r"^(?:[A-Z]|\d+)(?:\.\d+)*\.\s+")
_SENTENCE_END = re.compile(r"[.!?。]+[\"'”’)\]]*(?=\s)")
_DOTTED_NUMBER = re.compile(r"\d+(?:\.\d+)+\.")
_TERMINAL = re.compile(r"[.!?:。][\"'”’)\]]*$")
_KOREAN_TERMINAL = re.compile(r"[다요]$")  # a Korean sentence may end with its verb, unpunctuated
_KOREAN_XREF = re.compile(r"[\d.]*\d[절장부]\.")  # '8.25절. “제목”': a cross-reference
_ABBREVIATIONS = frozenset(
    {
        "e.g.",
        "i.e.",
        "cf.",
        "vs.",
        "fig.",
        "figs.",
        "approx.",
        "ca.",
        "resp.",
        "incl.",
        "mr.",
        "mrs.",
        "ms.",
        "dr.",
        "prof.",
        "st.",
        "vol.",
        "ed.",
        "eds.",
        "al.",
        "p.",
        "pp.",
        "ch.",
        "sec.",
        "ver.",
    }
)

COPYRIGHT_FALLBACK = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Source: https://download.gimp.org/pub/gimp/help/
Upstream-Name: gimp-help-2

Files: *
Copyright: 2002, 2003, 2004, 2005, 2006, 2007, 2008, 2009, 2010
 The GIMP Documentation Team (see AUTHORS)
License: GFDL-NIV-1.2+
 Permission is granted to copy, distribute and/or modify this document
 under the terms of the GNU Free Documentation License (GFDL), version
 1.2 or any later version published by the Free Software Foundation with
 no Invariant Sections, no Front-Cover Texts, and no Back-Cover Texts.
 .
 On Debian systems, the complete text of the GNU Free Documentation
 License version 1.2 can be found in /usr/share/common-licenses/GFDL-1.2.
"""


class BuildError(RuntimeError):
    """The data cannot be built; the message says why and what to do."""


@dataclass(frozen=True)
class QueryRule:
    """Which sentences of one language may become queries (lengths count characters and tokens)."""

    min_tokens: int
    max_tokens: int
    min_chars: int
    max_chars: int
    min_hangul_share: float


QUERY_RULES = {
    # Korean words (eojeol) carry their particles, so a Korean sentence has fewer tokens.
    "ko": QueryRule(min_tokens=3, max_tokens=40, min_chars=15, max_chars=200, min_hangul_share=0.5),
    "en": QueryRule(min_tokens=5, max_tokens=40, min_chars=25, max_chars=250, min_hangul_share=0.0),
}


@dataclass(frozen=True)
class Block:
    """One block of a section's text; `paragraph` marks <p> text, the only source of queries."""

    text: str
    paragraph: bool


@dataclass(frozen=True)
class Section:
    """A document: one section's title and its own blocks (nested subsections excluded)."""

    doc_id: str
    title: str
    blocks: tuple[Block, ...]

    @property
    def page(self) -> str:
        """The page (file stem) the section comes from."""
        return self.doc_id.split("#", 1)[0]

    @property
    def body(self) -> str:
        """The section's text: its blocks joined by single spaces."""
        return " ".join(block.text for block in self.blocks)


@dataclass(frozen=True)
class Query:
    """An inverse-cloze query: a sentence taken out of the document `doc_id`."""

    qid: str
    text: str
    doc_id: str
    split: str


# --------------------------------------------------------------------------------------------
# text helpers


def normalize_ws(text: str) -> str:
    """NFC-normalise `text` and collapse every run of whitespace (NBSP included) to one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _is_hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3"


def hangul_count(text: str) -> int:
    """The number of precomposed Hangul syllables (U+AC00..U+D7A3) in `text`."""
    return sum(1 for char in text if _is_hangul(char))


def hangul_share(text: str) -> float:
    """Hangul syllables as a share of all letters (`str.isalpha`) of `text`; 0.0 without letters."""
    letters = sum(1 for char in text if char.isalpha())
    return hangul_count(text) / letters if letters else 0.0


def _ends_sentence(text: str, start: int, punct: int, following: str) -> bool:
    """Whether the punctuation at `punct` closes the sentence that began at `start`."""
    previous = text[punct - 1] if punct > start else ""
    if _is_hangul(previous):  # Korean: '...다.', '...요?', but not '8.25절. “제목”'
        word = text[text.rfind(" ", start, punct) + 1 : punct + 1]
        return not (_KOREAN_XREF.fullmatch(word) and following == "“")
    if text[punct] != ".":
        return not following.islower()
    word = text[text.rfind(" ", start, punct) + 1 : punct + 1].lstrip("(\"'“‘[").lower()
    if word in _ABBREVIATIONS or _DOTTED_NUMBER.fullmatch(word):
        return False
    if len(word) == 2 and word[0].isalpha():  # an initial: 'J. Smith'
        return False
    return not following.islower()


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences.

    A sentence ends at '.', '!', '?' or '。' (optionally followed by closing quotes or brackets)
    before whitespace, unless the next sentence would begin in lower case, or the period closes an
    abbreviation ('e.g.'), an initial ('J.') or a dotted number ('2.3.'). After a Hangul syllable
    ('...합니다.') the punctuation ends the sentence, except in a Korean cross-reference such as
    '8.25절. “제목”' (the number of a section followed by its quoted title). Whitespace is
    normalised first.
    """
    text = normalize_ws(text)
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        following = match.end() + 1  # normalised: exactly one space follows
        if following >= len(text) or match.start() < start:
            continue
        if _ends_sentence(text, start, match.start(), text[following]):
            sentences.append(text[start : match.end()])
            start = following
    if start < len(text):
        sentences.append(text[start:])
    return sentences


def is_query_candidate(sentence: str, lang: str) -> bool:
    """Whether `sentence` may serve as a query of language `lang` (lengths, script, ending).

    Korean candidates must contain Hangul, and Hangul syllables must be at least half of their
    letters; every candidate must end like a sentence ('.', '!', '?', ':'; Korean also '다', '요').
    """
    rule = QUERY_RULES[lang]
    tokens = len(sentence.split())
    if not (rule.min_chars <= len(sentence) <= rule.max_chars):
        return False
    if not (rule.min_tokens <= tokens <= rule.max_tokens):
        return False
    korean_ending = lang == "ko" and _KOREAN_TERMINAL.search(sentence)
    if not (_TERMINAL.search(sentence) or korean_ending):
        return False
    if rule.min_hangul_share > 0:
        return hangul_count(sentence) > 0 and hangul_share(sentence) >= rule.min_hangul_share
    return True


def page_split(stem: str) -> str:
    """'train' for about TRAIN_FRACTION of the pages (by SHA-256 of the file stem), else 'test'."""
    value = int(hashlib.sha256(stem.encode("utf-8")).hexdigest()[:8], 16)
    return "train" if value < TRAIN_FRACTION * 2**32 else "test"


# --------------------------------------------------------------------------------------------
# HTML parsing


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _classes(element: ET.Element) -> set[str]:
    return set(element.get("class", "").split())


def _is_section(element: ET.Element) -> bool:
    return _local(element.tag) == "div" and bool(_classes(element) & SECTION_CLASSES)


def _clean_title(title: str) -> str:
    return _TITLE_LABEL.sub("", normalize_ws(title))


class _BlockCollector:
    """Collects a section's text as blocks; block elements (p, li, td, ...) delimit blocks."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._parts: list[str] = []
        self._paragraph = False

    def add(self, text: str | None, paragraph: bool) -> None:
        if text:
            self._parts.append(text)
            self._paragraph = paragraph

    def flush(self) -> None:
        text = normalize_ws("".join(self._parts))
        if text:
            self.blocks.append(Block(text, self._paragraph))
        self._parts = []

    def walk(self, element: ET.Element, paragraph: bool, admonition: bool) -> None:
        """Add `element`'s text; text between two block boundaries shares its innermost block."""
        tag = _local(element.tag)
        classes = _classes(element)
        if tag == "br":
            self.add(" ", paragraph)
            return
        if tag == "div" and classes & ADMONITION_CLASSES:
            admonition = True
        is_block = tag in BLOCK_TAGS
        if is_block:
            self.flush()
            paragraph = tag == "p" and "title" not in classes  # p.title: figure/table labels
        self.add(element.text, paragraph)
        for child in element:
            if not _skipped(child, admonition):
                self.walk(child, paragraph, admonition)
            self.add(child.tail, paragraph)
        if is_block:
            self.flush()


def _skipped(element: ET.Element, admonition: bool) -> bool:
    """Elements whose text is not the section's own: subsections, navigation, labels."""
    tag = _local(element.tag)
    if tag in ("script", "style", "head"):
        return True
    if tag == "div":
        classes = _classes(element)
        return bool(classes & SECTION_CLASSES or classes & SKIPPED_DIV_CLASSES)
    if tag == "th" and admonition:  # the 'Note' / 'Tip' label of an admonition
        return True
    return tag == "a" and "indexterm" in _classes(element)


def _section_anchor(section: ET.Element) -> str | None:
    """The section's anchor: its id, or the id in its title, or a leading <a id> (refentry)."""
    if section.get("id"):
        return section.get("id")
    for child in section:
        tag = _local(child.tag)
        if tag == "div" and "titlepage" in _classes(child):
            for anchor in child.iter():
                if _local(anchor.tag) == "a" and anchor.get("id"):
                    return anchor.get("id")
        elif tag == "a" and child.get("id") and "indexterm" not in _classes(child):
            return child.get("id")
        else:
            break
    return None


def _section_title(section: ET.Element, page_title: str) -> str:
    """The heading in the section's titlepage, else the refentry's name line, else the page's."""
    for child in section:
        if _local(child.tag) == "div" and "titlepage" in _classes(child):
            for heading in child.iter():
                if _local(heading.tag) in ("h1", "h2", "h3", "h4", "h5", "h6"):
                    title = _clean_title("".join(heading.itertext()))
                    if title:
                        return title
    for child in section:
        if _local(child.tag) == "div" and "refnamediv" in _classes(child):
            for para in child.iter():
                if _local(para.tag) == "p":
                    title = normalize_ws("".join(para.itertext()))
                    if title:
                        return title
    return _clean_title(page_title)


def _iter_sections(element: ET.Element) -> Iterator[ET.Element]:
    """Every section division below `element`, in document order (pre-order)."""
    for child in element:
        if _is_section(child):
            yield child
        yield from _iter_sections(child)


def parse_page(source: str | bytes, stem: str) -> list[Section]:
    """Parse one XHTML page of the manual into its sections, in document order.

    The document id is '<stem>#<anchor>'. Anchors generated by DocBook ('idm12345') differ between
    the Korean and English builds of the manual, so such sections (and sections without anchor)
    get the positional id 'auto-<n>', n being the section's index in document order on the page.
    A page without section divisions becomes a single section. Sections are returned whatever
    their length; callers drop the short ones.
    """
    root = ET.fromstring(source.encode("utf-8") if isinstance(source, str) else source)
    body = next((el for el in root.iter() if _local(el.tag) == "body"), root)
    page_title = next(("".join(el.itertext()) for el in root.iter() if _local(el.tag) == "title"), stem)
    sections = list(_iter_sections(body)) or [body]
    parsed: list[Section] = []
    for index, element in enumerate(sections):
        anchor = _section_anchor(element) if element is not body else None
        if anchor is None or _AUTO_ANCHOR.fullmatch(anchor):
            anchor = f"auto-{index}"
        collector = _BlockCollector()
        collector.walk(element, paragraph=False, admonition=False)
        title = _section_title(element, page_title)
        parsed.append(Section(f"{stem}#{anchor}", title, tuple(collector.blocks)))
    return parsed


def page_structure(source: str | bytes) -> list[tuple[int, str]]:
    """(depth, classes) of each section division of a page: must agree between ko and en."""
    root = ET.fromstring(source.encode("utf-8") if isinstance(source, str) else source)

    def walk(element: ET.Element, depth: int) -> Iterator[tuple[int, str]]:
        for child in element:
            if _is_section(child):
                yield depth, child.get("class", "")
                yield from walk(child, depth + 1)
            else:
                yield from walk(child, depth)

    return list(walk(root, 0))


def _page_skipped(stem: str) -> bool:
    return stem in SKIPPED_PAGES or stem.startswith(SKIPPED_PAGE_PREFIXES)


def load_manual(help_root: Path) -> dict[str, list[Section]]:
    """Parse both languages' pages (sorted by stem) into sections of at least MIN_BODY_CHARS."""
    stems = {lang: {p.stem for p in (help_root / lang).glob("*.html")} for lang in LANGS}
    if not stems["ko"] or not stems["en"]:
        raise BuildError(f"{help_root}: no ko/*.html or en/*.html pages")
    sections: dict[str, list[Section]] = {lang: [] for lang in LANGS}
    mismatched: list[str] = []
    for stem in sorted(stems["ko"] | stems["en"]):
        if _page_skipped(stem):
            continue
        sources = {
            lang: (help_root / lang / f"{stem}.html").read_bytes() for lang in LANGS if stem in stems[lang]
        }
        if len(sources) == 2 and page_structure(sources["ko"]) != page_structure(sources["en"]):
            mismatched.append(stem)
        for lang, source in sources.items():
            try:
                page = parse_page(source, stem)
            except ET.ParseError as exc:
                path = help_root / lang / f"{stem}.html"
                raise BuildError(f"{path}: not well-formed ({exc})") from None
            sections[lang].extend(s for s in page if len(s.body) >= MIN_BODY_CHARS)
    if mismatched:
        raise BuildError(
            "section structure differs between ko and en on pages "
            f"{', '.join(mismatched[:10])}: positional ids would not align"
        )
    for lang in LANGS:
        counts = Counter(s.doc_id for s in sections[lang])
        duplicates = sorted(doc_id for doc_id, n in counts.items() if n > 1)
        if duplicates:
            raise BuildError(f"{lang}: duplicate document ids {duplicates[:10]}")
    return sections


# --------------------------------------------------------------------------------------------
# inverse cloze queries


def _rank_key(lang: str, doc_id: str, sentence: str) -> str:
    return hashlib.sha256(f"{lang}\0{doc_id}\0{sentence}".encode()).hexdigest()


def query_id(lang: str, text: str) -> str:
    """An opaque, stable query id: the language and a hash of the query text."""
    return f"{lang}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def remove_sentences(section: Section, sentences: Iterable[str]) -> Section:
    """`section` with every occurrence of each sentence removed (blocks left empty disappear)."""
    sentences = tuple(sentences)
    blocks: list[Block] = []
    for block in section.blocks:
        text = block.text
        for sentence in sentences:
            text = text.replace(sentence, " ")
        text = normalize_ws(text)
        if text:
            blocks.append(Block(text, block.paragraph))
    return Section(section.doc_id, section.title, tuple(blocks))


def _document_text(section: Section) -> str:
    return normalize_ws(f"{section.title} {section.body}")


def select_queries(
    sections: Sequence[Section],
    lang: str,
    allowed_docs: set[str] | None = None,
    per_section: int | None = None,
) -> list[Query]:
    """Choose the inverse-cloze queries of one language, in document order.

    Candidates are the sentences of <p> blocks that pass `is_query_candidate`, occur once among all
    candidates of the language, and occur in no other document of the language (title or text).
    Each section (restricted to `allowed_docs` when given) keeps at most `per_section` of them
    (default MAX_QUERIES_PER_SECTION[lang]),
    ranked by SHA-256 of (language, document id, sentence), as long as at least MIN_BODY_CHARS of
    text remain once they are removed. Queries still found in their document after the removal
    (a title repeating the sentence, text joined across the gap) are excluded and the choice redone.
    """
    if per_section is None:
        per_section = MAX_QUERIES_PER_SECTION[lang]
    per_doc: dict[str, list[str]] = {}
    counts: Counter[str] = Counter()
    for section in sections:
        found = [
            sentence
            for block in section.blocks
            if block.paragraph
            for sentence in split_sentences(block.text)
            if is_query_candidate(sentence, lang)
        ]
        per_doc[section.doc_id] = found
        counts.update(found)
    haystack = "\n".join(_document_text(section) for section in sections)
    excluded: set[str] = set()
    while True:
        queries: list[Query] = []
        for section in sections:
            if allowed_docs is not None and section.doc_id not in allowed_docs:
                continue
            own = _document_text(section)
            chosen: list[str] = []
            doc_id = section.doc_id
            for sentence in sorted(per_doc[doc_id], key=partial(_rank_key, lang, doc_id)):
                if len(chosen) == per_section:
                    break
                if counts[sentence] != 1 or sentence in excluded:
                    continue
                if haystack.count(sentence) != own.count(sentence):
                    continue  # also in another document
                if len(remove_sentences(section, [*chosen, sentence]).body) < MIN_BODY_CHARS:
                    continue
                chosen.append(sentence)
            order = {s: i for i, s in enumerate(per_doc[section.doc_id])}
            split = page_split(section.page)
            for sentence in sorted(chosen, key=order.__getitem__):
                queries.append(Query(query_id(lang, sentence), sentence, doc_id, split))
        by_doc = _queries_by_doc(queries)
        leaking: set[str] = set()
        for section in sections:
            mine = [q.text for q in by_doc.get(section.doc_id, [])]
            remaining = _document_text(remove_sentences(section, mine))
            leaking.update(text for text in mine if text in remaining)
        if not leaking:
            break
        excluded |= leaking
    ids = Counter(q.qid for q in queries)
    if any(n > 1 for n in ids.values()):
        raise BuildError(f"{lang}: query id collision")
    return queries


def _queries_by_doc(queries: Iterable[Query]) -> dict[str, list[Query]]:
    by_doc: dict[str, list[Query]] = {}
    for query in queries:
        by_doc.setdefault(query.doc_id, []).append(query)
    return by_doc


def _corpus_without(sections: Sequence[Section], queries: Sequence[Query]) -> list[Section]:
    by_doc = _queries_by_doc(queries)
    return [
        remove_sentences(s, [q.text for q in by_doc[s.doc_id]]) if s.doc_id in by_doc else s for s in sections
    ]


# --------------------------------------------------------------------------------------------
# output


@dataclass(frozen=True)
class Task:
    """One BEIR task: its corpus and its queries (both splits)."""

    name: str
    corpus: list[Section]
    queries: list[Query]


def _write_jsonl_gz(path: Path, rows: Iterable[dict[str, str]]) -> None:
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as handle,
    ):
        handle.write(data)


def write_task(task: Task, directory: Path) -> None:
    """Write `task` as a BEIR directory: corpus/queries .jsonl.gz, qrels/{test,train}.tsv."""
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl_gz(
        directory / "corpus.jsonl.gz",
        ({"_id": s.doc_id, "title": s.title, "text": s.body} for s in task.corpus),
    )
    _write_jsonl_gz(directory / "queries.jsonl.gz", ({"_id": q.qid, "text": q.text} for q in task.queries))
    for split in ("test", "train"):
        lines = ["query-id\tcorpus-id\tscore\n"]
        lines += [f"{q.qid}\t{q.doc_id}\t1\n" for q in task.queries if q.split == split]
        (directory / "qrels" / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")


def task_stats(task: Task) -> dict[str, float | int]:
    """Counts and means of one task, as printed in the README."""
    texts = [f"{s.title} {s.body}" for s in task.corpus]
    stats: dict[str, float | int] = {
        "documents": len(task.corpus),
        "pages": len({s.page for s in task.corpus}),
        "mean_doc_chars": sum(map(len, texts)) / len(texts),
        "mean_doc_tokens": sum(len(t.split()) for t in texts) / len(texts),
        "mean_query_chars": sum(len(q.text) for q in task.queries) / len(task.queries),
        "mean_query_tokens": sum(len(q.text.split()) for q in task.queries) / len(task.queries),
    }
    for split in ("test", "train"):
        chosen = [q for q in task.queries if q.split == split]
        stats[f"{split}_queries"] = len(chosen)
        stats[f"{split}_pages"] = len({q.doc_id.split("#")[0] for q in chosen})
        stats[f"{split}_sections"] = len({q.doc_id for q in chosen})
    syllables = sum(hangul_count(t) for t in texts)
    letters = sum(sum(1 for c in t if c.isalpha()) for t in texts)
    stats["hangul_syllables"] = syllables
    stats["hangul_share"] = syllables / letters if letters else 0.0
    stats["docs_mostly_hangul"] = sum(1 for t in texts if hangul_share(t) >= 0.5)
    return stats


def manual_stats(sections: Sequence[Section]) -> dict[str, int]:
    """How much of one language's documents (before any query removal) is Korean."""
    texts = [f"{s.title} {s.body}" for s in sections]
    paragraphs = [b.text for s in sections for b in s.blocks if b.paragraph]
    return {
        "documents": len(sections),
        "hangul_syllables": sum(hangul_count(t) for t in texts),
        "latin_letters": sum(1 for t in texts for c in t if c.isascii() and c.isalpha()),
        "titles_with_hangul": sum(1 for s in sections if hangul_count(s.title)),
        "docs_with_hangul": sum(1 for t in texts if hangul_count(t)),
        "docs_with_50_hangul": sum(1 for t in texts if hangul_count(t) >= 50),
        "docs_mostly_hangul": sum(1 for t in texts if hangul_share(t) >= 0.5),
        "paragraphs": len(paragraphs),
        "paragraphs_mostly_hangul": sum(1 for t in paragraphs if hangul_share(t) >= 0.5),
    }


def _license_text(help_root: Path, base: Path, version: str) -> str:
    """LICENSE: a notice, the Debian copyright file (or its copy above) and the GFDL 1.2 text.

    The GFDL comes from /usr/share/common-licenses, else from the manual's own appendix pages.
    """
    copyright_text = COPYRIGHT_FALLBACK
    for relative in COPYRIGHT_FILES:
        if (base / relative).is_file():
            copyright_text = (base / relative).read_text(encoding="utf-8")
            break
    if GFDL_FILE.is_file():
        gfdl = GFDL_FILE.read_text(encoding="utf-8")
    else:  # the licence as printed in the manual's appendix
        pages = ["legal", *(f"gfdl-{n}" for n in range(1, 11)), "gfdl-addendum"]
        parts = []
        for stem in pages:
            for section in parse_page((help_root / "en" / f"{stem}.html").read_bytes(), stem):
                parts.append(f"{section.title}\n\n" + "\n\n".join(b.text for b in section.blocks))
        gfdl = "\n\n".join(parts) + "\n"
    header = f"""\
GIMP manual retrieval tasks (gimp-ko, gimp-ko-en, gimp-en)
==========================================================

The corpora and queries in this directory are derived from the GNU Image Manipulation Program
User Manual (gimp-help 2.10), as packaged by Debian:

  gimp-help-ko {version}, gimp-help-en {version} (source package gimp-help;
  the copyright file ships in gimp-help-common {version})
  upstream: https://download.gimp.org/pub/gimp/help/

Copyright 2002-2010 The GIMP Documentation Team (see AUTHORS in the gimp-help sources).

They are distributed under the GNU Free Documentation License, version 1.2 or any later version,
with no Invariant Sections, no Front-Cover Texts and no Back-Cover Texts (GFDL-NIV-1.2+).

Modifications: the text was extracted from the HTML pages, cut into sections, whitespace-normalised,
and sentences were removed from the sections to serve as queries; harness/prepare/gimp.py is the
exact procedure and README.md describes it.

The Debian copyright file, verbatim:

"""
    rule = "\n" + "-" * 76 + "\n\n"
    return header + copyright_text.rstrip("\n") + "\n" + rule + gfdl.rstrip("\n") + "\n"


README_TEMPLATE = """\
# GIMP manual retrieval tasks: gimp-ko, gimp-ko-en, gimp-en

Three small, real retrieval tasks in [BEIR](https://github.com/beir-cellar/beir) format, built from
the GIMP 2.10 user manual in Korean and English. Built by `harness/prepare/gimp.py`, which also
wrote this card; do not edit it by hand, rebuild instead:

    python -m harness.prepare.gimp --out harness/data/gimp             # apt-get download
    python -m harness.prepare.gimp --out harness/data/gimp --from DIR  # extracted packages

The build is deterministic: every rebuild from the same packages is byte-identical.

## Source and licence

Debian packages `gimp-help-ko` and `gimp-help-en`, version {version} (source package `gimp-help`),
the HTML manual under `usr/share/gimp/2.0/help/{{ko,en}}/`, whose pages are aligned by file name.
Copyright 2002-2010 The GIMP Documentation Team; licensed GFDL-1.2-or-later with no Invariant
Sections and no Cover Texts. `LICENSE` holds the notice, the Debian copyright file and the GFDL 1.2.

**The Korean manual is only partly translated.** Its pages have the same structure as the English
ones, but most of the text was left in English. Before any query is taken out, the {ko_docs}
Korean documents hold {ko_hangul} Hangul syllables against {ko_latin} Latin letters; {ko_titles}
of their titles contain Hangul; {ko_some} documents contain some Hangul (often only a figure label
such as `그림 14.85.` or a cross-reference such as `8.1.1절.`), {ko_50} contain at least 50 Hangul
syllables and {ko_half} are at least half Hangul; of their {ko_paras} `<p>` paragraphs, {ko_kparas}
are at least half Hangul. The Korean queries therefore come from the translated minority of the
manual, and taking them out removes {ko_removed} Hangul syllables ({ko_removed_share}) from the
Korean corpus. A Korean query's relevant document is often partly English. The Korean tasks are
small: read their scores with the confidence intervals that {ko_test} test queries allow.

## Construction

1. **Pages.** All `*.html` pages of both languages, sorted by file name, except the book's title
   page (`index`), the index (`gimp-help-index`), the bibliography, the glossary (one long list of
   terms, left untranslated in Korean) and the GFDL pages (`legal`, `gfdl-*`).
2. **Documents.** Each DocBook section division of a page (`div` of class sect1-sect5, section,
   simplesect, refsect1-3, refentry, chapter, appendix, part, preface, reference; a page without
   any is one section) is one document: `title` = the section heading, without its number label
   (`2.3.1.`); `text` = the section's own text, i.e. its paragraphs, lists, tables, figure titles
   and captions, admonitions and code, WITHOUT the text of nested subsections, navigation
   headers/footers, tables of contents and admonition labels. Text is NFC-normalised and every
   whitespace run becomes one space. Documents whose text (title excluded) is shorter than
   {min_body} characters are dropped.
3. **Ids.** A document's id is `<page stem>#<section anchor>`, the anchor being the id of the
   section (the `<a id>` of its heading). Anchors that DocBook generated (`idm12345`) differ
   between the Korean and the English build, so those sections get the positional anchor
   `auto-<n>`, n being the section's index in document order on its page; the build checks that
   every page has the same section structure in both languages, so the same id names the same
   section in both corpora.
4. **Queries: inverse cloze task** (Lee et al., 2019, *Latent Retrieval for Weakly Supervised Open
   Domain Question Answering*). The `<p>` paragraphs of a section (figure titles excluded) are
   split into sentences: a sentence ends at `.`, `!`, `?` (plus closing quotes/brackets) followed
   by a space; after a Hangul syllable (`...합니다.`) always, except in a Korean cross-reference
   (`8.25절. “제목”`); otherwise only if the next sentence does not start in lower case and the
   period does not close an abbreviation (`e.g.`), an initial or a dotted number (`2.3.`).
   A sentence is a candidate query if
   - it ends with `.`, `!`, `?` or `:` (Korean: or with the syllable `다` or `요`);
   - Korean: {ko_rule}; it contains Hangul and Hangul syllables are at least {ko_share} of its
     letters (`str.isalpha`). English: {en_rule};
   - it occurs exactly once among all candidates of its language, and verbatim in no other
     document (title or text) of its language: boilerplate is never a query.

   Each section keeps at most {ko_cap} (Korean) or {en_cap} (English) candidates, the first by
   SHA-256 of (language, document id, sentence), provided at least {min_body} characters of its
   text remain once they are removed. (The rule asked for at most 2 per section; the Korean text
   sits in so few sections that 2 leave fewer than 200 Korean test queries, so Korean allows 3.)
   The chosen sentences are **removed** from their section (every occurrence), so no query occurs
   verbatim in its relevant document (checked after removal, title included; offenders are
   excluded and the choice redone). Each query has exactly one relevant document (score 1).
   Query ids are `ko-`/`en-` plus the first 12 hex digits of the SHA-256 of the query text.
5. **Tasks.**
   - `gimp-ko`: Korean queries, Korean corpus with the Korean query sentences removed.
   - `gimp-ko-en`: the same Korean queries (same ids and texts), the English corpus unmodified;
     the relevant document is the English section with the same id. Korean queries are only
     drawn from sections that exist in the English corpus, so both tasks have the same queries.
   - `gimp-en`: English queries, English corpus with the English query sentences removed.
6. **Splits by page.** A page is `train` when the first 8 hex digits of the SHA-256 of its file
   stem, read as an integer, are below {train_fraction} x 2^32, else `test` (the same pages in
   every task). Train and test queries thus come from disjoint pages; the corpus, shared by both
   splits, has both splits' sentences removed. `queries.jsonl.gz` holds both splits;
   `qrels/test.tsv` and `qrels/train.tsv` say which is which.

## Files

    <task>/corpus.jsonl.gz     {{"_id", "title", "text"}} per line, in page and document order
    <task>/queries.jsonl.gz    {{"_id", "text"}} per line, test and train queries, document order
    <task>/qrels/test.tsv      query-id <TAB> corpus-id <TAB> score, with a header line
    <task>/qrels/train.tsv

gzip files are written with mtime 0 and no file name, so the bytes depend on the content only.

## Counts

{table}

## Caveats

- Inverse-cloze queries are sentences, not user questions; they share the vocabulary of their
  section (which lost them) and favour lexical matching. In gimp-ko-en the English translation of
  a Korean query usually still stands in its relevant English document.
- The Korean queries come from the translated part of the manual (introduction, first steps,
  concepts, tutorials, selection and paint tools, a few dialogs); they concentrate on few pages
  and sections (see the counts), so the Korean test set is less diverse than its size suggests.
- Menu paths, key names and product names are often English in the Korean manual as well.
"""


def _readme_text(stats: dict[str, dict[str, float | int]], ko: dict[str, int], version: str) -> str:
    """The dataset card, with the counts measured on this build (`ko`: `manual_stats` of ko)."""

    def row(label: str, key: str, fmt: str = "{:,}") -> str:
        return f"| {label} | " + " | ".join(fmt.format(stats[t][key]) for t in TASKS) + " |"

    def rule(r: QueryRule, tokens: str) -> str:
        return f"{r.min_chars}-{r.max_chars} characters, {r.min_tokens}-{r.max_tokens} {tokens}"

    table = "\n".join(
        [
            "| | gimp-ko | gimp-ko-en | gimp-en |",
            "|---|---:|---:|---:|",
            "| queries | ko | ko | en |",
            "| corpus | ko, queries removed | en, unmodified | en, queries removed |",
            row("documents", "documents"),
            row("pages with documents", "pages"),
            row("mean document length, characters", "mean_doc_chars", "{:,.0f}"),
            row("mean document length, whitespace tokens", "mean_doc_tokens", "{:,.1f}"),
            row("test queries (= test qrels)", "test_queries"),
            row("train queries (= train qrels)", "train_queries"),
            row("sections judged in test", "test_sections"),
            row("sections judged in train", "train_sections"),
            row("pages of test queries", "test_pages"),
            row("pages of train queries", "train_pages"),
            row("mean query length, characters", "mean_query_chars", "{:,.1f}"),
            row("mean query length, whitespace tokens", "mean_query_tokens", "{:,.1f}"),
            row("Hangul syllables in the corpus", "hangul_syllables"),
            row("Hangul share of the corpus's letters", "hangul_share", "{:.1%}"),
            row("documents at least half Hangul", "docs_mostly_hangul"),
        ]
    )
    removed = ko["hangul_syllables"] - int(stats["gimp-ko"]["hangul_syllables"])
    return README_TEMPLATE.format(
        version=version,
        ko_docs=f"{ko['documents']:,}",
        ko_hangul=f"{ko['hangul_syllables']:,}",
        ko_latin=f"{ko['latin_letters']:,}",
        ko_titles=f"{ko['titles_with_hangul']:,}",
        ko_some=f"{ko['docs_with_hangul']:,}",
        ko_50=f"{ko['docs_with_50_hangul']:,}",
        ko_half=f"{ko['docs_mostly_hangul']:,}",
        ko_paras=f"{ko['paragraphs']:,}",
        ko_kparas=f"{ko['paragraphs_mostly_hangul']:,}",
        ko_removed=f"{removed:,}",
        ko_removed_share=f"{removed / ko['hangul_syllables']:.0%}",
        ko_test=f"{stats['gimp-ko']['test_queries']:,}",
        min_body=MIN_BODY_CHARS,
        ko_rule=rule(QUERY_RULES["ko"], "whitespace tokens"),
        en_rule=rule(QUERY_RULES["en"], "words"),
        ko_share=f"{QUERY_RULES['ko'].min_hangul_share:.0%}",
        ko_cap=MAX_QUERIES_PER_SECTION["ko"],
        en_cap=MAX_QUERIES_PER_SECTION["en"],
        train_fraction=TRAIN_FRACTION,
        table=table,
    )


def build(
    help_root: Path,
    out: Path,
    base: Path | None = None,
    version: str = VERSION,
    log: bool = True,
) -> dict[str, dict[str, float | int]]:
    """Build the three tasks from the manual under `help_root` into `out`; return their stats.

    `base` is the root of the extracted packages (for the Debian copyright file) and `version` the
    package version that the README and LICENSE, written next to the task directories, name.
    Each task directory is written aside and then moved into place. Raises BuildError when a task
    falls short of MIN_DOCUMENTS documents or MIN_TEST_QUERIES test queries (nothing is written).
    """
    started = time.monotonic()

    def say(message: str) -> None:
        if log:
            print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr)

    sections = load_manual(help_root)
    say(f"parsed: {len(sections['ko'])} ko and {len(sections['en'])} en documents")
    en_ids = {s.doc_id for s in sections["en"]}
    ko_queries = select_queries(sections["ko"], "ko", allowed_docs=en_ids)
    say(f"ko queries: {len(ko_queries)}")
    en_queries = select_queries(sections["en"], "en")
    say(f"en queries: {len(en_queries)}")
    tasks = [
        Task("gimp-ko", _corpus_without(sections["ko"], ko_queries), ko_queries),
        Task("gimp-ko-en", sections["en"], ko_queries),
        Task("gimp-en", _corpus_without(sections["en"], en_queries), en_queries),
    ]
    stats = {task.name: task_stats(task) for task in tasks}
    for task in tasks:
        s = stats[task.name]
        if s["documents"] < MIN_DOCUMENTS or s["test_queries"] < MIN_TEST_QUERIES:
            raise BuildError(
                f"{task.name}: {s['documents']} documents and {s['test_queries']} test queries, "
                f"below the minimum {MIN_DOCUMENTS} / {MIN_TEST_QUERIES}"
            )
    out.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        staging = out / f".{task.name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        write_task(task, staging)
        shutil.rmtree(out / task.name, ignore_errors=True)
        staging.rename(out / task.name)
        say(
            f"{task.name}: {stats[task.name]['documents']} documents, "
            f"{stats[task.name]['test_queries']} test / {stats[task.name]['train_queries']} train"
        )
    license_text = _license_text(help_root, base if base is not None else help_root, version)
    (out / "LICENSE").write_text(license_text, encoding="utf-8")
    readme = _readme_text(stats, manual_stats(sections["ko"]), version)
    (out / "README.md").write_text(readme, encoding="utf-8")
    say(f"wrote {out}")
    return stats


# --------------------------------------------------------------------------------------------
# sources and command line


def download_packages(dest: Path, version: str = VERSION) -> Path:
    """`apt-get download` the manual's packages into `dest`, extract them; return the root."""
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise BuildError(
            f"{' and '.join(missing)} not found: this builder downloads Debian packages. "
            "Elsewhere, extract gimp-help-ko, gimp-help-en (and gimp-help-common) "
            f"{version} yourself and pass --from DIR."
        )
    specs = [f"{name}={version}" for name in PACKAGES]
    proc = subprocess.run(
        ["apt-get", "download", *specs], cwd=dest, capture_output=True, text=True, check=False
    )
    debs = sorted(dest.glob("*.deb"))
    if proc.returncode != 0 or len(debs) != len(PACKAGES):
        detail = (proc.stderr or proc.stdout).strip()
        raise BuildError(
            f"apt-get download {' '.join(specs)} failed (exit {proc.returncode}):\n{detail}\n"
            "Run 'apt-get update' first, check that a Debian release carrying version "
            f"{version} is in the sources (bookworm), or pass --from DIR."
        )
    root = dest / "root"
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def resolve_help_root(base: Path) -> Path:
    """The directory holding ko/ and en/: `base/usr/share/gimp/2.0/help` or `base` itself."""
    for candidate in (base / HELP_DIR, base):
        if (candidate / "ko").is_dir() and (candidate / "en").is_dir():
            return candidate
    raise BuildError(f"{base}: neither {HELP_DIR}/{{ko,en}} nor {{ko,en}} found")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: python -m harness.prepare.gimp --out DIR [--from DIR] [--version V]."""
    parser = argparse.ArgumentParser(prog="python -m harness.prepare.gimp", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("harness/data/gimp"))
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="already extracted packages (the root holding usr/share/...) instead of apt-get",
    )
    parser.add_argument(
        "--version",
        default=VERSION,
        help="package version: the one to download, and the one the README and LICENSE name",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.source is not None:
            build(resolve_help_root(args.source), args.out, base=args.source, version=args.version)
        else:
            with tempfile.TemporaryDirectory(prefix="gimp-help-") as tmp:
                root = download_packages(Path(tmp), args.version)
                build(resolve_help_root(root), args.out, base=root, version=args.version)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
