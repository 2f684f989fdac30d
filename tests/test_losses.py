"""The SPLADE-doc loss stack on tiny hand-computed examples (models.losses).

Every expected number is derived in the comments from the definitions; `math` only evaluates the
hand formula. Tensors are float64 so the comparisons can be tight.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from models.idf import idf_from_df
from models.losses import (
    DfFlopsLoss,
    DistillKLLoss,
    FlopsLoss,
    IdfAwarePenalty,
    InfoNCELoss,
    LossOutput,
    MarginMSELoss,
    SpladeDocLoss,
    build_loss,
    candidate_scores,
    combine_terms,
    df_flops_activation,
    df_fraction_from_idf,
    distill_kl,
    ensemble_teacher_scores,
    margin_mse,
    minmax_normalize,
    quadratic_warmup,
)

E = math.e
F64 = torch.float64


def t(rows: list[list[float]], grad: bool = False) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64, requires_grad=grad)


def assert_rows(actual: torch.Tensor, expected: list[list[float]], tol: float = 1e-12) -> None:
    """A 2-D tensor equals hand-computed rows within `tol`."""
    torch.testing.assert_close(actual.detach(), torch.tensor(expected, dtype=actual.dtype), atol=tol, rtol=0)


# ----------------------------------------------------------------------------- InfoNCE
# B = 2 queries, n = 1 hard negative each, V = 4. Rows of d, query-major:
#   d0 = positive of q0, d1 = negative of q0, d2 = positive of q1, d3 = negative of q1.
Q = [[1, 0, 0, 0], [0, 1, 0, 0]]
D = [[2, 0, 0, 0], [1, 1, 0, 0], [0, 3, 0, 0], [0, 0, 1, 0]]
# scores q0 . d = [2, 1, 0, 0] (label 0); q1 . d = [0, 1, 3, 0] (label 2)
# loss(q0) = -2 + ln(e^2 + e + 1 + 1) = -2 + ln(12.107338) = -2 + 2.493812 = 0.493812
# loss(q1) = -3 + ln(1 + e + e^3 + 1) = -3 + ln(24.803819) = -3 + 3.210998 = 0.210998
LOSS_Q0 = -2 + math.log(E**2 + E + 2)
LOSS_Q1 = -3 + math.log(2 + E + E**3)


def test_infonce_hand_computed() -> None:
    out = InfoNCELoss()(t(Q), t(D))
    assert isinstance(out, LossOutput)
    assert math.isclose(LOSS_Q0, 0.4938117, abs_tol=1e-7)
    assert math.isclose(LOSS_Q1, 0.2109976, abs_tol=1e-7)
    # mean over the two queries: (0.493812 + 0.210998) / 2 = 0.352405
    assert out.total.item() == pytest.approx(0.3524047, abs=1e-7)
    assert out.parts["infonce"].item() == pytest.approx(out.total.item())
    assert out.parts["infonce_accuracy"].item() == 1.0  # both positives have the top score
    assert not out.parts["infonce"].requires_grad


def test_infonce_gradient_reaches_documents() -> None:
    d = t(D, grad=True)
    InfoNCELoss()(t(Q), d).total.backward()
    # dL/dd_j = (1/B) sum_i (p_ij - y_ij) q_i. p_00 = e^2 / 12.107338 = 0.610296,
    # p_10 = e^0 / 24.803819 = 0.040316 (q1's softmax weight on d0).
    # dL/dd0 = 1/2 [(p_00 - 1) q0 + p_10 q1] = [-0.194852, 0.020158, 0, 0]
    p00 = E**2 / (E**2 + E + 2)
    p10 = 1 / (2 + E + E**3)
    assert d.grad[0].tolist() == pytest.approx([(p00 - 1) / 2, p10 / 2, 0.0, 0.0], abs=1e-12)
    assert (p00 - 1) / 2 == pytest.approx(-0.194852, abs=1e-6)
    # d3 is nobody's positive: dL/dd3 = 1/2 (p_03 q0 + p_13 q1) with p_03 = 1/12.107, p_13 = 1/24.80
    assert d.grad[3].tolist() == pytest.approx(
        [1 / (E**2 + E + 2) / 2, 1 / (2 + E + E**3) / 2, 0, 0], abs=1e-12
    )


def test_infonce_temperature() -> None:
    # t = 0.5 doubles the logits: q0: [4, 2, 0, 0] -> -4 + ln(e^4 + e^2 + 2) = -4 + ln(63.987206) = 0.158683
    # q1: [0, 2, 6, 0] -> -6 + ln(2 + e^2 + e^6) = -6 + ln(412.817850) = 0.023006; mean 0.090845
    sharp = InfoNCELoss(temperature=0.5)(t(Q), t(D)).total.item()
    assert sharp == pytest.approx(((-4 + math.log(E**4 + E**2 + 2)) + (-6 + math.log(2 + E**2 + E**6))) / 2)
    assert sharp == pytest.approx(0.0908448, abs=1e-7)
    assert sharp < InfoNCELoss(temperature=1.0)(t(Q), t(D)).total.item()  # positives on top: sharper is lower
    # a huge temperature flattens the softmax over the 4 documents: loss -> ln 4 = 1.386294
    flat = InfoNCELoss(temperature=1e9)(t(Q), t(D)).total.item()
    assert flat == pytest.approx(math.log(4), abs=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0.0)


def test_infonce_gathered_documents_and_offsets() -> None:
    # Two ranks with one query each; both see the gathered [4, V] matrix. Rank 1's positive is row 2.
    full = t(D)
    rank0 = InfoNCELoss()(t(Q[:1]), full, n_negatives=1, positive_offset=0).total.item()
    rank1 = InfoNCELoss()(t(Q[1:]), full, n_negatives=1, positive_offset=2).total.item()
    assert rank0 == pytest.approx(LOSS_Q0, abs=1e-12)
    assert rank1 == pytest.approx(LOSS_Q1, abs=1e-12)
    assert (rank0 + rank1) / 2 == pytest.approx(InfoNCELoss()(t(Q), full).total.item(), abs=1e-12)
    with pytest.raises(ValueError, match="n_negatives"):
        InfoNCELoss()(t(Q[1:]), full, positive_offset=2)
    with pytest.raises(ValueError, match="outside"):
        InfoNCELoss()(t(Q[1:]), full, n_negatives=1, positive_offset=3)


def test_infonce_own_documents_only_and_no_hard_negatives() -> None:
    # Without in-batch negatives: q0 over [d0, d1] = [2, 1] -> -2 + ln(e^2 + e) = 0.313262;
    # q1 over [d2, d3] = [3, 0] -> -3 + ln(e^3 + 1) = 0.048587; mean 0.180925
    own = InfoNCELoss(in_batch_negatives=False)(t(Q), t(D)).total.item()
    assert own == pytest.approx(((-2 + math.log(E**2 + E)) + (-3 + math.log(E**3 + 1))) / 2, abs=1e-12)
    assert own == pytest.approx(0.1809245, abs=1e-7)
    # n = 0: documents are just the positives [d0, d2]; q0 scores [2, 0] -> -2 + ln(e^2 + 1) = 0.126928,
    # q1 scores [0, 3] -> -3 + ln(1 + e^3) = 0.048587; mean 0.087758
    positives = t([D[0], D[2]])
    loss = InfoNCELoss()(t(Q), positives).total.item()
    assert loss == pytest.approx(((-2 + math.log(E**2 + 1)) + (-3 + math.log(1 + E**3))) / 2, abs=1e-12)
    assert loss == pytest.approx(0.0877576, abs=1e-7)


def test_candidate_scores_layout() -> None:
    # q0 with its own [d0, d1] -> [2, 1]; q1 with [d2, d3] -> [3, 0]
    assert candidate_scores(t(Q), t(D)).tolist() == [[2.0, 1.0], [3.0, 0.0]]
    with pytest.raises(ValueError, match="expected 2 x 3"):
        candidate_scores(t(Q), t(D), n_negatives=2)


def test_trainable_idf_gets_gradient_through_infonce() -> None:
    # Query vectors from indicators and a trainable idf of ones: the same q as above.
    penalty = IdfAwarePenalty([1.0, 1.0, 1.0, 1.0], trainable=True)
    q = penalty(t(Q))
    InfoNCELoss()(q, t(D)).total.backward()
    # dL/dq_i = (1/B) (sum_j p_ij d_j - d_pos(i)); dL/didf_t = sum_i 1[t in q_i] dL/dq_it.
    # q0 has token 0 only: sum_j p_0j d_j0 = 2 p_00 + p_01 with p_0 = [e^2, e, 1, 1] / 12.107338,
    # so dL/didf_0 = (2 p_00 + p_01 - 2) / 2 = (1.220591 + 0.224515 - 2) / 2 = -0.277447.
    # q1 has token 1 only: sum_j p_1j d_j1 = p_11 + 3 p_12 with p_1 = [1, e, e^3, 1] / 24.803819,
    # minus its positive's token-1 weight 3: dL/didf_1 = (0.109591 + 2.429328 - 3) / 2 = -0.230540.
    z0, z1 = E**2 + E + 2, 2 + E + E**3
    g0 = (2 * E**2 / z0 + E / z0 - 2) / 2
    g1 = (E / z1 + 3 * E**3 / z1 - 3) / 2
    assert g0 == pytest.approx(-0.277447, abs=1e-6)
    assert g1 == pytest.approx(-0.230540, abs=1e-6)
    assert penalty.idf.grad.tolist() == pytest.approx([g0, g1, 0.0, 0.0], abs=1e-6)


# ----------------------------------------------------------------------------- FLOPS
# N = 3 documents, V = 4:
FD = [[1, 0, 2, 0], [0, 0, 1, 0], [3, 1, 0, 0]]
# mean over documents: [4/3, 1/3, 1, 0]; FLOPS = 16/9 + 1/9 + 1 + 0 = 26/9 = 2.888889
# active dimensions (l0): d0 2, d1 1, d2 2


def test_flops_hand_computed_and_gradient() -> None:
    d = t(FD, grad=True)
    out = FlopsLoss()(d)
    assert out.total.item() == pytest.approx(26 / 9, abs=1e-12)
    assert out.parts["doc_l0"].item() == pytest.approx(5 / 3)
    out.total.backward()
    # dFLOPS/dd_ij = 2 * mean_j / N where d_ij > 0: column 0: 2 (4/3) / 3 = 8/9; column 1: 2/9;
    # column 2: 2/3; column 3: 0. An entry at exactly 0 gets 0 (|x| has subgradient 0 at 0, as relu
    # in the encoder already gives it).
    assert_rows(d.grad, [[8 / 9, 0.0, 2 / 3, 0.0], [0.0, 0.0, 2 / 3, 0.0], [8 / 9, 2 / 9, 0.0, 0.0]])


def test_flops_l0_mask_threshold_and_normalisation() -> None:
    # threshold 1: keep documents with l0 > 1, i.e. d0 and d2 (d1 has exactly 1, not > 1).
    # "all" (divide by N = 3): masked sums [4, 1, 2, 0] / 3 -> 16/9 + 1/9 + 4/9 = 21/9 = 7/3
    d = t(FD, grad=True)
    out = FlopsLoss(threshold=1)(d)
    assert out.total.item() == pytest.approx(7 / 3, abs=1e-12)
    assert out.parts["flops_kept"].item() == pytest.approx(2 / 3)
    out.total.backward()
    assert d.grad[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # the masked document gets no gradient
    # "kept" (divide by K = 2): [4, 1, 2, 0] / 2 = [2, 0.5, 1, 0] -> 4 + 0.25 + 1 = 5.25
    assert FlopsLoss(threshold=1, mask_mean="kept")(t(FD)).total.item() == pytest.approx(5.25, abs=1e-12)
    # threshold 2: l0 = 2 is not > 2, nobody is kept -> 0 in both normalisations
    for mean in ("all", "kept"):
        empty = FlopsLoss(threshold=2, mask_mean=mean)(t(FD, grad=True))
        assert empty.total.item() == 0.0
        empty.total.backward()  # still differentiable
    # threshold 0: everyone kept (l0 >= 1 > 0): both normalisations give the unmasked 26/9
    for mean in ("all", "kept"):
        assert FlopsLoss(threshold=0, mask_mean=mean)(t(FD)).total.item() == pytest.approx(26 / 9)
    with pytest.raises(ValueError, match="mask_mean"):
        FlopsLoss(threshold=1, mask_mean="none")  # type: ignore[arg-type]


def test_flops_group_size_reproduces_the_tuning_sample_layout() -> None:
    # 2 queries x (1 + 1) documents, query-major rows [p0, n0, p1, n1], V = 2
    d = t([[2, 0], [0, 1], [0, 0], [0, 3]])
    # group 1: mean over 4 rows = [2/4, 4/4] -> 0.25 + 1 = 1.25
    assert FlopsLoss()(d).total.item() == pytest.approx(1.25)
    # group 2: positives (rows 0, 2) mean [1, 0]; negatives (rows 1, 3) mean [0, 2] -> 1 + 4 = 5
    assert FlopsLoss(group_size=2)(d).total.item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="groups of 3"):
        FlopsLoss(group_size=3)(d)


def test_quadratic_warmup_schedule() -> None:
    # max_weight * min(1, step / T)^2 with T = 100, max 0.3
    assert quadratic_warmup(0, 0.3, 100) == 0.0
    assert quadratic_warmup(50, 0.3, 100) == pytest.approx(0.3 * 0.25)  # (1/2)^2 = 1/4 -> 0.075
    assert quadratic_warmup(100, 0.3, 100) == pytest.approx(0.3)
    assert quadratic_warmup(200, 0.3, 100) == pytest.approx(0.3)  # capped
    assert quadratic_warmup(7, 0.3, 0) == pytest.approx(0.3)  # no warm-up
    with pytest.raises(ValueError, match="step"):
        quadratic_warmup(-1, 0.3, 100)


# ----------------------------------------------------------------------------- IDF-aware penalty


def test_idf_aware_query_vectors_and_scores() -> None:
    # V = 5, token 0 special; idf [0.7, 2.0, 0.5, 1.5, -1.0]; the query has tokens 0, 1, 2 and 4.
    # q = relu(idf) * indicator, special zeroed: [0, 2.0, 0.5, 0, 0] (token 4: relu(-1) = 0)
    penalty = IdfAwarePenalty(torch.tensor([0.7, 2.0, 0.5, 1.5, -1.0]), special_ids=[0])
    q = penalty(torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0]]))
    assert q.tolist() == [[0.0, 2.0, 0.5, 0.0, 0.0]]
    # s(q, d) = 2.0 * 1 + 0.5 * 4 = 4.0 for d = [9, 1, 4, 5, 3]
    assert (
        penalty.scores(torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0]]), torch.tensor([[9.0, 1, 4, 5, 3]])).item()
        == 4.0
    )
    shared = torch.nn.Parameter(torch.ones(5))
    assert IdfAwarePenalty(shared).idf is shared  # an existing parameter is used as is


def test_idf_aware_penalty_presses_harder_on_low_idf_tokens() -> None:
    # One query with tokens a (idf 2) and b (idf 0.5), one document d = [d_a, d_b], lambda = 1:
    # J = -s(q, d) + flops(d) = -(2 d_a + 0.5 d_b) + (d_a^2 + d_b^2)  (N = 1)
    # dJ/dd_a = -2 + 2 d_a, dJ/dd_b = -0.5 + 2 d_b: at d = [1, 1] the gradients are [0, 1.5]: the
    # high-idf weight is at its optimum (1/lambda) while the low-idf one is pushed down to 0.25.
    penalty = IdfAwarePenalty([2.0, 0.5])
    d = t([[1.0, 1.0]], grad=True)
    q = penalty(torch.ones(1, 2, dtype=F64))
    objective = -(q @ d.T).sum() + FlopsLoss()(d).total
    objective.backward()
    assert_rows(d.grad, [[0.0, 1.5]])
    # Equivalently FLOPS on the matched contributions e = idf * d weighs token t by 1 / idf_t^2:
    # d = [[1, 2], [3, 0]] -> mean d = [2, 1], flops = 4 + 1 = 5; e = [[2, 1], [6, 0]], mean e = [4, 0.5],
    # sum (mean e)^2 / idf^2 = 16/4 + 0.25/0.25 = 4 + 1 = 5
    idf = torch.tensor([2.0, 0.5], dtype=F64)
    docs = t([[1, 2], [3, 0]])
    assert FlopsLoss()(docs).total.item() == pytest.approx(5.0)
    assert (((docs * idf).mean(dim=0) ** 2) / idf**2).sum().item() == pytest.approx(5.0)


# ----------------------------------------------------------------------------- distillation


def test_kl_distillation_hand_computed_and_zero_when_equal() -> None:
    # query 0: student scores [2, 0] (q0 = e_0, docs [2,0,0], [0,0,5]); teacher [1, 1]
    # p_t = [1/2, 1/2]; p_s = softmax([2, 0]) = [e^2/(e^2+1), 1/(e^2+1)] = [0.880797, 0.119203]
    # KL = 1/2 ln(0.5/0.880797) + 1/2 ln(0.5/0.119203) = 1/2 (-0.566219) + 1/2 (1.433781) = 0.433781
    # query 1: student [1, 1], teacher [3, 3]: both uniform -> KL 0. Mean over queries: 0.216890
    q = t([[1, 0, 0], [0, 1, 0]])
    d = t([[2, 0, 0], [0, 0, 5], [0, 1, 0], [0, 1, 0]], grad=True)
    teacher = t([[1, 1], [3, 3]])
    out = DistillKLLoss()(q, d, teacher)
    ps = [E**2 / (E**2 + 1), 1 / (E**2 + 1)]
    kl0 = 0.5 * math.log(0.5 / ps[0]) + 0.5 * math.log(0.5 / ps[1])
    assert kl0 == pytest.approx(0.4337808, abs=1e-7)
    assert out.total.item() == pytest.approx(kl0 / 2, abs=1e-12)
    assert out.parts["distill_kl"].item() == pytest.approx(kl0 / 2)
    out.total.backward()
    # dKL/ds_0 = (p_s - p_t) / B = [0.380797, -0.380797] / 2; ds/dd = q0 = e_0
    assert d.grad[0].tolist() == pytest.approx([(ps[0] - 0.5) / 2, 0, 0], abs=1e-12)
    assert d.grad[1].tolist() == pytest.approx([(ps[1] - 0.5) / 2, 0, 0], abs=1e-12)
    assert d.grad[2:].abs().sum().item() == 0.0  # query 1 already matches its teacher
    # student == teacher: KL = 0
    same = t([[4.0, 1.0, -2.0], [0.5, 0.5, 3.0]])
    assert distill_kl(same, same.clone()).item() == pytest.approx(0.0, abs=1e-12)
    assert distill_kl(same, same.clone(), 3.0, 3.0).item() == pytest.approx(0.0, abs=1e-12)


def test_kl_distillation_temperature() -> None:
    # T = 2 on both: student [2, 0] / 2 = [1, 0] -> p_s = [e/(e+1), 1/(e+1)] = [0.731059, 0.268941]
    # teacher stays uniform; KL = 1/2 ln(0.5/0.731059) + 1/2 ln(0.5/0.268941) = 0.120115
    student, teacher = t([[2.0, 0.0]]), t([[1.0, 1.0]])
    ps = [E / (E + 1), 1 / (E + 1)]
    kl = 0.5 * math.log(0.5 / ps[0]) + 0.5 * math.log(0.5 / ps[1])
    assert kl == pytest.approx(0.1201145, abs=1e-7)
    assert distill_kl(student, teacher, 2.0, 2.0).item() == pytest.approx(kl, abs=1e-12)
    # Hinton's T^2 factor (sentence-transformers): 4 * 0.120115 = 0.480458
    scaled = distill_kl(student, teacher, 2.0, 2.0, scale_by_temperature_squared=True).item()
    assert scaled == pytest.approx(4 * kl, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2 candidates"):
        distill_kl(t([[1.0], [2.0]]), t([[1.0], [2.0]]))


def test_margin_mse_hand_computed() -> None:
    # query 0: student [3, 1, 2], teacher [5, 2, 5]: margins student [2, 1], teacher [3, 0], errors [-1, 1]
    # query 1: student [1, 1, 0], teacher [2, 0, 1]: margins student [0, 1], teacher [2, 1], errors [-2, 0]
    # MSE over the 4 margins: (1 + 1 + 4 + 0) / 4 = 1.5
    student = t([[3, 1, 2], [1, 1, 0]], grad=True)
    loss = margin_mse(student, t([[5, 2, 5], [2, 0, 1]]))
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    # d/ds_i0 = sum_k 2 err_ik / 4, d/ds_ik = -2 err_ik / 4:
    # query 0: [2(-1+1)/4, 2/4, -2/4] = [0, 0.5, -0.5]; query 1: [2(-2)/4, 4/4, 0] = [-1, 1, 0]
    assert_rows(student.grad, [[0.0, 0.5, -0.5], [-1.0, 1.0, 0.0]])
    # through the module: q = e_0 picks column 0 of each document: student scores [3, 1, 2]
    q = t([[1, 0]])
    d = t([[3, 9], [1, 9], [2, 9]], grad=True)
    out = MarginMSELoss()(q, d, t([[5, 2, 5]]))
    assert out.total.item() == pytest.approx(1.0)  # (1 + 1) / 2
    out.total.backward()
    assert d.grad[:, 0].tolist() == pytest.approx([0.0, 1.0, -1.0])  # 2 err / 2 per margin
    assert d.grad[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_ensemble_teacher_normalisation() -> None:
    # row 0: dense [0.9, 0.5, 0.7] -> (x - 0.5) / 0.4 = [1, 0, 0.5];
    #        sparse [10, 30, 20] -> (x - 10) / 20 = [0, 1, 0.5]; mean [0.5, 0.5, 0.5]; x 30 = [15, 15, 15]
    # row 1: dense [0.3, 0.3, 0.3] has max == min -> [0, 0, 0] (defined: no preference);
    #        sparse [1, 2, 4] -> [0, 1/3, 1]; mean [0, 1/6, 1/2]; x 30 = [0, 5, 15]
    dense = t([[0.9, 0.5, 0.7], [0.3, 0.3, 0.3]])
    sparse = t([[10, 30, 20], [1, 2, 4]])
    scores = ensemble_teacher_scores(dense, sparse)
    assert_rows(scores, [[15.0, 15.0, 15.0], [0.0, 5.0, 15.0]], 1e-12)
    assert minmax_normalize(t([[0.3, 0.3, 0.3]])).tolist() == [[0.0, 0.0, 0.0]]
    assert minmax_normalize(t([[7.0]])).tolist() == [[0.0]]  # one candidate is the degenerate case too
    assert ensemble_teacher_scores(dense, sparse, scale=2.0)[1].tolist() == pytest.approx([0.0, 1 / 3, 1.0])
    with pytest.raises(ValueError, match="shapes differ"):
        ensemble_teacher_scores(dense, sparse[:, :2])


# ----------------------------------------------------------------------------- combined


def test_combined_total_is_the_weighted_sum_of_its_parts() -> None:
    ranking = InfoNCELoss()(t(Q), t(D))  # 0.352405
    distill = DistillKLLoss()(t(Q), t(D), t([[1, 1], [3, 0]]))
    flops = FlopsLoss()(t(D))
    # mean d over the 4 rows = [3/4, 4/4, 1/4, 0] -> FLOPS = 9/16 + 1 + 1/16 = 1.625
    assert flops.total.item() == pytest.approx(1.625)
    out = combine_terms({"infonce": (ranking, 1.0), "distill": (distill, 0.5), "flops": (flops, 0.02)})
    expected = ranking.total.item() + 0.5 * distill.total.item() + 0.02 * 1.625
    assert out.total.item() == pytest.approx(expected, abs=1e-12)
    rebuilt = sum(
        out.parts[name].item() * out.parts[f"{name}_weight"].item()
        for name in ("infonce", "distill", "flops")
    )
    assert out.total.item() == pytest.approx(rebuilt, abs=1e-12)
    # every component's own parts are logged too
    assert {"infonce_accuracy", "distill_kl", "doc_l0"} <= set(out.parts)
    with pytest.raises(TypeError, match="schedule"):
        combine_terms({"flops": (flops, lambda step: 1.0)})
    with pytest.raises(ValueError, match="finite"):
        combine_terms({"flops": (flops, -1.0)})


def test_splade_doc_loss_schedules_and_gradients() -> None:
    d = t(D, grad=True)
    loss = SpladeDocLoss(
        InfoNCELoss(),
        regularizers={"flops": (FlopsLoss(), lambda step: quadratic_warmup(step, 0.4, 100))},
    )
    out = loss(t(Q), d, n_negatives=1, step=50)
    # weight at step 50 of 100: 0.4 * (1/2)^2 = 0.1; total = 0.352405 + 0.1 * 1.625 = 0.514905
    assert out.parts["flops_weight"].item() == pytest.approx(0.1)
    assert out.total.item() == pytest.approx(0.3524047 + 0.1625, abs=1e-7)
    out.total.backward()
    assert d.grad.abs().sum().item() > 0
    at_start = loss(t(Q), t(D), n_negatives=1, step=0)
    assert at_start.parts["flops_weight"].item() == 0.0
    assert at_start.total.item() == pytest.approx(0.3524047, abs=1e-7)


def _loss_settings(**overrides: object) -> SimpleNamespace:
    """A loss section as LossConfig has it: FLOPS 0.4 over 100 steps, no IDF term, no distillation."""
    defaults = {"temperature": 1.0, "in_batch_negatives": True, "lambda_flops": 0.4,
                "flops_warmup_steps": 100, "lambda_df_flops": 0.0, "l0_threshold": None,
                "distill": "none", "distill_weight": 1.0}  # fmt: skip
    return SimpleNamespace(**(defaults | overrides))


def test_build_loss_from_settings() -> None:
    settings = _loss_settings(distill="kl", distill_weight=0.5)
    loss = build_loss(settings, idf_weights=torch.ones(4))
    q, d, teacher = t(Q), t(D), t([[1, 1], [3, 0]])
    # trainer-style call on one rank: gathered documents = local documents
    out = loss(
        queries=q,
        documents=d,
        local_documents=d,
        positive_offset=0,
        n_negatives=1,
        teacher_scores=teacher,
        step=200,
    )
    kl = DistillKLLoss()(q, d, teacher).total.item()
    assert out.total.item() == pytest.approx(0.3524047 + 0.5 * kl + 0.4 * 1.625, abs=1e-7)
    assert {"infonce", "distill", "distill_weight", "flops", "flops_weight"} <= set(out.parts)
    with pytest.raises(ValueError, match="teacher scores"):
        loss(queries=q, documents=d, n_negatives=1, step=0)
    assert "df_flops" not in out.parts  # lambda_df_flops = 0: no DF-FLOPS term
    with pytest.raises(ValueError, match="lambda_df_flops > 0: DF-FLOPS needs the idf weights"):
        build_loss(_loss_settings(distill="kl", distill_weight=0.5, lambda_df_flops=0.1))  # no idf
    with pytest.raises(ValueError, match="finite and >= 0"):
        build_loss(
            _loss_settings(distill="kl", distill_weight=0.5, lambda_df_flops=-0.1), idf_weights=torch.ones(4)
        )
    with pytest.raises(ValueError, match="unknown distillation"):
        build_loss(_loss_settings(distill="mse", distill_weight=0.5))
    # without in-batch negatives each query's softmax runs over its own 2 documents only
    own = build_loss(_loss_settings(in_batch_negatives=False, lambda_flops=0.0))
    parts = own(queries=q, documents=d, local_documents=d, positive_offset=0, n_negatives=1, step=200).parts
    assert float(parts["infonce"]) == pytest.approx(
        float(InfoNCELoss(in_batch_negatives=False)(q, d, n_negatives=1).total)
    )
    assert float(parts["infonce"]) != pytest.approx(float(out.parts["infonce"]))


# ----------------------------------------------------------------------------- DF-FLOPS
# alpha = 1/4, beta = 1: log_alpha(2) = ln 2 / ln(1/4) = -1/2, so activ(x) = 1 / (1 + (x^(-1/2) - 1)).
# idf = [0, ln 4, ln 16, ln 100] -> x = exp(-idf) = [1, 1/4, 1/16, 1/100]
#   -> x^(-1/2) - 1 = [0, 1, 3, 9] -> w = [1, 1/2, 1/4, 1/10] (low idf, large weight).
# Three documents with column means [1, 1, 1, 4]:
DF_IDF = [0.0, math.log(4), math.log(16), math.log(100)]
DF_DOCS = [[1, 2, 0, 4], [1, 0, 2, 4], [1, 1, 1, 4]]
DF_W = [1.0, 0.5, 0.25, 0.1]


def test_df_flops_hand_computed_and_gradient() -> None:
    loss = DfFlopsLoss(torch.tensor(DF_IDF, dtype=F64), alpha=0.25, beta=1.0)
    assert loss.token_weights().tolist() == pytest.approx(DF_W, abs=1e-6)
    d = t(DF_DOCS, grad=True)
    out = loss(d)
    # sum_t (w_t mean_t)^2 = 1^2 + 0.5^2 + 0.25^2 + (0.1 * 4)^2 = 1 + 0.25 + 0.0625 + 0.16 = 1.4725
    assert out.total.item() == pytest.approx(1.4725, abs=1e-6)
    assert out.parts["df_flops"].item() == pytest.approx(1.4725, abs=1e-6)
    assert out.parts["df_flops_mean_w"].item() == pytest.approx(sum(DF_W) / 4, abs=1e-6)
    out.total.backward()
    # d/d d_it = 2 w_t^2 mean_t / M * sign(d_it): [2/3, 1/6, 1/24, 0.08/3] where d_it > 0, 0 at d_it = 0
    assert_rows(
        d.grad,
        [[2 / 3, 1 / 6, 0, 0.08 / 3], [2 / 3, 0, 1 / 24, 0.08 / 3], [2 / 3, 1 / 6, 1 / 24, 0.08 / 3]],
        tol=1e-6,
    )
    # the other reading of the paper: w_t * mean_t^2 = 1 + 0.5 + 0.25 + 0.1 * 16 = 3.35
    outside = DfFlopsLoss(torch.tensor(DF_IDF), alpha=0.25, beta=1.0, weight_inside_square=False)
    assert outside(t(DF_DOCS)).total.item() == pytest.approx(3.35, abs=1e-6)


def test_df_flops_presses_harder_on_low_idf_tokens() -> None:
    # Equal usage of every token: mean |d| = 1 in each column, so each token's share is w_t^2.
    out = DfFlopsLoss(torch.tensor(DF_IDF), alpha=0.25)(torch.ones(2, 4, dtype=F64))
    shares = [w**2 / sum(v**2 for v in DF_W) for w in DF_W]
    assert shares == sorted(shares, reverse=True)  # idf ascending -> share descending
    assert out.total.item() == pytest.approx(sum(w**2 for w in DF_W), abs=1e-6)
    # with the default alpha, beta the weights are still decreasing in idf, within [0, 1]
    w = DfFlopsLoss(torch.tensor([0.0, 0.5, 1.0, 2.0, 5.0, 12.0])).token_weights()
    assert torch.all(w[:-1] > w[1:]) and w[0].item() == pytest.approx(1.0) and w[-1].item() >= 0
    # activ(alpha) = 1/2 and activ(1) = 1 for any beta
    assert df_flops_activation(torch.tensor([0.1, 1.0]), 0.1, 3.0).tolist() == pytest.approx([0.5, 1.0])


def test_df_fraction_inverts_the_idf_formula() -> None:
    # exp(-idf) = (df + 0.5) / (N + 1) for idf = log(1 + (N - df + 0.5) / (df + 0.5)); N = 9
    df = torch.tensor([0.0, 1.0, 4.5, 9.0])
    idf = torch.from_numpy(idf_from_df(df.numpy(), 9))
    assert df_fraction_from_idf(idf).tolist() == pytest.approx(((df + 0.5) / 10).tolist(), rel=1e-6)
    # negative (trainable) idf is read as idf 0: fraction 1, full weight; no NaN
    assert df_fraction_from_idf(torch.tensor([-2.0])).item() == 1.0
    assert DfFlopsLoss(torch.tensor([-2.0, 1.0])).token_weights()[0].item() == pytest.approx(1.0)
    # the same weights from document fractions given directly
    direct = DfFlopsLoss(df_fraction=torch.tensor([1.0, 0.25, 1 / 16, 0.01]), alpha=0.25)
    assert direct.token_weights().tolist() == pytest.approx(DF_W, abs=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        DfFlopsLoss()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DfFlopsLoss(df_fraction=torch.tensor([1.5]))
    with pytest.raises(ValueError, match="alpha"):
        DfFlopsLoss(torch.zeros(3), alpha=1.0)
    with pytest.raises(ValueError, match="documents"):
        DfFlopsLoss(torch.zeros(3))(torch.ones(2, 4))


def test_df_flops_follows_a_trainable_idf_without_sending_it_gradient() -> None:
    idf = torch.nn.Parameter(torch.tensor(DF_IDF, dtype=F64))
    loss = DfFlopsLoss(idf, alpha=0.25)
    assert list(loss.parameters()) == []  # held by reference, not registered
    d = t(DF_DOCS, grad=True)
    loss(d).total.backward()
    assert idf.grad is None and d.grad is not None
    with torch.no_grad():
        idf.copy_(torch.tensor([math.log(100), math.log(16), math.log(4), 0.0], dtype=F64))  # in place
    assert loss.token_weights().tolist() == pytest.approx(DF_W[::-1], abs=1e-6)


def test_build_loss_with_df_flops() -> None:
    settings = _loss_settings(lambda_df_flops=0.2)
    idf = torch.nn.Parameter(torch.tensor([0.1, 0.7, 2.0, 4.0], dtype=F64), requires_grad=True)
    loss = build_loss(settings, idf_weights=idf)
    d = t(D, grad=True)
    out = loss(queries=t(Q), documents=d, n_negatives=1, step=50)
    penalty = DfFlopsLoss(idf)(t(D)).total.item()
    assert {"infonce", "flops", "flops_weight", "df_flops", "df_flops_weight", "df_flops_mean_w"} <= set(
        out.parts
    )
    # same warm-up as FLOPS: step 50 of 100 -> 0.2 * (1/2)^2 = 0.05
    assert out.parts["df_flops_weight"].item() == pytest.approx(0.05)
    assert out.parts["df_flops"].item() == pytest.approx(penalty, abs=1e-12)
    expected = 0.3524047 + 0.1 * 1.625 + 0.05 * penalty
    assert out.total.item() == pytest.approx(expected, abs=1e-7)
    rebuilt = sum(
        out.parts[name].item() * out.parts[f"{name}_weight"].item()
        for name in ("infonce", "flops", "df_flops")
    )
    assert out.total.item() == pytest.approx(rebuilt, abs=1e-12)
    out.total.backward()
    assert d.grad.abs().sum().item() > 0 and idf.grad is None
    assert loss(queries=t(Q), documents=t(D), n_negatives=1, step=0).parts["df_flops_weight"] == 0
    # weighting a low-idf token raises the penalty more than the same mass on a high-idf token
    low, high = torch.zeros(1, 4, dtype=F64), torch.zeros(1, 4, dtype=F64)
    low[0, 0], high[0, 3] = 1.0, 1.0
    assert DfFlopsLoss(idf)(low).total.item() > DfFlopsLoss(idf)(high).total.item()


def test_loss_output_rejects_non_scalars() -> None:
    with pytest.raises(ValueError, match="scalar"):
        LossOutput(torch.zeros(2))
    with pytest.raises(ValueError, match="part 'x'"):
        LossOutput(torch.tensor(1.0), {"x": torch.zeros(3)})
    assert LossOutput(torch.tensor(1.5), {"a": torch.tensor(2.0)}).scalars() == {"a": 2.0}
