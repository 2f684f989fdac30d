"""DF-FLOPS: FLOPS with a per-token penalty that grows with document frequency (Porco et al., 2025).

Source: Aldo Porco, Dhruv Mehra, Igor Malioutov, Karthik Radhakrishnan, Moniba Keymanesh, Daniel
Preotiuc-Pietro, Sean MacAvaney, Pengxiang Cheng, "An Alternative to FLOPS Regularization to
Effectively Productionize SPLADE-Doc", SIGIR 2025 (short paper), arXiv:2505.15070. The formulas
below were taken from public summaries of the paper (the paper body itself was not available to
the search tool), so their reading is stated explicitly:

    df_flops(d) = sum over vocabulary t of ( w_t * (1/N) * sum over documents i of |d_it| )^2
    w_t = activ(DF_t / |C|),   activ(x; alpha, beta) = 1 / (1 + (x ** log_alpha(2) - 1) ** beta)

- DF_t / |C| is the fraction of the collection in which token t is used. In the paper DF_t is the
  number of *document vectors* with a non-zero weight for t (the model's own posting-list length),
  approximated periodically during training (every 100 steps, on the document vectors of the
  validation stage), and |C| the number of those documents.
- activ is the paper's variant of the generalised logistic function: log_alpha(2) = ln 2 / ln alpha
  is negative for 0 < alpha < 1, so activ(0) = 0, activ(alpha) = 1/2 (alpha is the DF cut-off) and
  activ(1) = 1; beta sets the steepness. A rare token is hardly penalised, a token in most
  documents gets the full FLOPS penalty.
- Where w_t sits: one summary writes it inside the square (above, the form of SPLADE's
  (mean)^2 FLOPS), another writes w_t * (mean)^2. With `weight_inside_square=False` the second
  reading is used; since 0 <= w_t <= 1 both order tokens identically (w_t^2 versus w_t).
- The paper's values of alpha and beta are not reproduced here; the defaults (alpha = 0.1,
  beta = 1) are OUR choice: a token in 10% of the documents gets half the penalty.

Mapping from our idf (`models.idf`): idf = log(1 + (N - df + 0.5) / (df + 0.5)) = log((N + 1) /
(df + 0.5)), so exactly

    exp(-idf_t) = (df_t + 0.5) / (N + 1),

the document fraction of t with add-half smoothing: no N is needed to invert it. `from_idf` uses
x_t = exp(-relu(idf_t)), which stays in (0, 1] for a trainable idf turned negative (the relu the
trainer applies to query weights). An idf file that does not follow the formula (a base model's
idf.json) is read the same way: x_t is the document fraction that idf would imply. Deviation from
the paper: this df is counted on the *text* (token present in the tokenised document), not on the
model's expanded document vectors; pass `df_fraction` directly to use vector DFs instead.

Low idf = high df = large w_t. In the combined objective (`models.losses.combined.build_loss`) this
term is weighted by `lambda_df_flops`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.losses.output import LossOutput

__all__ = ["DfFlopsLoss", "df_flops_activation", "df_fraction_from_idf"]


def df_flops_activation(x: torch.Tensor, alpha: float = 0.1, beta: float = 1.0) -> torch.Tensor:
    """activ(x; alpha, beta) = 1 / (1 + (x ** log_alpha(2) - 1) ** beta) for document fractions x.

    x is clamped to (0, 1] (at x = 0 the weight is 0; above 1 the base of the power would be
    negative). Increasing in x, activ(alpha) = 1/2, activ(1) = 1.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be finite and > 0, got {beta}")
    exponent = math.log(2.0) / math.log(alpha)  # log_alpha(2) < 0
    if not x.is_floating_point():
        x = x.float()
    x = x.clamp(min=torch.finfo(x.dtype).tiny, max=1.0)
    base = (x.pow(exponent) - 1.0).clamp(min=0.0)  # >= 0 for x <= 1; clamp absorbs rounding
    return 1.0 / (1.0 + base.pow(beta))


def df_fraction_from_idf(idf: torch.Tensor) -> torch.Tensor:
    """(df + 0.5) / (N + 1) = exp(-idf) for idf = log(1 + (N - df + 0.5) / (df + 0.5)); relu first."""
    return torch.exp(-torch.relu(idf))


class DfFlopsLoss(nn.Module):
    """DF-FLOPS of an [M, V] document matrix with token weights w = activ(df fraction) (module docstring).

    Give exactly one of `idf` ([V]; the fractions are exp(-relu(idf)), recomputed from the tensor's
    *current, detached* value at every call, so a trainable idf updated in place by the optimizer
    is followed and the penalty sends no gradient into it) or `df_fraction` ([V] in [0, 1], e.g.
    DF_t / |C| counted on document vectors; `set_df_fraction` replaces it, as the paper's periodic
    re-estimation does). The tensors are held by reference, not registered as parameters or buffers,
    so the idf stays owned by whoever trains it.
    """

    def __init__(
        self,
        idf: torch.Tensor | None = None,
        *,
        df_fraction: torch.Tensor | None = None,
        alpha: float = 0.1,
        beta: float = 1.0,
        weight_inside_square: bool = True,
    ) -> None:
        super().__init__()
        if (idf is None) == (df_fraction is None):
            raise ValueError("give exactly one of idf or df_fraction")
        df_flops_activation(torch.ones(1), alpha, beta)  # validates alpha and beta
        self.alpha, self.beta = float(alpha), float(beta)
        self.weight_inside_square = weight_inside_square
        self._idf: torch.Tensor | None = None
        self._df_fraction: torch.Tensor | None = None
        if idf is not None:
            self._idf = self._vector(idf, "idf")
        else:
            assert df_fraction is not None
            self.set_df_fraction(df_fraction)

    @staticmethod
    def _vector(values: torch.Tensor, name: str) -> torch.Tensor:
        values = values.detach()
        if values.dim() != 1:
            raise ValueError(f"{name} must be a vector, got shape {tuple(values.shape)}")
        return values

    def set_df_fraction(self, df_fraction: torch.Tensor) -> None:
        """Use these document fractions (in [0, 1]) from now on instead of the idf."""
        df_fraction = self._vector(df_fraction, "df_fraction")
        if bool(((df_fraction < 0) | (df_fraction > 1)).any()):
            raise ValueError("df_fraction must lie in [0, 1]")
        self._idf, self._df_fraction = None, df_fraction

    def token_weights(self) -> torch.Tensor:
        """[V] current w_t = activ(df fraction of t), without gradient."""
        with torch.no_grad():
            if self._idf is not None:
                fraction = df_fraction_from_idf(self._idf.float())
            else:
                assert self._df_fraction is not None
                fraction = self._df_fraction.float()
            return df_flops_activation(fraction, self.alpha, self.beta)

    def forward(self, documents: torch.Tensor) -> LossOutput:
        """[M, V] documents -> LossOutput(df_flops, parts df_flops and df_flops_mean_w)."""
        weights = self.token_weights()
        if documents.dim() != 2 or documents.shape[0] == 0 or documents.shape[1] != weights.shape[0]:
            raise ValueError(
                f"documents [M >= 1, {weights.shape[0]}] expected, got shape {tuple(documents.shape)}"
            )
        weights = weights.to(device=documents.device, dtype=documents.dtype)
        means = documents.abs().mean(dim=0)
        per_token = (weights * means) ** 2 if self.weight_inside_square else weights * means**2
        loss = per_token.sum()
        parts = {"df_flops": loss.detach(), "df_flops_mean_w": weights.mean().detach()}
        return LossOutput(loss, parts)
