"""The texts written next to the task directories: LICENSE (notice, Debian copyright, GFDL 1.2)
and README.md, the dataset card rendered from README.template.md with this build's counts.
"""

from __future__ import annotations

from pathlib import Path

from harness.prepare.gimp.manual import MIN_BODY_CHARS, parse_page
from harness.prepare.gimp.queries import MAX_QUERIES_PER_SECTION, QUERY_RULES, TRAIN_FRACTION, QueryRule

__all__ = [
    "COPYRIGHT_FALLBACK",
    "COPYRIGHT_FILES",
    "GFDL_FILE",
    "KO_COUNT_FIELDS",
    "README_TEMPLATE",
    "TASKS",
    "license_text",
    "readme_text",
]

COPYRIGHT_FILES = tuple(
    Path(f"usr/share/doc/{name}/copyright") for name in ("gimp-help-common", "gimp-help-en", "gimp-help-ko")
)
GFDL_FILE = Path("/usr/share/common-licenses/GFDL-1.2")
# The template of README.md: `str.format` fields, `{{`/`}}` stand for literal braces.
README_TEMPLATE = Path(__file__).with_name("README.template.md")
TASKS = ("gimp-ko", "gimp-ko-en", "gimp-en")  # the card's columns, in build order
# Fields of the template that print a count of `manual_stats` of the Korean manual.
KO_COUNT_FIELDS = {
    "ko_docs": "documents",
    "ko_hangul": "hangul_syllables",
    "ko_latin": "latin_letters",
    "ko_titles": "titles_with_hangul",
    "ko_some": "docs_with_hangul",
    "ko_50": "docs_with_50_hangul",
    "ko_half": "docs_mostly_hangul",
    "ko_paras": "paragraphs",
    "ko_kparas": "paragraphs_mostly_hangul",
}

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


def license_text(help_root: Path, base: Path, version: str) -> str:
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
and sentences were removed from the sections to serve as queries; harness/prepare/gimp/ is the
exact procedure and README.md describes it.

The Debian copyright file, verbatim:

"""
    rule = "\n" + "-" * 76 + "\n\n"
    return header + copyright_text.rstrip("\n") + "\n" + rule + gfdl.rstrip("\n") + "\n"


def readme_text(stats: dict[str, dict[str, float | int]], ko: dict[str, int], version: str) -> str:
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
    return README_TEMPLATE.read_text(encoding="utf-8").format(
        version=version,
        **{field: f"{ko[key]:,}" for field, key in KO_COUNT_FIELDS.items()},
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
