"""The `wikipedia` step: a MediaWiki XML export dump (`.xml.bz2` or `.xml`) streamed into articles.

    python -m harness.prepare wikipedia kowiki-latest-pages-articles.xml.bz2 --language ko --out DIR

Output: `DIR/articles.jsonl.gz`, one article per line (the interchange of the dump steps):
    {"id", "title", "language", "source": "wikipedia", "timestamp", "text", "first_paragraph",
     "sections": [{"title", "level", "text"}]}   (sections[0]: the lead, title "", level 0)
with `id` = "<dbname>-<page id>" (kowiki-123), stable across dumps, distinct across wikis.

Memory stays constant: `bz2.open` + `ElementTree.iterparse`, each page cleared once read, the
markup cleaned in batches (in a pool of `--workers` processes, with at most a few batches in
flight, order kept). Skipped and counted: redirects (`<redirect>` or `#REDIRECT`/`#넘겨주기`), pages
outside the main namespace (`<ns>` != 0), pages empty after cleaning; counted problems: a page
without title or text. The dump's `<siteinfo><dbname>` (or the host of `<base>`) must be of
`--language`: a kowiki dump given as `en` stops with an error.

A truncated dump (a cut bz2 stream: EOFError; a cut XML tail: ParseError) is not a crash: the
pages read up to the cut are kept, the manifest counts `truncated: 1` with the position (bytes of
XML read, compressed bytes read, the last page read) under problems, and the end of the run says so
in red. The output is then a prefix of the dump; re-download it and re-run to get the rest.
"""

from __future__ import annotations

import bz2
import collections
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from common.errors import WorkbenchError
from common.files import atomic_write
from harness.console import console, meter, user_errors
from harness.prepare.step import StepRun, run_step
from harness.prepare.wikitext import Section, article_record, is_redirect, wikitext_sections

__all__ = [
    "ARTICLES",
    "LANGUAGES",
    "RawPage",
    "build_wikipedia",
    "clean_batch",
    "cleaned_lines",
    "dump_language",
    "register",
    "scan_dump",
    "write_articles",
]

VERSION = "1"
ARTICLES = "articles.jsonl.gz"
LANGUAGES = ("ko", "en")
BATCH_PAGES = 200  # a batch for a worker: this many pages or BATCH_CHARS of text, whichever first
BATCH_CHARS = 2_000_000
READ_BYTES = 1 << 20
_EXPORT_NS = re.compile(r"^\{(http://www\.mediawiki\.org/xml/export-[0-9.]+/)\}mediawiki$")


@dataclass(frozen=True)
class RawPage:
    """An article page as the dump holds it, before cleaning."""

    article_id: str
    title: str
    timestamp: str | None
    text: str


class _Counting:
    """A reader that counts the bytes read through it (the XML position of a truncation)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.bytes = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bytes += len(data)
        return data


def _open(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(decompressed stream, the file underneath whose position is the compressed progress)."""
    handle = path.open("rb")
    if path.suffix == ".bz2":  # iterparse reads 16 kB at a time: bz2 gives more per call (~10% faster)
        return io.BufferedReader(bz2.open(handle, "rb"), buffer_size=READ_BYTES), handle  # type: ignore[arg-type]
    return handle, handle


def dump_language(dbname: str | None, base: str | None) -> str | None:
    """The language of a dump from `<dbname>` (kowiki -> ko) or `<base>` (https://en.wikipedia...)."""
    if dbname and dbname.endswith("wiki"):
        return dbname.removesuffix("wiki").replace("_", "-")
    host = re.match(r"^https?://([a-z-]+)\.wikipedia\.org", base or "")
    return host.group(1) if host else None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def scan_dump(path: Path, language: str, run: StepRun) -> Iterator[RawPage]:
    """The article pages of a dump in order; redirects, other namespaces and malformed pages
    counted on `run`, the siteinfo checked against `language`, a truncation recorded."""
    stream, underneath = _open(path)
    counting = _Counting(stream)
    ns = ""
    dbname: str | None = None
    root: ET.Element | None = None
    last_title: str | None = None
    pages = 0
    try:
        with meter(f"{path.name}", total=path.stat().st_size / 1e6, unit="MB") as progress:
            done_mb = 0.0
            for event, elem in ET.iterparse(counting, events=("start", "end")):  # type: ignore[arg-type]
                if root is None:
                    match = _EXPORT_NS.match(elem.tag)
                    if match is None or event != "start":
                        raise WorkbenchError(f"{path}: not a MediaWiki XML export (root {elem.tag!r})")
                    root, ns = elem, "{" + match.group(1) + "}"
                    run.extra["export_schema"] = match.group(1)
                    continue
                if event != "end":
                    continue
                name = _local(elem.tag)
                if name == "siteinfo":
                    dbname = elem.findtext(f"{ns}dbname")
                    found = dump_language(dbname, elem.findtext(f"{ns}base"))
                    run.extra["dbname"] = dbname
                    if found is not None and found != language:
                        raise WorkbenchError(
                            f"{path}: the dump is of {dbname or found} (language {found!r}), "
                            f"not of --language {language!r}"
                        )
                    root.clear()
                    continue
                if name != "page":
                    continue
                pages += 1
                run.count("pages")
                page = _page(elem, ns, dbname or f"{language}wiki", run)
                last_title = elem.findtext(f"{ns}title") or last_title
                elem.clear()
                root.clear()
                if page is not None:
                    yield page
                now_mb = underneath.tell() / 1e6
                if now_mb - done_mb >= 1:
                    progress.advance(now_mb - done_mb)
                    done_mb = now_mb
    except (EOFError, ET.ParseError, OSError) as exc:
        if root is None:
            raise WorkbenchError(f"{path}: not a MediaWiki XML export ({exc})") from None
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a read error of the machine, not a cut dump ("Invalid data stream" has no errno)
        where = (
            f"{path.name}: byte {counting.bytes:,} of the XML (about compressed byte {underneath.tell():,}), "
            f"after {pages:,} pages (last {last_title!r})"
        )
        run.count("truncated")
        run.problem("truncated dump", where, f"{type(exc).__name__}: {exc}")
        console.print(
            f"[red]warning:[/] {where}: the dump ends early ({type(exc).__name__}: {exc}); the pages read "
            "so far are kept, the manifest counts it as truncated",
            soft_wrap=True,
            highlight=False,
        )
    finally:
        stream.close()
        underneath.close()


def _page(elem: ET.Element, ns: str, dbname: str, run: StepRun) -> RawPage | None:
    """The page as a RawPage, or None where it is skipped (counted)."""
    title = (elem.findtext(f"{ns}title") or "").strip()
    page_id = (elem.findtext(f"{ns}id") or "").strip()
    revisions = elem.findall(f"{ns}revision")
    revision = revisions[-1] if revisions else None
    text = revision.findtext(f"{ns}text") if revision is not None else None
    if not title or text is None:
        missing = " and ".join(n for n, absent in (("title", not title), ("text", text is None)) if absent)
        run.count("malformed")
        run.problem(
            "malformed page", f"page {title}" if title else f"page id {page_id or '?'}", f"no {missing}"
        )
        return None
    if (elem.findtext(f"{ns}ns") or "0").strip() != "0":
        run.count("non_article")
        return None
    if elem.find(f"{ns}redirect") is not None or is_redirect(text):
        run.count("redirects")
        return None
    timestamp = revision.findtext(f"{ns}timestamp") if revision is not None else None
    return RawPage(f"{dbname}-{page_id or title}", title, timestamp or None, text)


Sectioner = Callable[[str], list[Section]]


def clean_batch(batch: list[RawPage], language: str, source: str, sectioner: Sectioner) -> list[str | None]:
    """The JSON line of each page (None: empty after cleaning), its markup turned into sections by
    `sectioner` (`wikitext_sections`, `namumark_sections`); what a worker process runs."""
    lines: list[str | None] = []
    for page in batch:
        record = article_record(
            page.article_id, page.title, language, source, page.timestamp, sectioner(page.text)
        )
        lines.append(None if record is None else json.dumps(record, ensure_ascii=False) + "\n")
    return lines


def _batches(pages: Iterator[RawPage]) -> Iterator[list[RawPage]]:
    batch: list[RawPage] = []
    chars = 0
    for page in pages:
        batch.append(page)
        chars += len(page.text)
        if len(batch) >= BATCH_PAGES or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def cleaned_lines(
    pages: Iterator[RawPage], language: str, source: str, sectioner: Sectioner, workers: int
) -> Iterator[str | None]:
    """`clean_batch` over the pages in order, in `workers` processes (1: in this one). At most
    2 x workers batches are in flight, so a fast reader never piles pages up in memory."""
    if workers <= 1:
        for batch in _batches(pages):
            yield from clean_batch(batch, language, source, sectioner)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        pending: collections.deque[Any] = collections.deque()
        for batch in _batches(pages):
            pending.append(pool.apply_async(clean_batch, (batch, language, source, sectioner)))
            while len(pending) >= 2 * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def write_articles(run: StepRun, lines: Iterator[str | None]) -> None:
    """`run.out/articles.jsonl.gz` from the cleaned lines; the empty ones counted."""
    with atomic_write(run.out / ARTICLES) as f:
        for line in lines:
            if line is None:
                run.count("empty")
            else:
                f.write(line)
                run.count("articles")


def build_wikipedia(
    dump: Path, out: Path, language: str, workers: int = 1, force: bool = False
) -> dict[str, Any]:
    """Stream `dump` into `out/articles.jsonl.gz` (see the module docstring); returns the manifest."""
    dump = Path(dump)
    if language not in LANGUAGES:
        raise WorkbenchError(f"--language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    if workers < 1:
        raise WorkbenchError(f"--workers must be at least 1, got {workers}")

    def build(run: StepRun) -> None:
        pages = scan_dump(dump, language, run)
        write_articles(run, cleaned_lines(pages, language, "wikipedia", wikitext_sections, workers))
        run.extra["language"] = language
        run.extra["complete"] = not run.counts["truncated"]

    # the worker count changes nothing in the output: not a parameter of the manifest's key
    manifest = run_step(out, "wikipedia", VERSION, [dump], {"language": language}, build, force=force)
    if manifest["counts"].get("truncated"):
        console.print(
            f"[red]{dump.name} was truncated:[/] {out / ARTICLES} holds only the pages before the cut "
            f"({manifest['counts'].get('articles', 0):,} articles); see problems in the manifest",
            soft_wrap=True,
            highlight=False,
        )
    return manifest


def register(app: typer.Typer) -> None:
    """Add the `wikipedia` command."""

    @app.command("wikipedia")
    def wikipedia_command(
        dump: Annotated[Path, typer.Argument(help="a MediaWiki XML export: pages-articles .xml.bz2 or .xml")],
        out: Annotated[Path, typer.Option("--out", help="output folder: articles.jsonl.gz + manifest.json")],
        language: Annotated[str, typer.Option(help="ko or en; checked against the dump's dbname")],
        workers: Annotated[int, typer.Option(help="processes cleaning the markup (1: none)")] = 1,
        force: Annotated[bool, typer.Option(help="rebuild even when up to date")] = False,
    ) -> None:
        """Articles (plain text, first paragraph, sections) of a Wikipedia dump; redirects skipped."""
        with user_errors():
            build_wikipedia(dump, out, language=language, workers=workers, force=force)
