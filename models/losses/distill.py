"""Knowledge distillation from teacher scores given with the data, and the OpenSearch ensemble teacher.

Teacher scores are a [B, 1 + n] matrix over each query's own documents, column 0 its positive,
columns 1..n its hard negatives (the document layout of `models.losses.infonce`). Student scores
are the dot products of the query with the same documents.

- KL (Hinton et al., 2015; as sentence-transformers' `SparseDistillKLDivLoss` and the tuning
  sample's `KLDivLoss`): mean over queries of KL( softmax(t_i / T_t) || softmax(s_i / T_s) ).
  The tuning sample uses one temperature for both and no T^2 factor; sentence-transformers
  multiplies by T_s^2 (Hinton's gradient-scale correction): `scale_by_temperature_squared`.
- MarginMSE (Hofstätter et al., 2020, "Improving Efficient Neural Ranking Models with
  Cross-Architecture Knowledge Distillation"): mean over queries i and negatives k of
  ((s_i0 - s_ik) - (t_i0 - t_ik))^2, as the sample's `MarginMSELoss` (temperature 1) and
  sentence-transformers' `SparseMarginMSELoss`.
- Ensemble teacher (Geng et al., 2024, heterogeneous ensemble distillation; the tuning sample's
  `BiEncoderWrapper.get_scores_batch`): each teacher's scores min-max normalised per query over its
  candidates, averaged over the teachers, times `scale` (30 in the sample).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.losses.infonce import candidate_scores
from models.losses.output import LossOutput

__all__ = [
    "DistillKLLoss",
    "MarginMSELoss",
    "distill_kl",
    "ensemble_teacher_scores",
    "margin_mse",
    "minmax_normalize",
]


def _check_scores(student: torch.Tensor, teacher: torch.Tensor, min_candidates: int) -> None:
    if student.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher scores must both be [B, 1 + n], got {tuple(student.shape)} and "
            f"{tuple(teacher.shape)}"
        )
    if student.shape[1] < min_candidates:
        raise ValueError(
            f"distillation needs at least {min_candidates} candidates per query (a positive and a "
            f"negative), got {student.shape[1]}: with one the loss is identically zero"
        )


def distill_kl(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    student_temperature: float = 1.0,
    teacher_temperature: float = 1.0,
    scale_by_temperature_squared: bool = False,
) -> torch.Tensor:
    """Mean over rows of KL(softmax(teacher / T_t) || softmax(student / T_s)); the teacher is detached."""
    _check_scores(student_scores, teacher_scores, 2)
    if not (student_temperature > 0 and teacher_temperature > 0):
        raise ValueError("temperatures must be > 0")
    log_student = F.log_softmax(student_scores / student_temperature, dim=1)
    log_teacher = F.log_softmax(teacher_scores.detach().to(log_student.dtype) / teacher_temperature, dim=1)
    loss = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    if scale_by_temperature_squared:
        loss = loss * student_temperature**2
    return loss


def margin_mse(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """Mean over queries i and negatives k of ((s_i0 - s_ik) - (t_i0 - t_ik))^2; the teacher is detached."""
    _check_scores(student_scores, teacher_scores, 2)
    teacher = teacher_scores.detach().to(student_scores.dtype)
    student_margin = student_scores[:, :1] - student_scores[:, 1:]
    teacher_margin = teacher[:, :1] - teacher[:, 1:]
    return F.mse_loss(student_margin, teacher_margin)


class DistillKLLoss(nn.Module):
    """KL distillation over each query's own candidates (see `distill_kl`)."""

    def __init__(
        self,
        student_temperature: float = 1.0,
        teacher_temperature: float = 1.0,
        scale_by_temperature_squared: bool = False,
    ) -> None:
        super().__init__()
        if not (student_temperature > 0 and teacher_temperature > 0):
            raise ValueError("temperatures must be > 0")
        self.student_temperature = float(student_temperature)
        self.teacher_temperature = float(teacher_temperature)
        self.scale_by_temperature_squared = scale_by_temperature_squared

    def forward(
        self, queries: torch.Tensor, documents: torch.Tensor, teacher_scores: torch.Tensor
    ) -> LossOutput:
        """`queries` [B, V], `documents` [B * (1 + n), V] (this rank's own), `teacher_scores` [B, 1 + n]."""
        student = candidate_scores(queries, documents, teacher_scores.shape[1] - 1)
        loss = distill_kl(
            student,
            teacher_scores,
            self.student_temperature,
            self.teacher_temperature,
            self.scale_by_temperature_squared,
        )
        return LossOutput(loss, {"distill_kl": loss.detach()})


class MarginMSELoss(nn.Module):
    """MarginMSE over each query's positive and hard negatives (see `margin_mse`)."""

    def forward(
        self, queries: torch.Tensor, documents: torch.Tensor, teacher_scores: torch.Tensor
    ) -> LossOutput:
        """`queries` [B, V], `documents` [B * (1 + n), V] (this rank's own), `teacher_scores` [B, 1 + n]."""
        student = candidate_scores(queries, documents, teacher_scores.shape[1] - 1)
        loss = margin_mse(student, teacher_scores)
        return LossOutput(loss, {"margin_mse": loss.detach()})


def minmax_normalize(scores: torch.Tensor) -> torch.Tensor:
    """Each row mapped to [0, 1]: (x - min) / (max - min).

    Degenerate row (max == min, including a single candidate): every entry is 0, the limit the
    tuning sample reaches with its (max - min + 1e-6) denominator; the teacher then expresses no
    preference. Elsewhere the division is exact (the sample's 1e-6 shrinks values by a relative
    1e-6 / (max - min)).
    """
    if scores.dim() != 2:
        raise ValueError(f"scores [B, C] expected, got shape {tuple(scores.shape)}")
    scores = scores.detach()
    if not scores.is_floating_point():
        scores = scores.float()
    low = scores.min(dim=1, keepdim=True).values
    spread = scores.max(dim=1, keepdim=True).values - low
    flat = spread == 0
    return torch.where(flat, torch.zeros_like(scores), (scores - low) / torch.where(flat, 1.0, spread))


def ensemble_teacher_scores(
    dense_scores: torch.Tensor, sparse_scores: torch.Tensor, scale: float = 30.0
) -> torch.Tensor:
    """scale * (minmax(dense) + minmax(sparse)) / 2, per query over its candidates; [B, C] -> [B, C]."""
    if dense_scores.shape != sparse_scores.shape:
        raise ValueError(
            f"teacher score shapes differ: {tuple(dense_scores.shape)} and {tuple(sparse_scores.shape)}"
        )
    return scale * (minmax_normalize(dense_scores) + minmax_normalize(sparse_scores)) / 2
