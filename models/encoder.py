"""SPLADE-doc document encoder over any Hugging Face masked-LM.

A document's vector is, for each vocabulary entry j, the maximum over its (attention-masked)
token positions of log(1 + ReLU(logit_j)) (SPLADE max pooling; Formal et al., 2021), with the
tokenizer's special tokens set to 0, as opensearch-py-ml's `NeuralSparseModel` does. The
optional `l0` activation is log(1 + log(1 + ReLU(x))). A model trained with a lexical part
(`models.lexical`) adds BM25's term weight of each token of the window. Pruning keeps the top
k weights, the weights at least `ratio` times the vector's maximum, and/or those above a threshold.

Empty (whitespace-only) texts get an empty vector without running the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from common.errors import WorkbenchError
from models.lexical import LexicalWeights

__all__ = [
    "EncodeResult",
    "ModelLoadError",
    "Pruning",
    "SpladeDocEncoder",
    "in_mlm_head",
    "max_pooled_logits",
    "splade_activation",
    "train_top_layers",
    "vocabulary_projection_skipped",
]

Activation = Literal["log1p", "l0"]


class ModelLoadError(WorkbenchError):
    """A path or id that does not give a usable masked-LM checkpoint."""


@dataclass(frozen=True)
class Pruning:
    """Which weights of a vector to keep; every rule given applies."""

    top_k: int | None = None
    ratio: float | None = None  # keep w >= ratio * max(w)
    threshold: float | None = None  # keep w > threshold

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"pruning top_k must be >= 1, got {self.top_k}")
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise ValueError(f"pruning ratio must be in (0, 1], got {self.ratio}")
        if self.threshold is not None and self.threshold < 0:
            raise ValueError(f"pruning threshold must be >= 0, got {self.threshold}")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.top_k, self.ratio, self.threshold))

    def apply(self, weights: torch.Tensor) -> torch.Tensor:
        """Zero the pruned entries of a (batch, vocab) tensor of non-negative weights."""
        keep = weights > 0
        if self.threshold is not None:
            keep &= weights > self.threshold
        if self.ratio is not None:
            keep &= weights >= self.ratio * weights.amax(dim=1, keepdim=True)
        if self.top_k is not None and self.top_k < weights.shape[1]:
            kth = weights.topk(self.top_k, dim=1).values[:, -1:]
            keep &= weights >= kth  # ties at the k-th value are all kept
        return weights * keep


def splade_activation(max_logits: torch.Tensor, activation: Activation = "log1p") -> torch.Tensor:
    """The SPLADE weights of per-text maxima of the logits: log(1 + ReLU(x)) is non-decreasing, so
    the activation of the maximum is the maximum of the activations, exactly."""
    values = torch.log1p(torch.relu(max_logits))
    return torch.log1p(values) if activation == "l0" else values


@contextmanager
def vocabulary_projection_skipped(model: Any) -> Iterator[list[torch.Tensor]]:
    """Run `model` without its vocabulary projection (its output embeddings): the projection's
    input is captured instead, and the model's logits are a zero view that costs nothing. Works for
    any masked-LM whose head ends in that layer (BERT, RoBERTa/XLM-R, DistilBERT, ...)."""
    projection = model.get_output_embeddings()
    parent, name = next(
        (module, child_name)
        for module in model.modules()
        for child_name, child in module.named_children()
        if child is projection
    )
    captured: list[torch.Tensor] = []

    class Capture(torch.nn.Module):
        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            captured.append(hidden)
            return hidden.new_zeros(()).expand(*hidden.shape[:-1], projection.out_features)

    setattr(parent, name, Capture())
    try:
        yield captured
    finally:
        setattr(parent, name, projection)


def _max_logits(
    hidden: torch.Tensor,
    lengths: list[int],
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    rows_per_chunk: int = 256,
    positions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(texts, vocab) maximum over each text's positions of hidden @ weight^T + bias, for `hidden` holding
    the texts' positions one text after another (`lengths` of them each), and with `positions`
    the row of `hidden` where each maximum is (else None).

    The (positions x vocabulary) logits never exist whole: they are made a chunk of positions at a
    time and reduced at once to each text's running maximum (cache-sized chunks; a batch's whole
    logits are length x vocabulary x 4 bytes per text, 1 GB for 8,192 tokens of a 30k vocabulary).
    """
    shape = (len(lengths), weight.shape[0])
    out = torch.empty(shape, dtype=hidden.dtype, device=hidden.device)
    rows = torch.empty(shape, dtype=torch.long, device=hidden.device) if positions else None
    start = 0
    for text, length in enumerate(lengths):
        for first in range(start, start + length, rows_per_chunk):
            last = min(first + rows_per_chunk, start + length)
            chunk = torch.nn.functional.linear(hidden[first:last], weight, bias)
            if rows is None:
                chunk_max = chunk.amax(dim=0)
                out[text] = chunk_max if first == start else torch.maximum(out[text], chunk_max)
                continue
            chunk_max, where = chunk.max(dim=0)
            if first == start:
                out[text], rows[text] = chunk_max, where + first
            else:
                better = chunk_max > out[text]
                out[text] = torch.where(better, chunk_max, out[text])
                rows[text] = torch.where(better, where + first, rows[text])
        start += length
    return out, rows


class _MaxPooledLogits(torch.autograd.Function):
    """`_max_logits` with a gradient. The gradient of a maximum reaches only the row it came from,
    and SPLADE's log(1 + ReLU) passes none where the maximum is <= 0: backward touches only the
    (text, token) entries with a gradient, nonzero x hidden multiply-adds, where autograd through
    whole logits does positions x vocabulary x hidden twice and keeps the logits for it."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lengths: list[int]
    ) -> torch.Tensor:
        maxima, rows = _max_logits(hidden, lengths, weight, bias, positions=True)
        ctx.save_for_backward(hidden, weight, rows)
        ctx.has_bias = bias is not None
        return maxima

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, rows = ctx.saved_tensors
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        text, token = grad.nonzero(as_tuple=True)
        # the gradient of the logits: nonzero only at each maximum's (row, token), as a sparse matrix
        scatter = torch.sparse_coo_tensor(
            torch.stack([rows[text, token], token]),
            grad[text, token].to(weight.dtype),
            (hidden.shape[0], weight.shape[0]),
            check_invariants=False,  # in range by construction: rows of hidden, ids of the vocabulary
        )
        grad_hidden = torch.sparse.mm(scatter, weight).to(hidden.dtype) if needs_hidden else None
        grad_weight = torch.sparse.mm(scatter.t(), hidden.to(weight.dtype)) if needs_weight else None
        grad_bias = grad.sum(dim=0).to(weight.dtype) if ctx.has_bias and needs_bias else None
        return grad_hidden, grad_weight, grad_bias, None


def max_pooled_logits(hidden: torch.Tensor, lengths: list[int], projection: torch.nn.Linear) -> torch.Tensor:
    """Differentiable (texts, vocab) per-text maxima of the vocabulary projection of `hidden`
    (positions text after text, `lengths` of them each), without the whole logits."""
    return _MaxPooledLogits.apply(hidden, projection.weight, projection.bias, lengths)


def in_mlm_head(model: Any, name: str) -> bool:
    """Whether the parameter called `name` belongs to the masked-LM's head: it lies outside the base
    model (a tied decoder weight is named after the input embeddings, inside it)."""
    return not name.startswith(f"{model.base_model_prefix}.")


def train_top_layers(model: Any, layers: int) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze a masked-LM but for its MLM head and its top `layers` encoder layers; the trained
    (name, parameter) pairs.

    The head is every parameter outside the base model except the decoder weight, which is tied to
    the input embeddings (or is their output twin): it stays frozen with them, so that the
    vocabulary, and the query side's tokens, keep their meaning. The frozen embeddings and layers
    are put in eval mode (no dropout: a fixed feature extractor, and dropout is a fifth of a CPU
    step); call this after `model.train()`.
    """
    stack = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if stack is None:
        raise WorkbenchError(f"{type(model).__name__}: no encoder.layer stack to train the top layers of")
    if not 0 <= layers <= len(stack):
        raise WorkbenchError(
            f"train_layers must be between 0 and the model's {len(stack)} layers, got {layers}"
        )
    top = {id(p) for layer in list(stack)[len(stack) - layers :] for p in layer.parameters()}
    decoder = model.get_output_embeddings().weight
    for name, parameter in model.named_parameters():
        head = in_mlm_head(model, name) and parameter is not decoder
        parameter.requires_grad_(head or id(parameter) in top)
    model.base_model.embeddings.eval()
    for layer in list(stack)[: len(stack) - layers]:
        layer.eval()
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _prefix_before_space(text: str, budget: int) -> str | None:
    """`text` if it has at most `budget` characters, else its longest prefix of at most `budget`
    characters that a space (U+0020) follows and that holds more than spaces; None where none."""
    if len(text) <= budget:
        return text
    cut = text.rfind(" ", 0, budget + 1)
    while cut > 0 and text[cut - 1] == " ":
        cut -= 1
    return text[:cut] if cut > 0 and not text[:cut].isspace() else None


@dataclass(frozen=True)
class EncodeResult:
    vectors: sp.csr_matrix  # (texts, vocab) float32, in input order
    truncated: int  # texts longer than max_length tokens (cut to it)
    tokens: int  # tokens fed to the model, special tokens included


class SpladeDocEncoder:
    """Encode documents into sparse vocabulary vectors with a masked-LM."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int = 512,
        activation: Activation = "log1p",
        pruning: Pruning | None = None,
        device: str | None = None,
        bf16: bool | None = None,  # BF16 autocast; None: on CUDA only (CPUs with AMX gain ~1.8x too)
        lexical: LexicalWeights | None = None,  # BM25's term weights added to the model's
    ) -> None:
        if activation not in ("log1p", "l0"):
            raise ValueError(f"activation must be 'log1p' or 'l0', got {activation!r}")
        if not getattr(tokenizer, "is_fast", False):
            raise ModelLoadError("a fast (Rust) tokenizer is required: save the tokenizer as tokenizer.json")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.bf16 = self.device.type == "cuda" if bf16 is None else bf16
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_length = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
        self.activation: Activation = activation
        self.pruning = pruning or Pruning()
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.lexical = lexical
        self.keep = torch.ones(self.vocab_size, device=self.device)  # 0 at the special tokens
        self.keep[self.special_ids] = 0

    def _batches(
        self, ids: list[list[int]], order: np.ndarray, max_tokens: int
    ) -> Iterator[tuple[np.ndarray, list[list[int]]]]:
        """Longest first; each batch holds at most `max_tokens` padded tokens."""
        start = 0
        while start < len(order):
            longest = len(ids[order[start]])
            size = max(1, max_tokens // max(longest, 1))
            chunk = order[start : start + size]
            yield chunk, [ids[i] for i in chunk]
            start += size

    def encode(
        self,
        texts: Sequence[str],
        max_tokens_per_batch: int = 8192,
        progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
    ) -> EncodeResult:
        """Encode `texts`; `progress(iterable, total_batches)` may wrap the batch loop."""
        nonempty = [i for i, text in enumerate(texts) if text.strip()]
        ids, truncated = self._first_windows([texts[i] for i in nonempty])
        order = np.argsort([-len(x) for x in ids], kind="stable")
        batches = list(self._batches(ids, order, max_tokens_per_batch))
        rows: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(texts)
        vals: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(texts)
        iterator: Iterable[Any] = progress(batches, len(batches)) if progress else batches
        with torch.inference_mode():
            for chunk, batch_ids in iterator:
                weights = self._encode_batch(batch_ids).cpu()
                for local, index in enumerate(chunk):
                    nz = torch.nonzero(weights[local]).squeeze(1)
                    rows[nonempty[index]] = nz.numpy()
                    vals[nonempty[index]] = weights[local, nz].numpy().astype(np.float32)
        indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        matrix = sp.csr_matrix(
            (np.concatenate(vals), np.concatenate(rows), indptr),
            shape=(len(texts), self.vocab_size),
            dtype=np.float32,
        )
        return EncodeResult(vectors=matrix, truncated=truncated, tokens=sum(map(len, ids)))

    def _first_windows(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """Each text's first window of at most `max_length` token ids (special tokens included),
        and how many texts were cut to it.

        A long text is tokenized only as far as its first window reaches: a prefix ending before a
        space (tokens never span one, so the prefix's tokens begin the text's tokens), grown until
        its tokens overflow the window or it is the whole text. Memory and time stay bounded by
        the window, not by the text (benchmarks/long_document.py: one 47 MB document took 57 s
        and 7.1 GB tokenized whole, 0.07 s this way).
        """
        ids: list[list[int]] = [[] for _ in texts]
        truncated = 0
        budget = 8 * self.max_length  # characters: more than a window's worth for most scripts
        pending = list(range(len(texts)))
        while pending:
            prefixes = {i: p for i in pending if (p := _prefix_before_space(texts[i], budget)) is not None}
            windows: dict[int, list[list[int]]] = {i: [] for i in prefixes}
            if prefixes:
                encoded = self.tokenizer(
                    list(prefixes.values()),
                    truncation=True,
                    max_length=self.max_length,
                    return_overflowing_tokens=True,  # bounded: a prefix spans a few windows at most
                    add_special_tokens=True,
                )
                order = list(prefixes)
                samples = encoded["overflow_to_sample_mapping"]
                for window, local in zip(encoded["input_ids"], samples, strict=True):
                    windows[order[local]].append(window)
            for i, prefix in prefixes.items():
                # a prefix that fits in one window leaves the rest of a cut text undecided
                if len(windows[i]) > 1 or len(prefix) == len(texts[i]):
                    ids[i] = windows[i][0]
                    truncated += len(windows[i]) > 1
            pending = [i for i in pending if not ids[i]]
            budget *= 4
        return ids, truncated

    def _encode_batch(self, batch_ids: list[list[int]]) -> torch.Tensor:
        padded = self.tokenizer.pad({"input_ids": batch_ids}, return_tensors="pt")
        input_ids = padded["input_ids"].to(self.device)
        mask = padded["attention_mask"].to(self.device)
        projection = self.model.get_output_embeddings()
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            with vocabulary_projection_skipped(self.model) as captured:
                self.model(input_ids=input_ids, attention_mask=mask)
            hidden = captured[0][mask.bool()]  # (non-padding positions, hidden), text after text
            maxima, _ = _max_logits(hidden, mask.sum(dim=1).tolist(), projection.weight, projection.bias)
        weights = splade_activation(maxima.float(), self.activation)
        weights[:, self.special_ids] = 0
        if self.lexical is not None:
            weights = weights + self.lexical(input_ids, mask, self.keep)
        if self.pruning.active:
            weights = self.pruning.apply(weights)
        return weights
