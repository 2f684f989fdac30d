"""An exact inverted index over sparse document vectors (scipy CSC: one column per token).

Search reads the posting column of each query token and accumulates weight x posting into a
reusable score buffer (one numba function, `_search`), then keeps the top k (a one-pass heap finds
the k-th score, over the touched documents or, where the postings are many, over the whole
buffer); every document tied with the k-th score is kept so that `Ranking(k=...)` breaks the
ties by docid. Memory: nnz x (4 + 4) bytes for weights and document numbers, one int64 offset
per token, and 24 bytes per document of search buffers.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

__all__ = ["SparseIndex"]


@njit(cache=True)
def _kth_largest(values, n, k):
    """The k-th largest positive value of values[:n], 0 where fewer than k are positive: one pass
    with a min-heap of the k largest so far, started as k zeros so that a single comparison with
    its smallest (almost always false) skips both zeros and values too small."""
    heap = np.zeros(k, dtype=values.dtype)
    for i in range(n):
        value = values[i]
        if value > heap[0]:  # replace the smallest, sift down
            j = 0
            while True:
                left, right, smallest = 2 * j + 1, 2 * j + 2, j
                child = value
                if left < k and heap[left] < child:
                    smallest, child = left, heap[left]
                if right < k and heap[right] < child:
                    smallest, child = right, heap[right]
                if smallest == j:
                    break
                heap[j] = child
                j = smallest
            heap[j] = value
    return heap[0]


@njit(cache=True)
def _search(indptr, indices, data, tokens, weights, k, scores, out_docs, out_scores):
    """Accumulate weight x posting of each token into `scores` (all positive, so a score of 0
    means untouched), move the top k and every document tied with the k-th to `out_*`, reset the
    buffer; returns how many were moved.

    Where the postings outnumber a quarter of the documents (frequent tokens: a 2-8 token query
    over 1M documents reads about 1M postings), `_search_dense` finds the k-th score in one pass
    over the buffer and keeps what reaches it in a second: branches almost never taken, where
    recording each touched document (`_search_tracked`) costs a branch and a scattered write per
    posting. Both add the same products in the same order, so the scores are the same to the bit.
    """
    total = 0
    for t in range(tokens.shape[0]):
        total += indptr[tokens[t] + 1] - indptr[tokens[t]]
    if total * 4 >= scores.shape[0]:
        return _search_dense(indptr, indices, data, tokens, weights, k, scores, out_docs, out_scores)
    return _search_tracked(indptr, indices, data, tokens, weights, k, scores, out_docs, out_scores)


@njit(cache=True)
def _search_dense(indptr, indices, data, tokens, weights, k, scores, out_docs, out_scores):
    for t in range(tokens.shape[0]):
        token, weight = tokens[t], weights[t]
        for p in range(indptr[token], indptr[token + 1]):
            scores[indices[p]] += weight * data[p]
    # one comparison per document: at least the k-th score, or above 0 where fewer than k
    threshold = max(_kth_largest(scores, scores.shape[0], k), np.nextafter(scores.dtype.type(0), 1))
    n = 0
    for doc in range(scores.shape[0]):
        if scores[doc] >= threshold:
            out_docs[n] = doc
            out_scores[n] = scores[doc]
            n += 1
        scores[doc] = 0.0
    return n


@njit(cache=True)
def _search_tracked(indptr, indices, data, tokens, weights, k, scores, out_docs, out_scores):
    n = 0
    for t in range(tokens.shape[0]):
        token, weight = tokens[t], weights[t]
        for p in range(indptr[token], indptr[token + 1]):
            doc = indices[p]
            if scores[doc] == 0.0:
                out_docs[n] = doc
                n += 1
            scores[doc] += weight * data[p]
    for i in range(n):
        doc = out_docs[i]
        out_scores[i] = scores[doc]
        scores[doc] = 0.0
    if n <= k:
        return n
    kth = _kth_largest(out_scores, n, k)
    kept = 0
    for i in range(n):
        if out_scores[i] >= kth:
            out_docs[kept] = out_docs[i]
            out_scores[kept] = out_scores[i]
            kept += 1
    return kept


class SparseIndex:
    def __init__(self, documents: sp.spmatrix) -> None:
        """`documents`: (n_docs, vocab) non-negative weights."""
        csc = sp.csc_matrix(documents, dtype=np.float32)
        csc.sum_duplicates()
        csc.eliminate_zeros()
        csc.sort_indices()
        if csc.nnz and csc.data.min() < 0:
            raise ValueError("document weights must be non-negative")
        self.n_docs, self.vocab_size = csc.shape
        self.indptr = csc.indptr.astype(np.int64)
        # unsigned: numba indexes with it without the check for negative (from-the-end) indices,
        # a third off the accumulation loop
        self.indices = csc.indices.astype(np.uint32)
        self.data = csc.data.astype(np.float32)
        # search buffers, reused by every query
        self._scores = np.zeros(self.n_docs, dtype=np.float32)
        self._out_docs = np.zeros(self.n_docs, dtype=np.int64)
        self._out_scores = np.zeros(self.n_docs, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.data.nbytes

    def documents(self) -> sp.csr_matrix:
        """The indexed weights again, one row per document."""
        shape = (self.n_docs, self.vocab_size)
        return sp.csc_matrix((self.data, self.indices, self.indptr), shape=shape).tocsr()

    def document_frequency(self) -> np.ndarray:
        """Number of documents in which each token is active."""
        return np.diff(self.indptr)

    def search(self, token_ids: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(document numbers, scores) of the documents scoring above 0, at least the top k.

        Query tokens with weight <= 0 are left out (document weights are non-negative).
        """
        tokens = np.asarray(token_ids, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float32)
        keep = (tokens >= 0) & (tokens < self.vocab_size) & (weights > 0)  # others cannot add score
        n = _search(
            self.indptr, self.indices, self.data, tokens[keep], weights[keep], k,
            self._scores, self._out_docs, self._out_scores,
        )  # fmt: skip
        return self._out_docs[:n].copy(), self._out_scores[:n].copy()
