"""Release report speed: `build_release` over a synthetic leaderboard of models x datasets.

    python benchmarks/release_report.py [--models 10] [--datasets 3] [--queries 2000] [--repeat 3]
        [--json out.json]

A seeded leaderboard in a temporary folder: `--models` retrievers (the first a BM25, the others
SPLADE-doc with FLOPS and latency figures) each evaluated on `--datasets` datasets of `--queries`
queries, five metrics per query (what `evaluate.py` records), one results.json per model. Timed, in
a fresh process: the first `build_release` and the best of `--repeat` after it, each split into
the statistics (reading the per-query values, paired tests, bootstrap intervals, Holm) and the
plots. Figures are for this machine at this moment.
Target: a release of 10 models x 3 datasets of 2,000 queries in under 10 s here.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _measure import in_subprocess

METRICS = ("ndcg@10", "mrr@10", "recall@100", "recall@1000", "map@1000")


def synthetic_board(folder: Path, n_models: int, n_datasets: int, n_queries: int, seed: int = 0) -> Path:
    """A leaderboard as described in the module docstring; its path."""
    import numpy as np

    from harness.leaderboard import Leaderboard
    from harness.runner import Row

    rng = np.random.default_rng(seed)
    board = folder / "board.sqlite"
    with Leaderboard(board) as lb:
        for m in range(n_models):
            name, family = ("bm25-synthetic", "bm25") if m == 0 else (f"splade-synthetic-{m}", "splade")
            rows = []
            for d in range(n_datasets):
                skill = 0.3 + 0.01 * m + 0.05 * d
                values = np.clip(rng.normal(skill, 0.25, size=(n_queries, len(METRICS))), 0, 1)
                per_query = {
                    metric: {f"q{q}": float(values[q, i]) for q in range(n_queries)}
                    for i, metric in enumerate(METRICS)
                }
                stats = {"latency_p50_ms": 1.0 + m, "flops": 0.0 if m == 0 else 2.0 + m}
                rows.append(Row(
                    dataset=f"synthetic-{d}", split="test", dataset_checksum=f"sum{d}", retriever=name,
                    spec={"family": family}, model_hash=f"hash{m}", n_queries=n_queries,
                    metrics=dict(zip(METRICS, map(float, values.mean(axis=0)), strict=True)),
                    per_query=per_query, timing={}, stats=stats, run_file="",
                ))  # fmt: skip
            report = folder / "eval" / name
            report.mkdir(parents=True)
            (report / "results.json").write_text(json.dumps({"results": [r.to_json() for r in rows]}))
            lb.record(rows, report)
    return board


def bench_release(n_models: int, n_datasets: int, n_queries: int, repeat: int) -> dict[str, Any]:
    from harness.release import build_release

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        board = synthetic_board(folder, n_models, n_datasets, n_queries)
        out: dict[str, Any] = {
            "models": n_models,
            "datasets": n_datasets,
            "queries": n_queries,
            "setup_s": round(time.perf_counter() - started, 2),
        }
        runs = [build_release("bench", board, folder / "release", replace=True) for _ in range(repeat + 1)]
        first, best = runs[0], min(runs[1:], key=lambda r: r.seconds)
        out |= {
            "first_s": first.seconds,
            "first_plot_s": first.plot_seconds,
            "best_s": best.seconds,
            "best_stats_s": best.stats_seconds,
            "best_plot_s": best.plot_seconds,
            "folder_kb": round(sum(p.stat().st_size for p in (folder / "release").iterdir()) / 1024, 1),
        }
    return out


def table(r: dict[str, Any]) -> Any:
    from rich.table import Table

    size = f"{r['models']} models x {r['datasets']} datasets x {r['queries']:,} queries"
    memory = f"folder {r['folder_kb']:,} KB; peak RSS {r['peak_rss_mb']:,} MB"
    out = Table(title=f"build_release: {size}; {memory}")
    for col in ("part", "s"):
        out.add_column(col, justify="left" if col == "part" else "right")
    out.add_row("first call (cold caches)", f"{r['first_s']:.2f}")
    out.add_row("  of which plots", f"{r['first_plot_s']:.2f}")
    out.add_row("best of the repeats", f"{r['best_s']:.2f}")
    out.add_row("  statistics", f"{r['best_stats_s']:.2f}")
    out.add_row("  plots", f"{r['best_plot_s']:.2f}")
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--datasets", type=int, default=3)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    console = Console()
    result = in_subprocess(bench_release, args.models, args.datasets, args.queries, args.repeat)
    console.print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if not args.no_history:
        from history import figures_from, record_and_print

        size = f"{args.models}x{args.datasets}x{args.queries}"
        record_and_print(figures_from(f"release_report.{size}", result, {
            "first_s": ("s", "lower"), "best_s": ("s", "lower"), "best_stats_s": ("s", "lower"),
            "best_plot_s": ("s", "lower"), "peak_rss_mb": ("MB", "lower"),
        }), console)  # fmt: skip


if __name__ == "__main__":
    main()
