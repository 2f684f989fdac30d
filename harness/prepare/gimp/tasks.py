"""The three BEIR tasks: their statistics, their files, and `build`, which makes all of them.

`gimp-ko` asks Korean sentences against the Korean manual (those sentences removed), `gimp-ko-en`
the same Korean sentences against the unmodified English manual, `gimp-en` English sentences
against the English manual (those sentences removed).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.files import atomic_dir, atomic_write, write_bytes
from harness.prepare.gimp.card import license_text, readme_text
from harness.prepare.gimp.manual import VERSION, BuildError, Section, load_manual
from harness.prepare.gimp.queries import Query, corpus_without, select_queries
from harness.prepare.gimp.text import hangul_count, hangul_share

__all__ = [
    "MIN_DOCUMENTS",
    "MIN_TEST_QUERIES",
    "Task",
    "build",
    "manual_stats",
    "task_stats",
    "write_task",
]

MIN_TEST_QUERIES = 200
MIN_DOCUMENTS = 1000


@dataclass(frozen=True)
class Task:
    """One BEIR task: its corpus and its queries (both splits)."""

    name: str
    corpus: list[Section]
    queries: list[Query]


def _write_jsonl_gz(path: Path, rows: Iterable[dict[str, str]]) -> None:
    # level 9, and one write: deflate's output depends on how the input is fed, and the pinned
    # checksums are of exactly this
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    with atomic_write(path, "wb", compresslevel=9) as handle:
        handle.write(data)


def write_task(task: Task, directory: Path) -> None:
    """Write `task` as a BEIR directory: corpus/queries .jsonl.gz, qrels/{test,train}.tsv."""
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl_gz(
        directory / "corpus.jsonl.gz",
        ({"_id": s.doc_id, "title": s.title, "text": s.body} for s in task.corpus),
    )
    _write_jsonl_gz(directory / "queries.jsonl.gz", ({"_id": q.qid, "text": q.text} for q in task.queries))
    for split in ("test", "train"):
        lines = ["query-id\tcorpus-id\tscore\n"]
        lines += [f"{q.qid}\t{q.doc_id}\t1\n" for q in task.queries if q.split == split]
        (directory / "qrels" / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")


def task_stats(task: Task) -> dict[str, float | int]:
    """Counts and means of one task, as printed in the README."""
    texts = [f"{s.title} {s.body}" for s in task.corpus]
    stats: dict[str, float | int] = {
        "documents": len(task.corpus),
        "pages": len({s.page for s in task.corpus}),
        "mean_doc_chars": sum(map(len, texts)) / len(texts),
        "mean_doc_tokens": sum(len(t.split()) for t in texts) / len(texts),
        "mean_query_chars": sum(len(q.text) for q in task.queries) / len(task.queries),
        "mean_query_tokens": sum(len(q.text.split()) for q in task.queries) / len(task.queries),
    }
    for split in ("test", "train"):
        chosen = [q for q in task.queries if q.split == split]
        stats[f"{split}_queries"] = len(chosen)
        stats[f"{split}_pages"] = len({q.doc_id.split("#")[0] for q in chosen})
        stats[f"{split}_sections"] = len({q.doc_id for q in chosen})
    syllables = sum(hangul_count(t) for t in texts)
    letters = sum(sum(1 for c in t if c.isalpha()) for t in texts)
    stats["hangul_syllables"] = syllables
    stats["hangul_share"] = syllables / letters if letters else 0.0
    stats["docs_mostly_hangul"] = sum(1 for t in texts if hangul_share(t) >= 0.5)
    return stats


def manual_stats(sections: Sequence[Section]) -> dict[str, int]:
    """How much of one language's documents (before any query removal) is Korean."""
    texts = [f"{s.title} {s.body}" for s in sections]
    paragraphs = [b.text for s in sections for b in s.blocks if b.paragraph]
    return {
        "documents": len(sections),
        "hangul_syllables": sum(hangul_count(t) for t in texts),
        "latin_letters": sum(1 for t in texts for c in t if c.isascii() and c.isalpha()),
        "titles_with_hangul": sum(1 for s in sections if hangul_count(s.title)),
        "docs_with_hangul": sum(1 for t in texts if hangul_count(t)),
        "docs_with_50_hangul": sum(1 for t in texts if hangul_count(t) >= 50),
        "docs_mostly_hangul": sum(1 for t in texts if hangul_share(t) >= 0.5),
        "paragraphs": len(paragraphs),
        "paragraphs_mostly_hangul": sum(1 for t in paragraphs if hangul_share(t) >= 0.5),
    }


def build(
    help_root: Path,
    out: Path,
    base: Path | None = None,
    version: str = VERSION,
    log: bool = True,
) -> dict[str, dict[str, float | int]]:
    """Build the three tasks from the manual under `help_root` into `out`; return their stats.

    `base` is the root of the extracted packages (for the Debian copyright file) and `version` the
    package version that the README and LICENSE, written next to the task directories, name.
    Each task directory is built aside and then swapped into place (`atomic_dir`). Raises
    BuildError when a task falls short of MIN_DOCUMENTS documents or MIN_TEST_QUERIES test queries
    (nothing is written).
    """
    started = time.monotonic()

    def say(message: str) -> None:
        if log:
            print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr)

    sections = load_manual(help_root)
    say(f"parsed: {len(sections['ko'])} ko and {len(sections['en'])} en documents")
    en_ids = {s.doc_id for s in sections["en"]}
    ko_queries = select_queries(sections["ko"], "ko", allowed_docs=en_ids)
    say(f"ko queries: {len(ko_queries)}")
    en_queries = select_queries(sections["en"], "en")
    say(f"en queries: {len(en_queries)}")
    tasks = [
        Task("gimp-ko", corpus_without(sections["ko"], ko_queries), ko_queries),
        Task("gimp-ko-en", sections["en"], ko_queries),
        Task("gimp-en", corpus_without(sections["en"], en_queries), en_queries),
    ]
    stats = {task.name: task_stats(task) for task in tasks}
    for task in tasks:
        s = stats[task.name]
        if s["documents"] < MIN_DOCUMENTS or s["test_queries"] < MIN_TEST_QUERIES:
            raise BuildError(
                f"{task.name}: {s['documents']} documents and {s['test_queries']} test queries, "
                f"below the minimum {MIN_DOCUMENTS} / {MIN_TEST_QUERIES}"
            )
    for task in tasks:
        with atomic_dir(out / task.name, replace=True) as staging:
            write_task(task, staging)
        say(
            f"{task.name}: {stats[task.name]['documents']} documents, "
            f"{stats[task.name]['test_queries']} test / {stats[task.name]['train_queries']} train"
        )
    licence = license_text(help_root, base if base is not None else help_root, version)
    write_bytes(out / "LICENSE", licence.encode("utf-8"))
    readme = readme_text(stats, manual_stats(sections["ko"]), version)
    write_bytes(out / "README.md", readme.encode("utf-8"))
    say(f"wrote {out}")
    return stats
