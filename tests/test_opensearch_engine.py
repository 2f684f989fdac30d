"""The engine side: client settings and retries, feature keys, Lucene's rounding, bulk ingest, the
engine retrievers and the parity gate, against osmem-server (or WORKBENCH_TEST_OPENSEARCH)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from itertools import islice

import numpy as np
import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from common.errors import WorkbenchError
from harness.datasets import load_dataset, resolve_dataset
from harness.opensearch.client import ClusterSettings, connect, with_retries
from harness.opensearch.engine import (
    ID_KEY_PREFIX,
    bulk_ingest,
    feature_keys,
    lucene_feature_value,
    rank_feature_query,
    rank_features_index_body,
    sparse_features,
)
from harness.opensearch.parity import NDCG_TOLERANCE, check_parity
from harness.registry import dataset_registry
from harness.retrievers import resolve_retriever
from harness.retrievers.opensearch import bm25_engine_spec, sparse_engine_spec, use_cluster


@pytest.fixture
def cluster(opensearch_cluster: ClusterSettings) -> Iterator[tuple[ClusterSettings, str]]:
    """The cluster for the engine retrievers, and an index prefix of this test's own (deleted after)."""
    prefix = f"wbtest-{uuid.uuid4().hex[:8]}"
    use_cluster(opensearch_cluster)
    yield opensearch_cluster, prefix
    use_cluster(None)
    client = connect(opensearch_cluster)
    for name in client.indices.get(index=f"{prefix}-*"):
        client.indices.delete(index=name)


def test_lucene_rounding_by_hand() -> None:
    # float32 1.23456789 = 0x3F9E0652; >>> 15 << 15 keeps 0x3F9E0000 = 1 + 0x1E/128 = 1.234375
    values = np.array([1.23456789, 1 + 2**-8, 1 + 2**-9, 3.0, 2.9999], dtype=np.float32)
    expected = np.array([1.234375, 1 + 2**-8, 1.0, 3.0, 3.0 - 2**-7], dtype=np.float32)
    np.testing.assert_array_equal(lucene_feature_value(values), expected)


def test_the_engine_stores_feature_weights_as_lucene_rounds_them(
    cluster: tuple[ClusterSettings, str],
) -> None:
    settings, prefix = cluster
    client = connect(settings)
    index = f"{prefix}-rounding"
    client.indices.create(index=index, body=rank_features_index_body())
    weights = [1.23456789, 1 + 2**-8, 1 + 2**-9, 0.3333333, 17.77]
    docs = [(f"d{i}", {"sparse": {"tok": w}}) for i, w in enumerate(weights)]
    assert bulk_ingest(client, index, docs, len(docs), settings) == len(weights)
    client.indices.refresh(index=index)
    hits = client.search(index=index, body=rank_feature_query({"tok": 2.0}, 10))["hits"]["hits"]
    got = {h["_id"]: h["_score"] for h in hits}
    for i, w in enumerate(weights):
        assert np.float32(got[f"d{i}"]) == np.float32(2.0) * lucene_feature_value(w)
    assert got["d2"] == 2.0  # 1 + 2^-9 is below the ninth significant bit: stored as 1.0


def test_feature_keys_and_merged_features() -> None:
    from harness.retrievers.splade import english_splade_dir
    from models.checkpoint import load_tokenizer

    tokenizer = load_tokenizer(english_splade_dir())
    keys = feature_keys(tokenizer)
    dot = tokenizer.convert_tokens_to_ids(".")
    assert keys[dot] == f"{ID_KEY_PREFIX}{dot}"  # a dot would be a subfield path to OpenSearch
    word = tokenizer.convert_tokens_to_ids("layer")
    assert keys[word] == "layer"
    fake_keys = [""] * 12
    for token, key in {1: "a", 3: "x", 5: "x", 7: "y", 9: "z", 11: "w"}.items():
        fake_keys[token] = key
    ids = np.array([5, 3, 7, 9, 11, 1])
    weights = np.array([2.0, 0.5, 0.0, -1.0, np.nan, 1.0], dtype=np.float32)
    # ids 3 and 5 share "x": the larger weight; zero, negative and NaN dropped; sorted by key
    assert list(sparse_features(ids, weights, fake_keys).items()) == [("a", 1.0), ("x", 2.0)]


def test_bulk_failures_name_the_documents(cluster: tuple[ClusterSettings, str]) -> None:
    settings, prefix = cluster
    client = connect(settings)
    index = f"{prefix}-refused"
    client.indices.create(index=index, body=rank_features_index_body())
    docs = [("good", {"sparse": {"a": 1.0}}), ("bad", {"sparse": {"a": -1.0}}), ("fine", {"text": "x"})]
    with pytest.raises(WorkbenchError, match=r"1 documents refused: bad \(400 failed to parse"):
        bulk_ingest(client, index, docs, len(docs), settings, chunk_size=2)
    client.indices.refresh(index=index)
    assert client.count(index=index)["count"] == 2  # the others went in; the command still fails


def test_settings_from_env_and_flags() -> None:
    env = {"OPENSEARCH_HOSTS": "https://a:9200, https://b:9200", "OPENSEARCH_USER": "admin",
           "OPENSEARCH_PASSWORD": "s3cret", "OPENSEARCH_VERIFY_CERTS": "false"}  # fmt: skip
    settings = ClusterSettings.from_env(env)
    assert settings.hosts == ("https://a:9200", "https://b:9200")
    assert (settings.user, settings.password, settings.verify_certs) == ("admin", "s3cret", False)
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.describe())
    assert ClusterSettings.from_env(env, hosts=["http://c:9200"]).hosts == ("http://c:9200",)
    with pytest.raises(WorkbenchError, match="OPENSEARCH_VERIFY_CERTS='maybe'"):
        ClusterSettings.from_env({"OPENSEARCH_VERIFY_CERTS": "maybe"})
    with pytest.raises(WorkbenchError, match="both a user and a password"):
        ClusterSettings.from_env({"OPENSEARCH_USER": "admin"})
    with pytest.raises(WorkbenchError, match="expected http"):
        ClusterSettings(hosts=("localhost:9200",))
    redacted = ClusterSettings(hosts=("https://admin:s3cret@c:9200",)).describe()
    assert redacted["hosts"] == ["https://***@c:9200"]


def test_retries_back_off_on_429_and_stop_on_other_errors() -> None:
    settings = ClusterSettings(retries=3, backoff_s=0.5)
    answers = [TransportError(429, "too_many_requests"), TransportError(429, "too_many_requests"), {"ok": 1}]
    waits: list[float] = []

    def call() -> dict[str, int]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert with_retries(call, settings, "bulk", sleep=waits.append) == {"ok": 1}
    assert waits == [0.5, 1.0]
    waits.clear()

    def bad_request() -> None:
        raise TransportError(400, "parsing_exception", {"error": {"reason": "unknown query [x]"}})

    with pytest.raises(WorkbenchError, match=r"search: OpenSearch answered 400: parsing_exception \(unknown"):
        with_retries(bad_request, settings, "search", sleep=waits.append)
    assert waits == []


def test_an_unreachable_cluster_is_a_clear_error_without_credentials() -> None:
    waits: list[float] = []
    settings = ClusterSettings(hosts=("http://admin:s3cret@127.0.0.1:9",), retries=2, timeout_s=2)
    with pytest.raises(WorkbenchError) as caught:
        connect(settings, sleep=waits.append)
    message = str(caught.value)
    assert "cannot reach OpenSearch at http://***@127.0.0.1:9" in message and "after 3 attempts" in message
    assert "s3cret" not in message
    assert waits == [0.5, 1.0]
    assert issubclass(OSConnectionError, TransportError)  # why with_retries catches it first


def _first_queries(dataset, split: str, n: int) -> dict[str, str]:
    return dict(islice(dataset.split_queries(split).items(), n))


@pytest.mark.parametrize(
    ("model", "keys", "dataset_name"),
    [
        ("splade-en-tiny", "string", "gimp-en"),  # WordPiece: a decoded string is one id
        ("idf-only-xlmr", "token_id", "gimp-ko"),  # SentencePiece: "▁국" and "국" share a string
        ("idf-only-xlmr", "token_id", "gimp-ko-en"),
    ],
)
def test_parity_gate_on_the_embedded_tasks(
    cluster: tuple[ClusterSettings, str], model: str, keys: str, dataset_name: str
) -> None:
    """The engine's top 10 is the Lucene-rounded in-process top 10; nDCG@10 within 0.005 of the
    unrounded in-process run. The first 150 test queries (osmem scores rank_feature queries slowly)."""
    _, prefix = cluster
    dataset = load_dataset(resolve_dataset(dataset_name, dataset_registry()))
    engine = sparse_engine_spec(model, keys=keys, index_prefix=prefix).build()
    engine.index(dataset)
    queries = _first_queries(dataset, "test", 150)
    report = check_parity(engine, dataset, "test", queries, k=10)
    assert report.same_top_k == report.queries == 150, report.mismatches
    assert report.max_score_rel_diff <= 1e-5
    assert abs(report.ndcg_delta) <= NDCG_TOLERANCE
    assert report.passed and report.ndcg_engine > 0.05
    # a second index() finds the complete index and reuses it
    again = sparse_engine_spec(model, keys=keys, index_prefix=prefix).build()
    again.index(dataset)
    assert again.stats()["ingest_docs_per_s"] == 0.0
    assert again.search(queries, 10).to_dict() == engine.search(queries, 10).to_dict()


def test_an_index_cut_short_is_rebuilt(cluster: tuple[ClusterSettings, str], tiny_beir) -> None:
    settings, prefix = cluster
    dataset = load_dataset(resolve_dataset(str(tiny_beir), dataset_registry()))
    engine = bm25_engine_spec("english").build()
    engine.index_prefix = prefix
    name = engine.index_name(dataset)
    client = OpenSearch(hosts=list(settings.hosts))
    client.indices.create(index=name, body=rank_features_index_body(meta={"complete": False}))
    client.index(index=name, id="stale", body={"text": "left by a killed run"}, refresh=True)
    engine.index(dataset)
    assert client.count(index=name)["count"] == len(dataset.corpus)
    assert client.indices.get_mapping(index=name)[name]["mappings"]["_meta"]["complete"] is True
    assert engine.stats()["ingest_docs_per_s"] > 0


def test_engine_bm25_equals_lucene_bm25(cluster: tuple[ClusterSettings, str]) -> None:
    """The engine's BM25 (english analyzer, k1 0.9, b 0.4) against the in-process Lucene BM25 on gimp-en."""
    settings, prefix = cluster
    if connect(settings).info()["version"].get("build_hash") == "osmem":
        pytest.skip("osmem-server ignores index.similarity (k1, b): BM25 parity needs a real cluster")
    dataset = load_dataset(resolve_dataset("gimp-en", dataset_registry()))
    queries = _first_queries(dataset, "test", 300)
    engine = bm25_engine_spec("english").build()
    engine.index_prefix = prefix
    engine.index(dataset)
    local = resolve_retriever("bm25-flat").build()
    local.index(dataset)
    from harness.evaluation import evaluate_run

    qrels = {q: dataset.qrels["test"][q] for q in queries}
    ndcg = [evaluate_run(qrels, r.search(queries, 10), ["ndcg@10"]).mean["ndcg@10"] for r in (engine, local)]
    assert abs(ndcg[0] - ndcg[1]) <= NDCG_TOLERANCE, ndcg


def test_parity_command(cluster: tuple[ClusterSettings, str], tiny_beir, tmp_path) -> None:
    from typer.testing import CliRunner

    from evaluate import app

    settings, _ = cluster
    out = tmp_path / "parity.json"
    argv = ["parity", "--model", "idf-only-en", "--dataset", str(tiny_beir), "--os-host", settings.hosts[0]]
    result = CliRunner().invoke(app, [*argv, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "pass" in result.output
    (report,) = json.loads(out.read_text())
    assert report["passed"] and report["same_top_k"] == report["queries"] > 0
    wrong = CliRunner().invoke(app, [*argv, "--split", "dev"])
    assert wrong.exit_code == 2 and "no split 'dev'" in wrong.output
    client = connect(settings)
    for name in client.indices.get(index="workbench-opensearch-sparse-*"):
        client.indices.delete(index=name)


def _plugin_missing(exc: WorkbenchError | TransportError) -> bool:
    text = str(exc)
    return "No handler for type [sparse_vector]" in text or "not supported" in text or "neural_sparse" in text


def test_neural_sparse_query_tokens_where_the_plugin_is(
    cluster: tuple[ClusterSettings, str], tiny_beir
) -> None:
    """The same weights through `neural_sparse` `query_tokens`: the rank_feature run again."""
    _, prefix = cluster
    dataset = load_dataset(resolve_dataset(str(tiny_beir), dataset_registry()))
    queries = dataset.split_queries("test")
    plain = sparse_engine_spec("idf-only-en", index_prefix=prefix).build()
    plain.index(dataset)
    neural = sparse_engine_spec("idf-only-en", query="neural_sparse", index_prefix=prefix).build()
    neural.index(dataset)
    try:
        run = neural.search(queries, 10)
    except WorkbenchError as exc:
        if _plugin_missing(exc):
            pytest.skip(f"the cluster has no neural-search plugin ({exc})")
        raise
    assert run.to_dict() == plain.search(queries, 10).to_dict()


def test_seismic_sparse_vector_index_where_the_plugin_is(cluster: tuple[ClusterSettings, str]) -> None:
    """OpenSearch 3.3+: token-id keyed documents in a SEISMIC `sparse_vector` field, neural_sparse search."""
    from harness.opensearch.engine import neural_sparse_tokens_query, seismic_index_body

    settings, prefix = cluster
    client = connect(settings)
    index = f"{prefix}-seismic"
    body = seismic_index_body({"n_postings": 100, "cluster_ratio": 0.1, "approximate_threshold": 0})
    assert body["settings"]["index"]["sparse"] is True
    assert body["mappings"]["properties"]["sparse"] == {
        "type": "sparse_vector",
        "method": {
            "name": "seismic",
            "parameters": {"n_postings": 100, "cluster_ratio": 0.1, "approximate_threshold": 0},
        },
    }
    try:
        client.indices.create(index=index, body=body)
    except TransportError as exc:
        if _plugin_missing(exc):
            pytest.skip(f"the cluster has no sparse_vector field (neural-search 3.3+): {exc}")
        raise
    docs = [("a", {"sparse": {"10": 1.0, "20": 2.0}}), ("b", {"sparse": {"10": 2.5}})]  # scores 3.0 and 2.5
    bulk_ingest(client, index, docs, len(docs), settings)
    client.indices.refresh(index=index)
    hits = client.search(index=index, body=neural_sparse_tokens_query({"10": 1.0, "20": 1.0}, 10))["hits"][
        "hits"
    ]
    assert [h["_id"] for h in hits] == ["a", "b"]
