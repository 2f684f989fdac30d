"""The retriever registry: declarative specs by name; a name can be registered once."""

from __future__ import annotations

from common.errors import WorkbenchError
from harness.retrievers.base import RetrieverSpec

__all__ = ["get_retriever", "register", "retriever_registry"]

_REGISTRY: dict[str, RetrieverSpec] = {}


def register(spec: RetrieverSpec) -> RetrieverSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"retriever {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def retriever_registry() -> dict[str, RetrieverSpec]:
    return dict(_REGISTRY)


def get_retriever(name: str) -> RetrieverSpec:
    if name not in _REGISTRY:
        raise WorkbenchError(f"unknown retriever {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
