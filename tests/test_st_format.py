"""sentence-transformers files for a SPLADE-doc checkpoint: SparseEncoder loads it and matches our encoders.

Ours, computed here with plain torch: document = max over attention-masked positions of
log(1 + relu(MLM logits)) with the special-token dimensions set to 0; query = the idf.json weight of each
distinct non-special token of the query (a token missing from idf.json weighs 1.0, as in OpenSearch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import TINY_SPECIALS, TINY_WORDS, build_tiny_tokenizer
from safetensors.torch import load_file
from sentence_transformers import SparseEncoder
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM

from models.st_format import POOLING_MODULE_ID, QUERY_MODULE_ID, write_sentence_transformers_files

CORPUS = [
    "레이어 마스크를 추가하면 이미지의 일부를 투명하게 만들 수 있습니다.",
    "자르기 도구는 이미지의 가장자리를 잘라 냅니다.",
    "The crop tool removes the borders of an image.",
    "A layer mask makes parts of a layer transparent.",
    "색상 도구로 이미지의 밝기와 대비를 조절합니다.",
]
DOCUMENTS = [
    "검색 모델",
    "The crop tool removes the borders of an image.",
    "한국어 문서 검색 모델은 이미지 레이어를 투명하게 만들 수 있습니다. " * 6,  # truncated at 64 tokens
    "Korean search model 한국어 검색 모델",
    "밝기 조절?",
]
QUERIES = [
    "레이어 레이어 마스크 검색",  # repeated token counts once; "검색" is not in idf.json: weight 1.0
    "crop borders of the image",
    "밝기 조절 query",
    "zebra [SEP] 레이어",  # OOV word -> [UNK]; literal special token: both removed
    "layer",
]
MAX_SEQ_LENGTH = 64


def _build_checkpoint(root: Path, *, mask_special_logits: bool) -> Path:
    """A tiny BertForMaskedLM checkpoint laid out as ours: model, tokenizer, idf.json, manifest.json."""
    root.mkdir(parents=True)
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        initializer_range=0.2,
    )
    model = BertForMaskedLM(config).eval()
    if mask_special_logits:
        with torch.no_grad():
            model.cls.predictions.bias[tokenizer.all_special_ids] = -1e4
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)

    # idf = log(1 + (N - df + 0.5) / (df + 0.5)) over the tokens (with [CLS]/[SEP]) of a tiny corpus;
    # only tokens seen in the corpus get a key, as a corpus-built idf.json would.
    encoded = tokenizer(CORPUS)["input_ids"]
    df: dict[int, int] = {}
    for ids in encoded:
        for i in set(ids):
            df[i] = df.get(i, 0) + 1
    n = len(CORPUS)
    idf = {tokenizer.decode([i]): math.log(1 + (n - d + 0.5) / (d + 0.5)) for i, d in sorted(df.items())}
    (root / "idf.json").write_text(json.dumps(idf, ensure_ascii=False, indent=2), encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps({"name": "tiny"}), encoding="utf-8")
    return root


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load_encoder(root: Path, monkeypatch: pytest.MonkeyPatch) -> SparseEncoder:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return SparseEncoder(str(root), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = _build_checkpoint(tmp_path_factory.mktemp("st") / "ckpt", mask_special_logits=False)
    write_sentence_transformers_files(root, max_seq_length=MAX_SEQ_LENGTH)
    yield root


@pytest.fixture(scope="module")
def masked_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = _build_checkpoint(tmp_path_factory.mktemp("st") / "ckpt", mask_special_logits=True)
    write_sentence_transformers_files(root, max_seq_length=MAX_SEQ_LENGTH)
    yield root


def _reference_documents(root: Path, texts: list[str], *, zero_special: bool = True) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(str(root))
    model = AutoModelForMaskedLM.from_pretrained(str(root)).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    values = torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)
    pooled = values.max(dim=1).values
    if zero_special:
        pooled[:, tokenizer.all_special_ids] = 0.0
    return pooled


def _reference_queries(root: Path, queries: list[str]) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(str(root))
    idf = json.loads((root / "idf.json").read_text(encoding="utf-8"))
    special = set(tokenizer.all_special_ids)
    out = torch.zeros(len(queries), len(tokenizer.get_vocab()))
    for row, query in enumerate(queries):
        for i in set(tokenizer(query, add_special_tokens=False)["input_ids"]) - special:
            out[row, i] = idf.get(tokenizer.decode([i]), 1.0)
    return out


def test_tokenizer_round_trip_keeps_hangul(checkpoint: Path) -> None:
    reloaded = AutoTokenizer.from_pretrained(str(checkpoint))
    for text in DOCUMENTS + QUERIES:
        assert reloaded(text)["input_ids"] == build_tiny_tokenizer()(text)["input_ids"]
    assert reloaded.convert_ids_to_tokens(reloaded("검색 모델은")["input_ids"]) == [
        "[CLS]",
        "검색",
        "모델",
        "##은",
        "[SEP]",
    ]


def test_layout_reuses_root_weights(checkpoint: Path) -> None:
    files = _file_bytes(checkpoint)
    for name in (
        "modules.json",
        "router_config.json",
        "config_sentence_transformers.json",
        "sentence_bert_config.json",
        f"{POOLING_MODULE_ID}/config.json",
        f"{QUERY_MODULE_ID}/config.json",
        f"{QUERY_MODULE_ID}/model.safetensors",
        f"{QUERY_MODULE_ID}/tokenizer.json",
        f"{QUERY_MODULE_ID}/tokenizer_config.json",
    ):
        assert name in files, name
    # The masked LM is stored once, at the root; the query folder only holds a vocab-sized vector.
    assert [n for n in files if n.endswith(".safetensors")] == [
        "model.safetensors",
        f"{QUERY_MODULE_ID}/model.safetensors",
    ]
    weights = load_file(checkpoint / QUERY_MODULE_ID / "model.safetensors")
    assert list(weights) == ["weight"]
    assert weights["weight"].shape == (len(TINY_SPECIALS) + len(TINY_WORDS),)
    assert files[f"{QUERY_MODULE_ID}/tokenizer.json"] == files["tokenizer.json"]
    router = json.loads(files["router_config.json"])
    assert router["structure"] == {"query": [QUERY_MODULE_ID], "document": ["", POOLING_MODULE_ID]}
    assert not [n for n in files if n.endswith(".tmp")]


def test_root_files_are_not_modified(tmp_path: Path) -> None:
    root = _build_checkpoint(tmp_path / "ckpt", mask_special_logits=False)
    before = _file_bytes(root)
    write_sentence_transformers_files(root, max_seq_length=MAX_SEQ_LENGTH)
    after = _file_bytes(root)
    assert {name: after[name] for name in before} == before


def test_loads_as_inference_free_router(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _load_encoder(checkpoint, monkeypatch)
    router = model[0]
    assert type(router).__name__ == "Router"
    query_modules = [type(m).__name__ for m in router.sub_modules["query"]]
    document_modules = [type(m).__name__ for m in router.sub_modules["document"]]
    assert query_modules == ["SparseStaticEmbedding"]
    assert document_modules == ["MLMTransformer", "SpladePooling"]
    assert model.similarity_fn_name == "dot"
    assert model.get_embedding_dimension() == len(TINY_SPECIALS) + len(TINY_WORDS)
    assert router.sub_modules["document"][0].max_seq_length == MAX_SEQ_LENGTH
    assert router.sub_modules["query"][0].max_seq_length == MAX_SEQ_LENGTH


def test_query_vectors_equal_idf_weights(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _load_encoder(checkpoint, monkeypatch)
    got = model.encode_query(QUERIES, convert_to_tensor=True, convert_to_sparse_tensor=False).cpu()
    expected = _reference_queries(checkpoint, QUERIES)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    idf = json.loads((checkpoint / "idf.json").read_text(encoding="utf-8"))
    vocab = tokenizer.get_vocab()
    assert got[0, vocab["레이어"]] == pytest.approx(idf["레이어"])  # once, not twice
    assert "검색" not in idf and got[0, vocab["검색"]] == pytest.approx(1.0)
    assert "[CLS]" in idf and "[SEP]" in idf  # weighted in idf.json, zero in the query vectors
    assert not got[:, tokenizer.all_special_ids].any()


def test_document_vectors_equal_ours_off_special_dims(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _load_encoder(checkpoint, monkeypatch)
    got = model.encode_document(DOCUMENTS, convert_to_tensor=True, convert_to_sparse_tensor=False).cpu()
    ours = _reference_documents(checkpoint, DOCUMENTS)
    raw = _reference_documents(checkpoint, DOCUMENTS, zero_special=False)
    special = AutoTokenizer.from_pretrained(str(checkpoint)).all_special_ids
    other = [i for i in range(ours.shape[1]) if i not in set(special)]
    torch.testing.assert_close(got[:, other], ours[:, other], atol=1e-5, rtol=0)
    # SpladePooling cannot zero special dimensions: they hold the raw pooled values of the MLM head.
    torch.testing.assert_close(got, raw, atol=1e-5, rtol=0)
    assert got[:, special].any()
    # Query weights of special tokens are 0, so query-document scores are ours exactly.
    queries = model.encode_query(QUERIES, convert_to_tensor=True, convert_to_sparse_tensor=False).cpu()
    torch.testing.assert_close(
        queries @ got.T, _reference_queries(checkpoint, QUERIES) @ ours.T, atol=1e-5, rtol=0
    )


def test_document_vectors_equal_ours_when_special_logits_are_masked(
    masked_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _load_encoder(masked_checkpoint, monkeypatch)
    got = model.encode_document(DOCUMENTS, convert_to_tensor=True, convert_to_sparse_tensor=False).cpu()
    torch.testing.assert_close(got, _reference_documents(masked_checkpoint, DOCUMENTS), atol=1e-5, rtol=0)
    # One text at a time (no padding) gives the same vectors.
    for text, row in zip(DOCUMENTS, got, strict=True):
        single = model.encode_document([text], convert_to_tensor=True, convert_to_sparse_tensor=False).cpu()
        torch.testing.assert_close(single[0], row, atol=1e-5, rtol=0)


def test_running_twice_gives_identical_files(tmp_path: Path) -> None:
    root = _build_checkpoint(tmp_path / "ckpt", mask_special_logits=False)
    write_sentence_transformers_files(root, max_seq_length=MAX_SEQ_LENGTH)
    first = _file_bytes(root)
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    write_sentence_transformers_files(root, max_seq_length=MAX_SEQ_LENGTH)
    assert _file_bytes(root) == first
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == mtimes


def test_rejects_max_seq_length_beyond_positions(tmp_path: Path) -> None:
    root = _build_checkpoint(tmp_path / "ckpt", mask_special_logits=False)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        write_sentence_transformers_files(root, max_seq_length=129)
    assert not (root / "modules.json").exists()
