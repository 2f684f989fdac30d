"""BM25 and Korean analyzer throughput, and peak memory.

    python benchmarks/bm25_throughput.py [--docs 100000] [--queries 1000] [--json out.json]

Measures, each in a fresh subprocess so that peak RSS belongs to that measurement alone:
1. the embedded GIMP tasks: analysis, bm25s indexing (docs/s) and search (queries/s, top 1000)
   with the Kiwi and the plain analyzer;
2. a synthetic corpus (Zipf vocabulary, seeded): bm25s index and search throughput, peak memory;
3. rank-bm25 against bm25s on a corpus rank-bm25 can handle, in the same run, as ratios;
4. the Kiwi analyzer: a plain per-document loop, Kiwi's batch mode with workers, the
   analyzer as the harness runs it (Kiwi only for texts with Hangul), and a cache load.
Figures are for this machine at this moment; compare the ratios, not the absolute values.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _measure import in_subprocess, peak_rss_mb
from history import Figure, figures_from, record_and_print


def _synthetic(n_docs: int, n_queries: int, seed: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = np.array([f"t{i}" for i in range(50_000)])
    lengths = rng.integers(20, 200, size=n_docs)
    words = rng.zipf(1.2, size=int(lengths.sum())) % len(vocab)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    docs = [vocab[words[offsets[i] : offsets[i + 1]]].tolist() for i in range(n_docs)]
    queries = [
        vocab[rng.zipf(1.2, size=int(rng.integers(2, 8))) % len(vocab)].tolist() for _ in range(n_queries)
    ]
    return docs, queries


def bench_bm25s_synthetic(n_docs: int, n_queries: int) -> dict[str, Any]:
    import bm25s

    docs, queries = _synthetic(n_docs, n_queries)
    base = peak_rss_mb()
    started = time.perf_counter()
    bm25 = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    bm25.index(docs, show_progress=False)
    index_s = time.perf_counter() - started
    out: dict[str, Any] = {"docs": n_docs, "queries": n_queries, "index_docs_per_s": round(n_docs / index_s)}
    for k in (10, 1000):
        started = time.perf_counter()
        bm25.retrieve(queries, k=k, show_progress=False, n_threads=0)
        out[f"search_q_per_s_k{k}"] = round(n_queries / (time.perf_counter() - started))
    out["rss_growth_mb"] = round(peak_rss_mb() - base, 1)
    return out


def bench_rank_bm25_vs_bm25s(n_docs: int, n_queries: int) -> dict[str, Any]:
    import bm25s
    import numpy as np
    from rank_bm25 import BM25Okapi

    docs, queries = _synthetic(n_docs, n_queries, seed=1)
    out: dict[str, Any] = {"docs": n_docs, "queries": n_queries}
    started = time.perf_counter()
    reference = BM25Okapi(docs, k1=0.9, b=0.4)
    out["rank_bm25_index_s"] = time.perf_counter() - started
    started = time.perf_counter()
    for query in queries:
        np.argsort(-reference.get_scores(query))[:10]
    out["rank_bm25_search_s"] = time.perf_counter() - started
    started = time.perf_counter()
    fast = bm25s.BM25(k1=0.9, b=0.4, method="robertson")
    fast.index(docs, show_progress=False)
    out["bm25s_index_s"] = time.perf_counter() - started
    started = time.perf_counter()
    fast.retrieve(queries, k=10, show_progress=False, n_threads=0)
    out["bm25s_search_s"] = time.perf_counter() - started
    out["index_speedup"] = round(out["rank_bm25_index_s"] / out["bm25s_index_s"], 1)
    out["search_speedup"] = round(out["rank_bm25_search_s"] / out["bm25s_search_s"], 1)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def bench_embedded(task: str, analyzer_name: str) -> dict[str, Any]:
    from harness.datasets import load_dataset, read_dataset_specs
    from harness.retrievers.bm25 import ANALYZERS

    data = load_dataset(read_dataset_specs()[task])
    texts = [doc.full_text for doc in data.corpus.values()]
    queries = list(data.split_queries("test").values())
    analyzer = ANALYZERS[analyzer_name]()
    analyzer.analyze(["워밍업 warm-up"])  # load the analyzer's model outside the timings
    import bm25s

    started = time.perf_counter()
    tokens = analyzer.analyze(texts)
    analyze_s = time.perf_counter() - started
    started = time.perf_counter()
    bm25 = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    bm25.index(tokens, show_progress=False)
    index_s = time.perf_counter() - started
    started = time.perf_counter()
    query_tokens = analyzer.analyze(queries)
    bm25.retrieve(query_tokens, k=min(1000, len(texts)), show_progress=False, n_threads=0)
    search_s = time.perf_counter() - started
    return {
        "task": task,
        "analyzer": analyzer_name,
        "docs": len(texts),
        "queries": len(queries),
        "analyze_docs_per_s": round(len(texts) / analyze_s),
        "index_docs_per_s": round(len(texts) / index_s),
        "search_q_per_s": round(len(queries) / search_s),
    }


def bench_kiwi() -> dict[str, Any]:
    """Kiwi over the Korean GIMP manual: per-document loop vs batch mode vs the harness analyzer."""
    import tempfile

    from kiwipiepy import Kiwi

    from harness.analyzers import KiwiAnalyzer, analyze_cached
    from harness.datasets import load_dataset, read_dataset_specs

    data = load_dataset(read_dataset_specs()["gimp-ko"])
    texts = [doc.full_text for doc in data.corpus.values()]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    out: dict[str, Any] = {"docs": len(texts), "megabytes": round(megabytes, 2)}

    def record(name: str, seconds: float) -> None:
        out[name] = {
            "s": round(seconds, 2),
            "docs_per_s": round(len(texts) / seconds),
            "mb_per_s": round(megabytes / seconds, 3),
        }

    single = Kiwi(num_workers=0)
    single.tokenize("준비")
    started = time.perf_counter()
    for text in texts:
        single.tokenize(text)
    record("plain_loop", time.perf_counter() - started)
    batch = Kiwi(num_workers=-1)
    batch.tokenize("준비")
    started = time.perf_counter()
    list(batch.tokenize(iter(texts)))
    record("batch_workers", time.perf_counter() - started)
    analyzer = KiwiAnalyzer()
    analyzer.analyze(["준비"])
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "tokens.npz"
        started = time.perf_counter()
        analyze_cached(analyzer, texts, cache)
        record("harness_analyzer", time.perf_counter() - started)
        started = time.perf_counter()
        analyze_cached(analyzer, texts, cache)
        record("cache_load", time.perf_counter() - started)
    out["batch_speedup"] = round(out["plain_loop"]["s"] / out["batch_workers"]["s"], 2)
    out["harness_speedup"] = round(out["plain_loop"]["s"] / out["harness_analyzer"]["s"], 2)
    out["cache_speedup"] = round(out["plain_loop"]["s"] / out["cache_load"]["s"], 1)
    out["workers"] = batch.num_workers
    return out


def tables(results: dict[str, Any]) -> list[Any]:
    """The results as rich tables: BM25 throughput, rank-bm25 ratios, Kiwi modes."""
    from rich.table import Table

    bm25 = Table(title="BM25 (bm25s) throughput, each row in a fresh process")
    for col in ("case", "docs", "queries", "analyze docs/s", "index docs/s", "search q/s", "peak RSS MB"):
        bm25.add_column(col, justify="left" if col == "case" else "right")
    for name, r in results.items():
        if name.startswith("embedded"):
            bm25.add_row(
                f"{r['task']} ({r['analyzer']})",
                f"{r['docs']:,}",
                f"{r['queries']:,}",
                f"{r['analyze_docs_per_s']:,}",
                f"{r['index_docs_per_s']:,}",
                f"{r['search_q_per_s']:,}",
                f"{r['peak_rss_mb']:,}",
            )
    syn = results.get("synthetic bm25s")
    if syn:
        for k in (10, 1000):
            bm25.add_row(
                f"synthetic, top {k}",
                f"{syn['docs']:,}",
                f"{syn['queries']:,}",
                "pre-tokenized",
                f"{syn['index_docs_per_s']:,}",
                f"{syn[f'search_q_per_s_k{k}']:,}",
                f"{syn['peak_rss_mb']:,}",
            )
    out = [bm25]
    ref = results.get("rank-bm25 vs bm25s")
    if ref:
        table = Table(
            title=f"rank-bm25 vs bm25s, {ref['docs']:,} docs, {ref['queries']} queries, one process"
        )
        for col in ("", "rank-bm25 s", "bm25s s", "bm25s speed-up"):
            table.add_column(col, justify="right")
        table.add_row(
            "index", f"{ref['rank_bm25_index_s']}", f"{ref['bm25s_index_s']}", f"{ref['index_speedup']}x"
        )
        table.add_row(
            "search", f"{ref['rank_bm25_search_s']}", f"{ref['bm25s_search_s']}", f"{ref['search_speedup']}x"
        )
        out.append(table)
    kiwi = results.get("kiwi")
    if kiwi:
        size = f"{kiwi['docs']:,} documents, {kiwi['megabytes']} MB, {kiwi['workers']} workers"
        table = Table(title=f"Kiwi on gimp-ko: {size}")
        for col in ("mode", "s", "docs/s", "MB/s", "speed-up vs loop"):
            table.add_column(col, justify="left" if col == "mode" else "right")
        loop_s = kiwi["plain_loop"]["s"]
        for mode in ("plain_loop", "batch_workers", "harness_analyzer", "cache_load"):
            m = kiwi[mode]
            table.add_row(
                mode, f"{m['s']}", f"{m['docs_per_s']:,}", f"{m['mb_per_s']}", f"{loop_s / m['s']:.1f}x"
            )
        out.append(table)
    return out


def history_figures(results: dict[str, Any]) -> list[Figure]:
    """The key figures of `results` for the benchmark history; sizes are part of the names."""
    figures: list[Figure] = []
    for name, r in results.items():
        if name.startswith("embedded") and r:
            spec = {
                "analyze_docs_per_s": ("docs/s", "higher"),
                "index_docs_per_s": ("docs/s", "higher"),
                "search_q_per_s": ("q/s", "higher"),
                "peak_rss_mb": ("MB", "lower"),
            }
            prefix = f"bm25_throughput.embedded.{r.get('task')}.{r.get('analyzer')}"
            figures += figures_from(prefix, r, spec)
    syn = results.get("synthetic bm25s")
    if syn:
        spec = {
            "index_docs_per_s": ("docs/s", "higher"),
            "search_q_per_s_k10": ("q/s", "higher"),
            "search_q_per_s_k1000": ("q/s", "higher"),
            "rss_growth_mb": ("MB", "lower"),
            "peak_rss_mb": ("MB", "lower"),
        }
        prefix = f"bm25_throughput.synthetic.{syn.get('docs')}x{syn.get('queries')}"
        figures += figures_from(prefix, syn, spec)
    ref = results.get("rank-bm25 vs bm25s")
    if ref:
        spec = {"index_speedup": ("x", "higher"), "search_speedup": ("x", "higher")}
        prefix = f"bm25_throughput.rank_bm25_vs_bm25s.{ref.get('docs')}x{ref.get('queries')}"
        figures += figures_from(prefix, ref, spec)
    kiwi = results.get("kiwi")
    if kiwi:
        for mode in ("plain_loop", "batch_workers", "harness_analyzer", "cache_load"):
            spec = {"docs_per_s": ("docs/s", "higher"), "mb_per_s": ("MB/s", "higher")}
            figures += figures_from(f"bm25_throughput.kiwi.{mode}", kiwi.get(mode), spec)
        spec = {"peak_rss_mb": ("MB", "lower")}
        figures += figures_from("bm25_throughput.kiwi", kiwi, spec)
    return figures


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--reference-docs", type=int, default=10_000, help="corpus size for rank-bm25")
    parser.add_argument("--reference-queries", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    console = Console()
    results: dict[str, Any] = {}
    steps: list[tuple[str, Callable[..., dict[str, Any]], tuple[Any, ...]]] = [
        *(
            (f"embedded {t} {a}", bench_embedded, (t, a))
            for t in ("gimp-ko", "gimp-ko-en", "gimp-en")
            for a in ("kiwi", "plain")
        ),
        ("synthetic bm25s", bench_bm25s_synthetic, (args.docs, args.queries)),
        ("rank-bm25 vs bm25s", bench_rank_bm25_vs_bm25s, (args.reference_docs, args.reference_queries)),
        ("kiwi", bench_kiwi, ()),
    ]
    for name, fn, fn_args in steps:
        console.log(f"running {name}")
        results[name] = in_subprocess(fn, *fn_args)
    for table in tables(results):
        console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    record_and_print(history_figures(results), console, enabled=not args.no_history)


if __name__ == "__main__":
    main()
