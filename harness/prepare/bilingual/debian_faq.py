"""The Debian FAQ in Korean and English (DocBook XHTML, one chapter per file): sections parsed and
aligned by chapter file and section anchor, the section numbers checked to agree.

    <div class="section"><div class="titlepage">...<h2 class="title"><a id="whatisfaq"></a>1.1. What is
    this FAQ?</h2>...</div><p>...</p>...<div class="section">(a subsection)</div></div>

A section's text is its own paragraphs; nested subsections are sections of their own.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.prepare.gimp.text import normalize_ws

__all__ = ["FaqSection", "Problem", "align_faq", "parse_chapter"]

Problem = Callable[[str, str, str], None]  # (kind, where, detail) -> counted by the step
XHTML = "{http://www.w3.org/1999/xhtml}"
HEADINGS = {f"{XHTML}h{n}" for n in range(1, 7)}
BLOCKS = {
    f"{XHTML}{tag}"
    for tag in ("p", "pre", "li", "dt", "dd", "tr", "div", "table", "ul", "ol", "dl", "blockquote")
} | HEADINGS
SKIPPED_DIVS = {"titlepage", "section", "toc", "navheader", "navfooter"}
NUMBERED = re.compile(r"^(\d+(?:\.\d+)*)\.\s+(.*)$")
CHAPTER_NUMBER = re.compile(r"^[^\s.]*\s*\d+\s*[^\s.]*\.\s+")  # "Chapter 1. ", "1장. "


@dataclass(frozen=True)
class FaqSection:
    """One section: `number` "1.2", `title` without the number, `chapter` the chapter's title."""

    file: str  # chapter file name without language and suffix: "basic-defs"
    anchor: str
    number: str
    title: str
    chapter: str
    text: str  # paragraphs separated by "\n\n"


def _text_blocks(elem: ET.Element, paragraphs: list[str], buffer: list[str]) -> None:
    """Append `elem`'s text to `buffer`, closing a paragraph at each block element's edges."""
    block = elem.tag in BLOCKS
    if block:
        _flush(paragraphs, buffer)
    if elem.text:
        buffer.append(elem.text)
    for child in elem:
        if not (child.tag == f"{XHTML}div" and child.get("class") in SKIPPED_DIVS):
            _text_blocks(child, paragraphs, buffer)
        if child.tail:
            buffer.append(child.tail)
    if block:
        _flush(paragraphs, buffer)


def _flush(paragraphs: list[str], buffer: list[str]) -> None:
    text = normalize_ws("".join(buffer))
    if text:
        paragraphs.append(text)
    buffer.clear()


def _heading(div: ET.Element) -> ET.Element | None:
    """The h1..h6 of a section's own title page (not of a nested section)."""
    for child in div:
        if child.tag == f"{XHTML}div" and child.get("class") == "titlepage":
            return next((e for e in child.iter() if e.tag in HEADINGS), None)
    return None


def _sections(root: ET.Element) -> Iterator[ET.Element]:
    for div in root.iter(f"{XHTML}div"):
        if div.get("class") == "section":
            yield div


def parse_chapter(path: Path, problem: Problem) -> list[FaqSection]:
    """The sections of one chapter file, in document order; unparsable files and sections without
    a heading anchor are problems, skipped."""
    file = path.name.split(".", 1)[0]
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        problem("unparsable XHTML", f"{path}: line {exc.position[0]}", str(exc))
        return []
    chapter = ""
    for div in root.iter(f"{XHTML}div"):
        if div.get("class") in {"chapter", "appendix"}:
            heading = _heading(div)
            if heading is not None:
                chapter = CHAPTER_NUMBER.sub("", normalize_ws("".join(heading.itertext())))
            break
    sections = []
    for index, div in enumerate(_sections(root), start=1):
        heading = _heading(div)
        anchor = (
            next((a.get("id") for a in heading.iter(f"{XHTML}a") if a.get("id")), None) if heading else None
        )
        if heading is None or anchor is None:
            problem("section without a heading anchor", f"{path}: section {index}", "skipped")
            continue
        heading_text = normalize_ws("".join(heading.itertext()))
        match = NUMBERED.match(heading_text)
        number, title = (match.group(1), match.group(2)) if match else ("", heading_text)
        paragraphs: list[str] = []
        buffer: list[str] = []
        for child in div:
            if not (child.tag == f"{XHTML}div" and child.get("class") in SKIPPED_DIVS):
                _text_blocks(child, paragraphs, buffer)
            if child.tail:
                buffer.append(child.tail)
        _flush(paragraphs, buffer)
        sections.append(FaqSection(file, anchor, number, title, chapter, "\n\n".join(paragraphs)))
    return sections


def _chapters(folder: Path, language: str) -> dict[str, Path]:
    return {p.name.removesuffix(f".{language}.html"): p for p in sorted(folder.glob(f"*.{language}.html"))}


def align_faq(
    en_dir: Path, ko_dir: Path, problem: Problem
) -> tuple[list[tuple[FaqSection, FaqSection]], dict[str, int]]:
    """(English, Korean) section pairs matched by chapter file and anchor, in English order, and
    the counts: sections per language, aligned, and those left out (one language only, a section
    number that differs, a duplicate anchor)."""
    en_files, ko_files = _chapters(en_dir, "en"), _chapters(ko_dir, "ko")
    if not en_files or not ko_files:
        missing = en_dir if not en_files else ko_dir
        raise FileNotFoundError(2, "no *.en.html / *.ko.html FAQ chapters", str(missing))
    counts = {"en sections": 0, "ko sections": 0, "aligned sections": 0}
    for name in sorted(en_files.keys() ^ ko_files.keys()):
        only = "en" if name in en_files else "ko"
        problem("chapter file in one language only", str((en_files | ko_files)[name]), f"only {only}")
    pairs = []
    for name in sorted(en_files.keys() & ko_files.keys()):
        by_language = []
        for language, path in (("en", en_files[name]), ("ko", ko_files[name])):
            sections: dict[str, FaqSection] = {}
            for section in parse_chapter(path, problem):
                counts[f"{language} sections"] += 1
                if section.anchor in sections:
                    problem("duplicate section anchor", f"{path}: #{section.anchor}", "second one skipped")
                    continue
                sections[section.anchor] = section
            by_language.append(sections)
        en, ko = by_language
        for anchor in [a for a in en if a not in ko] + [a for a in ko if a not in en]:
            only = "en" if anchor in en else "ko"
            path = en_files[name] if anchor in en else ko_files[name]
            problem("section in one language only", f"{path}: #{anchor}", f"only {only}")
        for anchor, en_section in en.items():
            ko_section = ko.get(anchor)
            if ko_section is None:
                continue
            if ko_section.number != en_section.number:
                problem(
                    "section number differs",
                    f"{ko_files[name]}: #{anchor}",
                    f"ko {ko_section.number} en {en_section.number}",
                )
                continue
            pairs.append((en_section, ko_section))
            counts["aligned sections"] += 1
    return pairs, counts
