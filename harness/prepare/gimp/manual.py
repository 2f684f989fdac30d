"""The GIMP manual's XHTML pages (DocBook XSL output) parsed into sections and their text blocks.

A document is one section: its own title and blocks, without the text of nested subsections,
navigation or tables of contents. `load_manual` parses both languages and checks that their pages
have the same section structure, so that a document id names the same section in both.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.errors import WorkbenchError
from harness.prepare.gimp.text import normalize_ws

__all__ = [
    "ADMONITION_CLASSES",
    "BLOCK_TAGS",
    "LANGS",
    "MIN_BODY_CHARS",
    "SECTION_CLASSES",
    "SKIPPED_DIV_CLASSES",
    "SKIPPED_PAGES",
    "SKIPPED_PAGE_PREFIXES",
    "VERSION",
    "Block",
    "BuildError",
    "Section",
    "load_manual",
    "page_structure",
    "parse_page",
]

VERSION = "2.10.34-2"  # of the Debian packages gimp-help-ko, gimp-help-en and gimp-help-common
LANGS = ("ko", "en")

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

_AUTO_ANCHOR = re.compile(r"idm\d+")
_TITLE_LABEL = re.compile(r"^(?:[A-Z]|\d+)(?:\.\d+)*\.\s+")


class BuildError(WorkbenchError):
    """The data cannot be built; the message says why and what to do."""


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
