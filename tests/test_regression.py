"""Expected-score checks: the verdict rule, and the embedded tasks' regression anchors (slow tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.registry import dataset_registry
from harness.retrievers import get_retriever
from harness.runner import EvalConfig, check_expected, evaluate_all


def test_verdicts_follow_the_tolerances() -> None:
    checks = check_expected(
        {"ndcg@10": 0.5, "mrr@10": 0.5, "recall@100": 0.5, "map@1000": 0.5, "absent": 1.0},
        {"ndcg@10": 0.50004, "mrr@10": 0.509, "recall@100": 0.489, "map@1000": 0.5},
    )
    assert {m: c["verdict"] for m, c in checks.items()} == {
        "ndcg@10": "OK",
        "mrr@10": "OKish",
        "recall@100": "FAIL",
        "map@1000": "OK",
    }
    assert checks["recall@100"]["delta"] == pytest.approx(-0.011)


@pytest.mark.slow
def test_embedded_tasks_reproduce_their_anchors(tmp_path: Path) -> None:
    """The default run reproduces the scores pinned in datasets_cfg/gimp-*.yaml."""
    registry = dataset_registry()
    datasets = [spec for spec in registry.values() if spec.default]
    assert {spec.name for spec in datasets} == {"gimp-ko", "gimp-ko-en", "gimp-en"}
    retrievers = [get_retriever("bm25-ko"), get_retriever("bm25-plain")]
    rows, warnings = evaluate_all(datasets, retrievers, EvalConfig(), tmp_path)
    assert warnings == []
    assert len(rows) == 6
    for row in rows:
        assert row.verdict == "OK", (row.dataset, row.retriever, row.checks)
        assert set(row.checks) == set(EvalConfig().metrics)
    ko = {row.retriever: row for row in rows if row.dataset == "gimp-ko"}
    # the morphological analyzer finds significantly more of the relevant sections
    assert ko["bm25-plain"].significance["recall@100"]["significant"]
    assert ko["bm25-plain"].significance["recall@100"]["delta"] < 0


def test_a_shallow_top_k_leaves_the_deeper_expectations_unchecked(tmp_path: Path) -> None:
    registry = dataset_registry()
    config = EvalConfig(top_k=100)
    rows, warnings = evaluate_all([registry["gimp-ko"]], [get_retriever("bm25-ko")], config, tmp_path)
    assert warnings == [
        "top-k 100 is shallower than recall@1000, map@1000: those metrics see only the top 100"
    ]
    (row,) = rows
    assert set(row.checks) == {"ndcg@10", "mrr@10", "recall@100"}  # recall@1000 of a top 100 is not one
    assert row.verdict == "OK"
