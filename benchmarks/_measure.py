"""Shared by the benchmarks: a measurement in a fresh process with its peak memory; the fp32 matmul
peak of the vocabulary projection's shape; FLOP per token of a forward pass."""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measured(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    result = fn(*args)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def in_subprocess(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """`fn(*args)` in a fresh (spawned) process; its dict result gets that process's peak RSS."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_measured, fn, *args).result()


def seconds(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def matmul_peak_gflops(hidden: int, vocab: int, rows: int = 8192, repeats: int = 5) -> float:
    """The best of `repeats` plain fp32 matmuls (rows x hidden) @ (hidden x vocab), GFLOP/s: the
    shape of the vocabulary projection, almost all of a small SPLADE's work."""
    import torch

    a, b = torch.randn(rows, hidden), torch.randn(hidden, vocab)
    with torch.inference_mode():
        best = min(seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * rows * hidden * vocab / best / 1e9


def forward_flop_per_token(model: Any, batch: dict[str, Any]) -> float:
    """FLOP per (padded) token of one forward pass of `model` on `batch`, counted by torch's
    FlopCounterMode (the transformer and the projection over every position, as the model defines them)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(**batch)
    return counter.get_total_flops() / int(batch["input_ids"].numel())


def search_latencies_ms(retriever: Any, queries: dict[str, str], k: int = 10) -> Any:
    """Milliseconds of one single-query search per query (a numpy array, in query order)."""
    import numpy as np

    out = []
    for qid, text in queries.items():
        started = time.perf_counter()
        retriever.search({qid: text}, k)
        out.append((time.perf_counter() - started) * 1000)
    return np.array(out)


def latency_percentiles(
    retrievers: dict[str, Any], queries: dict[str, str], repeats: int
) -> dict[str, float]:
    """`<name>_p50_ms` / `<name>_p99_ms` of each retriever: `repeats` rounds of single-query
    searches, the retrievers alternating; per query its fastest round counts."""
    import numpy as np

    rounds: dict[str, list[Any]] = {name: [] for name in retrievers}
    for _ in range(repeats):
        for name, retriever in retrievers.items():
            rounds[name].append(search_latencies_ms(retriever, queries))
    out: dict[str, float] = {}
    for name, values in rounds.items():
        best = np.min(np.stack(values), axis=0)
        out[f"{name}_p50_ms"] = float(np.percentile(best, 50))
        out[f"{name}_p99_ms"] = float(np.percentile(best, 99))
    return out
