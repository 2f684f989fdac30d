"""Evaluation speed: ranx metrics over a large synthetic run, split into conversion and metrics.

    python benchmarks/evaluation_speed.py [--queries 10000] [--depth 1000] [--docs 1000000]
        [--repeat 3] [--json out.json]

A seeded synthetic run of `--queries` queries with `--depth` results each, drawn from a corpus of
`--docs` ids, scores rounded to one decimal so that many results tie (the Ranking breaks them
by docid). Each query has 1-5 judged documents graded 1-3, most of them inside its run, some
below its depth, some outside the corpus, plus a judged non-relevant one for every third
query. Timed, in a fresh process:
1. `evaluate_run` with the default metrics end to end: the first call (which includes loading
   numba's cached kernels) and the best of `--repeat` calls after it;
2. its two parts, each the best of `--repeat`: the conversion from the Ranking and the qrels to
   ranx's typed lists, and each metric kernel.
Figures are for this machine at this moment; the split says where the time goes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _measure import in_subprocess


def synthetic(n_queries: int, depth: int, n_docs: int, seed: int = 0) -> tuple[dict, Any]:
    """(qrels, Ranking) as described in the module docstring."""
    import numpy as np

    from harness.ranking import Ranking

    rng = np.random.default_rng(seed)
    doc_ids = [f"doc{i}" for i in range(n_docs)]
    hits = {}
    for q in range(n_queries):
        indices = rng.choice(n_docs, size=depth, replace=False)
        hits[f"q{q}"] = (indices, np.round(rng.normal(size=depth), 1))
    ranking = Ranking("synthetic", doc_ids, hits)
    qrels: dict[str, dict[str, int]] = {}
    for q in range(n_queries):
        ranked, _ = ranking.hits(f"q{q}")
        judged: dict[str, int] = {}
        for position in rng.integers(0, depth * 3 // 2, size=int(rng.integers(1, 6))).tolist():
            in_run = position < len(ranked)
            doc = doc_ids[ranked[position]] if in_run else doc_ids[int(rng.integers(n_docs))]
            judged[doc] = int(rng.integers(1, 4))
        if q % 7 == 0:
            judged[f"outside{q}"] = 1  # judged, but not in the corpus
        if q % 3 == 0:
            judged[doc_ids[ranked[0]]] = 0  # judged non-relevant at the top
        qrels[f"q{q}"] = judged
    return qrels, ranking


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Shortest wall time of `repeat` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def bench_evaluation(n_queries: int, depth: int, n_docs: int, repeat: int) -> dict[str, Any]:
    from harness.evaluation import DEFAULT_METRICS, _ranx_inputs, _ranx_scores, evaluate_run

    started = time.perf_counter()
    qrels, ranking = synthetic(n_queries, depth, n_docs)
    out: dict[str, Any] = {
        "queries": n_queries,
        "depth": depth,
        "docs": n_docs,
        "judged": sum(len(j) for j in qrels.values()),
        "setup_s": round(time.perf_counter() - started, 2),
    }
    started = time.perf_counter()
    result = evaluate_run(qrels, ranking, DEFAULT_METRICS)
    out["first_call_s"] = time.perf_counter() - started
    out["end_to_end_s"], _ = _best(lambda: evaluate_run(qrels, ranking, DEFAULT_METRICS), repeat)
    out["conversion_s"], (_, qrels_arrays, run_arrays) = _best(lambda: _ranx_inputs(qrels, ranking), repeat)
    out["metrics_s"] = {
        metric: _best(lambda m=metric: _ranx_scores(qrels_arrays, run_arrays, [m]), repeat)[0]
        for metric in DEFAULT_METRICS
    }
    out["mean"] = result.mean
    return out


def table(r: dict[str, Any]) -> Any:
    """The result as a rich table: end to end, then conversion and each metric."""
    from rich.table import Table

    size = f"{r['queries']:,} queries x {r['depth']:,} results, {r['docs']:,} docs, {r['judged']:,} judgments"
    out = Table(title=f"evaluate_run, default metrics: {size}; peak RSS {r['peak_rss_mb']:,} MB")
    for col in ("part", "s", "mean"):
        out.add_column(col, justify="left" if col == "part" else "right")
    out.add_row("end to end, first call", f"{r['first_call_s']:.3f}", "")
    out.add_row("end to end, best", f"{r['end_to_end_s']:.3f}", "")
    out.add_row("  conversion to ranx arrays", f"{r['conversion_s']:.3f}", "")
    for metric, seconds in r["metrics_s"].items():
        out.add_row(f"  {metric}", f"{seconds:.3f}", f"{r['mean'][metric]:.4f}")
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--depth", type=int, default=1_000)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    console = Console()
    console.log(f"synthetic run: {args.queries:,} x {args.depth:,} over {args.docs:,} documents")
    result = in_subprocess(bench_evaluation, args.queries, args.depth, args.docs, args.repeat)
    console.print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if not args.no_history:
        from history import figures_from, record_and_print

        size = f"{args.queries}x{args.depth}.docs{args.docs}"
        record_and_print(figures_from(f"evaluation_speed.{size}", result, {
            "end_to_end_s": ("s", "lower"), "first_call_s": ("s", "lower"), "conversion_s": ("s", "lower"),
            "peak_rss_mb": ("MB", "lower"),
        }), console)  # fmt: skip


if __name__ == "__main__":
    main()
