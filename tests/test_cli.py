"""`python evaluate.py`: reports, JSON output, listing, and clean failures."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from evaluate import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_evaluates_a_beir_directory_and_writes_a_report(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        ["--dataset", str(tiny_beir), "--model", "bm25-ko", "--model", "bm25-plain",
         "--metric", "ndcg@10", "--metric", "recall@100", "--output", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    flat = json.loads(result.stdout[result.stdout.index("[") :])
    assert {(r["retriever"], r["metric"]) for r in flat} == {
        (m, k) for m in ("bm25-ko", "bm25-plain") for k in ("ndcg@10", "recall@100")
    }
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["significance"] == {"test": "student", "max_p": 0.05, "seed": 42}
    assert "ranx" in doc["versions"] and doc["elapsed_s"] > 0
    ko, plain = doc["results"]
    assert ko["dataset"] == "tiny" and ko["split"] == "test" and ko["n_queries"] == 4
    assert ko["spec"]["params"]["analyzer"] == "kiwi"
    assert set(ko["per_query"]["ndcg@10"]) == {"q1", "q2", "q3", "q4"}
    assert ko["significance"] == {} and plain["significance"]["ndcg@10"]["baseline"] == "bm25-ko"
    # Kiwi finds "이미지를 자르려면" -> 자르기 도구 (d2); whitespace words cannot
    assert ko["per_query"]["ndcg@10"]["q1"] > plain["per_query"]["ndcg@10"]["q1"]
    lines = gzip.decompress((out / ko["run_file"]).read_bytes()).decode().splitlines()
    assert lines[0].split()[:4] == ["q1", "Q0", "d2", "1"] and lines[0].endswith(" bm25-ko")
    report = (out / "report.md").read_text()
    assert "| tiny | test | bm25-ko | 4 |" in report


def test_unknown_names_fail_with_the_valid_ones(tiny_beir: Path, tmp_path: Path) -> None:
    cases = [
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--dataset", str(tiny_beir), "--model", "bm26"], "unknown retriever 'bm26'; registered: bm25"),
        (["--dataset", str(tiny_beir), "--metric", "ndcg@x"], "unknown metric 'ndcg@x'"),
        (["--dataset", str(tiny_beir), "--stat-test", "t"], "unknown significance test 't'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, [*args, "--output", str(tmp_path / "r")])
        assert result.exit_code == 2
        assert message in " ".join(result.output.split())
        assert not (tmp_path / "r").exists()


def test_failure_midway_leaves_no_report_directory(tiny_beir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "qrels").mkdir()
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"_id": "d1", "text": "y"}\n')
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (bad / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    out = tmp_path / "r"
    result = runner.invoke(app, ["--dataset", str(tiny_beir), "--dataset", str(bad), "--output", str(out)])
    assert result.exit_code == 2
    assert "corpus.jsonl:2: duplicate document id 'd1'" in " ".join(result.output.split())
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".r")]


def test_existing_output_directory_is_refused(tiny_beir: Path, tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    result = runner.invoke(app, ["--dataset", str(tiny_beir), "--output", str(tmp_path / "r")])
    assert result.exit_code == 2 and "already exists" in result.output


def test_list_shows_retrievers_and_datasets() -> None:
    result = runner.invoke(app, ["list"], terminal_width=200)
    assert result.exit_code == 0
    for name in ("bm25-ko", "bm25-plain", "scifact", "miracl-ko", "beir_zip"):
        assert name in result.output


def test_help_is_instant_without_heavy_imports() -> None:
    heavy = "('ranx', 'bm25s', 'kiwipiepy', 'numpy')"
    code = f"import sys, evaluate; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_model_directory_and_idf_command(tiny_checkpoint: Path, tiny_beir: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.numpy import load_file, save_file

    model = Path(shutil.copytree(tiny_checkpoint, tmp_path / "model"))
    (model / "idf.json").unlink()
    query_weights = model / "query_0_SparseStaticEmbedding" / "model.safetensors"
    stale = np.zeros_like(load_file(query_weights)["weight"])
    save_file({"weight": stale}, str(query_weights))  # weights that no idf.json gives
    out = tmp_path / "report"
    args = ["--dataset", str(tiny_beir), "--model", "bm25-plain", "--model", str(model), "--output", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "idf.json not found" in " ".join(result.output.split())
    result = runner.invoke(
        app, ["idf", "--model", str(model), "--dataset", str(tiny_beir)], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "keys not round-tripping to an id" in result.output and (model / "idf.json").is_file()
    # the checkpoint's sentence-transformers query weights follow the new idf.json
    from models.checkpoint import load_idf, load_tokenizer

    idf = load_idf(model, load_tokenizer(model))
    after = load_file(query_weights)["weight"]
    special = idf.special_ids
    assert after[special].tolist() == [0.0] * len(special)
    np.testing.assert_allclose(np.delete(after, special), np.delete(idf.weights, special), rtol=1e-6)
    token_ids = ["--key-format", "token_id", "--force"]
    refused = runner.invoke(app, ["idf", "--model", str(model), "--dataset", str(tiny_beir), *token_ids])
    assert refused.exit_code == 2 and "keyed by token string" in " ".join(refused.output.split())
    again = runner.invoke(app, ["idf", "--model", str(model), "--dataset", str(tiny_beir)])
    assert again.exit_code == 2 and "exists; pass --force" in " ".join(again.output.split())
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    splade_row = doc["results"][1]
    assert splade_row["retriever"] == str(model) and splade_row["spec"]["family"] == "splade-doc"
    assert {"doc_active_mean", "query_active_mean", "flops", "latency_p50_ms"} <= set(splade_row["stats"])
    assert "## Efficiency" in (out / "report.md").read_text()
