"""`evaluate.py compare`: stored runs compared on hand-computed values, against scipy, and end to end
on a leaderboard that `evaluate.py` wrote for the tiny BEIR fixture."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CORPUS, TINY_QRELS, TINY_QUERIES, write_beir
from scipy.stats import ttest_rel
from typer.testing import CliRunner

from common.errors import WorkbenchError
from evaluate import app
from harness.compare import CompareSettings, Comparison, RunScores, compare, load_runs
from harness.evaluation import read_trec_run
from harness.session import record_report

runner = CliRunner()
METRICS = ["ndcg@10", "recall@100"]


def _run(name: str, dataset: str, values: dict[str, list[float]]) -> RunScores:
    """A run whose per-query values are `values[metric]`, queries q1, q2, ..."""
    per_query = {m: {f"q{i}": v for i, v in enumerate(vs, start=1)} for m, vs in values.items()}
    means = {m: float(np.mean(vs)) for m, vs in values.items()}
    return RunScores(name, dataset, "test", means, per_query, source=f"hand {name}")


def _by(comparisons: list[Comparison], metric: str, dataset: str, candidate: str) -> Comparison:
    (found,) = [c for c in comparisons if (c.metric, c.dataset, c.candidate) == (metric, dataset, candidate)]
    return found


def test_hand_computed_comparisons_with_holm_across_models_and_datasets() -> None:
    # toy: A is the baseline of B and C; toy2: A2 of B2. Each metric's family: 3 comparisons
    runs = [
        _run("A", "toy", {"ndcg@10": [0.5, 0.2, 0.8, 0.4, 0.0], "recall@100": [1, 0.5, 1, 0.5, 0]}),
        _run("B", "toy", {"ndcg@10": [0.7, 0.2, 0.9, 0.6, 0.3], "recall@100": [1, 1, 1, 0.5, 0.5]}),
        _run("C", "toy", {"ndcg@10": [0.5, 0.2, 0.8, 0.4, 1.0], "recall@100": [0.5, 0.5, 0, 0.5, 0]}),
        _run("A2", "toy2", {"ndcg@10": [0.1, 0.2, 0.3, 0.4], "recall@100": [0, 1, 1, 0]}),
        _run("B2", "toy2", {"ndcg@10": [0.3, 0.3, 0.3, 0.9], "recall@100": [1, 1, 1, 1]}),
    ]
    found = compare(runs, METRICS, CompareSettings(max_p=0.2))
    assert len(found) == 6
    ndcg_b, ndcg_c, ndcg_b2 = (
        _by(found, "ndcg@10", d, c) for d, c in (("toy", "B"), ("toy", "C"), ("toy2", "B2"))
    )
    assert (ndcg_b.baseline, ndcg_c.baseline, ndcg_b2.baseline) == ("A", "A", "A2")
    assert ndcg_b.baseline_score == pytest.approx(0.38) and ndcg_b.candidate_score == pytest.approx(0.54)
    assert (ndcg_b.delta, ndcg_c.delta, ndcg_b2.delta) == pytest.approx((0.16, 0.2, 0.2))
    assert [(c.wins, c.ties, c.losses, c.queries) for c in (ndcg_b, ndcg_c, ndcg_b2)] == [
        (4, 1, 0, 5), (1, 4, 0, 5), (3, 1, 0, 4),
    ]  # fmt: skip
    # raw p from scipy; Holm by hand: p(1) < p(2) < p(3) get x3, x2, x1, kept monotone
    p_b = ttest_rel([0.7, 0.2, 0.9, 0.6, 0.3], [0.5, 0.2, 0.8, 0.4, 0.0]).pvalue
    p_c = ttest_rel([0.5, 0.2, 0.8, 0.4, 1.0], [0.5, 0.2, 0.8, 0.4, 0.0]).pvalue
    p_b2 = ttest_rel([0.3, 0.3, 0.3, 0.9], [0.1, 0.2, 0.3, 0.4]).pvalue
    assert p_b < p_b2 < p_c
    assert (ndcg_b.p_value, ndcg_c.p_value, ndcg_b2.p_value) == pytest.approx((p_b, p_c, p_b2), rel=1e-12)
    assert ndcg_b.p_holm == pytest.approx(3 * p_b)  # 0.105: below 0.05 raw, not after Holm; below max_p 0.2
    assert ndcg_b2.p_holm == pytest.approx(2 * p_b2)  # 0.322
    assert ndcg_c.p_holm == pytest.approx(p_c)  # 0.374
    assert [c.significant for c in (ndcg_b, ndcg_c, ndcg_b2)] == [True, False, False]
    # recall@100: diffs B [0, .5, 0, 0, .5], C [-.5, 0, -1, 0, 0], B2 [1, 0, 0, 1]
    rec_b, rec_c, rec_b2 = (
        _by(found, "recall@100", d, c) for d, c in (("toy", "B"), ("toy", "C"), ("toy2", "B2"))
    )
    assert (rec_b.delta, rec_c.delta, rec_b2.delta) == pytest.approx((0.2, -0.3, 0.5))
    assert [(c.wins, c.ties, c.losses) for c in (rec_b, rec_c, rec_b2)] == [(2, 3, 0), (0, 3, 2), (2, 2, 0)]
    r_b = ttest_rel([1, 1, 1, 0.5, 0.5], [1, 0.5, 1, 0.5, 0]).pvalue
    r_c = ttest_rel([0.5, 0.5, 0, 0.5, 0], [1, 0.5, 1, 0.5, 0]).pvalue
    r_b2 = ttest_rel([1, 1, 1, 1], [0, 1, 1, 0]).pvalue
    assert r_b < r_b2 < r_c
    # 2 * r_b2 (0.363) is below 3 * r_b (0.533): monotonicity lifts it, and r_c (0.208) too
    assert (rec_b.p_holm, rec_b2.p_holm, rec_c.p_holm) == pytest.approx((3 * r_b, 3 * r_b, 3 * r_b))
    # bootstrap, small enough to enumerate: C's ndcg diffs [0, 0, 0, 0, 1] resample to k/5 with k ~
    # Binomial(5, 1/5): P(k = 0) = 0.33 > 2.5%, P(k <= 2) = 0.94 < 97.5% <= P(k <= 3) = 0.99
    assert (ndcg_c.ci_low, ndcg_c.ci_high) == pytest.approx((0.0, 0.6))
    # B2's recall diffs [1, 0, 0, 1]: k/4 with k ~ Binomial(4, 1/2), P(k = 0) = P(k = 4) = 6.25%
    assert (rec_b2.ci_low, rec_b2.ci_high) == pytest.approx((0.0, 1.0))
    for c in found:
        assert c.ci_low <= c.delta + 1e-12 and c.delta <= c.ci_high + 1e-12


def test_student_test_matches_scipy_on_random_data() -> None:
    rng = np.random.default_rng(11)
    runs = []
    for dataset, n in (("d1", 40), ("d2", 25)):
        base = rng.random(n)
        runs.append(_run("base", dataset, {"ndcg@10": list(base)}))
        for name, shift in (("small", 0.02), ("large", 0.15)):
            runs.append(
                _run(name, dataset, {"ndcg@10": list(np.clip(base + shift + rng.normal(0, 0.2, n), 0, 1))})
            )
    found = compare(runs, ["ndcg@10"])
    assert len(found) == 4
    for c in found:
        base = next(r for r in runs if (r.dataset, r.name) == (c.dataset, "base")).per_query["ndcg@10"]
        cand = next(r for r in runs if (r.dataset, r.name) == (c.dataset, c.candidate)).per_query["ndcg@10"]
        qids = sorted(base)
        expected = ttest_rel([cand[q] for q in qids], [base[q] for q in qids]).pvalue
        assert c.p_value == pytest.approx(expected, rel=1e-12)
        assert c.wins + c.ties + c.losses == c.queries == len(qids)
    assert _by(found, "ndcg@10", "d1", "large").p_value < 1e-3  # a real difference is found
    fisher = compare(runs, ["ndcg@10"], CompareSettings(test="fisher", seed=5))
    assert fisher == compare(runs, ["ndcg@10"], CompareSettings(test="fisher", seed=5))  # seeded
    assert [c.p_value for c in fisher] != [c.p_value for c in found]


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_trec_run_files_are_read_by_score_then_docid(tmp_path: Path) -> None:
    text = "q1 Q0 b 1 2.0 run-a\nq1 Q0 a 2 2.0 run-a\n\nq1 Q0 c 3 3.5 run-a\nq2 Q0 a 1 1.0 run-a\n"
    for name in ("r.trec", "r.trec.gz"):
        ranking = read_trec_run(_write(tmp_path / name, text))
        assert ranking.name == "run-a"
        assert [(qid, docs, scores.tolist()) for qid, docs, scores in ranking.items()] == [
            ("q1", ["c", "a", "b"], [3.5, 2.0, 2.0]), ("q2", ["a"], [1.0]),
        ]  # fmt: skip
    bad = {
        "q1 Q0 a 1 2.0\n": ":1: expected 6 columns (qid Q0 docid rank score tag), found 5",
        "q1 Q0 a 1 2.0 t\nq1 Q0 b one 1.0 t\n": ":2: rank 'one' must be an integer and score '1.0' a number",
        "q1 Q0 a 1 nan t\n": ":1: score 'nan' is not finite",
        "q1 Q0 a 1 2.0 t\nq1 Q0 b 2 1.0 u\n": ":2: run tag 'u' after 't'; a run file holds one run",
        "q1 Q0 a 1 2.0 t\nq2 Q0 a 1 2.0 t\nq1 Q0 a 2 1.0 t\n": ":3: document 'a' listed twice for 'q1'",
        "\n": ": no run lines",
    }
    for text, message in bad.items():
        path = _write(tmp_path / "bad.trec", text)
        with pytest.raises(WorkbenchError) as caught:
            read_trec_run(path)
        assert str(caught.value) == f"{path}{message}"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The tiny BEIR fixture's data evaluated once by `evaluate.py` with bm25-ko then bm25-plain
    (leaderboard rows #1 and #2), with a private cache."""
    root = tmp_path_factory.mktemp("compare")
    data = write_beir(root / "tiny", TINY_CORPUS, TINY_QUERIES, TINY_QRELS)
    board, report = root / "board.sqlite", root / "report"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_CACHE", str(root / "cache"))
        result = runner.invoke(
            app,
            ["--dataset", str(data), "--model", "bm25-ko", "--model", "bm25-plain", "--output", str(report),
             "--leaderboard", str(board), "--metric", "ndcg@10", "--metric", "recall@100"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        yield {"data": data, "board": board, "report": report, "runs": report / "runs"}


KO = {"q1": 1.0, "q2": 1.0, "q3": 1.0, "q4": 1.0}
PLAIN = {"q1": 0.0, "q2": 1.0, "q3": 1.0, "q4": 0.0}  # whitespace words miss 자르려면 and 밝기와


def test_load_runs_by_model_row_id_and_run_file(evaluated: dict[str, Path], tmp_path: Path) -> None:
    board, data, runs_dir = evaluated["board"], evaluated["data"], evaluated["runs"]
    by_model = load_runs(["bm25-ko", "bm25-plain"], [], board, METRICS)  # datasets: those in common
    assert [(r.name, r.dataset, r.split, r.source) for r in by_model] == [
        ("bm25-ko", "tiny", "test", "leaderboard #1"), ("bm25-plain", "tiny", "test", "leaderboard #2"),
    ]  # fmt: skip
    assert [r.per_query["ndcg@10"] for r in by_model] == [KO, PLAIN]
    assert [r.metrics["ndcg@10"] for r in by_model] == [1.0, 0.5]
    by_id = load_runs(["#2", "1"], [str(data)], board, METRICS)  # a BEIR directory names its dataset
    assert [(r.name, r.source) for r in by_id] == [
        ("bm25-plain", "leaderboard #2"),
        ("bm25-ko", "leaderboard #1"),
    ]
    assert [r.per_query for r in by_id] == [by_model[1].per_query, by_model[0].per_query]
    files = [str(runs_dir / "tiny.test.bm25-ko.trec.gz"), str(runs_dir / "tiny.test.bm25-plain.trec.gz")]
    rescored = load_runs(files, [str(data)], board, METRICS)
    assert [(r.name, r.source) for r in rescored] == [("bm25-ko", f"run file {files[0]}"),
                                                      ("bm25-plain", f"run file {files[1]}")]  # fmt: skip
    for again, stored in zip(rescored, by_model, strict=True):
        assert again.per_query == stored.per_query and again.metrics == stored.metrics
        assert again.dataset_checksum == stored.dataset_checksum
    # the same model from the leaderboard and as a run file: both named apart, nothing differs
    mixed = load_runs(["bm25-ko", files[0]], [str(data)], board, METRICS)
    assert [r.name for r in mixed] == ["bm25-ko #1", "bm25-ko (tiny.test.bm25-ko.trec.gz)"]
    (same, _) = compare(mixed, METRICS)
    assert (same.delta, same.p_value, same.wins, same.ties, same.losses) == (0.0, 1.0, 0, 4, 0)
    # a model evaluated twice: its latest row, saying so
    twice = tmp_path / "board.sqlite"
    copy = Path(shutil.copytree(evaluated["report"], tmp_path / "report-again"))
    assert record_report(evaluated["report"], twice) == 2 and record_report(copy, twice) == 2
    latest = load_runs(["bm25-plain", "#1"], [], twice, METRICS)
    assert [(r.name, r.source) for r in latest] == [
        ("bm25-plain", "leaderboard #4, the latest of 2"), ("bm25-ko", "leaderboard #1"),
    ]  # fmt: skip


def test_cli_compare_prints_the_table_and_the_settings_and_writes_json(
    evaluated: dict[str, Path], tmp_path: Path
) -> None:
    board, out = evaluated["board"], tmp_path / "compare.json"
    args = ["compare", "bm25-ko", "bm25-plain", "--leaderboard", str(board), "--json", "--output", str(out)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    p = ttest_rel([0, 1, 1, 0], [1, 1, 1, 1]).pvalue  # 0.1817
    # diffs [-1, 0, 0, -1]: the bootstrap means are -k/4, k ~ Binomial(4, 1/2), so the CI is [-1, 0]
    line = f"│ tiny │ test │ bm25-ko │ bm25-plain │ 1.0000 │ 0.5000 │ -0.5000 │ [-1.0000, +0.0000] │ {p:.4f} │ {p:.4f} │ │ 0/2/2 │ 4 │"  # noqa: E501
    assert text.count(line) == 2  # ndcg@10 and recall@100 agree on these four queries
    assert "ndcg@10: each candidate against the baseline" in text and "recall@100: each" in text
    assert "tiny/test: baseline bm25-ko (leaderboard #1); bm25-plain (leaderboard #2)" in text
    assert ("test: student (paired t-test); threshold: p Holm < 0.05; family: 1 per metric; seed: 42; "
            "bootstrap: 10,000 resamples, 95% confidence") in text  # fmt: skip
    document = json.loads(result.stdout)
    assert json.loads(out.read_text()) == document
    assert document["settings"] == {"test": "student", "max_p": 0.05, "seed": 42, "n_resamples": 10_000,
                                    "confidence": 0.95}  # fmt: skip
    assert document["metrics"] == METRICS and document["family_size"] == 1
    expected = compare(load_runs(["bm25-ko", "bm25-plain"], [], board, METRICS), METRICS)
    assert document["comparisons"] == [c.to_json() for c in expected]
    assert [r["source"] for r in document["runs"]] == ["leaderboard #1", "leaderboard #2"]
    # another test and seed reach the output
    result = runner.invoke(
        app, ["compare", "#1", "#2", "--leaderboard", str(board), "--stat-test", "fisher", "--seed", "3",
              "--metric", "ndcg@10", "--json", "--resamples", "500", "--confidence", "0.9"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "test: fisher (randomisation, 500 sign flips)" in result.output and "seed: 3;" in result.output
    (fisher,) = json.loads(result.stdout)["comparisons"]
    assert fisher["p_value"] == pytest.approx(0.5, abs=0.06)  # 2 of 4 sign patterns reach |mean| 0.5


def test_cli_compare_errors_name_the_problem(evaluated: dict[str, Path], tmp_path: Path) -> None:
    board, data = str(evaluated["board"]), str(evaluated["data"])
    run_file = str(evaluated["runs"] / "tiny.test.bm25-ko.trec.gz")
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d2 1 3.0 mine\nq2 Q0 d1 1\n")
    cases = [
        (["bm25-ko"], "compare needs at least 2 sources (the first is the baseline), got 1"),
        (["bm25-ko", "nope"], "unknown source 'nope': not a leaderboard row id, a run file, nor a model "
                              f"of the leaderboard {board} (models there: bm25-ko, bm25-plain)"),
        (["bm25-ko", "bm25-plain", "-d", "gimp-en"],
         f"model 'bm25-ko' has no evaluation of gimp-en/test in {board}; it has tiny/test"),
        (["bm25-ko", "bm25-plain", "-d", "no-such-set"], "unknown dataset 'no-such-set'"),
        (["bm25-ko", "bm25-plain", "--split", "dev"],
         f"model 'bm25-ko' has no evaluation of split dev in {board}; it has tiny/test"),
        (["#1", "bm25-plain", "-d", "gimp-en"],
         "leaderboard row #1 is of tiny/test; it cannot be compared on gimp-en"),
        (["#1", "#9"], f"no row #9 in the leaderboard {board} (2 rows)"),
        (["bm25-ko", "bm25-plain", "--stat-test", "z"],
         "unknown significance test 'z'; valid: student, fisher"),
        (["bm25-ko", "bm25-plain", "--metric", "ndcg@x"], "unknown metric 'ndcg@x'"),
        (["bm25-ko", "bm25-plain", "--metric", "mrr@10"],
         "bm25-ko (leaderboard #1) on tiny/test has no per-query mrr@10; it has ndcg@10, recall@100"),
        (["bm25-ko", "bm25-ko"],
         "tiny/test: 'bm25-ko #1' names more than one run (leaderboard #1, leaderboard #1)"),
        ([run_file, "bm25-plain"],
         f"run file {run_file}: name the one dataset to score it on with --dataset"),
        (["bm25-ko", str(bad), "-d", data],
         f"{bad}:2: expected 6 columns (qid Q0 docid rank score tag), found 4"),
    ]  # fmt: skip
    for args, message in cases:
        result = runner.invoke(app, ["compare", *args, "--leaderboard", board])
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), args
    missing = tmp_path / "none.sqlite"
    result = runner.invoke(app, ["compare", "bm25-ko", "bm25-plain", "--leaderboard", str(missing)])
    assert result.exit_code == 2
    assert f"'bm25-ko', 'bm25-plain': not run files, and there is no leaderboard at {missing}" in " ".join(
        result.output.split()
    )
