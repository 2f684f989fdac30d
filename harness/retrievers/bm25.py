"""BM25 on bm25s over a chosen analyzer, with the analyzed corpus and the index cached on disk.

Parameters default to Anserini's BEIR settings (k1 = 0.9, b = 0.4) with Lucene's BM25:
idf = log(1 + (N - df + 0.5) / (df + 0.5)), tf part = tf / (tf + k1 (1 - b + b |d| / avgdl)).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from common.files import atomic_dir
from common.paths import cache_dir
from harness.analyzers import Analyzer, KiwiAnalyzer, PlainAnalyzer, analyze_cached
from harness.datasets import Dataset
from harness.ranking import Ranking
from harness.retrievers.base import Retriever, RetrieverSpec
from harness.retrievers.registry import register

__all__ = ["ANALYZERS", "BM25Retriever"]

ANALYZERS: dict[str, type] = {"plain": PlainAnalyzer, "kiwi": KiwiAnalyzer}


class BM25Retriever(Retriever):
    def __init__(
        self,
        spec: RetrieverSpec,
        analyzer: str = "kiwi",
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
    ) -> None:
        super().__init__(spec)
        self.analyzer: Analyzer = ANALYZERS[analyzer]()
        self.k1, self.b, self.method = k1, b, method
        self._bm25 = None
        self._doc_ids: list[str] = []

    def version_key(self) -> str:
        from importlib.metadata import version

        return f"{self.analyzer.key}:bm25s-{version('bm25s')}"

    def index(self, dataset: Dataset, use_cache: bool = True) -> None:
        import bm25s

        self._doc_ids = list(dataset.corpus)
        path = self.cache_path(dataset)
        if use_cache and (path / "params.index.json").is_file():
            self._bm25 = bm25s.BM25.load(path)
            return
        tokens_file = cache_dir() / "analyzed" / self.analyzer.key / f"{dataset.checksum[:24]}.npz"
        tokens = analyze_cached(
            self.analyzer,
            [doc.full_text for doc in dataset.corpus.values()],
            tokens_file if use_cache else None,
            progress=f"analyze {dataset.name} ({self.analyzer.key})",
        )
        bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        bm25.index(tokens, show_progress=False)
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                with atomic_dir(path) as tmp:
                    bm25.save(tmp)
        self._bm25 = bm25

    def search(self, queries: Mapping[str, str], k: int) -> Ranking:
        if self._bm25 is None:
            raise RuntimeError("index() must run before search()")
        qids = list(queries)
        tokens = self.analyzer.analyze([queries[q] for q in qids])
        n_docs = len(self._doc_ids)
        hits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if k > 0 and qids and n_docs:
            # one more than k shows whether the k-th score is tied beyond the cut
            depth = min(k + 1, n_docs)
            indices, scores = self._bm25.retrieve(tokens, k=depth, show_progress=False, n_threads=0)
            for qid, query, idx, sc in zip(qids, tokens, indices, scores, strict=True):
                if depth > k and sc[k - 1] > 0 and sc[k] == sc[k - 1]:
                    # bm25s chose among the tied documents; take them all, Ranking cuts by docid
                    full = self._bm25.get_scores(query)
                    kth = np.partition(full, n_docs - k)[n_docs - k]
                    idx = np.flatnonzero(full >= kth)
                    sc = full[idx]
                matched = sc > 0  # documents sharing no term with the query are not retrieved
                hits[qid] = (idx[matched], sc[matched])
        return Ranking(self.spec.name, self._doc_ids, hits, k=k)

    def stats(self) -> dict[str, float]:
        if self._bm25 is None:
            return {}
        scores = self._bm25.scores
        nbytes = sum(np.asarray(scores[key]).nbytes for key in ("data", "indices", "indptr"))
        return {"index_bytes": float(nbytes), "vocabulary": float(len(self._bm25.vocab_dict))}


for _spec in (
    RetrieverSpec(
        name="bm25-ko",
        family="bm25",
        factory=BM25Retriever,
        description="BM25 (bm25s, Lucene formula, k1 0.9, b 0.4) on Kiwi morphemes; Latin words lower-cased",
        languages=("ko", "en"),
        params={"analyzer": "kiwi", "k1": 0.9, "b": 0.4, "method": "lucene"},
        default=True,
    ),
    RetrieverSpec(
        name="bm25-plain",
        family="bm25",
        factory=BM25Retriever,
        description="BM25 (bm25s, Lucene formula, k1 0.9, b 0.4) on lower-cased \\w+ words",
        languages=("ko", "en"),
        params={"analyzer": "plain", "k1": 0.9, "b": 0.4, "method": "lucene"},
        default=True,
    ),
):
    register(_spec)
