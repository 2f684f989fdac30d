"""The SPLADE-doc objective: ranking loss(es) plus weighted, scheduled regularizers, every part logged.

    total = infonce + distill_weight * distill + lambda_flops(step) * flops
            + lambda_df_flops(step) * df_flops + sum_k w_k(step) * reg_k

with lambda_flops(step) = quadratic_warmup(step, lambda_flops, flops_warmup_steps) (SPLADE) and
lambda_df_flops(step) = quadratic_warmup(step, lambda_df_flops, flops_warmup_steps); `df_flops`
(present when lambda_df_flops > 0) is DF-FLOPS (Porco et al., 2025; `models.losses.df_flops`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import nn

from models.losses.df_flops import DfFlopsLoss
from models.losses.distill import DistillKLLoss, MarginMSELoss
from models.losses.flops import FlopsLoss, quadratic_warmup
from models.losses.infonce import InfoNCELoss, docs_per_query
from models.losses.output import LossOutput

__all__ = ["LossSettings", "SpladeDocLoss", "Weight", "build_loss", "combine_terms"]

Weight = float | Callable[[int], float]  # a fixed weight, or a schedule of the step
Term = LossOutput | torch.Tensor


def _checked_weight(value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"loss weights must be finite and >= 0, got {value}")
    return value


def _weight_at(weight: Weight, step: int) -> float:
    """A fixed weight, or a schedule's weight at `step`."""
    return _checked_weight(weight(step) if callable(weight) else weight)


def combine_terms(terms: Mapping[str, tuple[Term, float]]) -> LossOutput:
    """sum of weight * term over named terms, as a LossOutput that logs every part.

    Parts: `name` (the term's unweighted value), `name_weight` (its weight) and the term's own
    parts (prefixed `name/` only where a key is already taken). So, up to rounding, total ==
    sum over names of parts[name] * parts[name + "_weight"].
    """
    if not terms:
        raise ValueError("no loss terms to combine")
    total: torch.Tensor | None = None
    parts: dict[str, torch.Tensor] = {}
    sub_parts: list[tuple[str, str, torch.Tensor]] = []
    for name, (term, weight) in terms.items():
        value = term.total if isinstance(term, LossOutput) else term
        if value.dim() != 0:
            raise ValueError(f"loss term {name!r} is not a scalar (shape {tuple(value.shape)})")
        if callable(weight):
            raise TypeError(f"weight of {name!r} is a schedule: resolve it at the step first")
        weight = _checked_weight(weight)
        contribution = value * weight
        total = contribution if total is None else total + contribution
        parts[name] = value.detach()
        parts[f"{name}_weight"] = torch.tensor(weight, dtype=value.dtype, device=value.device)
        if isinstance(term, LossOutput):
            sub_parts.extend((name, key, part) for key, part in term.parts.items() if key != name)
    for name, key, part in sub_parts:
        parts[f"{name}/{key}" if key in parts else key] = part.detach()
    assert total is not None
    return LossOutput(total, parts)


class SpladeDocLoss(nn.Module):
    """InfoNCE, optional distillation, and document regularizers with (scheduled) weights.

    `regularizers` maps a name to (module taking the [M, V] document matrix and returning a
    LossOutput, weight or schedule `step -> weight`); they see the documents as given (gathered
    across ranks when the caller gathers, like the OpenSearch tuning sample's FLOPS).
    """

    def __init__(
        self,
        ranking: InfoNCELoss,
        regularizers: Mapping[str, tuple[Callable[[torch.Tensor], LossOutput], Weight]] | None = None,
        distill: DistillKLLoss | MarginMSELoss | None = None,
        distill_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.ranking = ranking
        self.distill = distill
        self.distill_weight = _checked_weight(distill_weight)
        self.regularizers = dict(regularizers or {})
        for name, (module, _) in self.regularizers.items():
            if name in ("infonce", "distill"):
                raise ValueError(f"regularizer name {name!r} is taken by a ranking term")
            if isinstance(module, nn.Module):
                self.add_module(f"regularizer_{name}", module)

    def forward(
        self,
        queries: torch.Tensor,
        documents: torch.Tensor,
        local_documents: torch.Tensor | None = None,
        positive_offset: int = 0,
        n_negatives: int | None = None,
        teacher_scores: torch.Tensor | None = None,
        step: int = 0,
    ) -> LossOutput:
        """One batch: `queries` [B, V] local, `documents` [M, V] (gathered or local; layout in infonce).

        `local_documents` defaults to this rank's rows of `documents`. `teacher_scores` [B, 1 + n]
        are required when distilling and ignored otherwise.
        """
        terms: dict[str, tuple[Term, float]] = {
            "infonce": (self.ranking(queries, documents, n_negatives, positive_offset), 1.0)
        }
        if self.distill is not None:
            if teacher_scores is None:
                raise ValueError("distillation is configured but the batch has no teacher scores")
            if local_documents is None:
                group = docs_per_query(queries.shape[0], documents.shape[0], n_negatives)
                local_documents = documents[positive_offset : positive_offset + queries.shape[0] * group]
            terms["distill"] = (self.distill(queries, local_documents, teacher_scores), self.distill_weight)
        for name, (module, weight) in self.regularizers.items():
            terms[name] = (module(documents), _weight_at(weight, step))
        return combine_terms(terms)


class LossSettings(Protocol):
    """The loss section of a training configuration (`models.config.LossConfig` has these fields)."""

    temperature: float
    in_batch_negatives: bool
    lambda_flops: float
    flops_warmup_steps: int
    lambda_df_flops: float
    l0_threshold: int | None
    distill: str
    distill_weight: float


def build_loss(settings: LossSettings | Any, idf_weights: torch.Tensor | None = None) -> SpladeDocLoss:
    """The SpladeDocLoss a configuration describes.

    InfoNCE at `settings.temperature`, over in-batch negatives unless `in_batch_negatives` is false.
    Regularizers: "flops" always; "df_flops" when `settings.lambda_df_flops > 0`: DF-FLOPS
    (`models.losses.df_flops.DfFlopsLoss`, default alpha and beta) with token weights from
    `idf_weights` ([V], required then), weighted by quadratic_warmup(step, lambda_df_flops,
    flops_warmup_steps), the FLOPS warm-up. The idf tensor is held by reference and its detached
    value is read at every call, so a trainable idf (the trainer's Parameter, updated in place) is
    followed step by step, and the penalty sends no gradient into it.
    """
    lambda_flops, warmup = float(settings.lambda_flops), int(settings.flops_warmup_steps)
    regularizers: dict[str, tuple[Callable[[torch.Tensor], LossOutput], Weight]] = {
        "flops": (
            FlopsLoss(threshold=settings.l0_threshold),
            lambda step: quadratic_warmup(step, lambda_flops, warmup),
        )
    }
    lambda_df_flops = _checked_weight(settings.lambda_df_flops)
    if lambda_df_flops > 0:
        if idf_weights is None:
            raise ValueError("lambda_df_flops > 0: DF-FLOPS needs the idf weights")
        regularizers["df_flops"] = (
            DfFlopsLoss(idf_weights),
            lambda step: quadratic_warmup(step, lambda_df_flops, warmup),
        )
    distill: DistillKLLoss | MarginMSELoss | None
    if settings.distill == "none":
        distill = None
    elif settings.distill == "kl":
        distill = DistillKLLoss()
    elif settings.distill == "margin_mse":
        distill = MarginMSELoss()
    else:
        raise ValueError(f"unknown distillation {settings.distill!r}: none, kl or margin_mse")
    return SpladeDocLoss(
        InfoNCELoss(temperature=settings.temperature, in_batch_negatives=settings.in_batch_negatives),
        regularizers=regularizers,
        distill=distill,
        distill_weight=settings.distill_weight,
    )
