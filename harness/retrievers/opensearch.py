"""Retrievers inside an OpenSearch cluster: `opensearch-splade:<model>` and `opensearch-bm25[:<analyzer>]`.

`opensearch-splade:<model>` encodes the corpus in-process with `<model>` (any SPLADE-doc or IDF-only
retriever name or checkpoint directory, with its cached document vectors), bulk-indexes the vectors
as `rank_features` (`harness.opensearch.engine`), and searches with bool/should `rank_feature`
queries whose weights are the model's query side (tokenizer + idf); `query=neural_sparse` sends
the same weights as `query_tokens` (neural-search plugin); `keys=token_id` names features by token
id instead of OpenSearch's decoded strings (`harness.opensearch.engine`). `opensearch-bm25` indexes
the text and searches with `match` (the index's analyzer: `standard`, or e.g. `opensearch-bm25:english`).

The cluster comes from `use_cluster` (evaluate.py's --os-* flags) or the environment
(`harness.opensearch.client`). An index is named by the retriever's model hash and the corpus
checksum; it is reused when its `_meta` says it is complete with every document, and rebuilt
otherwise (an ingest cut short leaves `complete: false`).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from common.errors import WorkbenchError
from harness.datasets import Dataset
from harness.opensearch.client import ClusterSettings, connect, with_retries
from harness.opensearch.engine import (
    FEATURE_FIELD,
    TEXT_FIELD,
    bulk_ingest,
    feature_keys,
    match_query,
    neural_sparse_tokens_query,
    rank_feature_query,
    rank_features_index_body,
    sparse_features,
)
from harness.ranking import Ranking
from harness.retrievers.base import Retriever, RetrieverSpec
from harness.retrievers.registry import register

__all__ = [
    "OpenSearchBM25Retriever",
    "OpenSearchSparseRetriever",
    "bm25_engine_spec",
    "cluster_settings",
    "sparse_engine_spec",
    "use_cluster",
]

_cluster: ClusterSettings | None = None


def use_cluster(settings: ClusterSettings | None) -> None:
    """The cluster engine retrievers connect to from now on (None: back to the environment's)."""
    global _cluster
    _cluster = settings


def cluster_settings() -> ClusterSettings:
    return _cluster if _cluster is not None else ClusterSettings.from_env()


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


class _EngineRetriever(Retriever):
    """An index per (retriever, corpus) in the cluster; one search request per query."""

    def __init__(self, spec: RetrieverSpec, index_prefix: str = "workbench") -> None:
        super().__init__(spec)
        self.index_prefix = index_prefix
        self._client: Any = None
        self._settings: ClusterSettings | None = None
        self._index_name: str | None = None
        self._doc_ids: list[str] = []
        self._position: dict[str, int] = {}
        self._ingest: dict[str, float] = {}
        self._latency: dict[str, float] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._settings = cluster_settings()
            self._client = connect(self._settings)
        return self._client

    def _call(self, what: str, call: Any) -> Any:
        self.client  # noqa: B018 (connects, and sets the settings the retries follow)
        assert self._settings is not None
        return with_retries(call, self._settings, what)

    def index_name(self, dataset: Dataset) -> str:
        parts = (self.index_prefix, self.spec.family, self.model_hash(), dataset.corpus_checksum[:12])
        return "-".join(parts).lower()

    def _body(self, meta: dict[str, Any]) -> dict[str, Any]:
        return rank_features_index_body(meta=meta)

    def _sources(self, dataset: Dataset) -> Iterator[tuple[str, dict[str, Any]]]:
        for doc_id, doc in dataset.corpus.items():
            yield doc_id, {TEXT_FIELD: doc.full_text}

    def _ensure_index(self, dataset: Dataset, use_cache: bool) -> None:
        name = self.index_name(dataset)
        indices = self.client.indices
        meta = {"model_hash": self.model_hash(), "corpus_checksum": dataset.corpus_checksum,
                "documents": len(dataset.corpus)}  # fmt: skip
        if self._call(f"checking {name}", lambda: indices.exists(index=name)):
            mapping = self._call(f"reading {name}", lambda: indices.get_mapping(index=name))
            stored = mapping.get(name, {}).get("mappings", {}).get("_meta", {})
            count = self._call(f"counting {name}", lambda: self.client.count(index=name))["count"]
            if use_cache and stored == meta | {"complete": True} and count == len(dataset.corpus):
                self._index_name, self._ingest = name, {"ingest_docs_per_s": 0.0}
                return
            self._call(f"deleting {name}", lambda: indices.delete(index=name))  # stale or cut short
        self._call(
            f"creating {name}",
            lambda: indices.create(index=name, body=self._body(meta | {"complete": False})),
        )
        started = time.perf_counter()
        assert self._settings is not None
        bulk_ingest(self.client, name, self._sources(dataset), len(dataset.corpus), self._settings)
        self._call(f"refreshing {name}", lambda: indices.refresh(index=name))
        seconds = max(time.perf_counter() - started, 1e-9)
        self._call(
            f"completing {name}",
            lambda: indices.put_mapping(index=name, body={"_meta": meta | {"complete": True}}),
        )
        self._index_name = name
        self._ingest = {"ingest_docs_per_s": len(dataset.corpus) / seconds}

    def _remember(self, dataset: Dataset) -> None:
        self._doc_ids = list(dataset.corpus)
        self._position = {doc_id: i for i, doc_id in enumerate(self._doc_ids)}

    @abstractmethod
    def _query_body(self, text: str, k: int) -> dict[str, Any] | None:
        """The search request of one query; None where it has nothing to ask."""

    def search(self, queries: Mapping[str, str], k: int) -> Ranking:
        if self._index_name is None:
            raise RuntimeError("index() must run before search()")
        name = self._index_name
        hits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        latencies: list[float] = []
        for qid, text in queries.items():
            started = time.perf_counter()
            body = self._query_body(text, k)
            if body is None:  # nothing to ask: no token of the query has a weight
                continue
            answer = self._call(
                f"searching {name}", lambda body=body: self.client.search(index=name, body=body)
            )
            latencies.append((time.perf_counter() - started) * 1000)
            found = answer["hits"]["hits"]
            try:
                indices = np.array([self._position[h["_id"]] for h in found], dtype=np.int64)
            except KeyError as exc:
                raise WorkbenchError(
                    f"{name}: the engine returned document {exc.args[0]!r}, not in the corpus"
                ) from None
            hits[qid] = (indices, np.array([h["_score"] for h in found], dtype=np.float64))
        self._latency = {
            "latency_p50_ms": _percentile(latencies, 50),
            "latency_p99_ms": _percentile(latencies, 99),
        }
        return Ranking(self.spec.name, self._doc_ids, hits, k=k)


class OpenSearchSparseRetriever(_EngineRetriever):
    """A sparse model's document vectors in a `rank_features` field; its query side in the request."""

    def __init__(
        self, spec: RetrieverSpec, model: str, query: str = "rank_feature", keys: str = "string",
        index_prefix: str = "workbench",
    ) -> None:  # fmt: skip
        super().__init__(spec, index_prefix)
        from harness.retrievers import resolve_retriever
        from harness.retrievers.splade import SparseRetriever

        if keys not in ("string", "token_id"):
            raise WorkbenchError(f"retriever {spec.name!r}: keys must be 'string' or 'token_id'")
        self.key_format = keys
        if query not in ("rank_feature", "neural_sparse"):
            raise WorkbenchError(f"retriever {spec.name!r}: query must be 'rank_feature' or 'neural_sparse'")
        self.query = query
        self.inner = resolve_retriever(model).build()
        if not isinstance(self.inner, SparseRetriever):
            raise WorkbenchError(
                f"retriever {spec.name!r}: {model!r} is a {self.inner.spec.family} retriever; "
                "the engine takes a SPLADE-doc or IDF-only one"
            )
        self._keys: list[str] = []

    def version_key(self) -> str:
        return self.inner.model_hash()

    def index(self, dataset: Dataset, use_cache: bool = True) -> None:
        self.inner.index(dataset, use_cache)
        self._keys = feature_keys(self.inner.tokenizer, self.key_format)
        self._remember(dataset)
        self._ensure_index(dataset, use_cache)

    def _sources(self, dataset: Dataset) -> Iterator[tuple[str, dict[str, Any]]]:
        vectors = self.inner.documents()
        for row, (doc_id, doc) in enumerate(dataset.corpus.items()):
            start, end = vectors.indptr[row], vectors.indptr[row + 1]
            features = sparse_features(vectors.indices[start:end], vectors.data[start:end], self._keys)
            source: dict[str, Any] = {TEXT_FIELD: doc.full_text}
            if features:  # a document with no active token has no features at all
                source[FEATURE_FIELD] = features
            yield doc_id, source

    def query_features(self, text: str) -> dict[str, float]:
        ids, weights = self.inner.query_vector(text)
        return sparse_features(ids, weights, self._keys)

    def _query_body(self, text: str, k: int) -> dict[str, Any] | None:
        features = self.query_features(text)
        if not features:
            return None
        return (
            rank_feature_query(features, k)
            if self.query == "rank_feature"
            else neural_sparse_tokens_query(features, k)
        )

    def stats(self) -> dict[str, float]:
        inner = {k: v for k, v in self.inner.stats().items() if not k.startswith("latency")}
        return inner | self._ingest | self._latency


class OpenSearchBM25Retriever(_EngineRetriever):
    """BM25 of the engine: the corpus text under the index's analyzer, searched with `match`."""

    def __init__(
        self, spec: RetrieverSpec, analyzer: str = "standard", k1: float = 0.9, b: float = 0.4,
        index_prefix: str = "workbench",
    ) -> None:  # fmt: skip
        super().__init__(spec, index_prefix)
        self.analyzer, self.k1, self.b = analyzer, k1, b

    def _body(self, meta: dict[str, Any]) -> dict[str, Any]:
        return rank_features_index_body(analyzer=self.analyzer, k1=self.k1, b=self.b, meta=meta)

    def index(self, dataset: Dataset, use_cache: bool = True) -> None:
        self._remember(dataset)
        self._ensure_index(dataset, use_cache)

    def _query_body(self, text: str, k: int) -> dict[str, Any] | None:
        return match_query(text, k) if text.strip() else None

    def stats(self) -> dict[str, float]:
        return self._ingest | self._latency


def sparse_engine_spec(model: str, **params: Any) -> RetrieverSpec:
    """`opensearch-splade:<model>`: `model` is a SPLADE-doc / IDF-only retriever name or directory."""
    return RetrieverSpec(
        name=f"opensearch-splade:{model}",
        family="opensearch-sparse",
        factory=OpenSearchSparseRetriever,
        description=f"{model} in OpenSearch: rank_features documents, rank_feature queries",
        params={"model": model} | params,
    )


def bm25_engine_spec(analyzer: str = "standard") -> RetrieverSpec:
    name = "opensearch-bm25" if analyzer == "standard" else f"opensearch-bm25:{analyzer}"
    return RetrieverSpec(
        name=name,
        family="opensearch-bm25",
        factory=OpenSearchBM25Retriever,
        description=f"BM25 of OpenSearch (match query, {analyzer} analyzer, k1 0.9, b 0.4)",
        params={"analyzer": analyzer, "k1": 0.9, "b": 0.4},
    )


register(bm25_engine_spec())
