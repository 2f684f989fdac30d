"""Shared fixtures: a private cache directory per test and tiny BEIR datasets in tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.opensearch.client import ClusterSettings


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's cache."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("WORKBENCH_CACHE", str(path))
    monkeypatch.setenv("WORKBENCH_LEADERBOARD", str(tmp_path_factory.mktemp("board") / "leaderboard.sqlite"))
    return path


@pytest.fixture(scope="session")
def opensearch_cluster() -> Iterator[ClusterSettings]:
    """The cluster engine tests run against: `WORKBENCH_TEST_OPENSEARCH` (hosts, comma-separated;
    OPENSEARCH_USER / OPENSEARCH_PASSWORD / OPENSEARCH_VERIFY_CERTS / OPENSEARCH_CA_CERTS as for any
    run) where set, else an osmem-server (an in-memory stand-in) on 127.0.0.1, stopped after."""
    import os

    from harness.opensearch.client import ClusterSettings

    hosts = os.environ.get("WORKBENCH_TEST_OPENSEARCH")
    if hosts:
        yield ClusterSettings.from_env(hosts=[h.strip() for h in hosts.split(",") if h.strip()])
        return
    from osmem_server import OsmemServer

    with OsmemServer.start(addr="127.0.0.1:0") as server:
        yield ClusterSettings(hosts=(server.url,))


def write_beir(
    root: Path,
    corpus: dict[str, tuple[str, str]],
    queries: dict[str, str],
    qrels: dict[str, list[tuple[str, str, int]]],
) -> Path:
    """Write a BEIR directory exactly as BEIR's zips lay it out."""
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for doc_id, (title, text) in corpus.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text, "metadata": {}}, ensure_ascii=False) + "\n")
    for split, rows in qrels.items():
        with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, doc_id, rel in rows:
                f.write(f"{qid}\t{doc_id}\t{rel}\n")
    return root


TINY_CORPUS = {
    "d1": ("레이어", "레이어 마스크를 추가하면 이미지의 일부를 투명하게 만들 수 있습니다."),
    "d2": ("자르기 도구", "자르기 도구는 이미지의 가장자리를 잘라 냅니다."),
    "d3": ("Crop tool", "The crop tool removes the borders of an image."),
    "d4": ("Layer mask", "A layer mask makes parts of a layer transparent."),
    "d5": ("색상", "색상 도구로 이미지의 밝기와 대비를 조절합니다."),
}
TINY_QUERIES = {
    "q1": "이미지를 자르려면",
    "q2": "레이어를 투명하게",
    "q3": "crop borders",
    "q4": "밝기 조절",
}
TINY_QRELS = {"test": [("q1", "d2", 1), ("q2", "d1", 1), ("q3", "d3", 1), ("q4", "d5", 2), ("q4", "d2", 0)]}


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny", TINY_CORPUS, TINY_QUERIES, TINY_QRELS)


@pytest.fixture
def make_beir():
    return write_beir


# --------------------------------------------------------------------------- tiny masked-LMs

TINY_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY_WORDS = [
    # Korean words and syllables (syllables let unknown words split into pieces)
    "검색", "모델", "한국어", "문서", "이미지", "레이어", "마스크", "도구", "투명", "자르기", "색상", "밝기",
    "조절", "가", "나", "다", "를", "을", "의", "는", "은", "이", "하", "게", "로", "만", "들", "수",
    "##를", "##을", "##의", "##는", "##은", "##이", "##다", "##하", "##게", "##로", "##니", "##습", "##려면",
    # English words and pieces
    "the", "a", "is", "of", "search", "model", "korean", "document", "image", "layer", "mask", "crop",
    "tool", "border", "transparent", "makes", "parts", "removes", "brightness", "query",
    "##s", "##ing", "##ed", "##er", ".", ",", "?", "!",
]  # fmt: skip


def build_tiny_tokenizer():
    """A WordPiece tokenizer over TINY_WORDS that keeps Hangul syllables whole."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate(TINY_SPECIALS + TINY_WORDS)}
    backend = Tokenizer(WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    # strip_accents=False: NFD accent stripping would split Hangul syllables into jamo.
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    # transformers 5 rebuilds the normalizer from these arguments when it reloads the tokenizer.
    return BertTokenizerFast(
        tokenizer_object=backend,
        do_lower_case=True,
        strip_accents=False,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def build_tiny_mlm(vocab_size: int, seed: int = 0, max_positions: int = 128):
    """A seeded 2-layer BertForMaskedLM with hidden size 32 (a test model, not mBERT)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        initializer_range=0.2,
    )
    return BertForMaskedLM(config).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete SPLADE-doc checkpoint directory of a tiny model, idf from TINY_CORPUS."""
    from models.checkpoint import save_checkpoint
    from models.idf import IdfWeights

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer))
    texts = [f"{title} {text}" for title, text in TINY_CORPUS.values()]
    idf = IdfWeights.from_corpus(texts, tokenizer)
    out = tmp_path_factory.mktemp("ckpt") / "tiny-splade"
    return save_checkpoint(out, model, tokenizer, idf, {"name": "tiny test model"}, max_seq_length=64)
