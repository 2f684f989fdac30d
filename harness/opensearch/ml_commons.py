"""Deploying an exported release (`export.py`) through ML Commons, and the requests that use it.

Each function here describes a request (`Request`: method, path, body); `send` puts one through an
opensearch-py client's `transport.perform_request`, and `deploy_release` runs the whole sequence:

    register   with a `url` in the register body: POST /_plugins/_ml/models/_register (a task);
               without: POST /_plugins/_ml/models/_register_meta, then `total_chunks` times
               POST /_plugins/_ml/models/{model_id}/upload_chunk/{i} with CHUNK_BYTES of the zip
    deploy     POST /_plugins/_ml/models/{model_id}/_deploy (a task)
    tasks      GET /_plugins/_ml/tasks/{task_id} until COMPLETED

The cluster must allow the way a model comes in (ML Commons cluster settings,
https://docs.opensearch.org/latest/ml-commons-plugin/cluster-settings/):
`plugins.ml_commons.allow_registering_model_via_url` for a url (and `trusted_url_regex` matching
it), `plugins.ml_commons.allow_registering_model_via_local_file` for the uploaded chunks.

In doc-only mode the SPARSE_ENCODING model encodes documents at ingest (`ingest_pipeline_request`)
and the SPARSE_TOKENIZE model turns query text into weighted tokens (`neural_sparse_query`).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from common.errors import WorkbenchError
from common.files import sha256_file
from harness.opensearch.export import CHUNK_BYTES, ML_DIR

__all__ = [
    "FUNCTIONS",
    "MODEL_ID",
    "Request",
    "deploy_release",
    "deploy_request",
    "ingest_pipeline_request",
    "neural_sparse_query",
    "predict_request",
    "register_requests",
    "search_pipeline_request",
    "send",
    "task_request",
]

ML = "/_plugins/_ml"
MODEL_ID = "{model_id}"  # in a path before the meta request has answered with the model id
FUNCTIONS = ("SPARSE_ENCODING", "SPARSE_TOKENIZE")
# Register Model API request fields for a model from a url
# (https://docs.opensearch.org/latest/ml-commons-plugin/api/model-apis/register-model/), as far as a
# register body of the export has them: no size nor chunk count, which only the meta request takes
REGISTER_FIELDS = (
    "name", "version", "description", "model_format", "function_name", "model_content_hash_value", "url",
)  # fmt: skip
# The meta request is not in the OpenSearch documentation: its route and fields are ml-commons'
# RestMLRegisterModelMetaAction (`_register_meta`; `meta` is its deprecated old name, both since 2.7)
# and MLRegisterModelMetaInput. A sparse model needs no model_config there.
META_FIELDS = (
    "name", "version", "description", "model_format", "model_content_hash_value",
    "model_content_size_in_bytes", "total_chunks", "function_name",
)  # fmt: skip
BODY_TYPES: dict[str, type] = {
    "name": str, "version": str, "description": str, "model_format": str, "function_name": str,
    "model_content_size_in_bytes": int, "model_content_hash_value": str, "total_chunks": int,
}  # fmt: skip
# Get ML Task API states (https://docs.opensearch.org/latest/ml-commons-plugin/api/tasks-apis/get-task/):
# COMPLETED is done; these end a task without it; CREATED, RUNNING and CANCELLING are still going
FAILED_STATES = frozenset({"FAILED", "CANCELLED", "COMPLETED_WITH_ERROR", "EXPIRED", "UNREACHABLE"})
# pruning strategies and their valid ratios, as the neural-search plugin checks them
# (https://docs.opensearch.org/latest/ingest-pipelines/processors/sparse-encoding/#pruning-sparse-vectors)
PRUNE_RATIOS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "max_ratio": ("in [0, 1)", lambda r: 0 <= r < 1),
    "alpha_mass": ("in [0, 1)", lambda r: 0 <= r < 1),
    "top_k": ("a positive integer", lambda r: r > 0 and float(r).is_integer()),
    "abs_value": ("at least 0", lambda r: r >= 0),
}
_USERINFO = re.compile(r"(//)[^/@\s]+@")


@dataclass(frozen=True)
class Request:
    """One REST request: `body` is JSON (a dict), raw bytes (a model chunk) or nothing."""

    method: str
    path: str
    body: dict[str, Any] | bytes | None = None

    def __repr__(self) -> str:
        body = f"<{len(self.body)} bytes>" if isinstance(self.body, bytes) else repr(self.body)
        return f"Request({self.method!r}, {self.path!r}, {body})"


def _segment(value: str, what: str) -> str:
    """`value` as one path segment (percent-encoded)."""
    if not isinstance(value, str) or not value:
        raise WorkbenchError(f"{what}: expected a non-empty string, got {value!r}")
    return quote(value, safe="")


def _file_of(function_name: str) -> str:
    if function_name not in FUNCTIONS:
        raise WorkbenchError(f"function_name {function_name!r}: expected one of {', '.join(FUNCTIONS)}")
    return function_name.lower().replace("_", "-")  # as export.py names the files


def _read_body(release_dir: Path, function_name: str) -> tuple[dict[str, Any], Path]:
    """The register body that export wrote for `function_name`, checked, and its zip's path."""
    kind = _file_of(function_name)
    path = Path(release_dir) / ML_DIR / f"register-{kind}.json"
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkbenchError(
            f"{path}: not found (is {release_dir} a release from `evaluate.py export`?)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"{path}: not a readable JSON register body ({exc})") from None
    if not isinstance(body, dict):
        raise WorkbenchError(f"{path}: expected a JSON object, got {type(body).__name__}")
    for key, kind_of in BODY_TYPES.items():
        value = body.get(key)
        if not isinstance(value, kind_of) or isinstance(value, bool):
            raise WorkbenchError(f"{path}: {key!r} missing or not a {kind_of.__name__}")
    if "url" in body and (not isinstance(body["url"], str) or not body["url"]):
        raise WorkbenchError(f"{path}: 'url' is not a non-empty string")
    if body["function_name"] != function_name:
        raise WorkbenchError(f"{path}: function_name is {body['function_name']!r}, not {function_name!r}")
    if body["model_format"] != "TORCH_SCRIPT":
        raise WorkbenchError(f"{path}: model_format is {body['model_format']!r}, not 'TORCH_SCRIPT'")
    if not re.fullmatch(r"[0-9a-f]{64}", body["model_content_hash_value"]):
        raise WorkbenchError(f"{path}: model_content_hash_value is not a sha256 in hex")
    size = body["model_content_size_in_bytes"]
    if size <= 0 or body["total_chunks"] != math.ceil(size / CHUNK_BYTES):
        raise WorkbenchError(
            f"{path}: total_chunks {body['total_chunks']} is not {size} bytes in chunks of {CHUNK_BYTES}"
        )
    if "/" in body["name"] or body["name"].startswith("."):
        raise WorkbenchError(f"{path}: name {body['name']!r} is not one plain path component")
    return body, path.parent / f"{body['name']}-{kind}.zip"


def _check_zip(zip_path: Path, body: dict[str, Any]) -> None:
    """The zip is the one the body describes: same size, same sha256."""
    try:
        size = zip_path.stat().st_size
    except FileNotFoundError:
        raise WorkbenchError(f"{zip_path}: not found (its register body names it)") from None
    expected = body["model_content_size_in_bytes"]
    if size != expected:
        raise WorkbenchError(f"{zip_path}: {size} bytes, its register body says {expected}: export it again")
    if sha256_file(zip_path) != body["model_content_hash_value"]:
        raise WorkbenchError(f"{zip_path}: sha256 differs from its register body's: export it again")


def _chunks(zip_path: Path, body: dict[str, Any]) -> Iterator[Request]:
    """The upload_chunk requests, each read when it is asked for (one chunk in memory at a time)."""
    size, total = body["model_content_size_in_bytes"], body["total_chunks"]
    with zip_path.open("rb") as handle:
        for i in range(total):
            data = handle.read(CHUNK_BYTES)
            if len(data) != min(CHUNK_BYTES, size - i * CHUNK_BYTES):
                raise WorkbenchError(f"{zip_path}: changed while it was being uploaded (chunk {i})")
            yield Request("POST", f"{ML}/models/{MODEL_ID}/upload_chunk/{i}", data)


def _iter_register_requests(release_dir: Path, function_name: str) -> Iterator[Request]:
    """`register_requests`, lazily: the body and the zip are checked before the first request."""
    body, zip_path = _read_body(release_dir, function_name)
    if "url" in body:
        if zip_path.exists():  # the zip served at the url is this one: its hash must still hold
            _check_zip(zip_path, body)
        yield Request("POST", f"{ML}/models/_register", {k: body[k] for k in REGISTER_FIELDS if k in body})
        return
    _check_zip(zip_path, body)
    yield Request("POST", f"{ML}/models/_register_meta", {k: body[k] for k in META_FIELDS})
    yield from _chunks(zip_path, body)


def register_requests(release_dir: Path, function_name: str) -> list[Request]:
    """The requests registering the release's `function_name` zip (SPARSE_ENCODING or SPARSE_TOKENIZE).

    With a `url` in its register body: one `_register` request (a task; the cluster downloads the zip).
    Without: `_register_meta`, then one upload_chunk request per CHUNK_BYTES of the zip, whose paths
    hold `MODEL_ID` until the meta request's answer gives the id. The register body
    (`ml-commons/register-*.json`) and the zip's size and sha256 are checked first.
    """
    return list(_iter_register_requests(release_dir, function_name))


def deploy_request(model_id: str) -> Request:
    """Deploy a registered model to the ML nodes: answers with a task
    (https://docs.opensearch.org/latest/ml-commons-plugin/api/model-apis/deploy-model/)."""
    return Request("POST", f"{ML}/models/{_segment(model_id, 'model_id')}/_deploy")


def task_request(task_id: str) -> Request:
    """An ML task's state, and its model_id once COMPLETED
    (https://docs.opensearch.org/latest/ml-commons-plugin/api/tasks-apis/get-task/)."""
    return Request("GET", f"{ML}/tasks/{_segment(task_id, 'task_id')}")


def predict_request(model_id: str, texts: Sequence[str]) -> Request:
    """Run a deployed sparse model on `texts`: `inference_results[i].output[0].dataAsMap.response[0]`
    of the answer is text i's {token: weight}. The path's algorithm is `sparse_encoding` for a sparse
    encoding model and a sparse tokenizer alike
    (https://docs.opensearch.org/latest/ml-commons-plugin/pretrained-models/, "Sparse encoding models")."""
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
        raise WorkbenchError(f"predict: expected a non-empty list of strings, got {texts!r:.80}")
    return Request("POST", f"{ML}/_predict/sparse_encoding/{_segment(model_id, 'model_id')}",
                   {"text_docs": list(texts)})  # fmt: skip


def _check_prune(prune_type: str, prune_ratio: float, what: str) -> None:
    if prune_type not in PRUNE_RATIOS:
        raise WorkbenchError(f"{what}: prune_type {prune_type!r}: expected one of {', '.join(PRUNE_RATIOS)}")
    valid, ok = PRUNE_RATIOS[prune_type]
    if isinstance(prune_ratio, bool) or not isinstance(prune_ratio, int | float) or not ok(prune_ratio):
        raise WorkbenchError(f"{what}: prune_ratio {prune_ratio!r} for {prune_type}: expected {valid}")


def ingest_pipeline_request(
    name: str,
    model_id: str,
    field_map: Mapping[str, str],
    *,
    prune_type: str | None = None,
    prune_ratio: float | None = None,
    batch_size: int | None = None,
    description: str = "SPLADE-doc sparse encoding at ingest",
) -> Request:
    """An ingest pipeline whose `sparse_encoding` processor writes the SPARSE_ENCODING model's output
    for each text field into its `rank_features` field (`field_map`: {text field: sparse field}).

    Pruning is off unless `prune_type` is given, and then `prune_ratio` must be too, as the processor
    requires (https://docs.opensearch.org/latest/ingest-pipelines/processors/sparse-encoding/).
    """
    what = f"ingest pipeline {name!r}"
    if not isinstance(field_map, Mapping) or not field_map:
        raise WorkbenchError(f"{what}: field_map must map at least one text field to a sparse field")
    for source, target in field_map.items():
        if not (isinstance(source, str) and source and isinstance(target, str) and target):
            raise WorkbenchError(f"{what}: field_map {source!r} -> {target!r}: expected field names")
    processor: dict[str, Any] = {"model_id": model_id, "field_map": dict(field_map)}
    _segment(model_id, f"{what}: model_id")
    if prune_type is None and prune_ratio is not None:
        raise WorkbenchError(f"{what}: prune_ratio needs a prune_type")
    if prune_type is not None and prune_type != "none":
        if prune_ratio is None:
            raise WorkbenchError(f"{what}: prune_type {prune_type!r} needs a prune_ratio")
        _check_prune(prune_type, prune_ratio, what)
        processor |= {"prune_type": prune_type, "prune_ratio": prune_ratio}
    elif prune_type == "none" and prune_ratio is not None:
        raise WorkbenchError(f"{what}: prune_type 'none' takes no prune_ratio")
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise WorkbenchError(f"{what}: batch_size {batch_size!r}: expected a positive integer")
        processor["batch_size"] = batch_size
    body = {"description": description, "processors": [{"sparse_encoding": processor}]}
    return Request("PUT", f"/_ingest/pipeline/{_segment(name, 'ingest pipeline name')}", body)


def search_pipeline_request(
    name: str,
    *,
    prune_ratio: float = 0.4,
    expansion_rate: float = 5.0,
    max_window_size: int = 10000,
    prune_type: str = "max_ratio",
    enabled: bool = True,
    description: str | None = None,
) -> Request:
    """A search pipeline with the `neural_sparse_two_phase_processor` (OpenSearch 2.15+): the query's
    high-weight tokens (kept by `prune_type`/`prune_ratio`) pick the top size x `expansion_rate`
    documents (at most `max_window_size`), the other tokens rescore them. The defaults are the
    processor's own, written out so that the pipeline says what it does
    (https://docs.opensearch.org/latest/search-plugins/search-pipelines/neural-sparse-query-two-phase-processor/).
    Bounds as the plugin checks them: expansion_rate >= 1, max_window_size >= 50.
    """
    what = f"search pipeline {name!r}"
    _check_prune(prune_type, prune_ratio, what)
    if isinstance(expansion_rate, bool) or not isinstance(expansion_rate, int | float) or expansion_rate < 1:
        raise WorkbenchError(f"{what}: expansion_rate {expansion_rate!r}: expected at least 1.0")
    if isinstance(max_window_size, bool) or not isinstance(max_window_size, int) or max_window_size < 50:
        raise WorkbenchError(
            f"{what}: max_window_size {max_window_size!r}: expected an integer of at least 50"
        )
    processor: dict[str, Any] = {
        "enabled": bool(enabled),
        "two_phase_parameter": {
            "prune_type": prune_type,
            "prune_ratio": prune_ratio,
            "expansion_rate": expansion_rate,
            "max_window_size": max_window_size,
        },
    }
    if description is not None:
        processor["description"] = description
    body = {"request_processors": [{"neural_sparse_two_phase_processor": processor}]}
    return Request("PUT", f"/_search/pipeline/{_segment(name, 'search pipeline name')}", body)


def neural_sparse_query(
    field: str,
    model_id: str | None = None,
    query_text: str | None = None,
    query_tokens: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A search body with one `neural_sparse` query on the `rank_features` field `field`: either
    `query_text` tokenized by the model `model_id` (the SPARSE_TOKENIZE model in doc-only mode) or
    `query_tokens`, {token: weight} computed by the caller
    (https://docs.opensearch.org/latest/query-dsl/specialized/neural-sparse/)."""
    if not isinstance(field, str) or not field:
        raise WorkbenchError(f"neural_sparse: field {field!r}: expected a field name")
    if query_tokens is not None:
        if model_id is not None or query_text is not None:
            raise WorkbenchError("neural_sparse: give query_tokens, or model_id with query_text, not both")
        if not isinstance(query_tokens, Mapping) or not query_tokens:
            raise WorkbenchError("neural_sparse: query_tokens must hold at least one token")
        tokens: dict[str, float] = {}
        for token, weight in query_tokens.items():
            number = isinstance(weight, int | float) and not isinstance(weight, bool)
            if not (isinstance(token, str) and token) or not number or not math.isfinite(weight):
                raise WorkbenchError(
                    f"neural_sparse: query token {token!r}: {weight!r} is not a finite weight"
                )
            tokens[token] = float(weight)
        inner: dict[str, Any] = {"query_tokens": tokens}
    elif model_id is not None and query_text is not None:
        if not isinstance(query_text, str) or not query_text:
            raise WorkbenchError("neural_sparse: query_text must be a non-empty string")
        _segment(model_id, "neural_sparse: model_id")
        inner = {"query_text": query_text, "model_id": model_id}
    else:
        raise WorkbenchError("neural_sparse: give model_id with query_text, or query_tokens")
    return {"query": {"neural_sparse": {field: inner}}}


def _redact(text: str) -> str:
    return _USERINFO.sub(r"\1***@", text)


def _problem(exc: Exception) -> str:
    """What went wrong, without the request body or credentials: an opensearch-py TransportError's
    status, error type and reason, else the exception's type and (redacted) message."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        info = getattr(exc, "info", None)
        error = info.get("error") if isinstance(info, dict) else None
        reason = error.get("reason") if isinstance(error, dict) else None
        kind = getattr(exc, "error", "")
        return _redact(f"OpenSearch answered {status}: {kind}" + (f" ({reason})" if reason else ""))
    return _redact(f"{type(exc).__name__}: {exc}"[:500])


def send(client: Any, request: Request) -> Any:
    """`request` through `client.transport.perform_request`; its answer (a dict for JSON).
    A failure is a WorkbenchError naming the method and path."""
    if MODEL_ID in request.path:
        raise WorkbenchError(f"{request.path}: the model id is not filled in")
    try:
        return client.transport.perform_request(request.method, request.path, body=request.body, params=None)
    except WorkbenchError:
        raise
    except Exception as exc:
        raise WorkbenchError(f"{request.method} {request.path}: {_problem(exc)}") from None


def _field(answer: Any, key: str, request: Request) -> str:
    value = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(value, str) or not value:
        raise WorkbenchError(f"{request.method} {request.path}: the answer has no {key}: {answer!r:.300}")
    return value


def _wait(
    client: Any, task_id: str, what: str, poll_interval_s: float, timeout_s: float,
    sleep: Callable[[float], None], clock: Callable[[], float],
) -> dict[str, Any]:  # fmt: skip
    """The task once COMPLETED; polled every `poll_interval_s`, for at most `timeout_s`."""
    deadline = clock() + timeout_s
    request = task_request(task_id)
    while True:
        task = send(client, request)
        state = task.get("state") if isinstance(task, dict) else None
        if not isinstance(state, str):
            raise WorkbenchError(f"ML task {task_id} ({what}): the answer has no state: {task!r:.300}")
        if state == "COMPLETED":
            return task
        if state in FAILED_STATES:
            error = task.get("error") or "no error given"
            raise WorkbenchError(f"ML task {task_id} ({what}) ended {state}: {_redact(str(error))[:2000]}")
        if clock() >= deadline:
            raise WorkbenchError(f"ML task {task_id} ({what}) still {state} after {timeout_s:g} s: timed out")
        sleep(poll_interval_s)


def deploy_release(
    client: Any,
    release_dir: Path,
    poll_interval_s: float = 2.0,
    timeout_s: float = 600,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, str]:
    """Register both zips of the release, then deploy both models: {function name: model id}.

    `client` is an opensearch-py client (anything with `transport.perform_request`). Each ML task
    (a url registration, a deployment) is waited for, up to `timeout_s`; one that ends without
    COMPLETED, or does not end in time, is a WorkbenchError naming it. Both register bodies and zips
    are checked before anything is sent. A failure leaves what was registered before it in place.
    """
    plans = {function: _iter_register_requests(release_dir, function) for function in FUNCTIONS}
    firsts = {function: next(plan) for function, plan in plans.items()}  # each checks body and zip
    wait = {"poll_interval_s": poll_interval_s, "timeout_s": timeout_s, "sleep": sleep, "clock": clock}
    model_ids: dict[str, str] = {}
    for function, plan in plans.items():
        first = firsts[function]
        answer = send(client, first)
        if first.path.endswith("/_register"):
            task_id = _field(answer, "task_id", first)
            task = _wait(client, task_id, f"register {function}", **wait)
            known = task if task.get("model_id") else answer  # the completed task names the model
            model_ids[function] = _field(known, "model_id", task_request(task_id))
            continue
        model_id = model_ids[function] = _field(answer, "model_id", first)
        for chunk in plan:
            send(
                client,
                Request(chunk.method, chunk.path.replace(MODEL_ID, quote(model_id, safe="")), chunk.body),
            )
    for function, model_id in model_ids.items():
        request = deploy_request(model_id)
        task_id = _field(send(client, request), "task_id", request)
        task = _wait(client, task_id, f"deploy {function} model {model_id}", **wait)
        if task.get("model_id", model_id) != model_id:
            raise WorkbenchError(f"ML task {task_id}: deployed {task.get('model_id')!r}, not {model_id!r}")
    return model_ids
