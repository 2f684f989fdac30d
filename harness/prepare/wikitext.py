"""MediaWiki markup to plain text and sections, and the articles JSONL record both dump steps write.

`wikitext_sections(text)` removes what a reader does not see as prose and keeps what they do:

- removed with their content: comments, `<ref>...</ref>` and `<ref .../>`, `<references>`, math,
  gallery, code and other non-prose tags, templates `{{...}}` (nested, parser functions too; the
  language templates `{{lang|xx|TEXT}}`, `{{llang|..}}`, `{{lang-xx|TEXT}}` keep TEXT, since Korean
  leads put the original-language name there), tables `{| ... |}` (nested), file, image, media and
  category links, interlanguage links (`[[en:Foo]]`), magic words (`__TOC__`), horizontal rules;
- kept as text: internal links (`[[a|b]]` -> b, `[[a]]` -> a, the pipe trick `[[a (b)|]]` -> a),
  external links (`[url text]` -> text; a bare `[url]` goes), bold and italic (quotes dropped),
  list items (markers dropped), `<nowiki>` content (taken literally), the text inside other HTML
  tags, character entities (decoded);
- headings `== X ==` start sections (level = the number of `=`); the text before the first heading
  is the lead (title "", level 0).

Paragraphs are the runs of non-blank lines; the lines of a paragraph are joined by a space, list
items each on a line of their own. Sections whose text is empty after cleaning are dropped (the
lead is always kept), as are the reference-style sections named in `BOILERPLATE_SECTIONS` (See
also, References, External links, 각주, 외부 링크, ...): lists of links, not prose.

`article_record` assembles the interchange record (see the module `harness.prepare.wikipedia`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BOILERPLATE_SECTIONS",
    "Section",
    "article_record",
    "has_protected",
    "is_redirect",
    "outer_spans",
    "paragraphs_of",
    "protect",
    "restore",
    "tidy",
    "wikitext_sections",
]

BOILERPLATE_SECTIONS = frozenset(
    s.casefold()
    for s in (
        "See also", "References", "External links", "Further reading", "Notes", "Notes and references",
        "Sources", "Bibliography", "Footnotes", "Citations",
        "같이 보기", "각주", "외부 링크", "참고 문헌", "참고 자료", "주석", "출처", "관련 항목",
    )
)  # fmt: skip

_REDIRECT = re.compile(r"\s*#\s*(?:redirect|넘겨주기)\b", re.IGNORECASE)

# Tags removed with everything between them (and their self-closing forms).
_DROP_TAGS = (
    "ref|references|math|chem|ce|gallery|timeline|score|syntaxhighlight|source|pre|imagemap|graph"
    "|mapframe|maplink|templatedata|templatestyles|includeonly|noinclude|hiero|inputbox|categorytree"
)
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_DROP_PAIRED = re.compile(rf"<({_DROP_TAGS})\b[^>]*?(?<!/)>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_DROP_SINGLE = re.compile(rf"<(?:{_DROP_TAGS})\b[^>]*/>", re.IGNORECASE)
_DROP_UNCLOSED = re.compile(rf"</?(?:{_DROP_TAGS})\b[^>]*>", re.IGNORECASE)  # strays left over
_NOWIKI = re.compile(r"<nowiki\s*>(.*?)</nowiki\s*>", re.DOTALL | re.IGNORECASE)
_NOWIKI_SINGLE = re.compile(r"<nowiki\s*/>", re.IGNORECASE)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")
_BRACES = re.compile(r"\{\{|\}\}")
_MAGIC = re.compile(r"__[A-Z]+__")
_TABLE_START = re.compile(r"^\s*(?::\s*)*\{\|")
_TABLE_END = re.compile(r"^\s*\|\}")
_INTERNAL = re.compile(r"\[\[([^\[\]]*)\]\]")
_EXTERNAL = re.compile(r"\[(?:https?:|ftp:|mailto:|//)[^\s\[\]]*(?:\s+([^\[\]]*))?\]", re.IGNORECASE)
_QUOTES = re.compile(r"'{2,}")
_HEADING = re.compile(r"^(={1,6})\s*(.+?)\s*\1\s*$")
_LIST = re.compile(r"^[*#:;]+\s*")
_RULE = re.compile(r"^-{4,}\s*$")
_EMPTY_PARENS = re.compile(r"\(\s*\)|（\s*）")
_PAREN_OPEN_JUNK = re.compile(r"([(（])\s*[,;、·]\s*")
_PAREN_CLOSE_JUNK = re.compile(r"\s*[,;、·]\s*([)）])")
_SPACES = re.compile(r"[ \t\u00a0\u200b]+")
_SPACE_BEFORE = re.compile(r" +([,.;:!?)）」』])")

_FILE_PREFIXES = frozenset({"file", "image", "media", "파일", "그림", "category", "분류"})
_LANG_LINK = re.compile(r"^[a-z]{2,3}(?:-[a-z]{2,8})*:")
_LANG_TEMPLATES = frozenset({"lang", "llang", "언어", "lang2"})

# <nowiki> content is taken literally: its markup characters are moved to the private use area while
# the markup is removed, and moved back at the end.
_MARKUP_CHARS = "[]{}|'=<>&*#:;_~-"
_PROTECT = str.maketrans({c: chr(0xE000 + i) for i, c in enumerate(_MARKUP_CHARS)})
_PROTECTED = re.compile(f"[{chr(0xE000)}-{chr(0xE000 + len(_MARKUP_CHARS) - 1)}]")
_RESTORE = str.maketrans({chr(0xE000 + i): c for i, c in enumerate(_MARKUP_CHARS)})


def protect(text: str) -> str:
    """`text` with its markup characters hidden from the cleaners (restored by `restore`)."""
    return text.translate(_PROTECT)


def restore(text: str) -> str:
    return text.translate(_RESTORE)


def has_protected(text: str) -> bool:
    """Whether `protect` hid characters in `text` (most pages have none: no `restore` needed)."""
    return _PROTECTED.search(text) is not None


@dataclass
class Section:
    """A heading's title and level (the lead: "" and 0) and its paragraphs of plain text."""

    title: str
    level: int
    paragraphs: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)


def is_redirect(text: str) -> bool:
    """A page whose text starts with `#REDIRECT` or `#넘겨주기` (any case)."""
    return _REDIRECT.match(text) is not None


def outer_spans(text: str, tokens: re.Pattern[str], opening: str) -> list[tuple[int, int]]:
    """(start, end) of every outermost balanced span between `opening` tokens and the other ones
    that `tokens` finds; an opening never closed and a closing never opened are left as text."""
    stack: list[int] = []
    matched: list[tuple[int, int]] = []
    for token in tokens.finditer(text):
        if token.group() == opening:
            stack.append(token.start())
        elif stack:
            matched.append((stack.pop(), token.end()))
    matched.sort()
    outer: list[tuple[int, int]] = []
    for start, end in matched:
        if outer and start < outer[-1][1]:
            continue  # inside the previous outermost span
        outer.append((start, end))
    return outer


def _split_top(inner: str) -> list[str]:
    """The `|`-separated parts of a template's inside, pipes in nested links or templates kept."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(inner):
        pair = inner[i : i + 2]
        if pair in ("[[", "{{"):
            depth, i = depth + 1, i + 2
            continue
        if pair in ("]]", "}}"):
            depth, i = max(depth - 1, 0), i + 2
            continue
        if inner[i] == "|" and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
        i += 1
    parts.append(inner[start:])
    return parts


def _template_text(inner: str) -> str:
    """What a template leaves in the text: the last unnamed argument of a language template, else
    nothing."""
    name = inner.split("|", 1)[0].strip().casefold()
    if name not in _LANG_TEMPLATES and not name.startswith("lang-"):
        return ""
    unnamed = [p for p in _split_top(inner)[1:] if "=" not in p.split("[[", 1)[0]]
    return remove_templates(unnamed[-1]) if unnamed else ""


def remove_templates(text: str) -> str:
    """`text` without its balanced `{{...}}` (language templates keep their text)."""
    if "{{" not in text:
        return text
    pieces, last = [], 0
    for start, end in outer_spans(text, _BRACES, "{{"):
        pieces.append(text[last:start])
        pieces.append(_template_text(text[start + 2 : end - 2]))
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def remove_tables(text: str) -> str:
    """`text` without its `{| ... |}` tables, nested ones too; one never closed runs to the end, as
    MediaWiki renders it."""
    if "{|" not in text:
        return text
    kept, depth = [], 0
    for line in text.split("\n"):
        if _TABLE_START.match(line):
            depth += 1
        elif depth and _TABLE_END.match(line):
            depth -= 1
        elif not depth:
            kept.append(line)
            continue
        if not depth:
            kept.append("")  # the table was a block of its own: keep the paragraph break
    return "\n".join(kept)


def _internal_link(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, bar, label = inner.partition("|")
    target = target.strip()
    if not target.startswith(":"):
        prefix = target.split(":", 1)[0].strip().casefold() if ":" in target else ""
        if prefix in _FILE_PREFIXES or _LANG_LINK.match(target):
            return ""
    target = target.lstrip(":")
    if bar and label.strip():
        return label
    if bar:  # pipe trick: [[Foo (bar)|]] -> Foo, [[Help:Foo|]] -> Foo
        return re.sub(r"\s*\([^()]*\)$", "", target.split(":", 1)[-1])
    return target


def _external_link(match: re.Match[str]) -> str:
    return match.group(1) or ""


def remove_links(text: str) -> str:
    """Links to their visible text; file, category and interlanguage links gone (innermost first,
    so a file's caption holding links goes with the file)."""
    for _ in range(8):  # nesting depth of real pages is 2-3
        before = text
        if "[" in text:
            text = _EXTERNAL.sub(_external_link, text)
        if "[[" in text:
            text = _INTERNAL.sub(_internal_link, text)
        if text == before:
            break
    return text


def clean_markup(text: str) -> str:
    """Wikitext without its markup, line structure (headings, lists, paragraphs) kept."""
    text = _COMMENT.sub("", text)
    if "<" in text:
        text = _NOWIKI.sub(lambda m: protect(m.group(1)), text)
        text = _NOWIKI_SINGLE.sub("", text)
        text = _DROP_PAIRED.sub("", text)
        text = _DROP_SINGLE.sub("", text)
        text = _DROP_UNCLOSED.sub("", text)
    text = remove_templates(text)
    text = remove_tables(text)
    text = remove_links(text)
    if "<" in text:
        text = _BR.sub(" ", text)
        text = _TAG.sub("", text)
    text = _QUOTES.sub("", text)
    text = _MAGIC.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return text


def tidy(line: str) -> str:
    """One line's white space and the punctuation a removed template leaves: `( , )`, `()`."""
    line = _SPACES.sub(" ", line)
    if "(" in line or "（" in line:
        line = _PAREN_OPEN_JUNK.sub(r"\1", line)
        line = _PAREN_CLOSE_JUNK.sub(r"\1", line)
        line = _EMPTY_PARENS.sub("", line)
        line = _SPACES.sub(" ", line)
    return _SPACE_BEFORE.sub(r"\1", line).strip()


def paragraphs_of(lines: list[tuple[str, bool]]) -> list[str]:
    """Paragraphs of (line, is_list_item) pairs: runs of non-blank lines; plain lines joined by a
    space, a list item always on a line of its own."""
    paragraphs: list[str] = []
    current: list[str] = []
    previous_item = False
    for line, item in lines:
        if not line:
            if current:
                paragraphs.append("".join(current))
                current = []
            continue
        if current:
            current.append("\n" if item or previous_item else " ")
        current.append(line)
        previous_item = item
    if current:
        paragraphs.append("".join(current))
    return paragraphs


def sections_of(
    cleaned: str, heading: re.Pattern[str], body_line: Callable[[str], tuple[str, bool] | None]
) -> list[Section]:
    """The lead and the sections of markup already cleaned to lines: `heading` matches a heading
    line (group 1 its `=` run, group 2 its title); `body_line(raw)` gives any other line as
    (text, is a list item or table row), or None to leave it out. Empty sections and boilerplate
    ones (references, external links) are dropped; the lead is always kept."""
    sections = [Section("", 0)]
    lines: list[tuple[str, bool]] = []
    literal = has_protected(cleaned)

    def close() -> None:
        found = paragraphs_of(lines)
        sections[-1].paragraphs = [restore(p) for p in found] if literal else found
        lines.clear()

    for raw in cleaned.split("\n"):
        match = heading.match(raw.strip())
        if match:
            close()
            sections.append(Section(restore(tidy(match.group(2))), len(match.group(1))))
        elif (line := body_line(raw)) is not None:
            lines.append(line)
    close()
    return [
        s
        for i, s in enumerate(sections)
        if i == 0 or (s.paragraphs and s.title.casefold() not in BOILERPLATE_SECTIONS)
    ]


def _wikitext_line(raw: str) -> tuple[str, bool] | None:
    if _RULE.match(raw):
        return "", False
    marker = _LIST.match(raw)
    line = tidy(raw[marker.end() :] if marker else raw)
    if marker and not line:
        return None  # a list item emptied by the cleaning (an image, a template)
    return line, marker is not None


def wikitext_sections(text: str) -> list[Section]:
    """The lead and the sections of a page's wikitext as plain text (see the module docstring)."""
    return sections_of(clean_markup(text), _HEADING, _wikitext_line)


def article_record(
    article_id: str,
    title: str,
    language: str,
    source: str,
    timestamp: str | None,
    sections: list[Section],
) -> dict[str, Any] | None:
    """The articles JSONL record; None when no text is left. `first_paragraph` is the lead's first
    paragraph, or the article's first where the lead is empty (NamuWiki pages open with a heading)."""
    paragraphs = [p for s in sections for p in s.paragraphs]
    if not paragraphs:
        return None
    lead = sections[0].paragraphs if sections and sections[0].level == 0 else []
    return {
        "id": article_id,
        "title": title,
        "language": language,
        "source": source,
        "timestamp": timestamp,
        "text": "\n\n".join(paragraphs),
        "first_paragraph": lead[0] if lead else paragraphs[0],
        "sections": [{"title": s.title, "level": s.level, "text": s.text} for s in sections],
    }
