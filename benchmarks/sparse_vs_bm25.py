"""A SPLADE-doc model beside BM25 on the same task: sparsity, FLOPS, encoding speed, query latency.

    python benchmarks/sparse_vs_bm25.py --model DIR|NAME [--bm25 bm25-ko] [--dataset gimp-ko ...]
                                        [--repeats 3] [--bf16 auto] [--json out.json] [--no-history]

For each dataset both retrievers index the corpus (the SPLADE-doc index from the cache where an
evaluation built it; its encoding speed is then the one measured when it was built, as the
evaluation report gives it), then every test query is searched alone, one call per query, top 10,
`--repeats` rounds alternating the two retrievers; per query the fastest round counts, and p50/p99
over the queries are reported with the SPLADE/BM25 ratio (the two in one run: compare ratios, the
machine is shared). A SPLADE-doc query is the tokenizer + idf lookup (no model); a BM25 query is the
analyzer (Kiwi for bm25-ko) + bm25s. Active dimensions per document and per query and the FLOPS
(expected multiply-adds per query and document, Paria et al., 2020) come from the retriever.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from _measure import latency_percentiles
from history import Figure, record_and_print


def bench(model: str, bm25: str, dataset: str, repeats: int, bf16: str) -> dict[str, Any]:
    from harness.datasets import load_dataset, resolve_dataset
    from harness.registry import dataset_registry
    from harness.retrievers import resolve_retriever
    from harness.retrievers.splade import splade_spec

    data = load_dataset(resolve_dataset(dataset, dataset_registry()))
    queries = {q: data.queries[q] for q in data.qrels["test"]}
    # a checkpoint directory as the trainer's evaluation gave it (same path, same bf16): its cached index
    spec = splade_spec(model, bf16=bf16) if Path(model).is_dir() else resolve_retriever(model)
    sparse, lexical = spec.build(), resolve_retriever(bm25).build()
    for retriever in (sparse, lexical):
        retriever.index(data)
    sparse.search(queries, 10)  # the query-side statistics over all queries
    stats = sparse.stats()
    row: dict[str, Any] = {"dataset": dataset, "queries": len(queries), "documents": len(data.corpus)}
    row |= latency_percentiles({"sparse": sparse, "bm25": lexical}, queries, repeats)
    row["p50_ratio"] = row["sparse_p50_ms"] / row["bm25_p50_ms"]
    row["p99_ratio"] = row["sparse_p99_ms"] / row["bm25_p99_ms"]
    for key in ("doc_active_mean", "doc_active_p99", "query_active_mean", "flops", "encode_docs_per_s"):
        row[key] = float(stats.get(key, float("nan")))
    return row


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="SPLADE-doc checkpoint directory or registered name")
    parser.add_argument("--bm25", default="bm25-ko")
    parser.add_argument("--dataset", action="append", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", default="auto", help="a checkpoint directory's encoding: auto, on, off")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    console = Console()
    rows = [bench(args.model, args.bm25, d, args.repeats, args.bf16) for d in args.dataset or ["gimp-ko"]]
    title = f"{args.model} against {args.bm25}: single-query search, top 10, best of {args.repeats}"
    table = Table(title=title)
    columns = [("dataset", "dataset", "{}"), ("doc dims", "doc_active_mean", "{:,.1f}"),
               ("doc dims p99", "doc_active_p99", "{:,.0f}"), ("query dims", "query_active_mean", "{:.1f}"),
               ("FLOPS", "flops", "{:.3f}"), ("encode docs/s", "encode_docs_per_s", "{:.1f}"),
               ("SPLADE p50/p99 ms", None, None), ("BM25 p50/p99 ms", None, None),
               ("ratio p50/p99", None, None)]  # fmt: skip
    for title, _, _ in columns:
        table.add_column(title, justify="left" if title == "dataset" else "right")
    for row in rows:
        cells = [fmt.format(row[key]) for _, key, fmt in columns if key]
        cells += [f"{row['sparse_p50_ms']:.2f} / {row['sparse_p99_ms']:.2f}",
                  f"{row['bm25_p50_ms']:.2f} / {row['bm25_p99_ms']:.2f}",
                  f"{row['p50_ratio']:.2f}x / {row['p99_ratio']:.2f}x"]  # fmt: skip
        table.add_row(*cells)
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    figures = [Figure(f"sparse_vs_bm25.{r['dataset']}.p50_ratio", r["p50_ratio"], "x", "lower") for r in rows]
    record_and_print(figures, console, enabled=not args.no_history)


if __name__ == "__main__":
    main()
