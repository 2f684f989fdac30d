"""ML Commons requests for a release: register (url or chunks), deploy, task polls, pipelines, queries.

No cluster here has the ML Commons or neural-search plugins: the bodies are checked against the
documented shapes, and `deploy_release` runs against a fake transport answering as the documentation's
examples do. The release is built without a model: random bytes stand in for the zips, with register
bodies written by export's own `register_body`.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from common.errors import WorkbenchError
from common.files import write_json
from harness.opensearch.export import CHUNK_BYTES, register_body
from harness.opensearch.ml_commons import (
    MODEL_ID,
    Request,
    deploy_release,
    deploy_request,
    ingest_pipeline_request,
    neural_sparse_query,
    predict_request,
    register_requests,
    search_pipeline_request,
    send,
    task_request,
)

NAME, VERSION = "ko-splade", "1.2.0"
ML = "/_plugins/_ml"
ENCODING_BYTES = 25 * 1024 * 1024 + 3
TOKENIZE_URL = "https://models.example.org/ko-splade-sparse-tokenize.zip"


def _write_zip(ml: Path, function: str, data: bytes, url: str | None) -> dict[str, Any]:
    kind = function.lower().replace("_", "-")
    zip_path = ml / f"{NAME}-{kind}.zip"
    zip_path.write_bytes(data)
    body = register_body(NAME, VERSION, function, zip_path, url, f"{NAME}: test release")
    write_json(ml / f"register-{kind}.json", body, indent=1)
    return body


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A release folder with a 25 MiB + 3 bytes encoding zip (chunked) and a small tokenize zip (url)."""
    out = tmp_path / NAME
    ml = out / "ml-commons"
    ml.mkdir(parents=True)
    rng = random.Random(20240611)
    encoding = _write_zip(ml, "SPARSE_ENCODING", rng.randbytes(ENCODING_BYTES), None)
    tokenize = _write_zip(ml, "SPARSE_TOKENIZE", rng.randbytes(4321), TOKENIZE_URL)
    assert encoding["total_chunks"] == 3 and encoding["model_content_size_in_bytes"] == ENCODING_BYTES
    assert tokenize["total_chunks"] == 1 and tokenize["url"] == TOKENIZE_URL
    return out


def _zip(release: Path, kind: str) -> Path:
    return release / "ml-commons" / f"{NAME}-sparse-{kind}.zip"


def _body(release: Path, kind: str) -> dict[str, Any]:
    return json.loads((release / "ml-commons" / f"register-sparse-{kind}.json").read_text())


# ---- register requests


def test_a_zip_without_url_is_registered_by_meta_and_three_chunks(release: Path) -> None:
    requests = register_requests(release, "SPARSE_ENCODING")
    data = _zip(release, "encoding").read_bytes()
    assert len(requests) == 4
    meta, chunks = requests[0], requests[1:]
    assert (meta.method, meta.path) == ("POST", f"{ML}/models/_register_meta")
    assert meta.body == {
        "name": NAME,
        "version": VERSION,
        "description": f"{NAME}: test release",
        "model_format": "TORCH_SCRIPT",
        "model_content_hash_value": hashlib.sha256(data).hexdigest(),
        "model_content_size_in_bytes": ENCODING_BYTES,
        "total_chunks": 3,
        "function_name": "SPARSE_ENCODING",
    }
    assert [(c.method, c.path) for c in chunks] == [
        ("POST", f"{ML}/models/{MODEL_ID}/upload_chunk/{i}") for i in range(3)
    ]
    assert all(isinstance(c.body, bytes) for c in chunks)
    assert [len(c.body) for c in chunks] == [CHUNK_BYTES, CHUNK_BYTES, 5 * 1024 * 1024 + 3]
    assert CHUNK_BYTES == 10 * 1024 * 1024
    assert b"".join(c.body for c in chunks) == data
    assert MODEL_ID == "{model_id}"
    assert "<10485760 bytes>" in repr(chunks[0])  # a chunk's repr does not print 10 MiB


def test_a_zip_with_url_is_one_register_request_with_the_documented_fields(release: Path) -> None:
    requests = register_requests(release, "SPARSE_TOKENIZE")
    data = _zip(release, "tokenize").read_bytes()
    assert requests == [
        Request(
            "POST",
            f"{ML}/models/_register",
            {
                "name": NAME,
                "version": VERSION,
                "description": f"{NAME}: test release",
                "model_format": "TORCH_SCRIPT",
                "function_name": "SPARSE_TOKENIZE",
                "model_content_hash_value": hashlib.sha256(data).hexdigest(),
                "url": TOKENIZE_URL,
            },
        )
    ]
    # the url registration needs no local copy of the zip: the cluster downloads it
    _zip(release, "tokenize").unlink()
    assert register_requests(release, "SPARSE_TOKENIZE")[0].body["url"] == TOKENIZE_URL


def test_a_missing_or_malformed_register_body_names_the_file(release: Path) -> None:
    path = release / "ml-commons" / "register-sparse-tokenize.json"
    body = _body(release, "tokenize")
    path.unlink()
    with pytest.raises(WorkbenchError, match=r"register-sparse-tokenize\.json: not found"):
        register_requests(release, "SPARSE_TOKENIZE")
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(WorkbenchError, match=r"register-sparse-tokenize\.json: not a readable JSON"):
        register_requests(release, "SPARSE_TOKENIZE")
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(WorkbenchError, match=r"register-sparse-tokenize\.json: expected a JSON object"):
        register_requests(release, "SPARSE_TOKENIZE")
    write_json(path, {k: v for k, v in body.items() if k != "model_content_hash_value"})
    with pytest.raises(WorkbenchError, match=r"register-sparse-tokenize\.json: 'model_content_hash_value'"):
        register_requests(release, "SPARSE_TOKENIZE")
    write_json(path, body | {"total_chunks": 2})
    with pytest.raises(WorkbenchError, match=r"register-sparse-tokenize\.json: total_chunks 2"):
        register_requests(release, "SPARSE_TOKENIZE")
    write_json(path, body | {"function_name": "SPARSE_ENCODING"})
    with pytest.raises(WorkbenchError, match=r"register-sparse-tokenize\.json: function_name is 'SPARSE_ENC"):
        register_requests(release, "SPARSE_TOKENIZE")
    with pytest.raises(WorkbenchError, match="function_name 'TEXT_EMBEDDING'"):
        register_requests(release, "TEXT_EMBEDDING")


def test_a_zip_changed_after_export_is_refused_naming_it(release: Path) -> None:
    zip_path = _zip(release, "encoding")
    data = bytearray(zip_path.read_bytes())
    zip_path.write_bytes(bytes(data) + b"\0")
    with pytest.raises(WorkbenchError, match=rf"{NAME}-sparse-encoding\.zip: {ENCODING_BYTES + 1} bytes"):
        register_requests(release, "SPARSE_ENCODING")
    data[12345] ^= 0xFF  # same size, other content
    zip_path.write_bytes(bytes(data))
    with pytest.raises(WorkbenchError, match=rf"{NAME}-sparse-encoding\.zip: sha256 differs"):
        register_requests(release, "SPARSE_ENCODING")
    # nothing reaches the cluster: both zips are checked before the first request
    client = FakeClient(_routes())
    with pytest.raises(WorkbenchError, match=rf"{NAME}-sparse-encoding\.zip: sha256 differs"):
        deploy_release(client, release, sleep=_no_sleep)
    assert client.transport.calls == []
    zip_path.unlink()
    with pytest.raises(WorkbenchError, match=rf"{NAME}-sparse-encoding\.zip: not found"):
        register_requests(release, "SPARSE_ENCODING")


def test_a_url_zip_that_no_longer_matches_its_hash_is_refused(release: Path) -> None:
    _zip(release, "tokenize").write_bytes(b"another zip")
    with pytest.raises(
        WorkbenchError, match=rf"{NAME}-sparse-tokenize\.zip: 11 bytes, its register body says 4321"
    ):
        register_requests(release, "SPARSE_TOKENIZE")


# ---- the other request bodies


def test_deploy_task_and_predict_requests() -> None:
    assert deploy_request("WWQI44MBbzI2oUKAvNUt") == Request(
        "POST", f"{ML}/models/WWQI44MBbzI2oUKAvNUt/_deploy"
    )
    assert task_request("hA8P44MBhyWuIwnfvTKP") == Request("GET", f"{ML}/tasks/hA8P44MBhyWuIwnfvTKP")
    assert predict_request("cleMb4kBJ1eYAeTMFFg4", ["today is sunny", "오늘은 맑음"]) == Request(
        "POST",
        f"{ML}/_predict/sparse_encoding/cleMb4kBJ1eYAeTMFFg4",
        {"text_docs": ["today is sunny", "오늘은 맑음"]},
    )
    for texts in ([], "today is sunny", ["ok", 3]):
        with pytest.raises(WorkbenchError, match="predict: expected a non-empty list of strings"):
            predict_request("m", texts)
    with pytest.raises(WorkbenchError, match="model_id: expected a non-empty string"):
        deploy_request("")
    assert deploy_request("a/b").path == f"{ML}/models/a%2Fb/_deploy"  # one path segment, always


def test_ingest_pipeline_has_a_sparse_encoding_processor() -> None:
    request = ingest_pipeline_request("splade-ingest", "enc-1", {"text": "sparse", "title": "title_sparse"})
    assert (request.method, request.path) == ("PUT", "/_ingest/pipeline/splade-ingest")
    assert request.body == {
        "description": "SPLADE-doc sparse encoding at ingest",
        "processors": [
            {
                "sparse_encoding": {
                    "model_id": "enc-1",
                    "field_map": {"text": "sparse", "title": "title_sparse"},
                }
            }
        ],
    }
    pruned = ingest_pipeline_request(
        "p", "enc-1", {"text": "sparse"}, prune_type="max_ratio", prune_ratio=0.1, batch_size=16
    )
    assert pruned.body["processors"][0]["sparse_encoding"] == {
        "model_id": "enc-1",
        "field_map": {"text": "sparse"},
        "prune_type": "max_ratio",
        "prune_ratio": 0.1,
        "batch_size": 16,
    }
    top_k = ingest_pipeline_request("p", "enc-1", {"text": "sparse"}, prune_type="top_k", prune_ratio=50)
    assert top_k.body["processors"][0]["sparse_encoding"]["prune_ratio"] == 50
    bad: list[tuple[dict[str, Any], str]] = [
        ({"prune_type": "max_ratio"}, "needs a prune_ratio"),
        ({"prune_ratio": 0.1}, "prune_ratio needs a prune_type"),
        ({"prune_type": "none", "prune_ratio": 0.1}, "'none' takes no prune_ratio"),
        (
            {"prune_type": "max_ratio", "prune_ratio": 1.0},
            r"prune_ratio 1\.0 for max_ratio: expected in \[0, 1\)",
        ),
        ({"prune_type": "top_k", "prune_ratio": 2.5}, "expected a positive integer"),
        ({"prune_type": "abs_value", "prune_ratio": -1}, "expected at least 0"),
        ({"prune_type": "median", "prune_ratio": 0.1}, "prune_type 'median': expected one of"),
        ({"batch_size": 0}, "batch_size 0"),
    ]
    for options, message in bad:
        with pytest.raises(WorkbenchError, match=message):
            ingest_pipeline_request("p", "enc-1", {"text": "sparse"}, **options)
    with pytest.raises(WorkbenchError, match="field_map must map at least one"):
        ingest_pipeline_request("p", "enc-1", {})
    with pytest.raises(WorkbenchError, match="field_map 'text' -> ''"):
        ingest_pipeline_request("p", "enc-1", {"text": ""})


def test_search_pipeline_is_the_two_phase_processor_with_its_documented_defaults() -> None:
    request = search_pipeline_request("two-phase")
    assert (request.method, request.path) == ("PUT", "/_search/pipeline/two-phase")
    assert request.body == {
        "request_processors": [
            {
                "neural_sparse_two_phase_processor": {
                    "enabled": True,
                    "two_phase_parameter": {
                        "prune_type": "max_ratio",
                        "prune_ratio": 0.4,
                        "expansion_rate": 5.0,
                        "max_window_size": 10000,
                    },
                }
            }
        ]
    }
    custom = search_pipeline_request(
        "tp",
        prune_ratio=0.2,
        expansion_rate=1.0,
        max_window_size=50,
        enabled=False,
        description="doc-only two phase",
    )
    assert custom.body["request_processors"][0]["neural_sparse_two_phase_processor"] == {
        "enabled": False,
        "two_phase_parameter": {
            "prune_type": "max_ratio",
            "prune_ratio": 0.2,
            "expansion_rate": 1.0,
            "max_window_size": 50,
        },
        "description": "doc-only two phase",
    }
    bad: list[tuple[dict[str, Any], str]] = [
        ({"expansion_rate": 0.9}, r"expansion_rate 0\.9: expected at least 1\.0"),
        ({"max_window_size": 49}, "max_window_size 49: expected an integer of at least 50"),
        ({"max_window_size": 100.5}, "max_window_size 100.5"),
        ({"prune_ratio": 1.0}, r"prune_ratio 1\.0 for max_ratio"),
        ({"prune_type": "none"}, "prune_type 'none': expected one of"),
    ]
    for options, message in bad:
        with pytest.raises(WorkbenchError, match=message):
            search_pipeline_request("tp", **options)


def test_neural_sparse_query_takes_text_with_a_model_or_tokens() -> None:
    assert neural_sparse_query("sparse", model_id="tok-1", query_text="레이어 마스크") == {
        "query": {"neural_sparse": {"sparse": {"query_text": "레이어 마스크", "model_id": "tok-1"}}}
    }
    assert neural_sparse_query("sparse", query_tokens={"레이어": 2.5, "mask": 1}) == {
        "query": {"neural_sparse": {"sparse": {"query_tokens": {"레이어": 2.5, "mask": 1.0}}}}
    }
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "give model_id with query_text, or query_tokens"),
        ({"query_text": "mask"}, "give model_id with query_text, or query_tokens"),
        ({"model_id": "tok-1"}, "give model_id with query_text, or query_tokens"),
        ({"model_id": "tok-1", "query_tokens": {"a": 1.0}}, "not both"),
        ({"query_text": "mask", "query_tokens": {"a": 1.0}}, "not both"),
        ({"query_tokens": {}}, "at least one token"),
        ({"query_tokens": {"a": float("nan")}}, "'a': nan is not a finite weight"),
        ({"query_tokens": {"a": True}}, "'a': True is not a finite weight"),
        ({"model_id": "tok-1", "query_text": ""}, "query_text must be a non-empty string"),
    ]
    for options, message in bad:
        with pytest.raises(WorkbenchError, match=message):
            neural_sparse_query("sparse", **options)
    with pytest.raises(WorkbenchError, match="field '': expected a field name"):
        neural_sparse_query("", query_tokens={"a": 1.0})


# ---- deploy_release against a fake transport


class FakeTransport:
    """Records each perform_request and answers from `routes`: (method, path) -> answers in turn,
    the last one repeated; an answer that is an exception is raised."""

    def __init__(self, routes: dict[tuple[str, str], list[Any]]) -> None:
        self.routes = routes
        self.calls: list[tuple[str, str, Any, Any]] = []

    def perform_request(self, method: str, url: str, body: Any = None, params: Any = None) -> Any:
        self.calls.append((method, url, body, params))
        answers = self.routes.get((method, url))
        if not answers:
            raise LookupError(f"no canned answer for {method} {url}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeClient:
    def __init__(self, routes: dict[tuple[str, str], list[Any]]) -> None:
        self.transport = FakeTransport(routes)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _no_sleep(seconds: float) -> None:
    raise AssertionError("no wait expected")


def _task(state: str, task_type: str, function: str, model_id: str | None = None) -> dict[str, Any]:
    """A Get ML Task answer as documented: model_id only once COMPLETED."""
    task: dict[str, Any] = {
        "task_type": task_type,
        "function_name": function,
        "state": state,
        "worker_node": ["N77RInqjTSq_UaLh1k0BUg"],
        "create_time": 1685478486057,
        "last_update_time": 1685478491090,
        "is_async": True,
    }
    return task | ({"model_id": model_id} if model_id else {})


def _routes() -> dict[tuple[str, str], list[Any]]:
    return {
        ("POST", f"{ML}/models/_register_meta"): [{"model_id": "enc-model-1", "status": "CREATED"}],
        **{("POST", f"{ML}/models/enc-model-1/upload_chunk/{i}"): [{"status": "Uploaded"}] for i in range(3)},
        ("POST", f"{ML}/models/_register"): [{"task_id": "reg-task-1", "status": "CREATED"}],
        ("GET", f"{ML}/tasks/reg-task-1"): [
            _task("CREATED", "REGISTER_MODEL", "SPARSE_TOKENIZE"),
            _task("COMPLETED", "REGISTER_MODEL", "SPARSE_TOKENIZE", "tok-model-1"),
        ],
        ("POST", f"{ML}/models/enc-model-1/_deploy"): [
            {"task_id": "dep-task-enc", "task_type": "DEPLOY_MODEL", "status": "CREATED"}
        ],
        ("GET", f"{ML}/tasks/dep-task-enc"): [
            _task("RUNNING", "DEPLOY_MODEL", "SPARSE_ENCODING"),
            _task("RUNNING", "DEPLOY_MODEL", "SPARSE_ENCODING"),
            _task("COMPLETED", "DEPLOY_MODEL", "SPARSE_ENCODING", "enc-model-1"),
        ],
        ("POST", f"{ML}/models/tok-model-1/_deploy"): [
            {"task_id": "dep-task-tok", "task_type": "DEPLOY_MODEL", "status": "CREATED"}
        ],
        ("GET", f"{ML}/tasks/dep-task-tok"): [
            _task("COMPLETED", "DEPLOY_MODEL", "SPARSE_TOKENIZE", "tok-model-1")
        ],
    }


def test_deploy_release_sends_the_documented_sequence_and_returns_the_model_ids(release: Path) -> None:
    client, clock = FakeClient(_routes()), FakeClock()
    model_ids = deploy_release(client, release, poll_interval_s=2.0, sleep=clock.sleep, clock=clock)
    assert model_ids == {"SPARSE_ENCODING": "enc-model-1", "SPARSE_TOKENIZE": "tok-model-1"}
    calls = client.transport.calls
    assert [(method, url) for method, url, _, _ in calls] == [
        ("POST", f"{ML}/models/_register_meta"),
        ("POST", f"{ML}/models/enc-model-1/upload_chunk/0"),
        ("POST", f"{ML}/models/enc-model-1/upload_chunk/1"),
        ("POST", f"{ML}/models/enc-model-1/upload_chunk/2"),
        ("POST", f"{ML}/models/_register"),
        ("GET", f"{ML}/tasks/reg-task-1"),
        ("GET", f"{ML}/tasks/reg-task-1"),
        ("POST", f"{ML}/models/enc-model-1/_deploy"),
        ("GET", f"{ML}/tasks/dep-task-enc"),
        ("GET", f"{ML}/tasks/dep-task-enc"),
        ("GET", f"{ML}/tasks/dep-task-enc"),
        ("POST", f"{ML}/models/tok-model-1/_deploy"),
        ("GET", f"{ML}/tasks/dep-task-tok"),
    ]
    expected = register_requests(release, "SPARSE_ENCODING") + register_requests(release, "SPARSE_TOKENIZE")
    sent_bodies = [body for _, _, body, _ in calls[:5]]
    assert sent_bodies == [r.body for r in expected]
    assert b"".join(sent_bodies[1:4]) == _zip(release, "encoding").read_bytes()
    assert all(body is None for _, url, body, _ in calls if "/tasks/" in url or url.endswith("/_deploy"))
    assert clock.sleeps == [2.0, 2.0, 2.0]  # one wait after each answer that was not yet COMPLETED


def test_a_failed_register_task_is_an_error_with_the_task_and_its_error(release: Path) -> None:
    routes = _routes()
    hash_error = '{"N77RInqjTSq_UaLh1k0BUg":"model content hash can\'t match original hash value"}'
    routes[("GET", f"{ML}/tasks/reg-task-1")] = [
        _task("RUNNING", "REGISTER_MODEL", "SPARSE_TOKENIZE"),
        _task("FAILED", "REGISTER_MODEL", "SPARSE_TOKENIZE") | {"error": hash_error},
    ]
    client, clock = FakeClient(routes), FakeClock()
    with pytest.raises(
        WorkbenchError, match=r"ML task reg-task-1 \(register SPARSE_TOKENIZE\) ended FAILED: "
    ) as e:
        deploy_release(client, release, sleep=clock.sleep, clock=clock)
    assert "model content hash can't match original hash value" in str(e.value)
    assert not any(url.endswith("/_deploy") for _, url, _, _ in client.transport.calls)


def test_a_failed_deploy_task_is_an_error_naming_it(release: Path) -> None:
    routes = _routes()
    routes[("GET", f"{ML}/tasks/dep-task-enc")] = [
        _task("COMPLETED_WITH_ERROR", "DEPLOY_MODEL", "SPARSE_ENCODING") | {"error": "out of memory on node"}
    ]
    client, clock = FakeClient(routes), FakeClock()
    message = (
        r"ML task dep-task-enc \(deploy SPARSE_ENCODING model enc-model-1\) ended COMPLETED_WITH_ERROR: "
    )
    with pytest.raises(WorkbenchError, match=message + "out of memory on node"):
        deploy_release(client, release, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [2.0]  # the register task's one CREATED answer


def test_a_task_that_does_not_end_in_time_is_an_error_naming_it(release: Path) -> None:
    routes = _routes()
    routes[("GET", f"{ML}/tasks/reg-task-1")] = [_task("RUNNING", "REGISTER_MODEL", "SPARSE_TOKENIZE")]
    client, clock = FakeClient(routes), FakeClock()
    message = r"ML task reg-task-1 \(register SPARSE_TOKENIZE\) still RUNNING after 10 s: timed out"
    with pytest.raises(WorkbenchError, match=message):
        deploy_release(client, release, poll_interval_s=2.0, timeout_s=10, sleep=clock.sleep, clock=clock)
    polls = [url for _, url, _, _ in client.transport.calls if url.endswith("/reg-task-1")]
    assert len(polls) == 6  # at t = 0, 2, ..., 10 (fake seconds)
    assert clock.sleeps == [2.0] * 5 and clock.now == 1010.0


class FakeTransportError(Exception):
    """Shaped as opensearch-py's TransportError: status_code, error, info."""

    def __init__(self, status_code: Any, error: str, info: Any) -> None:
        super().__init__(status_code, error, info)
        self.status_code, self.error, self.info = status_code, error, info


def test_transport_errors_name_the_request_and_never_credentials(release: Path) -> None:
    routes = _routes()
    reason = (
        "To upload custom model from local file, user needs to enable allow_registering_model_via_local_file"
    )
    routes[("POST", f"{ML}/models/_register_meta")] = [
        FakeTransportError(400, "illegal_argument_exception", {"error": {"reason": reason}})
    ]
    message = "POST /_plugins/_ml/models/_register_meta: OpenSearch answered 400: illegal_argument_exception"
    with pytest.raises(WorkbenchError, match=message) as e:
        deploy_release(FakeClient(routes), release, sleep=_no_sleep)
    assert reason in str(e.value)
    refused = ConnectionRefusedError("https://admin:s3cret@search.example.org:9200 refused the connection")
    client = FakeClient({("GET", f"{ML}/tasks/t1"): [refused]})
    with pytest.raises(WorkbenchError, match="GET /_plugins/_ml/tasks/t1: ConnectionRefusedError") as e:
        send(client, task_request("t1"))
    assert "s3cret" not in str(e.value) and "admin" not in str(e.value)
    assert "https://***@search.example.org:9200" in str(e.value)
    with pytest.raises(WorkbenchError, match="the model id is not filled in"):
        send(client, register_requests(release, "SPARSE_ENCODING")[1])


def test_an_answer_without_the_documented_ids_is_an_error(release: Path) -> None:
    routes = _routes()
    routes[("POST", f"{ML}/models/_register_meta")] = [{"status": "CREATED"}]
    with pytest.raises(
        WorkbenchError, match=r"POST /_plugins/_ml/models/_register_meta: the answer has no model_id"
    ):
        deploy_release(FakeClient(routes), release, sleep=_no_sleep)
    routes = _routes()
    routes[("GET", f"{ML}/tasks/reg-task-1")] = [{"task_type": "REGISTER_MODEL"}]
    with pytest.raises(
        WorkbenchError, match=r"ML task reg-task-1 \(register SPARSE_TOKENIZE\): the answer has no"
    ):
        deploy_release(FakeClient(routes), release, sleep=_no_sleep)


def test_deploy_release_through_an_opensearch_py_client(release: Path) -> None:
    """The same run through opensearch-py's own Transport: chunk bytes reach the wire unchanged."""
    opensearchpy = pytest.importorskip("opensearchpy")
    routes = _routes()
    wire: list[tuple[str, str, Any]] = []

    class Recording(opensearchpy.Connection):
        def perform_request(
            self, method: str, url: str, params: Any = None, body: Any = None, **_: Any
        ) -> Any:
            wire.append((method, url, body))
            answers = routes[(method, url)]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            return 200, {"content-type": "application/json"}, json.dumps(answer)

    client = opensearchpy.OpenSearch(hosts=[{"host": "localhost", "port": 9200}], connection_class=Recording)
    clock = FakeClock()
    model_ids = deploy_release(client, release, sleep=clock.sleep, clock=clock)
    assert model_ids == {"SPARSE_ENCODING": "enc-model-1", "SPARSE_TOKENIZE": "tok-model-1"}
    data = _zip(release, "encoding").read_bytes()
    assert [body for _, url, body in wire if "/upload_chunk/" in url] == [
        data[:CHUNK_BYTES],
        data[CHUNK_BYTES : 2 * CHUNK_BYTES],
        data[2 * CHUNK_BYTES :],
    ]
    meta = next(body for _, url, body in wire if url.endswith("/_register_meta"))
    assert json.loads(meta) == register_requests(release, "SPARSE_ENCODING")[0].body
    assert len(wire) == 13
