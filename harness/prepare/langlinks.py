"""Readers of Wikipedia's MySQL table dumps (`langlinks.sql.gz`, `page.sql.gz`), streamed.

A dump is a series of `INSERT INTO `table` VALUES (1,'en','Seoul'),(2,...),...;` lines, each about a
megabyte; strings carry MySQL's backslash escapes (`\\'`, `\\\\`, `\\n`, ...), so a quoted title may hold
`),(`. Each line is matched tuple by tuple with one regular expression over the bytes: a string
ends only at an unescaped quote, so `),(` inside it never splits a tuple. A stretch that is not a
tuple is reported with its byte position (in the decompressed stream) and skipped up to the next
`),(`; the rest of the line is still read. Nothing is loaded whole.

    titles = read_page_titles(Path("kowiki-latest-page.sql.gz"), report)
    for ko, en in iter_langlinks(Path("kowiki-latest-langlinks.sql.gz"), titles, "en", report): ...
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from common.errors import WorkbenchError
from common.files import read_jsonl, read_tsv
from harness.console import meter

__all__ = ["Report", "iter_langlinks", "iter_sql_rows", "read_page_titles", "unescape_mysql"]

Value = str | int | float | None
Report = Callable[[str, str, str], None]  # (kind, where, detail): `StepRun.problem`

_VALUE = rb"'(?:[^'\\]|\\.)*'|NULL|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_TUPLE = re.compile(rb"\((?:" + _VALUE + rb")(?:,(?:" + _VALUE + rb"))*\)", re.DOTALL)
_VALUES = re.compile(_VALUE, re.DOTALL)
_INSERT = re.compile(rb"INSERT INTO `(?P<table>[^`]+)`(?: \([^)]*\))? VALUES ")
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_ESCAPES = {b"0": b"\0", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}

# English namespace prefixes: a link to one of these is not an article title
_NAMESPACES = {
    "category", "template", "wikipedia", "file", "image", "portal", "help", "draft", "module",
    "special", "user", "talk", "mediawiki", "book", "timedtext", "wp", "project",
}  # fmt: skip
_QUALIFIED = re.compile(r"\([^()]*\)\s*$")


def unescape_mysql(raw: bytes) -> bytes:
    """The bytes of a MySQL string literal's body, its backslash escapes resolved."""
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw)


def _value(raw: bytes) -> Value:
    if raw.startswith(b"'"):
        return unescape_mysql(raw[1:-1]).decode("utf-8")  # UnicodeDecodeError: the caller reports it
    if raw == b"NULL":
        return None
    return float(raw) if b"." in raw or b"e" in raw.lower() else int(raw)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def iter_sql_rows(path: Path, table: str, report: Report) -> Iterator[tuple[int, tuple[Value, ...]]]:
    """(byte position, values) of every tuple inserted into `table`; malformed stretches reported
    through `report` with their byte position and skipped."""
    path = Path(path)
    wanted = table.encode()
    offset = 0
    try:
        with _open(path) as handle, meter(f"{path.name}", unit="MB") as progress:
            for line in handle:
                start = offset
                offset += len(line)
                progress.advance(len(line) / 1e6)
                head = _INSERT.match(line)
                if head is None or head["table"] != wanted:
                    continue
                yield from _line_rows(path, line, start, head.end(), report)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise WorkbenchError(f"{path}: truncated or corrupt data after byte {offset} ({exc})") from None


def _line_rows(
    path: Path, line: bytes, start: int, pos: int, report: Report
) -> Iterator[tuple[int, tuple[Value, ...]]]:
    end = len(line.rstrip(b"\r\n"))
    while pos < end:
        match = _TUPLE.match(line, pos)
        after = match.end() if match else -1
        if match is not None and after < end and line[after : after + 1] in (b",", b";"):
            try:
                values = tuple(_value(v) for v in _VALUES.findall(line, match.start() + 1, after - 1))
            except UnicodeDecodeError as exc:
                report("malformed tuple", f"{path}: byte {start + pos}", f"not UTF-8 ({exc.reason})")
            else:
                yield start + pos, values
            if line[after : after + 1] == b";":
                return
            pos = after + 1
            continue
        report(
            "malformed tuple",
            f"{path}: byte {start + pos}",
            repr(line[pos : pos + 60].decode("utf-8", "replace")),
        )
        resume = line.find(b"),(", pos)
        if resume < 0:
            return
        pos = resume + 2


def read_page_titles(path: Path, report: Report) -> dict[int, str]:
    """page id -> title of the namespace-0 articles (redirects left out) of a `page.sql(.gz)` dump,
    a `page_id<TAB>title` TSV or an articles JSONL (`id`, `title`); underscores read as spaces."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    titles: dict[int, str] = {}
    if name.endswith(".sql"):
        for position, row in iter_sql_rows(path, "page", report):
            if len(row) < 4 or not isinstance(row[0], int) or not isinstance(row[2], str):
                report("malformed page row", f"{path}: byte {position}", f"{len(row)} values")
                continue
            if row[1] == 0 and row[3] in (0, None):
                titles[row[0]] = row[2].replace("_", " ")
    elif name.endswith(".jsonl"):
        for line, article in read_jsonl(path):
            try:
                titles[int(article["id"])] = str(article["title"]).replace("_", " ")
            except (KeyError, ValueError, TypeError):
                report("malformed page row", f"{path}: line {line}", "no integer id and title")
    elif name.endswith(".tsv"):
        for line, fields in read_tsv(path):
            if len(fields) < 2 or not fields[0].isdigit():
                if line != 1:  # a header line is allowed
                    report("malformed page row", f"{path}: line {line}", "expected page_id<TAB>title")
                continue
            titles[int(fields[0])] = "\t".join(fields[1:]).replace("_", " ")
    else:
        raise WorkbenchError(
            f"{path}: page titles must be a page.sql(.gz) dump, a .tsv or an articles .jsonl"
        )
    return titles


def _article_title(title: str) -> bool:
    prefix, colon, _ = title.partition(":")
    return bool(title.strip()) and not (colon and prefix.strip().lower() in _NAMESPACES)


def iter_langlinks(
    path: Path,
    titles: dict[int, str],
    language: str,
    report: Report,
    count: Callable[[str], None] | None = None,
    keep_qualified: bool = False,
) -> Iterator[tuple[str, str, int]]:
    """(local title, `language` title, byte position) of each interlanguage link from a known
    namespace-0 page. Titles with a disambiguating qualifier ("수성 (행성)") are left out unless
    `keep_qualified`: stripped, they would join the senses of one word into one synonym group."""
    count = count or (lambda _key: None)
    for position, row in iter_sql_rows(path, "langlinks", report):
        if len(row) != 3 or not isinstance(row[0], int) or not all(isinstance(v, str) for v in row[1:]):
            report(
                "malformed tuple",
                f"{path}: byte {position}",
                f"expected (id,'lang','title'), got {row!r:.80}",
            )
            continue
        if row[1] != language:
            continue
        local, foreign = titles.get(int(row[0] or 0)), str(row[2])
        if local is None:
            count("links from other pages")
            continue
        if not _article_title(foreign):
            count("links to other namespaces")
            continue
        if not keep_qualified and (_QUALIFIED.search(local) or _QUALIFIED.search(foreign)):
            count("qualified titles left out")
            continue
        yield local, foreign, position
