"""The query side of doc-only SPLADE: tokens weighted by idf, and the idf.json file OpenSearch reads.

- idf = log(1 + (N - df + 0.5) / (df + 0.5)), df counted over documents with the model's
  tokenizer (the OpenSearch neural-sparse tuning sample's formula).
- idf.json maps a token string to its weight. OpenSearch looks a query token up by
  `tokenizer.decode([id])` and gives a token missing from the file weight 1.0. With WordPiece the
  decoded string is the vocabulary entry; with SentencePiece ("▁국" decodes to "국") it is not,
  and two ids can decode to one string. `check_fidelity` measures what that costs.
- The TOKEN_ID variant (OpenSearch 3.2+) keys the file by the integer id instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from common.errors import WorkbenchError
from common.files import write_json

T = TypeVar("T")

__all__ = [
    "FidelityReport",
    "IdfWeights",
    "KeyFormat",
    "check_fidelity",
    "decoded_keys",
    "distinct_tokens",
    "document_frequencies",
    "idf_from_df",
]

KeyFormat = Literal["string", "token_id"]
MISSING_WEIGHT = 1.0  # what OpenSearch gives a query token that idf.json lacks


def idf_from_df(df: np.ndarray, n_docs: int) -> np.ndarray:
    """log(1 + (N - df + 0.5) / (df + 0.5)), elementwise, as float32."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)


def distinct_tokens(
    items: Iterable[T], tokenizer: Any, text: Callable[[T], str] | None = None, batch_size: int = 512
) -> Iterator[tuple[T, np.ndarray]]:
    """(item, its distinct token ids) for each of `items` in order, tokenized in batches while
    streaming; `text(item)` gives an item's text (default: the item is the text)."""
    batch: list[T] = []

    def flush() -> Iterator[tuple[T, np.ndarray]]:
        texts = [text(item) if text else item for item in batch]
        for item, ids in zip(
            batch, tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"], strict=True
        ):
            yield item, np.unique(np.asarray(ids, dtype=np.int64))
        batch.clear()

    for item in items:
        batch.append(item)
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def document_frequencies(
    texts: Iterable[str], tokenizer: Any, batch_size: int = 512
) -> tuple[np.ndarray, int]:
    """(df per token id, number of documents), streaming over `texts` in batches."""
    df = np.zeros(len(tokenizer), dtype=np.int64)
    n_docs = 0
    for _, ids in distinct_tokens(texts, tokenizer, batch_size=batch_size):
        df[ids] += 1
        n_docs += 1
    return df, n_docs


def decoded_keys(tokenizer: Any) -> list[str]:
    """OpenSearch's key of each id: `tokenizer.decode([id])`."""
    return [tokenizer.decode([i]) for i in range(len(tokenizer))]


@dataclass
class IdfWeights:
    """Query-side weights by token id, with the tokenizer that defines the ids."""

    weights: np.ndarray  # (vocab,) float32
    tokenizer: Any
    special_ids: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float32)
        if self.weights.shape != (len(self.tokenizer),):
            raise ValueError(f"{self.weights.shape[0]} idf weights for a vocabulary of {len(self.tokenizer)}")
        self.special_ids = sorted(set(self.tokenizer.all_special_ids))

    @classmethod
    def from_corpus(cls, texts: Iterable[str], tokenizer: Any) -> IdfWeights:
        df, n_docs = document_frequencies(texts, tokenizer)
        if n_docs == 0:
            raise WorkbenchError("cannot compute idf from an empty corpus")
        return cls(idf_from_df(df, n_docs), tokenizer)

    def query_vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, weights) of a query: its distinct non-special tokens, each with its idf."""
        ids = np.unique(
            np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
        )
        ids = ids[~np.isin(ids, self.special_ids)]
        return ids, self.weights[ids]

    def to_json(self, path: Path, key_format: KeyFormat = "string") -> None:
        """Write idf.json atomically: token string (or id) -> weight, special tokens left out.

        Where two ids decode to the same string only the first id's weight can be written.
        """
        mapping: dict[str, float] = {}
        keys = decoded_keys(self.tokenizer) if key_format == "string" else None
        for i, weight in enumerate(self.weights.tolist()):
            if i in self.special_ids:
                continue
            key = keys[i] if keys is not None else str(i)
            mapping.setdefault(key, float(weight))
        write_json(path, mapping)

    @classmethod
    def from_json(cls, path: Path, tokenizer: Any, key_format: KeyFormat = "string") -> IdfWeights:
        """Read an idf.json; keys outside the vocabulary and non-finite weights are errors.

        Vocabulary entries missing from the file get weight 1.0, and every id that decodes to a
        key gets that key's weight: the weights OpenSearch's string lookup gives.
        """
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise WorkbenchError(f"{path}: cannot read idf weights ({exc})") from None
        if not isinstance(raw, dict):
            raise WorkbenchError(f"{path}: expected a JSON object of token -> weight")
        index: dict[str, list[int]] = {}  # key -> every id OpenSearch would look up by it
        keys = decoded_keys(tokenizer) if key_format == "string" else [str(i) for i in range(len(tokenizer))]
        for i, key in enumerate(keys):
            index.setdefault(key, []).append(i)
        weights = np.full(len(tokenizer), MISSING_WEIGHT, dtype=np.float32)
        unknown = [k for k in raw if k not in index]
        if unknown:
            shown = ", ".join(repr(k) for k in unknown[:5])
            raise WorkbenchError(
                f"{path}: {len(unknown)} keys are not in the tokenizer's vocabulary ({shown})"
            )
        for key, value in raw.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise WorkbenchError(f"{path}: weight of {key!r} is not a finite number: {value!r}")
            if value < 0:  # OpenSearch's rank_features refuse them; queries would only lose score
                raise WorkbenchError(f"{path}: weight of {key!r} is negative: {value!r}")
            weights[index[key]] = value
        return cls(weights, tokenizer)


@dataclass(frozen=True)
class FidelityReport:
    """How faithfully an idf.json keyed by strings maps onto a tokenizer's ids."""

    keys: int
    # keys that are not a vocabulary entry decoding back to themselves: a string -> id converter
    # (`convert_tokens_to_ids`, as sentence-transformers' SparseStaticEmbedding.from_json uses) misses them
    not_round_trip: list[str]
    collisions: dict[str, list[int]]  # decoded string -> the ids that share it
    query_tokens: int
    missing_query_tokens: int  # query tokens whose key is absent (OpenSearch weight 1.0)

    @property
    def missing_share(self) -> float:
        return self.missing_query_tokens / self.query_tokens if self.query_tokens else 0.0


def check_fidelity(tokenizer: Any, idf: dict[str, float], queries: Sequence[str]) -> FidelityReport:
    """Round trips of idf.json keys, id collisions, and the share of query tokens it misses."""
    specials = set(tokenizer.all_special_ids)
    by_key: dict[str, list[int]] = {}
    for i, key in enumerate(decoded_keys(tokenizer)):
        if i not in specials:
            by_key.setdefault(key, []).append(i)
    collisions = {k: ids for k, ids in by_key.items() if len(ids) > 1}
    not_round_trip = []
    unk = tokenizer.unk_token_id
    for key in idf:
        token_id = tokenizer.convert_tokens_to_ids(key)
        if token_id is None or token_id == unk or tokenizer.decode([token_id]) != key:
            not_round_trip.append(key)
    total = missing = 0
    for query in queries:
        for token_id in tokenizer(query, add_special_tokens=False)["input_ids"]:
            if token_id in specials:
                continue
            total += 1
            missing += tokenizer.decode([token_id]) not in idf
    return FidelityReport(len(idf), not_round_trip, collisions, total, missing)
