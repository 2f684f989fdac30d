"""The loss stack of SPLADE-doc training; every component returns a `LossOutput`.

- `infonce`: InfoNCE over in-batch and hard negatives (document layout, cross-rank gathering).
- `flops`: FLOPS regularizer, l0 mask, quadratic warm-up.
- `idf_penalty`: the IDF-aware penalty of the OpenSearch inference-free models (query side).
- `df_flops`: DF-FLOPS (Porco et al., 2025), FLOPS weighted by document frequency (`lambda_df_flops`).
- `distill`: KL and MarginMSE distillation, the min-max ensemble teacher.
- `combined`: the weighted, scheduled total with every part.
"""

from models.losses.combined import LossSettings, SpladeDocLoss, Weight, build_loss, combine_terms
from models.losses.df_flops import DfFlopsLoss, df_flops_activation, df_fraction_from_idf
from models.losses.distill import (
    DistillKLLoss,
    MarginMSELoss,
    distill_kl,
    ensemble_teacher_scores,
    margin_mse,
    minmax_normalize,
)
from models.losses.flops import FlopsLoss, MaskMean, quadratic_warmup
from models.losses.idf_penalty import IdfAwarePenalty
from models.losses.infonce import InfoNCELoss, candidate_scores, docs_per_query
from models.losses.output import LossOutput

__all__ = [
    "DfFlopsLoss",
    "DistillKLLoss",
    "FlopsLoss",
    "IdfAwarePenalty",
    "InfoNCELoss",
    "LossOutput",
    "LossSettings",
    "MarginMSELoss",
    "MaskMean",
    "SpladeDocLoss",
    "Weight",
    "build_loss",
    "candidate_scores",
    "combine_terms",
    "df_flops_activation",
    "df_fraction_from_idf",
    "distill_kl",
    "docs_per_query",
    "ensemble_teacher_scores",
    "margin_mse",
    "minmax_normalize",
    "quadratic_warmup",
]
