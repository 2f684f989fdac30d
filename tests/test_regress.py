"""`python evaluate.py regress`: the plan, the verdicts on hand-computed scores, the exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.errors import WorkbenchError
from evaluate import app
from harness.datasets.spec import DatasetSpec, Source
from harness.registry import dataset_registry
from harness.regress import plan_regressions, run_regressions

runner = CliRunner()


def _tiny_spec(path: Path, expected: dict[str, dict[str, float]]) -> DatasetSpec:
    return DatasetSpec(name="tiny", description="tiny", languages=["ko", "en"], splits=["test"],
                       source=Source(type="local", path=str(path)), expected=expected)  # fmt: skip


def test_the_plan_covers_the_expected_pairs_of_the_embedded_tasks() -> None:
    plan = {spec.name: names for spec, names in plan_regressions(dataset_registry(), embedded_only=True)}
    assert set(plan) == {"gimp-ko", "gimp-ko-en", "gimp-en"}
    assert {"bm25-ko", "bm25-plain", "idf-only-xlmr"} <= set(plan["gimp-ko"])
    assert {"splade-en-tiny", "splade-en-tiny-gimp", "idf-only-en"} <= set(plan["gimp-en"])
    only = plan_regressions(dataset_registry(), datasets=["gimp-ko"], models=["bm25-ko"])
    assert [(spec.name, names) for spec, names in only] == [("gimp-ko", ["bm25-ko"])]
    with pytest.raises(WorkbenchError, match="unknown dataset nope"):
        plan_regressions(dataset_registry(), datasets=["nope"])
    with pytest.raises(WorkbenchError, match="no expected scores for e5-small-nano"):
        plan_regressions(dataset_registry(), datasets=["gimp-ko"], models=["e5-small-nano"])


def test_verdicts_on_hand_computed_scores(tiny_beir: Path) -> None:
    # bm25-plain on the tiny set (whitespace words): q2 and q3 find their document first, q1 and q4
    # share no whole word with it, so nDCG@10 = recall@100 = (0 + 1 + 1 + 0) / 4 = 0.5
    expected = {"bm25-plain": {"ndcg@10": 0.5, "recall@100": 0.5}, "bm25-ko": {"ndcg@10": 0.6}}
    checks = run_regressions([(_tiny_spec(tiny_beir, expected), ["bm25-plain", "bm25-ko"])])
    verdicts = {(c.retriever, c.metric): (c.verdict, round(c.got, 6)) for c in checks}
    assert verdicts[("bm25-plain", "ndcg@10")] == ("OK", 0.5)
    assert verdicts[("bm25-plain", "recall@100")] == ("OK", 0.5)
    assert set(verdicts) == {("bm25-plain", "ndcg@10"), ("bm25-plain", "recall@100"), ("bm25-ko", "ndcg@10")}
    ko = next(c for c in checks if c.retriever == "bm25-ko")
    assert ko.delta == pytest.approx(ko.got - 0.6)


def test_the_command_exits_1_on_a_fail(tiny_beir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.registry

    for value, verdict, code in ((0.5, "OK", 0), (0.505, "OKish", 0), (0.52, "FAIL", 1)):
        spec = _tiny_spec(tiny_beir, {"bm25-plain": {"ndcg@10": value}})
        monkeypatch.setattr(harness.registry, "dataset_registry", lambda spec=spec: {"tiny": spec})
        result = runner.invoke(app, ["regress"])
        assert result.exit_code == code, result.output
        counts = {v: int(v == verdict) for v in ("OK", "OKish", "FAIL")}
        assert ", ".join(f"{n} {v}" for v, n in counts.items()) + " of 1 expected scores" in result.output
        assert f"{value:.4f}" in result.output and "0.5000" in result.output
    result = runner.invoke(app, ["regress", "--dataset", "nope"])
    assert result.exit_code == 2 and "unknown dataset nope" in result.output


@pytest.mark.slow
def test_the_embedded_anchors_pass() -> None:
    """What CI checks: BM25, IDF-only, the offline pretrained models and the tiny model trained from
    its seed reproduce the scores their YAMLs expect (the trained one is trained here, minutes)."""
    result = runner.invoke(app, ["regress", "--embedded"])
    assert result.exit_code == 0, result.output
    assert re.search(r"\d+ OK, 0 OKish, 0 FAIL of \d+ expected scores", result.output), result.output
