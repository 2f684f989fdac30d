"""Retriever families, one file each; importing this package registers them all."""

from harness.retrievers import bm25  # noqa: F401  (registers the BM25 specs)
from harness.retrievers.base import Retriever, RetrieverSpec
from harness.retrievers.registry import get_retriever, register, retriever_registry

__all__ = ["Retriever", "RetrieverSpec", "get_retriever", "register", "retriever_registry"]
