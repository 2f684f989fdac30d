"""Inverse-cloze queries (Lee et al., 2019): sentences taken out of a section, which they then judge.

Paragraphs are split into sentences, the sentences that may serve as queries are chosen per
section (`select_queries`) and removed from their section (`remove_sentences`); the page a section
comes from decides its split (`page_split`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from harness.prepare.gimp.manual import MIN_BODY_CHARS, Block, BuildError, Section
from harness.prepare.gimp.text import hangul_count, hangul_share, is_hangul, normalize_ws

__all__ = [
    "MAX_QUERIES_PER_SECTION",
    "QUERY_RULES",
    "TRAIN_FRACTION",
    "Query",
    "QueryRule",
    "corpus_without",
    "is_query_candidate",
    "page_split",
    "query_id",
    "remove_sentences",
    "select_queries",
    "split_sentences",
]

TRAIN_FRACTION = 0.3
# At most this many queries per section. The translated Korean text sits in few sections (about
# 160 sections hold Korean candidates), and with 2 the Korean test split falls short of 200.
MAX_QUERIES_PER_SECTION = {"ko": 3, "en": 2}

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
class Query:
    """An inverse-cloze query: a sentence taken out of the document `doc_id`."""

    qid: str
    text: str
    doc_id: str
    split: str


def _ends_sentence(text: str, start: int, punct: int, following: str) -> bool:
    """Whether the punctuation at `punct` closes the sentence that began at `start`."""
    previous = text[punct - 1] if punct > start else ""
    if is_hangul(previous):  # Korean: '...다.', '...요?', but not '8.25절. “제목”'
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


def corpus_without(sections: Sequence[Section], queries: Sequence[Query]) -> list[Section]:
    """`sections` with each query's sentence removed from its relevant document."""
    by_doc = _queries_by_doc(queries)
    return [
        remove_sentences(s, [q.text for q in by_doc[s.doc_id]]) if s.doc_id in by_doc else s for s in sections
    ]
