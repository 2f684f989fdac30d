"""Rankings: what a retriever returns for a set of queries, kept as numpy arrays.

A ranx `Run` stores results in numba typed dictionaries; building one from two million
(query, document) pairs takes about 30 s on these machines (measured on the gimp-en task), more
than the search itself. A `Ranking` keeps, per query, indices into one shared list of document
ids and their scores, ordered by (-score, docid); `to_ranx()` converts when a Run is wanted.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from ranx import Run

__all__ = ["Ranking"]


class Ranking:
    """Top-k documents of each query, each list ordered by (-score, docid)."""

    def __init__(
        self,
        name: str,
        doc_ids: Sequence[str],
        hits: Mapping[str, tuple[np.ndarray, np.ndarray]],
        k: int | None = None,
    ) -> None:
        """`hits[qid] = (indices into doc_ids, scores)` in any order; queries without hits are dropped.

        With `k`, each list is cut to its first k after ordering, so a retriever that hands over
        every candidate tied with its k-th score gets ties at the cut broken by docid too.
        """
        self.name = name
        self.doc_ids = list(doc_ids)
        ids = np.asarray(self.doc_ids, dtype=object)
        self._doc_order = np.empty(len(ids), dtype=np.int64)  # position of each id in sorted order
        self._doc_order[np.argsort(ids, kind="stable")] = np.arange(len(ids))
        self._hits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for qid, (indices, scores) in hits.items():
            indices = np.asarray(indices, dtype=np.int64)
            scores = np.asarray(scores, dtype=np.float64)
            if len(indices) != len(scores):
                raise ValueError(f"query {qid!r}: {len(indices)} documents but {len(scores)} scores")
            if len(np.unique(indices)) != len(indices):
                raise ValueError(f"query {qid!r}: a document appears twice")
            if len(indices):
                order = np.lexsort((self._doc_order[indices], -scores))[:k]
                self._hits[qid] = (indices[order], scores[order])

    @classmethod
    def from_dict(cls, results: Mapping[str, Mapping[str, float]], name: str = "run") -> Ranking:
        """From {qid: {docid: score}}."""
        doc_ids = sorted({doc for docs in results.values() for doc in docs})
        position = {doc: i for i, doc in enumerate(doc_ids)}
        hits = {
            qid: (np.array([position[d] for d in docs], dtype=np.int64), np.array(list(docs.values())))
            for qid, docs in results.items()
        }
        return cls(name, doc_ids, hits)

    def __len__(self) -> int:
        return len(self._hits)

    def __contains__(self, qid: object) -> bool:
        return qid in self._hits

    def hits(self, qid: str) -> tuple[np.ndarray, np.ndarray]:
        """(document indices, scores) of `qid`, best first; empty arrays when it retrieved nothing."""
        empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
        return self._hits.get(qid, empty)

    def items(self) -> Iterator[tuple[str, list[str], np.ndarray]]:
        """(qid, document ids, scores) per query, best first, queries in sorted order."""
        for qid in sorted(self._hits):
            indices, scores = self._hits[qid]
            yield qid, [self.doc_ids[i] for i in indices.tolist()], scores

    def without_query_ids(self) -> Ranking:
        """A new Ranking without the documents whose id equals their query's id.

        What pyserini's `--remove-query` and BEIR's `ignore_identical_ids` do, for sets (ArguAna,
        Quora) where a query is itself a document of the corpus.
        """
        position = {doc: i for i, doc in enumerate(self.doc_ids) if doc in self._hits}
        kept = copy.copy(self)  # shares the document ids and their order; filtering keeps the order
        kept._hits = {}
        for qid, (indices, scores) in self._hits.items():
            keep = indices != position.get(qid, -1)
            if keep.any():
                kept._hits[qid] = (indices[keep], scores[keep])
        return kept

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {qid: dict(zip(docs, scores.tolist(), strict=True)) for qid, docs, scores in self.items()}

    def to_ranx(self) -> Run:
        results = self.to_dict()
        return Run(results, name=self.name) if results else Run(name=self.name)
