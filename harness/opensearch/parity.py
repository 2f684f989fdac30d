"""The parity gate: a sparse model scores the same inside OpenSearch as in-process.

Two comparisons per dataset split, over the same queries:

- exact: the engine's top k against the in-process dot product of the very feature maps that were
  indexed and sent (`OpenSearchSparseRetriever`), with the document weights rounded as Lucene's
  `FeatureField` stores them (`lucene_feature_value`). The top k must be the same documents, up to
  documents tied with the k-th score, and every returned score must match to float32 precision
  (Lucene adds the clause scores in float).
- effectiveness: nDCG@10 of the engine's run against the in-process retriever's own, unrounded run
  (what `evaluate.py --model` reports): the difference must stay within `NDCG_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from harness.datasets import Dataset
from harness.evaluation import evaluate_run
from harness.opensearch.engine import lucene_feature_value
from harness.ranking import Ranking

__all__ = ["NDCG_TOLERANCE", "ParityReport", "check_parity", "rounded_reference"]

NDCG_TOLERANCE = 0.005
SCORE_RTOL = 1e-5  # float32 sums of up to a few hundred clauses, in another order


@dataclass
class ParityReport:
    dataset: str
    split: str
    retriever: str
    queries: int
    k: int
    same_top_k: int  # queries whose top k is the reference's (up to ties at the k-th score)
    max_score_rel_diff: float  # over every returned document: engine score against the reference
    ndcg_engine: float
    ndcg_in_process: float
    mismatches: list[str] = field(default_factory=list)  # the first query ids that differ

    @property
    def ndcg_delta(self) -> float:
        return self.ndcg_engine - self.ndcg_in_process

    @property
    def passed(self) -> bool:
        return (
            self.same_top_k == self.queries
            and self.max_score_rel_diff <= SCORE_RTOL
            and abs(self.ndcg_delta) <= NDCG_TOLERANCE
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ndcg_delta": self.ndcg_delta, "passed": self.passed}


def _feature_matrix(rows: list[dict[str, float]], columns: dict[str, int]) -> sp.csr_matrix:
    indptr, indices, data = [0], [], []
    for features in rows:
        for key, weight in features.items():
            indices.append(columns.setdefault(key, len(columns)))
            data.append(weight)
        indptr.append(len(indices))
    return sp.csr_matrix(
        (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
        shape=(len(rows), max(len(columns), 1)),
    )


def rounded_reference(
    documents: list[dict[str, float]], queries: Mapping[str, dict[str, float]]
) -> dict[str, np.ndarray]:
    """Per query, the score of every document: its Lucene-rounded weights dotted with the query's."""
    columns: dict[str, int] = {}
    docs = _feature_matrix(documents, columns)
    docs.data = lucene_feature_value(docs.data).astype(np.float64)
    query_rows = _feature_matrix(list(queries.values()), columns)
    docs.resize((docs.shape[0], query_rows.shape[1]))
    scores = (query_rows @ docs.T).toarray()
    return {qid: scores[i] for i, qid in enumerate(queries)}


def _same_top_k(found: np.ndarray, reference: np.ndarray, k: int) -> bool:
    """Whether `found` (document numbers) is the reference top k, documents tied at the k-th score
    being interchangeable."""
    positive = np.flatnonzero(reference > 0)
    order = positive[np.argsort(-reference[positive], kind="stable")]
    if len(order) <= k:
        return set(found.tolist()) == set(order.tolist())
    kth = reference[order[k - 1]]
    tol = SCORE_RTOL * kth
    sure = {int(d) for d in order if reference[d] > kth + tol}
    tied = {int(d) for d in order if abs(reference[d] - kth) <= tol}
    got = set(found.tolist())
    return len(found) == k and sure <= got and got - sure <= tied


def check_parity(
    engine: Any, dataset: Dataset, split: str, queries: Mapping[str, str], k: int = 10
) -> ParityReport:
    """Compare an indexed `OpenSearchSparseRetriever` with its in-process model on `queries`."""
    engine_run = engine.search(queries, k)
    own_run = engine.inner.search(queries, k)
    documents = [source.get("sparse", {}) for _, source in engine._sources(dataset)]
    features = {qid: engine.query_features(text) for qid, text in queries.items()}
    reference = rounded_reference(documents, features)
    same, worst, mismatches = 0, 0.0, []
    for qid in queries:
        found, scores = (
            engine_run.hits(qid) if qid in engine_run else (np.array([], dtype=np.int64), np.array([]))
        )
        expected = reference[qid]
        if len(found):
            diff = np.abs(scores - expected[found]) / np.maximum(np.abs(expected[found]), 1e-30)
            worst = max(worst, float(diff.max()))
        if _same_top_k(found, expected, k):
            same += 1
        elif len(mismatches) < 10:
            mismatches.append(qid)
    qrels = dataset.qrels[split]
    return ParityReport(
        dataset=dataset.name,
        split=split,
        retriever=engine.spec.name,
        queries=len(queries),
        k=k,
        same_top_k=same,
        max_score_rel_diff=worst,
        ndcg_engine=_ndcg(qrels, engine_run, queries),
        ndcg_in_process=_ndcg(qrels, own_run, queries),
        mismatches=mismatches,
    )


def _ndcg(qrels: Mapping[str, Mapping[str, int]], run: Ranking, queries: Mapping[str, str]) -> float:
    judged = {qid: qrels[qid] for qid in queries if qid in qrels}
    return evaluate_run(judged, run, ["ndcg@10"]).mean["ndcg@10"]
