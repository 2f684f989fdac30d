"""Sparse vectors in an OpenSearch index: mappings, feature keys, Lucene's rounding, bulk ingest, queries.

Documents are encoded client-side (the harness's SPLADE-doc encoder, pruned as configured) and
indexed as a `rank_features` field, which every OpenSearch version has, beside a `text` field for
BM25 in the same index. A query is a bool/should of `rank_feature` queries with the `linear`
function and boost = the query token's weight: the score is the dot product of the query weights
with the document weights as Lucene stores them (`FeatureField` keeps `floatToIntBits(w) >>> 15`:
sign, exponent and 8 explicit mantissa bits, i.e. 9 significant bits with the implicit one, the
rest truncated); `lucene_feature_value` reproduces that rounding. Where the neural-search plugin
is present the same weights go as `neural_sparse` `query_tokens`. OpenSearch 3.x's `sparse_vector`
field (SEISMIC approximate search) is keyed by integer token ids: `seismic_index_body`.

Feature keys are the strings OpenSearch looks a token up by, `tokenizer.decode([id])` (as in
idf.json), so that a document indexed here is scored as OpenSearch's own query-side tokenizer model
would score it. Two ids decoding to one string are one feature (the larger weight kept): with a
SentencePiece vocabulary ("▁국" and "국") that changes scores, which token-id keys avoid. A key with a
dot (a subfield path to OpenSearch) or an empty one cannot be a feature name: such tokens go under
`ID_KEY_PREFIX` + their id, on the document and the query side alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import WorkbenchError
from harness.console import track
from harness.opensearch.client import ClusterSettings, with_retries

__all__ = [
    "FEATURE_FIELD",
    "ID_KEY_PREFIX",
    "TEXT_FIELD",
    "BulkFailure",
    "bulk_ingest",
    "feature_keys",
    "lucene_feature_value",
    "match_query",
    "neural_sparse_tokens_query",
    "rank_feature_query",
    "rank_features_index_body",
    "seismic_index_body",
    "sparse_features",
]

FEATURE_FIELD = "sparse"
TEXT_FIELD = "text"
ID_KEY_PREFIX = "\u241f"  # SYMBOL FOR UNIT SEPARATOR: in no tokenizer's vocabulary (checked)
MAX_CLAUSES = 1024  # OpenSearch's default indices.query.bool.max_clause_count


def lucene_feature_value(values: np.ndarray | float) -> np.ndarray:
    """The weights as a `rank_features` field stores them: float32 with the low 15 bits cleared."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    return (bits & np.uint32(0xFFFF8000)).view(np.float32)


def feature_keys(tokenizer: Any, key_format: str = "string") -> list[str]:
    """The feature name of each token id: its decoded string, or `ID_KEY_PREFIX` + id where that
    string has a dot or is empty; with `key_format="token_id"` the id itself (OpenSearch 3.2+'s
    TOKEN_ID format, and SEISMIC's keys): no two ids share a feature then."""
    from models.idf import decoded_keys

    if key_format == "token_id":
        return [str(i) for i in range(len(tokenizer))]
    if key_format != "string":
        raise WorkbenchError(f"feature keys are 'string' or 'token_id', not {key_format!r}")
    keys = decoded_keys(tokenizer)
    if any(ID_KEY_PREFIX in key for key in keys):
        raise WorkbenchError(f"the tokenizer has a token with {ID_KEY_PREFIX!r}: it cannot mark id keys")
    return [key if key and "." not in key else f"{ID_KEY_PREFIX}{i}" for i, key in enumerate(keys)]


def sparse_features(ids: np.ndarray, weights: np.ndarray, keys: Sequence[str]) -> dict[str, float]:
    """{feature name: weight} of one sparse vector: weights <= 0 (and non-finite) dropped, two ids
    with one name merged (the larger weight), sorted by name so the same vector is the same JSON."""
    features: dict[str, float] = {}
    for token, weight in zip(
        np.asarray(ids).tolist(), np.asarray(weights, dtype=np.float32).tolist(), strict=True
    ):
        if weight > 0 and np.isfinite(weight):
            key = keys[token]
            features[key] = max(features.get(key, 0.0), weight)
    return dict(sorted(features.items()))


def _text_field(analyzer: str) -> dict[str, Any]:
    return {"type": "text", "analyzer": analyzer}


def rank_features_index_body(
    analyzer: str = "standard", k1: float = 0.9, b: float = 0.4, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One shard, no replica (an evaluation index): `rank_features` + a text field scored by BM25
    with `k1` and `b` (default: Anserini's BEIR settings, as the in-process BM25; OpenSearch's own
    default is 1.2 / 0.75)."""
    mappings: dict[str, Any] = {
        "properties": {FEATURE_FIELD: {"type": "rank_features"}, TEXT_FIELD: _text_field(analyzer)}
    }
    if meta is not None:
        mappings["_meta"] = meta
    index = {"number_of_shards": 1, "number_of_replicas": 0,
             "similarity": {"default": {"type": "BM25", "k1": k1, "b": b}}}  # fmt: skip
    return {"settings": {"index": index}, "mappings": mappings}


def seismic_index_body(
    parameters: dict[str, Any] | None = None, analyzer: str = "standard", meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """OpenSearch 3.3+: a `sparse_vector` field searched approximately by SEISMIC (neural-search plugin);
    documents' keys are token ids as strings. `parameters`: n_postings, cluster_ratio,
    summary_prune_ratio, approximate_threshold, ... (docs.opensearch.org, "Sparse vector" field type)."""
    method: dict[str, Any] = {"name": "seismic"}
    if parameters:
        method["parameters"] = dict(parameters)
    mappings: dict[str, Any] = {
        "properties": {
            FEATURE_FIELD: {"type": "sparse_vector", "method": method},
            TEXT_FIELD: _text_field(analyzer),
        }
    }
    if meta is not None:
        mappings["_meta"] = meta
    return {
        "settings": {"index": {"sparse": True, "number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": mappings,
    }


def rank_feature_query(features: dict[str, float], k: int) -> dict[str, Any]:
    """Top k by the dot product with the stored document weights: bool/should of linear rank_feature."""
    if len(features) > MAX_CLAUSES:
        raise WorkbenchError(
            f"a query of {len(features)} tokens exceeds OpenSearch's {MAX_CLAUSES} bool clauses"
        )
    should = [
        {"rank_feature": {"field": f"{FEATURE_FIELD}.{key}", "linear": {}, "boost": weight}}
        for key, weight in features.items()
    ]
    return {"size": k, "_source": False, "query": {"bool": {"should": should}}}


def neural_sparse_tokens_query(features: dict[str, float], k: int) -> dict[str, Any]:
    """The same query through the neural-search plugin: `neural_sparse` with raw `query_tokens`."""
    return {
        "size": k,
        "_source": False,
        "query": {"neural_sparse": {FEATURE_FIELD: {"query_tokens": features}}},
    }


def match_query(text: str, k: int) -> dict[str, Any]:
    """BM25 on the text field, analysed by the index's analyzer."""
    return {"size": k, "_source": False, "query": {"match": {TEXT_FIELD: text}}}


@dataclass(frozen=True)
class BulkFailure:
    doc_id: str
    status: int
    reason: str


def bulk_ingest(
    client: Any,
    index: str,
    documents: Iterable[tuple[str, dict[str, Any]]],
    total: int,
    settings: ClusterSettings,
    chunk_size: int = 256,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Index `(doc_id, source)` pairs in chunks (each chunk retried as a whole on 429 / connection
    errors); returns the number indexed. Any document the cluster refuses makes it fail, naming the
    documents and why: nothing is dropped silently."""
    failures: list[BulkFailure] = []
    indexed = 0
    for chunk in track(_chunks(documents, chunk_size), f"bulk {index}", total=-(-total // chunk_size)):
        body: list[dict[str, Any]] = []
        for doc_id, source in chunk:
            body += [{"index": {"_index": index, "_id": doc_id}}, source]
        answer = with_retries(lambda body=body: client.bulk(body=body), settings, f"bulk into {index}", sleep)
        for item in answer.get("items", []):
            result = item.get("index", {})
            if result.get("error") is not None or int(result.get("status", 500)) >= 300:
                error = result.get("error") or {}
                reason = error.get("reason", "") if isinstance(error, dict) else str(error)
                caused = error.get("caused_by", {}).get("reason") if isinstance(error, dict) else None
                failures.append(BulkFailure(str(result.get("_id")), int(result.get("status", 0)),
                                            f"{reason}: {caused}" if caused else reason))  # fmt: skip
            else:
                indexed += 1
    if failures:
        shown = "; ".join(f"{f.doc_id} ({f.status} {f.reason})" for f in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        raise WorkbenchError(f"bulk into {index}: {len(failures)} documents refused: {shown}{more}")
    return indexed


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
