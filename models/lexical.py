"""BM25's document-side term weight over a model's own tokens: a fixed (not learned) part of a
SPLADE-doc vector.

With an inference-free query side (query token t weighs idf(t)), a SPLADE-doc scores
sum_t idf(t) * w(t, d). BM25 over the same tokens with the same idf scores sum_t idf(t) * f(t, d),

    f(t, d) = tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avg_length))     (Lucene's BM25 tf part)

so a document vector w + f scores exactly the sum of the two: a BM25 + SPLADE-doc hybrid in one
sparse vector, one index and the same query side. A model trained with it (`model.lexical` of
the training config) learns what the lexical part misses (expansion, re-weighting) instead of
re-learning term frequency and length normalisation from scratch.

tf counts a token's occurrences in the encoded window, |d| the window's non-special tokens, and
avg_length is a constant fixed when the model is trained (the mean |d| of its training documents
at the inference length), since a document encoder at index time sees one document at a time.
It is recorded in the checkpoint's manifest (`lexical`), which every encoder of the checkpoint
(the harness's, the TorchScript export for OpenSearch) reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from common.errors import WorkbenchError

__all__ = ["LexicalWeights"]


@dataclass(frozen=True)
class LexicalWeights:
    avg_length: float  # mean non-special tokens per document window
    k1: float = 1.2
    b: float = 0.75

    def __post_init__(self) -> None:
        if not self.avg_length > 0:
            raise ValueError(f"lexical avg_length must be > 0, got {self.avg_length}")
        if not self.k1 > 0:
            raise ValueError(f"lexical k1 must be > 0, got {self.k1}")
        if not 0 <= self.b <= 1:
            raise ValueError(f"lexical b must be in [0, 1], got {self.b}")

    def to_manifest(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_manifest(cls, value: Any, where: str) -> LexicalWeights | None:
        """The `lexical` entry of a manifest (None where absent); `where` names the file in errors."""
        if value is None:
            return None
        try:
            return cls(**{key: float(v) for key, v in dict(value).items()})
        except (TypeError, ValueError) as exc:
            raise WorkbenchError(f"{where}: lexical must be {{avg_length, k1, b}} numbers ({exc})") from None

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        """(batch, vocab) float32 weights f(t, d) of padded `input_ids` (batch, length); `keep` is the
        (vocab,) float mask that is 0 at the special tokens, which neither count nor get a weight."""
        counted = keep[input_ids] * attention_mask.to(keep.dtype)
        tf = torch.zeros(input_ids.shape[0], keep.shape[0], dtype=keep.dtype, device=keep.device)
        tf.scatter_add_(1, input_ids, counted)
        length = counted.sum(dim=1, keepdim=True)
        norm = self.k1 * (1 - self.b + self.b * length / self.avg_length)
        return tf * (self.k1 + 1) / (tf + norm).clamp_min(1e-9)  # tf = 0 gives 0, also for an empty text
