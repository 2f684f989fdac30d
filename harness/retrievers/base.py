"""The retriever interface every family implements, and the on-disk index cache."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import WorkbenchError
from common.paths import cache_dir
from harness.datasets import Dataset
from harness.ranking import Ranking

__all__ = ["Retriever", "RetrieverSpec", "bf16_setting"]


@dataclass(frozen=True)
class RetrieverSpec:
    """What a registered retriever is: enough to build it and to describe it in reports."""

    name: str
    family: str
    factory: Callable[..., Retriever]
    description: str
    languages: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    default: bool = False  # part of the default `python evaluate.py` run

    @property
    def fingerprint(self) -> str:
        """Short hash of family and parameters; indexes are cached under it."""
        blob = json.dumps({"family": self.family, "params": dict(self.params)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "languages": list(self.languages),
            "params": dict(self.params),
        }

    def build(self) -> Retriever:
        return self.factory(spec=self, **self.params)


def bf16_setting(spec: RetrieverSpec, value: str) -> bool | None:
    """A retriever's `bf16` parameter, as train.bf16: auto (None: on CUDA only), on (True), off (False)."""
    if value not in ("auto", "on", "off"):
        raise WorkbenchError(f"retriever {spec.name!r}: bf16 must be 'auto', 'on' or 'off', got {value!r}")
    return None if value == "auto" else value == "on"


class Retriever(ABC):
    """Index a corpus once, then search queries for their top k documents."""

    # True where a document's score does not depend on the other documents (a dense dot product),
    # so that scoring a few documents needs only those indexed; BM25's idf and length norm do
    scores_independent_of_corpus: bool = False

    def __init__(self, spec: RetrieverSpec) -> None:
        self.spec = spec

    def version_key(self) -> str:
        """Anything besides the spec's parameters that changes the index (an analyzer version)."""
        return ""

    def model_hash(self) -> str:
        """Short hash of the spec's parameters and `version_key()`: what identifies the model."""
        blob = f"{self.spec.fingerprint}:{self.version_key()}"
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def cache_path(self, dataset: Dataset) -> Path:
        """Where this retriever's index of `dataset` is kept: retriever + the corpus's checksum
        (an index depends on the documents only, not on the queries or judgments)."""
        folder = f"{self.spec.family}-{self.model_hash()}"
        return cache_dir() / "indexes" / folder / dataset.corpus_checksum[:24]

    @abstractmethod
    def index(self, dataset: Dataset, use_cache: bool = True) -> None:
        """Build (or load from the cache) the index of `dataset.corpus`."""

    @abstractmethod
    def search(self, queries: Mapping[str, str], k: int) -> Ranking:
        """Top-k documents of each query; queries that match nothing are absent."""

    def stats(self) -> dict[str, float]:
        """Efficiency figures of the current index (sizes, active dimensions, ...)."""
        return {}
