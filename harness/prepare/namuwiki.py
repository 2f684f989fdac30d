"""The `namuwiki` step: the NamuWiki JSON dump streamed into articles (the format of `wikipedia`).

    python -m harness.prepare namuwiki namuwiki_20210301.json --out DIR [--workers N]

Input: the dump as NamuWiki publishes it, one JSON array of documents
`{"namespace", "title", "text", "contributors"}` (about 10 GB: read incrementally with
`JSONDecoder.raw_decode` over a buffered reader, never loaded whole), or the same documents as JSON
lines (`.jsonl`, one per line); either may be gzip-compressed (`.gz`). The form is told by the
first character (`[`: array).

Output: `DIR/articles.jsonl.gz`, language "ko", source "namuwiki", timestamp null (the dump has
none), id "namuwiki-" + 16 hex digits of the title's BLAKE2b hash (titles are unique in NamuWiki;
the id stays the same across dumps). The markup removal is `harness.prepare.namumark`.

Kept: the main namespace, which the dumps write as "0" or 0 (a document without the field, or with
"", is taken as main too); the other namespaces (틀, 분류, 파일, 사용자, 나무위키, ... or their
numbers) are counted as `non_article`. Redirects (`#redirect TARGET`) are counted and skipped, as
are documents empty after cleaning.

Broken input: an element that is valid JSON but not a document (no string title or text) is a
counted problem, skipped; a malformed JSON line of the JSON-lines form likewise ("file: line N").
A malformed element inside the array stops the step with an error naming its index and character
offset: past it the array's boundaries cannot be found again safely. An array cut short at the end
(a truncated download) keeps the documents before the cut and counts `truncated: 1`, as the
`wikipedia` step does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from common.errors import WorkbenchError
from harness.console import console, meter, user_errors
from harness.prepare.namumark import is_namu_redirect, namumark_sections
from harness.prepare.step import StepRun, run_step
from harness.prepare.wikipedia import ARTICLES, RawPage, cleaned_lines, write_articles

__all__ = ["Truncated", "build_namuwiki", "iter_documents", "namu_id", "register"]

VERSION = "1"
CHUNK_CHARS = 1 << 20
_SPACE = re.compile(r"[ \t\r\n]*")
_MAIN_NAMESPACES = frozenset({"", "0"})
_SURE_MARGIN = 16  # chars after an error point: no JSON token but a string or number is longer


class Truncated(Exception):
    """The array ends before its closing `]` (where: the element and character of the cut)."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.where, self.detail = where, detail


def namu_id(title: str) -> str:
    return "namuwiki-" + hashlib.blake2b(title.encode("utf-8"), digest_size=8).hexdigest()


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open(encoding="utf-8")


class _ArrayReader:
    """The elements of a JSON array read chunk by chunk: (element index, character offset, value)."""

    def __init__(self, handle: IO[str], name: str) -> None:
        self.handle, self.name = handle, name
        self.buf, self.pos, self.offset, self.eof = "", 0, 0, False
        self.decoder = json.JSONDecoder()

    def _more(self, at_least: int = CHUNK_CHARS) -> None:
        chunk = self.handle.read(max(at_least, CHUNK_CHARS))
        if not chunk:
            self.eof = True
        self.offset += self.pos
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0

    def _skip_space(self) -> str:
        """The next non-space character ("" at the end of the input), not consumed."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self.eof:
                return ""
            self._more()

    def _where(self, index: int) -> str:
        return f"{self.name}: element {index:,} (character {self.offset + self.pos:,})"

    def _value(self, index: int) -> Any:
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                unterminated = exc.msg.startswith("Unterminated string")
                if not unterminated and exc.pos < len(self.buf) - _SURE_MARGIN:
                    raise WorkbenchError(
                        f"{self._where(index)}: malformed JSON ({exc.msg} at character "
                        f"{self.offset + exc.pos:,}); the array cannot be resynchronised past it: "
                        "repair the element or convert the dump to JSON lines, whose bad lines are skipped"
                    ) from None
                if self.eof:
                    raise Truncated(
                        self._where(index), f"the input ends inside the element ({exc.msg})"
                    ) from None
                self._more(len(self.buf))  # double the buffer: a long element costs O(its length)
                continue
            self.pos = end
            return value

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        if self._skip_space() != "[":
            raise WorkbenchError(f"{self.name}: not a JSON array")
        self.pos += 1
        index = 0
        if self._skip_space() == "]":
            return
        while True:
            start = self.offset + self.pos
            yield index, start, self._value(index)
            index += 1
            following = self._skip_space()
            if following == ",":
                self.pos += 1
                if self._skip_space() == "":
                    raise Truncated(self._where(index), "the input ends after a comma")
                continue
            if following == "]":
                return
            if following == "":
                raise Truncated(self._where(index), "the input ends before the closing ]")
            raise WorkbenchError(f"{self._where(index)}: expected , or ] between elements, got {following!r}")


def iter_documents(path: Path, run: StepRun) -> Iterator[tuple[str, Any]]:
    """(where, element) of the dump, array or JSON lines; malformed lines counted on `run`."""
    with _open_text(path) as handle:
        first, skipped = handle.read(1), 0
        while first.isspace():
            first, skipped = handle.read(1), skipped + 1
        if first == "[":
            reader = _ArrayReader(handle, path.name)
            reader.buf, reader.offset = "[", skipped
            for index, start, value in reader:
                yield f"{path.name}: element {index:,} (character {start:,})", value
            return
        line_no = 0
        pending = first
        for line_no, line in enumerate(handle, start=1):
            line, pending = pending + line, ""
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                if not line.endswith("\n"):
                    raise Truncated(
                        f"{path.name}: line {line_no}", f"the last line is cut ({exc.msg})"
                    ) from None
                run.problem("malformed JSON line", f"{path.name}: line {line_no}", exc.msg)
                run.count("malformed")
                continue
            yield f"{path.name}: line {line_no}", value


def _documents(path: Path, run: StepRun) -> Iterator[RawPage]:
    """The main-namespace, non-redirect documents as pages; the others counted."""
    size_mb = path.stat().st_size / 1e6
    try:
        with meter(path.name, unit="documents") as progress:
            for where, doc in iter_documents(path, run):
                run.count("documents")
                progress.advance()
                title = doc.get("title") if isinstance(doc, dict) else None
                text = doc.get("text") if isinstance(doc, dict) else None
                if not isinstance(title, str) or not title.strip() or not isinstance(text, str):
                    run.count("malformed")
                    run.problem("malformed document", where, "not an object with a string title and text")
                    continue
                if str(doc.get("namespace", "")).strip() not in _MAIN_NAMESPACES:
                    run.count("non_article")
                    continue
                if is_namu_redirect(text):
                    run.count("redirects")
                    continue
                yield RawPage(namu_id(title), title, None, text)
    except Truncated as cut:
        run.count("truncated")
        run.problem("truncated dump", cut.where, cut.detail)
        console.print(
            f"[red]warning:[/] {cut.where}: the dump ({size_mb:,.0f} MB) ends early ({cut.detail}); the "
            "documents read so far are kept, the manifest counts it as truncated",
            soft_wrap=True,
            highlight=False,
        )


def build_namuwiki(dump: Path, out: Path, workers: int = 1, force: bool = False) -> dict[str, Any]:
    """Stream the NamuWiki dump into `out/articles.jsonl.gz`; returns the manifest."""
    dump = Path(dump)
    if workers < 1:
        raise WorkbenchError(f"--workers must be at least 1, got {workers}")

    def build(run: StepRun) -> None:
        write_articles(
            run, cleaned_lines(_documents(dump, run), "ko", "namuwiki", namumark_sections, workers)
        )
        run.extra["language"] = "ko"
        run.extra["complete"] = not run.counts["truncated"]

    manifest = run_step(out, "namuwiki", VERSION, [dump], {}, build, force=force)
    if manifest["counts"].get("truncated"):
        console.print(
            f"[red]{dump.name} was truncated:[/] {out / ARTICLES} holds only the documents before the cut; "
            "see problems in the manifest",
            soft_wrap=True,
            highlight=False,
        )
    return manifest


def register(app: typer.Typer) -> None:
    """Add the `namuwiki` command."""

    @app.command("namuwiki")
    def namuwiki_command(
        dump: Annotated[Path, typer.Argument(help="the NamuWiki dump: a JSON array (.json) or JSON lines")],
        out: Annotated[Path, typer.Option("--out", help="output folder: articles.jsonl.gz + manifest.json")],
        workers: Annotated[int, typer.Option(help="processes cleaning the markup (1: none)")] = 1,
        force: Annotated[bool, typer.Option(help="rebuild even when up to date")] = False,
    ) -> None:
        """Articles (plain text, first paragraph, sections) of a NamuWiki dump; redirects skipped."""
        with user_errors():
            build_namuwiki(dump, out, workers=workers, force=force)
