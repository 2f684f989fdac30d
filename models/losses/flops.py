"""FLOPS regularizer on document vectors (Paria et al., 2020), its l0-mask variant, and the SPLADE warm-up.

FLOPS (Paria et al., 2020, "Minimizing FLOPs to Learn Efficient Sparse Representations", eq. for
the continuous relaxation; used on documents by SPLADE, Formal et al., 2021):

    flops(d) = sum over vocabulary j of ( (1/N) * sum over documents i of |d_ij| )^2

over the N documents of the batch (every positive and hard negative; gathered across ranks when
the caller gathers). This is sentence-transformers' `FlopsLoss` and, with `group_size=1`, the
OpenSearch tuning sample's `flops_value`.

l0 mask (Shen, Geng & Yang, 2025, "Exploring l0 Sparsification for Inference-free Sparse
Retrievers"; the tuning sample's `flops_threshold`): only documents whose number of non-zero
entries is strictly greater than `threshold` enter the sum. How the mean is normalised:

- ``mask_mean="all"`` (default; the tuning sample's trainer and sentence-transformers' `FlopsLoss`):
  divide by all N documents, i.e. the masked documents count as zero vectors in the mean.
- ``mask_mean="kept"`` (the sample's `nonzero_mean` test variant): divide by the number K of kept
  documents; the loss is 0 when K = 0.

`group_size` g > 1 reproduces the tuning sample exactly: documents are laid out query-major with g
documents per query (see `models.losses.infonce`), and the sum runs separately over each position
k in the group (all positives, all first negatives, ...):
sum over k and j of (mean over queries of |d_(i,k),j|)^2. By Cauchy-Schwarz this is at least g times
the g = 1 value, so regularizer weights tuned with one setting do not carry over to the other.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from models.losses.output import LossOutput

__all__ = ["FlopsLoss", "MaskMean", "quadratic_warmup"]

MaskMean = Literal["all", "kept"]


def quadratic_warmup(step: int, max_weight: float, warmup_steps: int) -> float:
    """SPLADE's regularizer schedule: max_weight * min(1, step / warmup_steps)^2.

    `warmup_steps` <= 0 means no warm-up (max_weight at every step). The caller chooses how steps
    count (the OpenSearch sample passes global_step + 1, so its first update is already weighted).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if max_weight < 0:
        raise ValueError(f"max_weight must be >= 0, got {max_weight}")
    if warmup_steps <= 0:
        return float(max_weight)
    return float(max_weight) * min(1.0, step / warmup_steps) ** 2


class FlopsLoss(nn.Module):
    """FLOPS of a [N, V] document matrix, optionally l0-masked and grouped (see the module docstring)."""

    def __init__(
        self, threshold: int | None = None, mask_mean: MaskMean = "all", group_size: int = 1
    ) -> None:
        super().__init__()
        if threshold is not None and threshold < 0:
            raise ValueError(f"l0 threshold must be >= 0, got {threshold}")
        if mask_mean not in ("all", "kept"):
            raise ValueError(f"mask_mean must be 'all' or 'kept', got {mask_mean!r}")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.threshold = threshold
        self.mask_mean: MaskMean = mask_mean
        self.group_size = group_size

    def forward(self, documents: torch.Tensor) -> LossOutput:
        if documents.dim() != 2 or documents.shape[0] == 0:
            raise ValueError(f"documents [N >= 1, V] expected, got shape {tuple(documents.shape)}")
        n, v = documents.shape
        g = self.group_size
        if n % g:
            raise ValueError(f"{n} documents do not split into groups of {g}")
        weights = documents.abs()
        with torch.no_grad():
            active = (weights != 0).sum(dim=1)  # l0 of each document
        parts: dict[str, torch.Tensor] = {"doc_l0": active.float().mean()}
        if self.threshold is None:
            means = weights.view(n // g, g, v).mean(dim=0)
        else:
            keep = active > self.threshold
            parts["flops_kept"] = keep.float().mean()
            masked = (weights * keep.unsqueeze(1).to(weights.dtype)).view(n // g, g, v)
            if self.mask_mean == "all":
                means = masked.mean(dim=0)
            else:
                kept = keep.view(n // g, g).sum(dim=0).clamp(min=1).to(weights.dtype)
                means = masked.sum(dim=0) / kept.unsqueeze(1)
        loss = (means**2).sum()
        parts["flops"] = loss.detach()
        return LossOutput(loss, parts)
