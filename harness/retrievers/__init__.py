"""Retriever families, one file each; importing this package registers them all."""

from __future__ import annotations

from pathlib import Path

from common.errors import WorkbenchError
from harness.retrievers import bm25, dense, fusion, opensearch, splade  # importing registers the specs
from harness.retrievers.base import Retriever, RetrieverSpec
from harness.retrievers.registry import get_retriever, register, retriever_registry

__all__ = [
    "Retriever",
    "RetrieverSpec",
    "bm25",
    "dense",
    "fusion",
    "get_retriever",
    "opensearch",
    "register",
    "resolve_retriever",
    "retriever_registry",
    "splade",
]


def resolve_retriever(name: str) -> RetrieverSpec:
    """A registered name; `splade-doc:<dir or hub id>` / `dense:<dir or hub id>`; a retriever inside
    OpenSearch, `opensearch-splade:<sparse retriever or dir>` / `opensearch-bm25:<analyzer>`; a fusion of
    retrievers, `fusion:rrf[=K][@DEPTH]:R1+R2[+...]` / `fusion:wsum[=W1,W2,...][@DEPTH]:R1+R2[+...]`
    (without weights, tuned on the dataset's dev or train split; `harness.retrievers.fusion`); or a directory.

    A directory holding a masked-LM (config.json architectures *ForMaskedLM) is a SPLADE-doc
    checkpoint, one with sentence-transformers' modules.json otherwise a dense model.
    """
    if name in retriever_registry():
        return get_retriever(name)
    if name.startswith("splade-doc:"):
        return splade.splade_spec(name.removeprefix("splade-doc:"))
    if name.startswith("dense:"):
        return dense.dense_spec(name.removeprefix("dense:"))
    if name.startswith("opensearch-splade:"):
        return opensearch.sparse_engine_spec(name.removeprefix("opensearch-splade:"))
    if name.startswith("opensearch-bm25:"):
        return opensearch.bm25_engine_spec(name.removeprefix("opensearch-bm25:"))
    if name.startswith("fusion:"):
        return fusion.fusion_from_name(name, resolve_retriever)
    path = Path(name)
    if path.is_dir():
        from models.checkpoint import model_kind

        kind = model_kind(path)
        if kind == "masked-lm":
            return splade.splade_spec(str(path.resolve()), name=name)
        if kind == "sentence-transformers":
            return dense.dense_spec(str(path.resolve()), name=name)
        if not (path / "config.json").is_file():
            raise WorkbenchError(
                f"{path}: no config.json (a masked-LM checkpoint has one) and no modules.json "
                "(a sentence-transformers model has one); not a model directory"
            )
        raise WorkbenchError(
            f"{path / 'config.json'}: its architectures are not a *ForMaskedLM, and there is no "
            "modules.json (a sentence-transformers model); not a SPLADE-doc nor a dense model"
        )
    raise WorkbenchError(
        f"unknown retriever {name!r}; registered: {', '.join(sorted(retriever_registry()))}; "
        "or a model directory, splade-doc:<hub id>, dense:<hub id>, opensearch-splade:<model>, "
        f"opensearch-bm25:<analyzer>, {fusion.FUSION_GRAMMAR}"
    )
