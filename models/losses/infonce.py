"""InfoNCE (cross-entropy) over a query's positive, its hard negatives and the in-batch documents.

Document layout (the same for every loss in this package). A batch has B queries; query i has one
positive and n hard negatives (n >= 0), so 1 + n documents. Documents are stored query-major::

    row i * (1 + n) + 0      positive of query i
    row i * (1 + n) + k      k-th hard negative of query i (k = 1..n)

With data parallelism each rank holds B_r queries and its own B_r * (1 + n) documents in that
layout; the document matrix gathered across ranks is the ranks' blocks concatenated in rank order
(rank 0 first). The caller passes the full matrix and `positive_offset`, the row of its first local
query's positive (the sum of B_r' * (1 + n) over the ranks r' before it). The gather must be
autograd-aware (the local block replaced by the local tensor) for gradients to reach this rank's
documents.

Scores are dot products q_i . d_j; with `temperature` t the logits are q_i . d_j / t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.losses.output import LossOutput

__all__ = ["InfoNCELoss", "candidate_scores", "docs_per_query"]


def docs_per_query(n_queries: int, n_documents: int, n_negatives: int | None) -> int:
    """1 + n; n inferred as n_documents / n_queries - 1 when not given (ungathered batches only)."""
    if n_queries < 1:
        raise ValueError("a loss needs at least one query")
    if n_negatives is None:
        if n_documents % n_queries:
            raise ValueError(f"{n_documents} documents do not split evenly over {n_queries} queries")
        group = n_documents // n_queries
    else:
        if n_negatives < 0:
            raise ValueError(f"n_negatives must be >= 0, got {n_negatives}")
        group = 1 + n_negatives
    if group < 1:
        raise ValueError(f"{n_documents} documents for {n_queries} queries: each query needs a positive")
    return group


def candidate_scores(
    queries: torch.Tensor, documents: torch.Tensor, n_negatives: int | None = None
) -> torch.Tensor:
    """[B, 1 + n] scores of each query against its own documents (column 0: its positive).

    `documents` is [B * (1 + n), V] in the module's layout (this rank's block, not gathered).
    """
    b, v = queries.shape
    group = docs_per_query(b, documents.shape[0], n_negatives)
    if documents.shape != (b * group, v):
        raise ValueError(
            f"expected {b} x {group} documents of dimension {v}, got shape {tuple(documents.shape)}"
        )
    return torch.einsum("bkv,bv->bk", documents.view(b, group, v), queries)


class InfoNCELoss(nn.Module):
    """Mean over local queries of -log softmax(q_i . d / t)[positive of i].

    With `in_batch_negatives` (default) the softmax runs over every row of the (possibly gathered)
    document matrix: the query's positive, its hard negatives, and every other query's positive
    and hard negatives. Without, only over the query's own 1 + n documents (the OpenSearch tuning
    sample's `use_in_batch_negatives: false`). A document that occurs twice in the batch is
    counted twice; nothing is deduplicated.
    """

    def __init__(self, temperature: float = 1.0, in_batch_negatives: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.in_batch_negatives = in_batch_negatives

    def forward(
        self,
        queries: torch.Tensor,
        documents: torch.Tensor,
        n_negatives: int | None = None,
        positive_offset: int = 0,
    ) -> LossOutput:
        """`queries` [B, V] (local); `documents` [M, V] (local or gathered, see the module docstring).

        `n_negatives` may be left out only when `documents` holds exactly this batch's documents.
        """
        if queries.dim() != 2 or documents.dim() != 2 or queries.shape[1] != documents.shape[1]:
            raise ValueError(
                f"queries [B, V] and documents [M, V] expected, got {tuple(queries.shape)} and "
                f"{tuple(documents.shape)}"
            )
        b = queries.shape[0]
        if n_negatives is None and positive_offset != 0:
            raise ValueError("with a positive_offset (gathered documents) n_negatives must be given")
        group = docs_per_query(b, documents.shape[0], n_negatives)
        end = positive_offset + b * group
        if positive_offset < 0 or end > documents.shape[0]:
            raise ValueError(
                f"local documents rows {positive_offset}..{end} fall outside the {documents.shape[0]} given"
            )
        local = torch.arange(b, device=queries.device) * group
        if self.in_batch_negatives:
            logits = queries @ documents.T
            labels = positive_offset + local
        else:
            own = documents[positive_offset:end]
            logits = candidate_scores(queries, own, group - 1)
            labels = torch.zeros(b, dtype=torch.long, device=queries.device)
        logits = logits / self.temperature
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            accuracy = (logits.argmax(dim=1) == labels).float().mean()
        return LossOutput(loss, {"infonce": loss.detach(), "infonce_accuracy": accuracy})
