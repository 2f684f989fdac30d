"""The IDF-aware penalty of the OpenSearch inference-free models (Geng et al., 2024).

Source: Zhichao Geng, Yiwen Wang, Dongyu Ru, Yang Yang, "Towards Competitive Search Relevance For
Inference-Free Learned Sparse Retrievers", arXiv:2411.04403 (v1: "IDF-aware FLOPS loss, which
introduces IDF to the sparsification of representations"; v2: "an IDF-aware penalty for the
matching function that suppresses the contribution of low-IDF tokens"), and its reference code,
opensearch-project/opensearch-sparse-model-tuning-sample (`SparseModel._encode_inf_free`, the
trainer's `compute_loss`, `args.py`).

What it is. The penalty lives in the matching function, not in an extra loss term: during training
the inference-free query vector is the IDF of each of its tokens,

    q_t = relu(idf_t) * 1[t in query]   (0 at the tokenizer's special tokens),
    s(q, d) = sum over t of q_t * d_t = sum over query tokens t of idf_t * d_t,

and the objective is ranking(s) + lambda_d * flops(d), plain FLOPS on the documents. The reference
trainer has exactly these two terms (hyper-parameters `flops_d_lambda`, `flops_d_T`, optional
trainable idf with its own `idf_lr`; there is no IDF penalty weight). Why it penalises low-IDF
tokens: d(ranking)/d(d_t) carries the factor idf_t while d(flops)/d(d_t) does not, so per unit of
relevance signal the FLOPS pressure on a token is 1/idf_t; written on the matched contributions
e_t = idf_t * d_t, flops(d) = sum_t (mean_i e_it)^2 / idf_t^2, a penalty weight of 1/idf_t^2. (The
two statements are a derivation from the definition, checked in the tests, not quoted equations.)

So Geng et al. define no additive term: with queries weighted by this module (the trainer's query
vectors), `ranking + lambda_flops * flops` *is* their IDF-aware objective.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["IdfAwarePenalty"]


class IdfAwarePenalty(nn.Module):
    """IDF-weighted query vectors: the matching function of Geng et al. (2024), trainable or fixed.

    Pass an existing `nn.Parameter` to share it with an optimizer (it is used as is); any other
    array becomes a new parameter with `requires_grad=trainable`. The relu keeps a trainable idf
    from turning a matched token into a negative contribution, as the reference code does.
    """

    def __init__(
        self,
        idf: torch.Tensor | np.ndarray | Sequence[float],
        trainable: bool = False,
        special_ids: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if isinstance(idf, nn.Parameter):
            self.idf = idf
        elif isinstance(idf, torch.Tensor):
            self.idf = nn.Parameter(idf.detach().clone().float(), requires_grad=trainable)
        else:
            self.idf = nn.Parameter(torch.as_tensor(np.asarray(idf), dtype=torch.float32), trainable)
        if self.idf.dim() != 1:
            raise ValueError(f"idf must be a vector, got shape {tuple(self.idf.shape)}")
        keep = torch.ones_like(self.idf, requires_grad=False)
        if len(special_ids):
            keep[torch.as_tensor(list(special_ids), dtype=torch.long)] = 0.0
        self.register_buffer("keep", keep.detach())

    def forward(self, indicators: torch.Tensor) -> torch.Tensor:
        """[B, V] token indicators (1 where the query has the token, else 0) -> [B, V] query vectors."""
        if indicators.dim() != 2 or indicators.shape[1] != self.idf.shape[0]:
            raise ValueError(
                f"indicators [B, {self.idf.shape[0]}] expected, got shape {tuple(indicators.shape)}"
            )
        return indicators * (torch.relu(self.idf) * self.keep)

    def scores(self, indicators: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        """[B, M] IDF-aware matching scores s(q_i, d_j) = sum over query tokens t of idf_t * d_jt."""
        return self(indicators) @ documents.T
