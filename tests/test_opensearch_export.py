"""`evaluate.py export`: a release directory with everything OpenSearch needs for doc-only mode."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from common.errors import WorkbenchError
from common.files import sha256_file
from evaluate import app
from harness.opensearch import export_release
from harness.opensearch.export import CHUNK_BYTES
from models.checkpoint import load_encoder, load_tokenizer, save_checkpoint
from models.idf import IdfWeights, check_fidelity

TEXTS = [
    "Inference-free sparse retrieval encodes documents only.",
    "레이어 마스크는 레이어의 불투명도를 바꿉니다. Layer masks change the opacity of a layer.",
    "Short.",
    " ".join(["A document far longer than the inference length, about brushes and paint tools."] * 60),
]
QUERIES = ["레이어 마스크", "paint tools", "opacity of a layer"]


def _traced_vectors(zip_path: Path, name: str, texts: list[str], scratch: Path) -> np.ndarray:
    """What ML Commons computes from a SPARSE_ENCODING zip: its tokenizer.json, then its trace."""
    from tokenizers import Tokenizer

    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(scratch)
    tokenizer = Tokenizer.from_file(str(scratch / "tokenizer.json"))
    encodings = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])
    with torch.no_grad():
        return torch.jit.load(str(scratch / f"{name}.pt"))(ids, mask)["output"].numpy()


def _check_release(
    out: Path, name: str, source: str | Path, idf: IdfWeights, tmp_path: Path, version: str = "1.0.0",
    url_base: str | None = None,
) -> None:  # fmt: skip
    ml = out / "ml-commons"
    encoder = load_encoder(source, bf16=False, device="cpu")
    expected = encoder.encode(TEXTS).vectors.toarray()
    assert (expected > 0).sum(axis=1).min() > 3  # real vectors, not an empty comparison
    # the zips hold exactly their files; each register body names its zip's size and sha256
    zips = {
        "SPARSE_ENCODING": f"{name}-sparse-encoding.zip",
        "SPARSE_TOKENIZE": f"{name}-sparse-tokenize.zip",
    }
    members = {
        "SPARSE_ENCODING": {f"{name}.pt", "tokenizer.json"},
        "SPARSE_TOKENIZE": {"tokenizer.json", "idf.json"},
    }
    for function, file_name in zips.items():
        with zipfile.ZipFile(ml / file_name) as archive:
            assert set(archive.namelist()) == members[function]
        body = json.loads((ml / f"register-{function.lower().replace('_', '-')}.json").read_text())
        size = (ml / file_name).stat().st_size
        url = {"url": f"{url_base}{file_name}"} if url_base else {}
        assert body == url | {
            "name": name,
            "version": version,
            "description": body["description"],
            "model_format": "TORCH_SCRIPT",
            "function_name": function,
            "model_content_size_in_bytes": size,
            "model_content_hash_value": sha256_file(ml / file_name),
            "total_chunks": -(-size // CHUNK_BYTES),
        }
    # the trace, fed by the zip's own tokenizer.json (truncation at the inference length, padding)
    traced = _traced_vectors(ml / zips["SPARSE_ENCODING"], name, TEXTS, tmp_path / "encoding")
    np.testing.assert_allclose(traced, expected, atol=1e-5, rtol=1e-5)
    # idf.json of the tokenize zip, read through its tokenizer as OpenSearch reads it: no key lost
    scratch = tmp_path / "tokenize"
    with zipfile.ZipFile(ml / zips["SPARSE_TOKENIZE"]) as archive:
        archive.extractall(scratch)
    keys = json.loads((scratch / "idf.json").read_text(encoding="utf-8"))
    shutil.copy(out / "tokenizer_config.json", scratch)
    zipped_tokenizer = load_tokenizer(scratch)
    read_back = IdfWeights.from_json(scratch / "idf.json", zipped_tokenizer).weights
    plain = np.setdiff1d(np.arange(len(idf.weights)), encoder.special_ids)  # specials are not written
    np.testing.assert_array_equal(read_back[plain], idf.weights[plain])
    source_report = check_fidelity(encoder.tokenizer, keys, QUERIES)
    report = check_fidelity(zipped_tokenizer, keys, QUERIES)
    assert (report.keys, report.not_round_trip, report.missing_query_tokens) == (
        source_report.keys,
        source_report.not_round_trip,
        source_report.missing_query_tokens,
    )
    # one key per distinct decoded string of the non-special ids: none lost on the way out
    assert report.keys == len({encoder.tokenizer.decode([int(i)]) for i in plain}) > 0
    # the release folder is itself a checkpoint, from either weight file
    np.testing.assert_allclose(
        load_encoder(out, bf16=False).encode(TEXTS).vectors.toarray(), expected, atol=1e-6
    )
    bin_only = tmp_path / "bin-only"
    bin_only.mkdir()
    for item in out.iterdir():
        if item.is_file() and item.name != "model.safetensors":
            shutil.copy(item, bin_only)
    np.testing.assert_allclose(
        load_encoder(bin_only, bf16=False).encode(TEXTS).vectors.toarray(), expected, atol=1e-6
    )
    # release.json lists every file with its size and sha256
    release = json.loads((out / "release.json").read_text())
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"release.json"}
    assert set(release["files"]) == on_disk
    for path, entry in release["files"].items():
        assert entry == {"bytes": (out / path).stat().st_size, "sha256": sha256_file(out / path)}


def test_english_splade_release(tmp_path: Path) -> None:
    """The English SPLADE (WordPiece, no idf.json of its own: computed on gimp-en)."""
    from harness.datasets import load_dataset, resolve_dataset
    from harness.registry import dataset_registry
    from harness.retrievers.splade import english_splade_dir

    out = tmp_path / "splade-en"
    result = export_release(
        "splade-en-tiny", out, idf_dataset="gimp-en", leaderboard=tmp_path / "none.sqlite"
    )
    assert (result.out, result.name, result.rows) == (out, "splade-en", [])
    top = {p.name for p in out.iterdir()}
    # a checkpoint folder (sentence-transformers' layout included) plus the release's own files
    assert top == {"config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json",
                   "tokenizer_config.json", "vocab.txt", "idf.json", "manifest.json", "README.md",
                   "release.json", "ml-commons", "modules.json", "router_config.json",
                   "config_sentence_transformers.json", "sentence_bert_config.json",
                   "query_0_SparseStaticEmbedding", "document_1_SpladePooling"}  # fmt: skip
    assert {p.name for p in (out / "ml-commons").iterdir()} == {
        "splade-en-sparse-encoding.zip",
        "splade-en-sparse-tokenize.zip",
        "register-sparse-encoding.json",
        "register-sparse-tokenize.json",
    }
    tokenizer = load_tokenizer(english_splade_dir())
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert vocab == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    corpus = load_dataset(resolve_dataset("gimp-en", dataset_registry())).corpus
    idf = IdfWeights.from_corpus([doc.full_text for doc in corpus.values()], tokenizer)
    _check_release(out, "splade-en", english_splade_dir(), idf, tmp_path)
    card = (out / "README.md").read_text()
    assert "doc-only mode" in card and "| base model | splade-en-tiny |" in card
    assert "No evaluation of this model is on the leaderboard" in card
    assert result.bodies["SPARSE_ENCODING"]["total_chunks"] == 2  # a 16.6 MB zip: two 10 MiB chunks


@pytest.fixture(scope="module")
def bilingual_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pruned XLM-R (SentencePiece) masked-LM with an idf.json: the bilingual path in small."""
    from conftest import build_tiny_mlm

    from models.vocab_prune import main
    from models.xlmr_tokenizer import load_xlmr_tokenizer

    tokenizer = load_xlmr_tokenizer()
    root = tmp_path_factory.mktemp("bilingual")
    build_tiny_mlm(len(tokenizer), max_positions=64).save_pretrained(root / "source")
    tokenizer.save_pretrained(root / "source")
    (root / "corpus.txt").write_text("\n".join(TEXTS + QUERIES), encoding="utf-8")
    argv = [
        "--model",
        str(root / "source"),
        "--out",
        str(root / "pruned"),
        "--corpus",
        str(root / "corpus.txt"),
    ]
    assert main(argv) == 0
    return root / "pruned"


def test_bilingual_checkpoint_release_and_its_card(bilingual_checkpoint: Path, tmp_path: Path) -> None:
    """A trained checkpoint (run id and step in its manifest) of a SentencePiece vocabulary: its idf.json
    goes out as it is, and the card shows its leaderboard rows, not another step's."""
    from harness.datasets import resolve_dataset
    from harness.registry import dataset_registry
    from harness.retrievers.splade import splade_spec
    from harness.runner import EvalConfig
    from harness.session import evaluate_report_record
    from models.checkpoint import load_idf, load_masked_lm, read_manifest

    model, tokenizer = load_masked_lm(bilingual_checkpoint)
    idf = load_idf(bilingual_checkpoint, tokenizer)
    run_keys = {
        "run_id": "koen-test-1234",
        "step": 20,
        "base_model": "koen-e5-small",
        "config_hash": "c0ffee",
    }
    manifest = read_manifest(bilingual_checkpoint) | run_keys
    trained = save_checkpoint(tmp_path / "ckpt", model, tokenizer, idf, manifest, max_seq_length=64)
    board = tmp_path / "board.sqlite"
    datasets = [resolve_dataset("gimp-ko", dataset_registry())]
    for step in (10, 20):  # the card takes step 20's row only
        run = {"run_id": "koen-test-1234", "step": step, "checkpoint_kind": "step", "config_hash": "c0ffee"}
        spec = splade_spec(str(trained), name=f"koen-test-1234@{step}")
        evaluate_report_record(datasets, [spec], EvalConfig(metrics=("ndcg@10",), top_k=10),
                               tmp_path / f"eval-{step}", board, run=run)  # fmt: skip
    out = tmp_path / "release"
    result = export_release(str(trained), out, name="koen-test", version="0.2.0", leaderboard=board,
                            url_base="https://models.example/koen/")  # fmt: skip
    assert [(r["step"], r["dataset"]) for r in result.rows] == [(20, "gimp-ko")]
    assert not (out / "vocab.txt").exists()  # a Unigram vocabulary lives in tokenizer.json only
    assert (out / "idf.json").read_bytes() == (trained / "idf.json").read_bytes()
    assert (
        result.bodies["SPARSE_TOKENIZE"]["url"] == "https://models.example/koen/koen-test-sparse-tokenize.zip"
    )
    _check_release(out, "koen-test", trained, idf, tmp_path, "0.2.0", "https://models.example/koen/")
    card = (out / "README.md").read_text()
    ndcg = result.rows[0]["metrics"]["ndcg@10"]
    assert f"| gimp-ko | test | {result.rows[0]['n_queries']} | {ndcg:.4f} |" in card
    assert "| base model | koen-e5-small |" in card and "koen-test-1234 step 20" in card


def test_bad_exports_fail_clearly_and_write_nothing(tiny_checkpoint: Path, tmp_path: Path) -> None:
    no_idf = tmp_path / "no-idf"
    shutil.copytree(tiny_checkpoint, no_idf)
    (no_idf / "idf.json").unlink()
    with pytest.raises(WorkbenchError, match=r"no-idf/idf\.json not found: pass --idf-dataset"):
        export_release(str(no_idf), tmp_path / "out")
    with pytest.raises(WorkbenchError, match="not a model directory nor a named offline model"):
        export_release(str(tmp_path / "missing"), tmp_path / "out")
    with pytest.raises(WorkbenchError, match="a release name is one plain path component"):
        export_release(str(tiny_checkpoint), tmp_path / "out", name="a/b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-idf"]
    (tmp_path / "taken").mkdir()
    result = CliRunner().invoke(
        app, ["export", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "taken")]
    )
    assert result.exit_code == 2
    assert "taken: output directory already exists (--force replaces it)" in result.output
    assert list((tmp_path / "taken").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "no-idf",
        "taken",
    ]  # no half-written release beside it
    forced = CliRunner().invoke(
        app, ["export", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "taken"), "--force"]
    )
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "taken" / "ml-commons" / "taken-sparse-encoding.zip").is_file()
