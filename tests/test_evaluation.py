"""Metrics (hand-computed and against trec_eval), tie-breaking, significance, TREC run files."""

from __future__ import annotations

import copy
import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from ranx import Qrels, Run, compare
from ranx import evaluate as ranx_evaluate

from common.errors import WorkbenchError
from harness.evaluation import (
    RANX_METRICS,
    WinTieLoss,
    bootstrap_ci,
    evaluate_run,
    holm,
    paired_test,
    validate_metrics,
    win_tie_loss,
    write_trec_run,
)
from harness.ranking import Ranking


def test_hand_computed_metrics() -> None:
    qrels = {"q1": {"a": 1, "c": 2}, "q2": {"x": 1}}
    run = Ranking.from_dict({"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"y": 1.0}})
    result = evaluate_run(qrels, run, ["ndcg@10", "mrr@10", "recall@2", "map@1000"])
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    assert result.per_query["ndcg@10"] == pytest.approx({"q1": dcg / idcg, "q2": 0.0})
    assert result.per_query["mrr@10"] == {"q1": 1.0, "q2": 0.0}
    assert result.per_query["recall@2"] == {"q1": 0.5, "q2": 0.0}
    assert result.per_query["map@1000"] == pytest.approx({"q1": (1 + 2 / 3) / 2, "q2": 0.0})
    assert result.mean["mrr@10"] == 0.5


def test_ties_broken_by_docid_and_missing_queries_score_zero() -> None:
    qrels = {"q1": {"b": 1}, "q2": {"z": 1}}
    run = Ranking.from_dict({"q1": {"c": 1.0, "b": 1.0, "a": 1.0}})
    result = evaluate_run(qrels, run, ["mrr@10"])
    assert result.per_query["mrr@10"] == {"q1": 0.5, "q2": 0.0}  # order a, b, c


def test_inputs_are_not_modified() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = Ranking.from_dict({"q1": {"a": 0.5, "z": 0.25}, "q3": {"a": 1.0}})
    before_qrels, before_run = copy.deepcopy(qrels), run.to_dict()
    evaluate_run(qrels, run, ["ndcg@10"])
    assert qrels == before_qrels
    assert run.to_dict() == before_run


def test_ranking_orders_by_score_then_docid() -> None:
    ranking = Ranking(
        "r", ["d", "b", "c", "a"], {"q": (np.array([0, 1, 2, 3]), np.array([1.0, 2.0, 1.0, 1.0]))}
    )
    assert [(q, docs, s.tolist()) for q, docs, s in ranking.items()] == [
        ("q", ["b", "a", "c", "d"], [2.0, 1.0, 1.0, 1.0])
    ]
    assert ranking.to_ranx().to_dict() == {"q": {"b": 2.0, "a": 1.0, "c": 1.0, "d": 1.0}}
    assert "q" in ranking and len(ranking) == 1 and len(ranking.hits("other")[0]) == 0


def test_unknown_metric_lists_valid_names() -> None:
    with pytest.raises(WorkbenchError, match="unknown metric 'ndgc@10'; valid: hits, .*ndcg"):
        validate_metrics(["ndgc@10"])
    with pytest.raises(WorkbenchError, match="unknown metric 'ndcg@0'"):
        validate_metrics(["ndcg@0"])


def _random_case(seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for q in range(40):
        docs = [f"d{i}" for i in rng.choice(3000, size=1200, replace=False)]
        # distinct scores: trec_eval breaks ties by docid descending, the harness ascending
        scores = rng.permutation(len(docs)).astype(float) / 7 + 0.5
        run[f"q{q}"] = dict(zip(docs, scores.tolist(), strict=True))
        judged = rng.choice(3000, size=int(rng.integers(1, 30)), replace=False)
        qrels[f"q{q}"] = {f"d{i}": int(rng.integers(0, 3)) for i in judged}
        qrels[f"q{q}"][f"d{judged[0]}"] = 1 + int(rng.integers(0, 2))  # at least one relevant
        if q % 5 == 0:
            qrels[f"q{q}"][docs[0]] = 2  # a relevant document near the top
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_trec_eval(seed: int) -> None:
    qrels, run = _random_case(seed)
    ours = evaluate_run(
        qrels, Ranking.from_dict(run), ["ndcg@10", "mrr@10", "recall@100", "recall@1000", "map@1000"]
    )
    # trec_eval's measures, with the run cut to the depth each measure uses
    top = {q: dict(sorted(d.items(), key=lambda x: -x[1])[:1000]) for q, d in run.items()}
    top10 = {q: dict(sorted(d.items(), key=lambda x: -x[1])[:10]) for q, d in run.items()}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100,1000", "map"}).evaluate(top)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    for q in qrels:
        assert ours.per_query["ndcg@10"][q] == pytest.approx(full[q]["ndcg_cut_10"], abs=1e-6)
        assert ours.per_query["recall@100"][q] == pytest.approx(full[q]["recall_100"], abs=1e-6)
        assert ours.per_query["recall@1000"][q] == pytest.approx(full[q]["recall_1000"], abs=1e-6)
        assert ours.per_query["map@1000"][q] == pytest.approx(full[q]["map"], abs=1e-6)
        assert ours.per_query["mrr@10"][q] == pytest.approx(rr[q]["recip_rank"], abs=1e-6)


def test_parity_with_ranx_evaluate_on_ties_and_graded_qrels() -> None:
    """Every ranx metric equals ranx's own `evaluate` given the run in (-score, docid) order.

    Scores are rounded so that most results tie; ranx gets strictly decreasing scores in the
    Ranking's order, so both sides rank the same way and only the evaluation paths differ (ours
    builds ranx's arrays directly, with exact document numbers). Qrels are graded 0-3, with
    documents below the run's depth and outside the corpus.
    """
    rng = np.random.default_rng(7)
    doc_ids = [f"d{i}" for i in rng.permutation(4000)]
    hits, qrels = {}, {}
    for q in range(120):
        indices = rng.choice(len(doc_ids), size=int(rng.integers(1, 400)), replace=False)
        hits[f"q{q}"] = (indices, np.round(rng.normal(size=len(indices)), 1))
        judged = rng.choice(len(doc_ids) + 50, size=int(rng.integers(1, 25)), replace=False)
        qrels[f"q{q}"] = {f"d{i}": int(rng.integers(0, 4)) for i in judged}  # ids >= 4000: not in the corpus
        qrels[f"q{q}"][doc_ids[indices[0]]] = int(rng.integers(1, 4))  # something relevant in the run
    ranking = Ranking("r", doc_ids, hits)
    assert any(len(set(s.tolist())) < len(s) for _, _, s in ranking.items())  # ties to break
    metrics = [
        f"{name}@{k}" for name in RANX_METRICS if name not in ("r-precision", "bpref") for k in (5, 100)
    ]
    metrics += ["r-precision", "bpref", "map", "ndcg"]
    ours = evaluate_run(qrels, ranking, metrics)
    ordered = {qid: {d: float(len(docs) - i) for i, d in enumerate(docs)} for qid, docs, _ in ranking.items()}
    run = Run(ordered)
    ranx_evaluate(Qrels(qrels), run, metrics)
    for metric in metrics:
        expected = [run.scores[metric][q] for q in qrels]
        got = [ours.per_query[metric][q] for q in qrels]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, equal_nan=True, err_msg=metric)


def test_student_test_matches_ranx_compare() -> None:
    qrels, run = _random_case(3)
    rng = np.random.default_rng(9)
    noisy = {q: {d: s + rng.normal(0, 60) for d, s in docs.items()} for q, docs in run.items()}
    a = evaluate_run(qrels, Ranking.from_dict(run), ["ndcg@10"]).per_query["ndcg@10"]
    b = evaluate_run(qrels, Ranking.from_dict(noisy), ["ndcg@10"]).per_query["ndcg@10"]
    report = compare(
        Qrels(qrels), [Run(run, name="a"), Run(noisy, name="b")], ["ndcg@10"], stat_test="student", max_p=0.05
    )
    p_ranx = report.to_dict()["a"]["comparisons"]["b"]["ndcg@10"]
    assert paired_test(a, b, "student") == pytest.approx(p_ranx, rel=1e-9)


def test_fisher_randomisation_is_seeded_and_sensible() -> None:
    a = {f"q{i}": 0.5 + 0.01 * i for i in range(30)}
    same = dict(a)
    better = {q: v + 0.2 for q, v in a.items()}
    assert paired_test(a, same, "fisher") == 1.0
    assert paired_test(better, a, "fisher") < 0.001
    mixed = {q: v + (0.05 if i % 2 else -0.04) for i, (q, v) in enumerate(a.items())}
    assert paired_test(mixed, a, "fisher", seed=1) == paired_test(mixed, a, "fisher", seed=1)
    assert 0.3 < paired_test(mixed, a, "fisher") <= 1.0
    with pytest.raises(WorkbenchError, match="unknown significance test 'wilcox'"):
        paired_test(a, better, "wilcox")


def test_trec_run_file(tmp_path: Path) -> None:
    run = Ranking.from_dict({"q2": {"b": 1.0, "a": 1.0, "c": 2.5}, "q1": {"x": 0.125}})
    n = write_trec_run(run, tmp_path / "r.trec.gz", tag="bm25-ko")
    assert n == 4
    assert gzip.decompress((tmp_path / "r.trec.gz").read_bytes()).decode() == (
        "q1 Q0 x 1 0.125000 bm25-ko\n"
        "q2 Q0 c 1 2.500000 bm25-ko\n"
        "q2 Q0 a 2 1.000000 bm25-ko\n"
        "q2 Q0 b 3 1.000000 bm25-ko\n"
    )
    with pytest.raises(WorkbenchError, match="without spaces"):
        write_trec_run(run, tmp_path / "bad.trec", tag="two words")
    assert not (tmp_path / "bad.trec").exists()


def test_holm_adjusts_by_rank_and_stays_monotone() -> None:
    # by hand: sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max(0.06, 0.04)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_win_tie_loss_counts_the_shared_queries() -> None:
    a = {"q1": 0.5, "q2": 0.2, "q3": 0.0, "q4": 1.0, "only-a": 1.0}
    b = {"q1": 0.3, "q2": 0.2, "q3": 0.1, "q4": 0.5, "only-b": 0.0}
    assert win_tie_loss(a, b) == WinTieLoss(wins=2, ties=1, losses=1)
    assert win_tie_loss(b, a) == WinTieLoss(wins=1, ties=1, losses=2)


def test_bootstrap_interval_matches_a_direct_resampling() -> None:
    rng = np.random.default_rng(5)
    a = {f"q{i:02d}": float(v) for i, v in enumerate(rng.uniform(0, 1, 40))}
    b = {q: v - 0.05 + float(rng.normal(0, 0.1)) for q, v in a.items()}
    low, high = bootstrap_ci(a, b, n_resamples=2000, seed=3)
    # the same draws, one resample at a time
    qids = sorted(a)
    draws = np.random.default_rng(3).integers(0, len(qids), size=(2000, len(qids)))
    means = sorted(float(np.mean([a[qids[i]] - b[qids[i]] for i in row])) for row in draws)
    assert low == pytest.approx(np.quantile(means, 0.025), abs=1e-12)
    assert high == pytest.approx(np.quantile(means, 0.975), abs=1e-12)
    assert low < np.mean([a[q] - b[q] for q in qids]) < high
    constant = {q: v + 0.25 for q, v in a.items()}
    assert bootstrap_ci(constant, a) == pytest.approx((0.25, 0.25))
    with pytest.raises(WorkbenchError, match="no shared queries"):
        bootstrap_ci({"x": 1.0}, {"y": 1.0})
