"""NamuMark (NamuWiki's markup) to plain text and sections, as `wikitext` does for MediaWiki.

- removed with their content: `{{{#!html ...}}}` and `{{{#!syntax ...}}}` blocks, footnotes
  `[* ...]` / `[*name ...]`, macros (`[include(...)]`, `[목차]`, `[tableofcontents]`, `[각주]`,
  `[footnote]`, `[youtube(...)]`, `[age(...)]`, `[date]`, ...), file and category links
  (`[[파일:...]]`, `[[분류:...]]`), struck-through text (`~~...~~`, `--...--`: retracted text, often
  a joke, not what the article says), comment lines (`##`), horizontal rules;
- kept as text: links (`[[target|text]]` -> text, `[[target]]` -> target, `[[target#anchor]]` ->
  target), `{{{#!wiki ...}}}` and `{{{#!folding ...}}}` blocks (their first line, the style or the
  folding label, dropped), size and colour blocks (`{{{+1 text}}}`, `{{{#red text}}}`), literal
  blocks `{{{text}}}` (taken literally), `[ruby(text, ruby=...)]` -> text, table cells (`|| a || b ||`
  -> "a b", the cell attributes `<...>` dropped: NamuWiki puts much of its content in tables), bold,
  italic, underline, superscript and subscript (markup dropped), list items and quotes (markers
  dropped), backslash escapes (the escaped character kept literally); `[br]` breaks the line;
- headings `== X ==` and the folded `==# X #==` start sections.

The lead is the text before the first heading (usually empty: pages open with `[목차]` and
`== 개요 ==`).
"""

from __future__ import annotations

import re

from harness.prepare.wikitext import (
    Section,
    outer_spans,
    protect,
    sections_of,
    tidy,
)

__all__ = ["clean_namumark", "is_namu_redirect", "namumark_sections"]

_TRIPLE = re.compile(r"\{\{\{|\}\}\}")
_STYLE_SIZE = re.compile(r"^[+-][1-5]\s")
_STYLE_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[a-zA-Z]+)(?:,\s*#?\w+)?\s")
_ESCAPE = re.compile(r"\\(.)")
_MACRO = re.compile(
    r"\[(?:include|youtube|kakaotv|nicovideo|vimeo|navertv|age|dday|pagecount|anchor|datetime|date"
    r"|목차|tableofcontents|각주|footnote|clearfix|math)(?:\([^()\]]*\))?\]",
    re.IGNORECASE,
)
_BR = re.compile(r"\[br\]", re.IGNORECASE)
_RUBY = re.compile(r"\[ruby\(([^,()\]]*)(?:,[^()\]]*)?\)\]", re.IGNORECASE)
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_FOOTNOTE = re.compile(r"\[\*[^\[\]]*\]")
_STRIKE = re.compile(r"~~(?!~)(.+?)~~|--(?!-)([^\n]+?)(?<!-)--(?!-)")
_STYLES = re.compile(r"'{2,3}|__|\^\^|,,")
_HEADING = re.compile(r"^(={1,6})#?\s*(.+?)\s*#?\1#?\s*$")
_TABLE_ATTR = re.compile(r"<[^<>\n]*>")
_LIST = re.compile(r"^\s*(?:\*|(?:[1aAiI])\.(?:#\d+)?)\s*|^\s*>+\s*")
_RULE = re.compile(r"^-{4,9}\s*$")
_REDIRECT = re.compile(r"\s*#(?:redirect|넘겨주기)\s", re.IGNORECASE)
_FILE_PREFIXES = ("파일:", "분류:", "file:", "category:")


def is_namu_redirect(text: str) -> bool:
    """A document that is `#redirect TARGET` (or `#넘겨주기`)."""
    return _REDIRECT.match(text + " ") is not None


def _block(inner: str) -> str:
    """What a `{{{...}}}` block leaves in the text."""
    if inner.startswith(("#!html", "#!syntax")):
        return ""
    if inner.startswith(("#!wiki", "#!folding")):
        return "\n" + inner.split("\n", 1)[1] + "\n" if "\n" in inner else ""
    for style in (_STYLE_SIZE, _STYLE_COLOUR):
        match = style.match(inner)
        if match:
            return inner[match.end() :]
    return protect(inner)  # a literal block: shown as written


def remove_blocks(text: str) -> str:
    """`{{{...}}}` blocks, innermost first (a `#!wiki` box holds styled text)."""
    for _ in range(10):
        spans = outer_spans(text, _TRIPLE, "{{{")
        if not spans:
            return text
        pieces, last = [], 0
        for start, end in spans:
            inner = text[start + 3 : end - 3]
            pieces.append(text[last:start])
            pieces.append(_block(remove_blocks(inner) if "{{{" in inner else inner))
            last = end
        pieces.append(text[last:])
        text = "".join(pieces)
    return text


def _link(match: re.Match[str]) -> str:
    target, bar, label = match.group(1).partition("|")
    if target.strip().casefold().startswith(_FILE_PREFIXES):
        return ""
    if bar and label.strip():
        return label
    target = target.strip().lstrip(":")
    return target.split("#", 1)[0] if not target.startswith("#") else target[1:]


def clean_namumark(text: str) -> str:
    """NamuMark without its markup, line structure kept."""
    text = _ESCAPE.sub(lambda m: protect(m.group(1)), text)
    text = remove_blocks(text)
    if "[" in text:
        text = _MACRO.sub("", text)
        text = _BR.sub("\n", text)
        text = _RUBY.sub(r"\1", text)
        for _ in range(8):
            before = text
            text = _LINK.sub(_link, text)
            text = _FOOTNOTE.sub("", text)
            if text == before:
                break
    text = _STRIKE.sub("", text)
    return _STYLES.sub("", text)


def _table_row(line: str) -> str:
    """The cells of a table row as text: `|| a || b ||` -> "a b"."""
    cells = [_TABLE_ATTR.sub("", c).strip() for c in line.strip().split("||")]
    return " ".join(c for c in cells if c)


def _namumark_line(raw: str) -> tuple[str, bool] | None:
    stripped = raw.strip()
    if _RULE.match(stripped):
        return "", False
    if stripped.startswith("##"):
        return None  # a comment line
    if stripped.startswith("||") or (stripped.endswith("||") and "||" in stripped[:-2]):
        row = tidy(_table_row(stripped))
        return (row, True) if row else None
    marker = _LIST.match(raw)
    line = tidy(raw[marker.end() :] if marker else raw)
    if marker and not line:
        return None
    return line, marker is not None


def namumark_sections(text: str) -> list[Section]:
    """The lead and the sections of a NamuWiki document as plain text (see the module docstring)."""
    return sections_of(clean_namumark(text), _HEADING, _namumark_line)
