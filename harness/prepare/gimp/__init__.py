"""Build the GIMP-manual retrieval tasks `gimp-ko`, `gimp-ko-en` and `gimp-en` (BEIR format).

Source: the Debian packages gimp-help-ko and gimp-help-en (GIMP 2.10 user manual, HTML, GFDL-1.2+),
whose pages are aligned by file name under usr/share/gimp/2.0/help/{ko,en}/.

* Documents are manual sections: a section's own title and text, without its nested subsections.
* Queries follow the inverse cloze task (Lee et al., 2019): a sentence is taken out of a section,
  becomes a query whose one relevant document is that section, and is removed from the section.
* `gimp-ko` asks Korean sentences against the Korean manual, `gimp-ko-en` asks the same Korean
  sentences against the (unmodified) English manual, `gimp-en` asks English sentences against the
  English manual. Train and test queries come from disjoint pages.

Run `python -m harness.prepare.gimp --out harness/data/gimp` (downloads the packages with apt-get)
or add `--from DIR` with DIR holding already extracted packages. The output is byte-identical on
every run. See harness/data/gimp/README.md, written by this package, for the exact rule and the
counts.
"""

from __future__ import annotations

# Modules, each importing only those listed before it: text (whitespace, Hangul), manual (pages
# into sections), queries (sentences into inverse-cloze queries), card (LICENSE and README.md, from
# README.template.md), tasks (the BEIR files, their statistics, `build`), cli (package download,
# command line; `python -m` runs it through __main__).
from harness.prepare.gimp.cli import main
from harness.prepare.gimp.manual import Block, BuildError, Section, load_manual, parse_page
from harness.prepare.gimp.queries import (
    Query,
    is_query_candidate,
    page_split,
    query_id,
    remove_sentences,
    select_queries,
    split_sentences,
)
from harness.prepare.gimp.tasks import build, manual_stats, task_stats
from harness.prepare.gimp.text import hangul_count, hangul_share, normalize_ws

__all__ = [
    "Block",
    "BuildError",
    "Query",
    "Section",
    "build",
    "hangul_count",
    "hangul_share",
    "is_query_candidate",
    "load_manual",
    "main",
    "manual_stats",
    "normalize_ws",
    "page_split",
    "parse_page",
    "query_id",
    "remove_sentences",
    "select_queries",
    "split_sentences",
    "task_stats",
]
