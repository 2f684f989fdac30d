"""Hard-negative mining speed: `harness.prepare.negatives.mine_negatives` with bm25-ko (Kiwi).

    python benchmarks/negative_mining.py [--docs 100000] [--queries 2000] [--depth 30]
        [--count 7] [--json out.json] [--no-history]

The corpus: `--docs` documents of 2-6 sentences each, drawn (seeded) from the sentences of the
embedded gimp-ko corpus (real Korean manual text, with its Latin words); the queries: `--queries`
of the gimp-ko queries and sentences, each judged relevant to one document containing its text.
In a fresh process with a cache folder of its own, timed:
1. the index: Kiwi analysis of the corpus and the bm25s index (written to the cache);
2. mining: every query searched to `--depth`, judged positives and near-duplicates (Jaccard 0.9)
   excluded, `--count` kept: queries per second (the index read back from the cache included).
Figures are for this machine at this moment.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from _measure import in_subprocess

ROOT = Path(__file__).resolve().parents[1]


def synthetic_dataset(n_docs: int, n_queries: int, seed: int = 0) -> Any:
    """A Dataset as described in the module docstring."""
    import random

    from common.files import read_jsonl
    from harness.datasets import Dataset, Document
    from harness.prepare.pairs import split_sentences

    source = ROOT / "harness/data/gimp/gimp-ko/corpus.jsonl.gz"
    sentences = [s for _, obj in read_jsonl(source) for s in split_sentences(obj["text"]) if len(s) > 15]
    rng = random.Random(seed)
    corpus = {
        f"doc{i}": Document("", " ".join(rng.choices(sentences, k=rng.randint(2, 6)))) for i in range(n_docs)
    }
    queries, qrels = {}, {}
    for q in range(n_queries):
        doc = f"doc{rng.randrange(n_docs)}"
        queries[f"q{q}"] = rng.choice(split_sentences(corpus[doc].text))
        qrels[f"q{q}"] = {doc: 1}
    return Dataset("mining-bench", source.parent, corpus, queries, {"train": qrels}, f"bench-{n_docs}-{seed}")


def bench_mining(n_docs: int, n_queries: int, depth: int, count: int) -> dict[str, Any]:
    import os
    import tempfile

    os.environ["WORKBENCH_CACHE"] = tempfile.mkdtemp(prefix="mining-bench-")
    from harness.prepare.negatives import mine_negatives
    from harness.retrievers import resolve_retriever

    started = time.perf_counter()
    data = synthetic_dataset(n_docs, n_queries)
    out: dict[str, Any] = {"docs": n_docs, "queries": n_queries, "depth": depth, "count": count}
    out["setup_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    resolve_retriever("bm25-ko").build().index(data)
    out["index_s"] = time.perf_counter() - started
    started = time.perf_counter()
    mined = mine_negatives(data, "train", count, "bm25-ko", depth, near_duplicate=0.9)
    out["mine_s"] = time.perf_counter() - started
    out["queries_per_s"] = n_queries / out["mine_s"]
    out["docs_per_s_index"] = n_docs / out["index_s"]
    out["mean_negatives"] = sum(map(len, mined.values())) / len(mined)
    return out


def table(r: dict[str, Any]) -> Any:
    from rich.table import Table

    title = (
        f"negative mining, bm25-ko: {r['docs']:,} docs, {r['queries']:,} queries, depth {r['depth']}, "
        f"{r['count']} kept; peak RSS {r['peak_rss_mb']:,} MB"
    )
    out = Table(title=title)
    for col in ("part", "s", "rate"):
        out.add_column(col, justify="left" if col == "part" else "right")
    out.add_row(
        "index (Kiwi analysis + bm25s)", f"{r['index_s']:.1f}", f"{r['docs_per_s_index']:,.0f} docs/s"
    )
    out.add_row("mining (search, exclusions)", f"{r['mine_s']:.1f}", f"{r['queries_per_s']:,.1f} queries/s")
    out.add_row("negatives per pair (mean)", "", f"{r['mean_negatives']:.2f}")
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--count", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    console = Console()
    result = in_subprocess(bench_mining, args.docs, args.queries, args.depth, args.count)
    console.print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if not args.no_history:
        from history import figures_from, record_and_print

        size = f"docs{args.docs}.q{args.queries}.depth{args.depth}"
        record_and_print(figures_from(f"negative_mining.{size}", result, {
            "queries_per_s": ("queries/s", "higher"), "index_s": ("s", "lower"),
            "peak_rss_mb": ("MB", "lower"),
        }), console)  # fmt: skip


if __name__ == "__main__":
    main()
