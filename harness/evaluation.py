"""Metrics with ranx, significance tests, and TREC run files.

Ties are broken by (-score, docid) everywhere: in the run files and in the metrics (ranx is
given a copy of the run whose scores are ranks), so a result never depends on sort stability.
Queries judged but absent from the run count as retrieving nothing (trec_eval's `-c`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ranx import Qrels, Run, evaluate

from harness.errors import HarnessError
from harness.io import atomic_write

__all__ = [
    "DEFAULT_METRICS",
    "STAT_TESTS",
    "EvalResult",
    "evaluate_run",
    "paired_test",
    "ranked_lists",
    "validate_metrics",
    "write_trec_run",
]

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "recall@1000", "map@1000")
RANX_METRICS = (
    "hits", "hit_rate", "precision", "recall", "f1", "r-precision", "mrr", "map",
    "ndcg", "ndcg_burges", "dcg", "dcg_burges", "bpref",
)  # fmt: skip
STAT_TESTS = ("student", "fisher")
_METRIC = re.compile(r"^(?P<name>[a-z_-]+)(@(?P<k>[1-9][0-9]*))?$")


def validate_metrics(names: Sequence[str]) -> list[str]:
    """Check metric names (ranx spelling, `name` or `name@k`); unknown names list the valid ones."""
    checked = []
    for name in names:
        match = _METRIC.match(name)
        if not match or match["name"] not in RANX_METRICS:
            raise HarnessError(
                f"unknown metric {name!r}; valid: {', '.join(RANX_METRICS)} (optionally @k, e.g. ndcg@10)"
            )
        checked.append(name)
    if not checked:
        raise HarnessError("no metrics given")
    return checked


def ranked_lists(run: Run) -> dict[str, list[tuple[str, float]]]:
    """Each query's documents ordered by (-score, docid)."""
    return {
        qid: sorted(docs.items(), key=lambda item: (-item[1], item[0])) for qid, docs in run.to_dict().items()
    }


@dataclass(frozen=True)
class EvalResult:
    """Mean and per-query values of each metric over the judged queries."""

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]  # metric -> qid -> value


def evaluate_run(qrels: Mapping[str, Mapping[str, int]], run: Run, metrics: Sequence[str]) -> EvalResult:
    """Score `run` against `qrels`; neither argument is modified."""
    metrics = validate_metrics(metrics)
    if not qrels:
        raise HarnessError("no judged queries to evaluate")
    ranked = {
        qid: {doc_id: float(len(docs) - rank) for rank, (doc_id, _) in enumerate(docs)}
        for qid, docs in ranked_lists(run).items()
        if qid in qrels
    }
    ranx_run = Run(ranked) if ranked else Run()
    ranx_qrels = Qrels({qid: dict(docs) for qid, docs in qrels.items()})
    evaluate(ranx_qrels, ranx_run, list(metrics), make_comparable=True, threads=1)
    per_query = {m: {qid: float(v) for qid, v in ranx_run.scores[m].items()} for m in metrics}
    mean = {m: float(np.mean(list(values.values()))) for m, values in per_query.items()}
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
        raise HarnessError(f"unknown significance test {test!r}; valid: {', '.join(STAT_TESTS)}")
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


def write_trec_run(run: Run, path: Path, tag: str) -> int:
    """Write a TREC run file (gzip when the name ends in .gz); returns the number of lines."""
    if not tag or any(c.isspace() for c in tag):
        raise HarnessError(f"run tag {tag!r} must be non-empty without spaces")
    lines = 0
    with atomic_write(path) as handle:
        for qid, docs in sorted(ranked_lists(run).items()):
            for rank, (doc_id, score) in enumerate(docs, start=1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
                lines += 1
    return lines
