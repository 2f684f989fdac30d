"""The negatives step: mining shared with the trainer, near-duplicates, sampling, the mined file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from common.errors import WorkbenchError
from common.files import read_jsonl
from harness.prepare.negatives import (
    build_negatives,
    is_near_duplicate,
    mine_negatives,
    mined_path,
    read_mined_negatives,
    register,
)

CORPUS = {
    "d1": ("", "red apple pie"),
    "d2": ("", "Red  APPLE pie"),  # the positive's text after case and space folding
    "d3": ("", "red apple tart recipe"),
    "d4": ("", "red car"),
    "d5": ("", "green apple"),
    "d6": ("", "blue sky"),
    "d7": ("", "apple red pie pie"),  # the same word set as the positive: Jaccard 1
}
QUERIES = {"q1": "red apple", "q2": "blue sky"}
QRELS = {"train": [("q1", "d1", 1), ("q2", "d6", 1)], "test": [("q1", "d3", 1)]}


@pytest.fixture
def data(tmp_path: Path, make_beir) -> Path:
    return make_beir(tmp_path / "data", CORPUS, QUERIES, QRELS)


def test_near_duplicates_by_hand() -> None:
    assert is_near_duplicate("Red  APPLE pie", "red apple pie", 0.99)
    assert is_near_duplicate("ＲＥＤ apple", "red apple", 0.99)  # NFKC: full-width letters
    # {a, b, c, d} and {a, b, c, e}: Jaccard 3/5
    assert is_near_duplicate("a b c d", "a b c e", 0.6)
    assert not is_near_duplicate("a b c d", "a b c e", 0.61)
    assert not is_near_duplicate("", "a", 0.5) and is_near_duplicate("", "", 0.5)


def test_mining_excludes_positives_and_near_duplicates(data: Path) -> None:
    from harness.datasets import load_beir

    dataset = load_beir(data, splits=["train"])
    plain = mine_negatives(dataset, "train", 3, "bm25-plain", depth=10)
    # d1 is judged; d2 is the shortest match; d3 and d7 (both 4 words) tie, broken by id
    assert plain[("q1", "d1")] == ["d2", "d3", "d7"]
    filtered = mine_negatives(dataset, "train", 3, "bm25-plain", depth=10, near_duplicate=0.9)
    assert filtered == {("q1", "d1"): ["d3", "d4", "d5"], ("q2", "d6"): []}
    # Jaccard of d3 with the positive is 2/5: a threshold of 0.4 drops it too
    assert mine_negatives(dataset, "train", 1, "bm25-plain", 10, near_duplicate=0.4)[("q1", "d1")] == ["d4"]
    assert mine_negatives(dataset, "train", 0, "bm25-plain") == {}


def test_random_sampling_is_seeded_and_keeps_rank_order(data: Path) -> None:
    from harness.datasets import load_beir

    dataset = load_beir(data, splits=["train"])
    candidates = ["d3", "d4", "d5"]

    def draw(seed: int) -> list[str]:
        mined = mine_negatives(dataset, "train", 2, "bm25-plain", 10, 0.9, "random", seed)
        return mined[("q1", "d1")]

    draws = [draw(seed) for seed in range(8)]
    assert draws[0] == draw(0)
    for picked in draws:
        assert len(picked) == 2 and picked == [d for d in candidates if d in picked]
    assert len({tuple(d) for d in draws}) > 1  # 8 seeds do not all draw the same two of three


def test_step_output_is_read_by_build_examples(data: Path, tmp_path: Path) -> None:
    from harness.training import build_examples
    from models.config import TrainingConfig

    out = tmp_path / "mined"
    manifest = build_negatives(data, out, count=2, retriever="bm25-plain", depth=10)
    lines = [obj for _, obj in read_jsonl(mined_path(out, "train"))]
    assert lines == [
        {"query_id": "q1", "positive_id": "d1", "negative_ids": ["d3", "d4"]},
        {"query_id": "q2", "positive_id": "d6", "negative_ids": []},
    ]
    assert manifest["counts"] == {"pairs": 2, "negatives": 2, "pairs with fewer negatives": 1}
    assert sorted(manifest["copied"]) == [
        "corpus.jsonl",
        "qrels/test.tsv",
        "qrels/train.tsv",
        "queries.jsonl",
    ]
    assert (out / "corpus.jsonl").read_bytes() == (data / "corpus.jsonl").read_bytes()
    # a re-run with the same input and parameters is a no-op
    assert build_negatives(data, out, count=2, retriever="bm25-plain", depth=10) == manifest
    # build_examples reads the file (not mining: q2's empty list is topped up at random)
    mined_path(out, "train").write_text(
        json.dumps({"query_id": "q1", "positive_id": "d1", "negative_ids": ["d6", "d4"]})
        + "\n"
        + json.dumps({"query_id": "q2", "positive_id": "d6", "negative_ids": ["d2"]})
        + "\n"
    )
    config = TrainingConfig.model_validate(
        {
            "name": "n",
            "output_dir": str(tmp_path / "run"),
            "data": {"train": [str(out)], "hard_negatives": 1, "negatives_retriever": "bm25-ko"},
        }
    )
    examples, _, _ = build_examples(config)
    assert [(e.query, e.positive, e.negatives) for e in examples] == [
        ("red apple", "red apple pie", ("blue sky",)),
        ("blue sky", "blue sky", ("Red  APPLE pie",)),
    ]


def test_mined_file_errors_name_the_line(data: Path, tmp_path: Path) -> None:
    from harness.datasets import load_beir

    (data / "negatives").mkdir()
    path = mined_path(data, "train")
    path.write_text(json.dumps({"query_id": "q1", "positive_id": "d1", "negative_ids": ["d9"]}) + "\n")
    dataset = load_beir(data, splits=["train"])
    with pytest.raises(WorkbenchError, match=r"train.jsonl:1: negative 'd9' is not a document"):
        read_mined_negatives(dataset, "train")
    path.write_text(json.dumps({"query_id": "q1", "positive_id": "d3", "negative_ids": []}) + "\n")
    with pytest.raises(WorkbenchError, match=r"train.jsonl:1: \('q1', 'd3'\) is not a judged pair"):
        read_mined_negatives(dataset, "train")
    path.write_text(json.dumps({"query_id": "q1", "positive_id": "d1", "negative_ids": []}) + "\n{bad\n")
    with pytest.raises(WorkbenchError, match=r"train.jsonl:2: malformed JSON"):
        read_mined_negatives(dataset, "train")
    path.write_text(json.dumps({"query_id": "q1", "positive_id": "d1", "negative_ids": []}) + "\n")
    with pytest.raises(WorkbenchError, match=r"no line for the judged pair \('q2', 'd6'\)"):
        read_mined_negatives(dataset, "train")


def test_cli(data: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as the pipeline's CLI is: the command is named
    register(app)
    runner = CliRunner()
    args = ["negatives", str(data), "--out", str(tmp_path / "o"), "--retriever", "bm25-plain", "--count", "1"]
    result = runner.invoke(app, [*args, "--sampling", "random", "--seed", "4"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["params"]["sampling"] == "random" and manifest["params"]["near_duplicate"] == 0.9
    result = runner.invoke(app, [*args, "--sampling", "best"])
    assert result.exit_code == 2 and "--sampling must be 'top' or 'random'" in result.output
    result = runner.invoke(app, [*args, "--split", "dev"])
    assert result.exit_code == 2 and "dev.tsv" in result.output
