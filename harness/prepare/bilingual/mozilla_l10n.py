"""Firefox and Thunderbird strings in English and Korean: Fluent (`.ftl`), `.properties` and `.dtd`
files read out of the English `omni.ja` archives and the Korean language pack (`.xpi`), both zips,
aligned by (file, message id).

A file is named by its path with the locale segments replaced by "@", prefixed with the archive's
place in the application, so that `browser/omni.ja: localization/en-US/browser/tabbrowser.ftl`
and `langpack.xpi: browser/localization/ko/browser/tabbrowser.ftl` are both
`browser/localization/@/browser/tabbrowser.ftl`.

Placeables are stripped, to plain text as a user reads it: a term reference (`{ -brand-short-name }`)
is replaced by the term's value in the same language, a string or number literal by itself, a
selection (`{ $n -> ... }`) by its default variant; variables, message references and functions
are dropped. In `.properties`/`.dtd` values printf placeholders (`%S`, `%1$S`, `%d`), `#1`-style
plural placeholders and entity references (`&brandShortName;`) are dropped; a PluralForm value
(English "one;other", Korean a single form) keeps the English plural form.
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.prepare.gimp.text import hangul_count, normalize_ws

__all__ = [
    "AlignedString",
    "Entry",
    "align_strings",
    "logical_path",
    "parse_dtd",
    "parse_ftl",
    "parse_properties",
    "read_locale",
]

Problem = Callable[[str, str, str], None]  # (kind, where, detail) -> counted by the step
EXTENSIONS = (".ftl", ".properties", ".dtd")
# ids whose values are key bindings or CSS, not text
NOT_TEXT = re.compile(r"(?i)(?:^|[._-])(?:accesskey|commandkey|key|keycode|modifiers|style|width|height)$")
PRINTF = re.compile(r"%(?:\d+\$)?l*[sSdDuifxX@]|#\d+|&[\w.-]+;")


@dataclass(frozen=True)
class Entry:
    """One string: its id (`id` or `id.attribute`), source line, raw value and plain text."""

    id: str
    line: int
    raw: str
    text: str


@dataclass(frozen=True)
class AlignedString:
    file: str
    id: str
    en: str
    ko: str


def logical_path(prefix: str, member: str, locale: str) -> str | None:
    """`prefix + member` with the `locale` segments as "@"; None for a member with no such segment
    or of another kind (not a localisation file)."""
    if not member.endswith(EXTENSIONS):
        return None
    segments = f"{prefix}{member}".split("/")
    if locale not in segments[:-1]:
        return None
    return "/".join("@" if s == locale else s for s in segments)


def _line(source: str, offset: int) -> int:
    return source.count("\n", 0, offset) + 1


def parse_ftl(source: str, where: str, problem: Problem) -> tuple[list[tuple[str, int, object]], dict]:
    """([(id, line, fluent Pattern)], {term name: Term}) of one Fluent file; every malformed entry
    (the parser's Junk) is a problem naming its line."""
    from fluent.syntax import FluentParser, ast

    messages: list[tuple[str, int, object]] = []
    terms: dict[str, ast.Term] = {}
    for entry in FluentParser(with_spans=True).parse(source).body:
        if isinstance(entry, ast.Junk):
            line = _line(source, entry.span.start)
            detail = "; ".join(f"{a.code} {a.message}" for a in entry.annotations) or "unparsable"
            problem("malformed Fluent entry", f"{where}: line {line}", detail)
            continue
        if not isinstance(entry, ast.Message | ast.Term):
            continue
        line = _line(source, entry.span.start)
        name = entry.id.name if isinstance(entry, ast.Message) else f"-{entry.id.name}"
        if isinstance(entry, ast.Term):
            terms[entry.id.name] = entry
        if entry.value is not None:
            messages.append((name, line, entry.value))
        for attribute in entry.attributes:
            messages.append(
                (f"{name}.{attribute.id.name}", _line(source, attribute.span.start), attribute.value)
            )
    return messages, terms


def _pattern_text(pattern: object, terms: dict, depth: int = 0) -> tuple[str, str]:
    """(raw source, plain text) of a Fluent pattern; see the module's note on placeables."""
    from fluent.syntax import ast
    from fluent.syntax.serializer import serialize_pattern

    raw = serialize_pattern(pattern).strip()
    parts: list[str] = []

    def expression(expr: object) -> None:
        if isinstance(expr, ast.Placeable):
            expression(expr.expression)
        elif isinstance(expr, ast.StringLiteral):
            parts.append(expr.parse()["value"])
        elif isinstance(expr, ast.NumberLiteral):
            parts.append(expr.value)
        elif isinstance(expr, ast.TermReference) and expr.attribute is None and depth < 5:
            term = terms.get(expr.id.name)
            if term is not None:
                parts.append(_pattern_text(term.value, terms, depth + 1)[1])
        elif isinstance(expr, ast.SelectExpression):
            default = next(v for v in expr.variants if v.default)
            parts.append(_pattern_text(default.value, terms, depth + 1)[1])

    for element in pattern.elements:  # type: ignore[attr-defined]
        if isinstance(element, ast.TextElement):
            parts.append(element.value)
        else:
            expression(element)
    return raw, normalize_ws("".join(parts))


_UNESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")


def _unescape(value: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u") and len(code) == 5:
            return chr(int(code[1:], 16))
        return {"n": "\n", "t": "\t", "r": "\r"}.get(code, code)

    return _UNESCAPE.sub(one, value)


def _plain(raw: str) -> str:
    return normalize_ws(PRINTF.sub(" ", raw.replace("%%", "%")))


def parse_properties(source: str, where: str, problem: Problem) -> list[Entry]:
    """`key = value` lines (`#`/`!` comments, a trailing backslash continues a line, Java escapes);
    a line with no `=` or `:` is a problem."""
    entries = []
    lines = source.splitlines()
    index = 0
    while index < len(lines):
        start = index
        line = lines[index].lstrip()
        index += 1
        if not line or line[0] in "#!":
            continue
        while line.endswith("\\") and not line.endswith("\\\\") and index < len(lines):
            line = line[:-1] + lines[index].lstrip()
            index += 1
        match = re.match(r"((?:\\.|[^=:\s\\])+)\s*[=:]\s?(.*)$", line)
        if match is None:
            problem("malformed properties line", f"{where}: line {start + 1}", line[:80])
            continue
        raw = _unescape(match.group(2).strip())
        entries.append(Entry(_unescape(match.group(1)), start + 1, raw, _plain(raw)))
    return entries


_DTD_COMMENT = re.compile(r"<!--.*?-->", re.S)
_DTD_ENTITY = re.compile(r"<!ENTITY\s+([\w.:-]+)\s+(?:\"([^\"]*)\"|'([^']*)')\s*>", re.S)


def parse_dtd(source: str, where: str, problem: Problem) -> list[Entry]:
    """`<!ENTITY id "value">` declarations; any other text outside comments is a problem."""
    blanked = _DTD_COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)
    entries, last = [], 0
    for match in _DTD_ENTITY.finditer(blanked):
        between = blanked[last : match.start()]
        if between.strip():
            offset = last + len(between) - len(between.lstrip())
            problem("malformed DTD text", f"{where}: line {_line(source, offset)}", between.strip()[:80])
        raw = match.group(2) if match.group(2) is not None else match.group(3)
        entries.append(Entry(match.group(1), _line(source, match.start()), raw, _plain(raw)))
        last = match.end()
    if blanked[last:].strip():
        offset = last + len(blanked[last:]) - len(blanked[last:].lstrip())
        problem("malformed DTD text", f"{where}: line {_line(source, offset)}", blanked[last:].strip()[:80])
    return entries


def read_locale(
    archives: Sequence[tuple[Path, str]], locale: str, problem: Problem
) -> dict[str, list[Entry]]:
    """logical file -> its entries, for every localisation file of `locale` in the (zip, prefix)
    archives. Fluent term references resolve against every term of the locale."""
    sources: dict[str, tuple[str, str]] = {}  # logical -> (where, text)
    for archive, prefix in archives:
        with zipfile.ZipFile(archive) as zf:
            for member in sorted(zf.namelist()):
                logical = logical_path(prefix, member, locale)
                if logical is None:
                    continue
                where = f"{archive.name}:{member}"
                try:
                    sources[logical] = (where, zf.read(member).decode("utf-8-sig"))
                except UnicodeDecodeError as exc:
                    problem("file not UTF-8", f"{where}: byte {exc.start}", "file skipped")
    parsed: dict[str, list[tuple[str, int, object]]] = {}
    terms: dict = {}
    files: dict[str, list[Entry]] = {}
    for logical, (where, text) in sources.items():
        if logical.endswith(".ftl"):
            messages, file_terms = parse_ftl(text, where, problem)
            parsed[logical] = messages
            terms.update(file_terms)
        elif logical.endswith(".properties"):
            files[logical] = parse_properties(text, where, problem)
        else:
            files[logical] = parse_dtd(text, where, problem)
    for logical, messages in parsed.items():
        entries = []
        for name, line, pattern in messages:
            raw, text = _pattern_text(pattern, terms)
            entries.append(Entry(name, line, raw, text))
        files[logical] = entries
    return dict(sorted(files.items()))


def _by_id(entries: Iterable[Entry], where: str, problem: Problem) -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for entry in entries:
        if entry.id in found:
            problem("duplicate message id", f"{where}: line {entry.line}", f"{entry.id}: the first kept")
            continue
        found[entry.id] = entry
    return found


def align_strings(
    en_files: dict[str, list[Entry]], ko_files: dict[str, list[Entry]], problem: Problem
) -> tuple[list[AlignedString], Counter[str]]:
    """The (file, id) pairs present in both languages whose strings are text worth keeping, in
    file then English order, with the counts of what was kept and left out and why.

    Left out, in this order: ids naming key bindings or CSS (`.accesskey`, `.style`, ...); an empty
    value in either language; a value that is only placeables (no letter left); the same text in
    both; a Korean text without Hangul (untranslated)."""
    counts: Counter[str] = Counter()
    aligned = []
    for file in sorted(en_files.keys() ^ ko_files.keys()):
        only = "en-US" if file in en_files else "ko"
        counts[f"files only in {only}"] += 1
        problem("file in one language only", file, f"only {only}")
    for file in sorted(en_files.keys() & ko_files.keys()):
        counts["files aligned"] += 1
        en = _by_id(en_files[file], f"{file} (en-US)", problem)
        ko = _by_id(ko_files[file], f"{file} (ko)", problem)
        counts["en-US strings"] += len(en)
        counts["ko strings"] += len(ko)
        for lang, mine, other in (("en-US", en, ko), ("ko", ko, en)):
            for key, entry in mine.items():
                if key not in other:
                    problem("message in one language only", f"{file} ({lang}): line {entry.line}", key)
        for key, en_entry in en.items():
            ko_entry = ko.get(key)
            if ko_entry is None:
                continue
            if file.endswith(".properties") and en_entry.text.count(";") == 1 and ";" not in ko_entry.text:
                # PluralForm "one;other" in English, one form in Korean: keep the English plural
                en_entry = Entry(
                    en_entry.id, en_entry.line, en_entry.raw, en_entry.text.split(";")[1].strip()
                )
            if NOT_TEXT.search(key):
                counts["dropped: key binding or CSS"] += 1
            elif not en_entry.raw.strip() or not ko_entry.raw.strip():
                counts["dropped: empty"] += 1
            elif not any(c.isalpha() for c in en_entry.text) or not any(c.isalpha() for c in ko_entry.text):
                counts["dropped: placeholders only"] += 1
            elif en_entry.text == ko_entry.text:
                counts["dropped: identical"] += 1
            elif hangul_count(ko_entry.text) == 0:
                counts["dropped: no Hangul in Korean"] += 1
            else:
                aligned.append(AlignedString(file, key, en_entry.text, ko_entry.text))
                counts["aligned strings"] += 1
    return aligned, counts
