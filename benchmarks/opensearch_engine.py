"""SPLADE-doc beside BM25 inside the same OpenSearch engine: bulk ingest docs/s, query latency ratio.

    python benchmarks/opensearch_engine.py [--model splade-en-tiny] [--bm25-analyzer english]
        [--dataset gimp-en ...] [--queries 300] [--repeats 3] [--os-host URL] [--json out.json]

Without --os-host (or $OPENSEARCH_HOSTS) it starts an osmem-server on 127.0.0.1: an in-memory
stand-in for the OpenSearch REST API, whose absolute times say little about a real cluster (no JVM,
no Lucene segments, its own query evaluation); compare the SPLADE/BM25 ratio, measured in one run.

Both retrievers index the corpus fresh (the SPLADE-doc vectors from the in-process cache, so
ingest is bulk indexing alone, chunks of 256 documents); then each query is searched alone, one
request per query, top 10, `--repeats` rounds alternating the two; per query the fastest round
counts; p50/p99 over the queries, and their SPLADE/BM25 ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import Any

from _measure import latency_percentiles
from history import Figure, record_and_print


def bench(
    model: str, analyzer: str, dataset: str, n_queries: int, repeats: int, prefix: str
) -> dict[str, Any]:
    from harness.datasets import load_dataset, resolve_dataset
    from harness.registry import dataset_registry
    from harness.retrievers.opensearch import bm25_engine_spec, sparse_engine_spec

    data = load_dataset(resolve_dataset(dataset, dataset_registry()))
    queries = dict(islice(data.split_queries("test").items(), n_queries))
    sparse = sparse_engine_spec(model, index_prefix=prefix).build()
    lexical = bm25_engine_spec(analyzer).build()
    lexical.index_prefix = prefix
    for retriever in (sparse, lexical):
        retriever.index(data)  # a new index under this run's prefix; the document vectors from the cache
    row: dict[str, Any] = {"dataset": dataset, "queries": len(queries), "documents": len(data.corpus)}
    row["sparse_ingest_docs_per_s"] = sparse.stats()["ingest_docs_per_s"]
    row["bm25_ingest_docs_per_s"] = lexical.stats()["ingest_docs_per_s"]
    row |= latency_percentiles({"sparse": sparse, "bm25": lexical}, queries, repeats)
    row["p50_ratio"] = row["sparse_p50_ms"] / row["bm25_p50_ms"]
    row["p99_ratio"] = row["sparse_p99_ms"] / row["bm25_p99_ms"]
    return row


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.opensearch.client import ClusterSettings, connect
    from harness.retrievers.opensearch import use_cluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="splade-en-tiny", help="SPLADE-doc / IDF-only retriever or directory"
    )
    parser.add_argument("--bm25-analyzer", default="english")
    parser.add_argument("--dataset", action="append", default=None)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--os-host", action="append", default=None)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    console = Console()
    prefix = f"wbbench-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        settings = ClusterSettings.from_env(hosts=args.os_host)
        stand_in = not args.os_host and not os.environ.get("OPENSEARCH_HOSTS")
        if stand_in:
            from osmem_server import OsmemServer

            server = stack.enter_context(OsmemServer.start(addr="127.0.0.1:0"))
            settings = ClusterSettings(hosts=(server.url,))
        use_cluster(settings)
        try:
            rows = [bench(args.model, args.bm25_analyzer, d, args.queries, args.repeats, prefix)
                    for d in args.dataset or ["gimp-en"]]  # fmt: skip
        finally:
            client = connect(settings)
            for name in client.indices.get(index=f"{prefix}-*"):
                client.indices.delete(index=name)
    engine = "osmem-server (stand-in)" if stand_in else ", ".join(settings.describe()["hosts"])
    table = Table(
        title=f"{args.model} against BM25 ({args.bm25_analyzer}) in {engine}: top 10, best of {args.repeats}"
    )
    for column in ("dataset", "docs", "queries", "ingest docs/s SPLADE / BM25",
                   "SPLADE p50/p99 ms", "BM25 p50/p99 ms", "ratio p50/p99"):  # fmt: skip
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for r in rows:
        ingest = f"{r['sparse_ingest_docs_per_s']:,.0f} / {r['bm25_ingest_docs_per_s']:,.0f}"
        sparse_ms = f"{r['sparse_p50_ms']:.2f} / {r['sparse_p99_ms']:.2f}"
        bm25_ms = f"{r['bm25_p50_ms']:.2f} / {r['bm25_p99_ms']:.2f}"
        ratio = f"{r['p50_ratio']:.2f}x / {r['p99_ratio']:.2f}x"
        table.add_row(
            r["dataset"], f"{r['documents']:,}", str(r["queries"]), ingest, sparse_ms, bm25_ms, ratio
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    figures = []
    for r in rows:
        name = f"opensearch_engine.{r['dataset']}"
        figures += [Figure(f"{name}.p50_ratio", r["p50_ratio"], "x", "lower"),
                    Figure(f"{name}.ingest_docs_per_s", r["sparse_ingest_docs_per_s"], "docs/s")]  # fmt: skip
    record_and_print(figures, console, enabled=not args.no_history)


if __name__ == "__main__":
    main()
