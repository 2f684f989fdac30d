"""Metrics with ranx, significance tests, and TREC run files.

Ties are broken by (-score, docid) everywhere: in the run files and in the metrics (ranx is
given ranks, not scores), so a result never depends on sort stability.
Queries judged but absent from the run count as retrieving nothing (trec_eval's `-c`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba.typed import List as TypedList
from ranx import metrics as rm

from common.errors import WorkbenchError
from common.files import atomic_write
from harness.ranking import Ranking

__all__ = [
    "DEFAULT_METRICS",
    "STAT_TESTS",
    "EvalResult",
    "evaluate_run",
    "paired_test",
    "validate_metrics",
    "write_trec_run",
]

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "recall@1000", "map@1000")
# metric name (ranx spelling) -> ranx's metric function (qrels, run, k, rel_lvl) -> per-query array
RANX_METRICS: dict[str, Callable[..., np.ndarray]] = {
    "hits": rm.hits,
    "hit_rate": rm.hit_rate,
    "precision": rm.precision,
    "recall": rm.recall,
    "f1": rm.f1,
    "r-precision": rm.r_precision,
    "mrr": rm.reciprocal_rank,
    "map": rm.average_precision,
    "ndcg": rm.ndcg,
    "ndcg_burges": rm.ndcg_burges,
    "dcg": rm.dcg,
    "dcg_burges": rm.dcg_burges,
    "bpref": rm.bpref,
}
STAT_TESTS = ("student", "fisher")
_METRIC = re.compile(r"^(?P<name>[a-z][a-z0-9_-]*)(@(?P<k>[1-9][0-9]*))?$")
NO_CUTOFF = ("r-precision", "bpref")  # ranx ignores @k for these: refuse it rather than drop it


def validate_metrics(names: Sequence[str]) -> list[str]:
    """Check metric names (ranx spelling, `name` or `name@k`); unknown names list the valid ones."""
    checked = []
    for name in names:
        match = _METRIC.match(name)
        if not match or match["name"] not in RANX_METRICS:
            raise WorkbenchError(
                f"unknown metric {name!r}; valid: {', '.join(RANX_METRICS)} (optionally @k, e.g. ndcg@10)"
            )
        if match["k"] and match["name"] in NO_CUTOFF:
            raise WorkbenchError(f"metric {name!r}: {match['name']} takes no @k cutoff")
        checked.append(name)
    if not checked:
        raise WorkbenchError("no metrics given")
    return checked


@dataclass(frozen=True)
class EvalResult:
    """Mean and per-query values of each metric over the judged queries."""

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]  # metric -> qid -> value


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]], ranking: Ranking, metrics: Sequence[str]
) -> EvalResult:
    """Score `ranking` against `qrels` with ranx's metric kernels; neither argument is modified.

    ranx is given its internal form directly, one (n, 2) array per query: for the run, document
    numbers with scores n, n-1, ..., 1 in the ranking's (-score, docid) order; for the qrels,
    document numbers with relevance, most relevant first. Documents are numbered exactly (ranx
    would hash the ids).
    """
    metrics = validate_metrics(metrics)
    if not qrels:
        raise WorkbenchError("no judged queries to evaluate")
    number = {doc_id: i for i, doc_id in enumerate(ranking.doc_ids)}
    unknown: dict[str, int] = {}  # judged documents the ranking never saw get negative numbers
    qids = list(qrels)
    run_arrays, qrels_arrays = TypedList(), TypedList()
    for qid in qids:
        indices, _ = ranking.hits(qid)
        n = len(indices)
        run_arrays.append(
            np.column_stack((indices.astype(np.float64), np.arange(n, 0, -1, dtype=np.float64)))
        )
        judged = sorted(qrels[qid].items(), key=lambda item: -item[1])
        rows = []
        for doc_id, rel in judged:
            if doc_id not in number and doc_id not in unknown:
                unknown[doc_id] = -1 - len(unknown)
            rows.append((number.get(doc_id, unknown.get(doc_id)), rel))
        qrels_arrays.append(np.array(rows, dtype=np.float64).reshape(-1, 2))
    scores = {}
    for metric in metrics:
        match = _METRIC.match(metric)
        assert match is not None  # validated above
        scores[metric] = RANX_METRICS[match["name"]](qrels_arrays, run_arrays, int(match["k"] or 0))
    per_query = {
        m: dict(zip(qids, np.asarray(scores[m], dtype=float).tolist(), strict=True)) for m in metrics
    }
    mean = {m: float(np.mean(np.asarray(scores[m], dtype=float))) for m in metrics}
    return EvalResult(mean=mean, per_query=per_query)


def paired_test(
    a: Mapping[str, float],
    b: Mapping[str, float],
    test: str = "student",
    seed: int = 42,
    n_permutations: int = 10_000,
) -> float:
    """Two-sided p-value of a paired test over the queries both share.

    `student`: paired t-test (scipy `ttest_rel`, as ranx uses). `fisher`: randomisation test
    flipping the sign of each per-query difference, `n_permutations` draws from `seed`.
    """
    if test not in STAT_TESTS:
        raise WorkbenchError(f"unknown significance test {test!r}; valid: {', '.join(STAT_TESTS)}")
    qids = sorted(set(a) & set(b))
    diff = np.array([a[q] - b[q] for q in qids])
    if len(diff) < 2 or not np.any(diff):
        return 1.0
    if test == "student":
        from scipy.stats import ttest_rel

        p = float(ttest_rel([a[q] for q in qids], [b[q] for q in qids]).pvalue)
        return 1.0 if np.isnan(p) else p
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_permutations, len(diff)))
    observed = abs(diff.mean())
    permuted = np.abs((signs * diff).mean(axis=1))
    return float((np.sum(permuted >= observed - 1e-12) + 1) / (n_permutations + 1))


def write_trec_run(ranking: Ranking, path: Path, tag: str) -> int:
    """Write a TREC run file (gzip when the name ends in .gz); returns the number of lines."""
    if not tag or any(c.isspace() for c in tag):
        raise WorkbenchError(f"run tag {tag!r} must be non-empty without spaces")
    lines = 0
    with atomic_write(path) as handle:
        for qid, doc_ids, scores in ranking.items():
            for rank, (doc_id, score) in enumerate(zip(doc_ids, scores.tolist(), strict=True), start=1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
            lines += len(doc_ids)
    return lines
