"""Analyzers, BM25 formulas (against rank-bm25 and by hand), the retriever and its caches."""

from __future__ import annotations

import math
from pathlib import Path

import bm25s
import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from common.paths import cache_dir
from harness.analyzers import KiwiAnalyzer, PlainAnalyzer, TokenizedCorpus, analyze_cached
from harness.datasets import load_beir
from harness.retrievers import get_retriever, register, retriever_registry
from harness.retrievers.base import RetrieverSpec
from harness.retrievers.bm25 import BM25Retriever

DOCS = [
    ["gimp", "layer", "mask", "layer"],
    ["crop", "tool", "image"],
    ["layer", "image", "image", "colour", "tool"],
    ["brush", "paint", "colour"],
    ["text", "tool", "font", "size", "colour", "layer"],
    ["scale", "image"],
    ["filter", "blur", "gaussian"],
    ["path", "stroke", "brush", "size"],
    ["export", "png", "jpeg"],
    ["undo", "history"],
]  # every term in fewer than half of the documents: all Robertson idfs are positive


def test_plain_analyzer_keeps_eojeol_and_kiwi_splits_morphemes() -> None:
    text = "GIMP에서 이미지를 자르려면 Crop 도구를 사용합니다."
    assert PlainAnalyzer().analyze([text]) == [
        ["gimp에서", "이미지를", "자르려면", "crop", "도구를", "사용합니다"]
    ]
    assert KiwiAnalyzer().analyze([text, "", "Layer Mask"]) == [
        ["gimp", "이미지", "자르", "crop", "도구", "사용"],
        [],
        ["layer", "mask"],
    ]


def test_kiwi_batch_with_workers_equals_the_plain_loop() -> None:
    texts = ["레이어 마스크를 추가했다.", "색상 도구로 밝기를 조절합니다.", "The crop tool."] * 5
    batch = KiwiAnalyzer(num_workers=2).analyze(texts)
    single = KiwiAnalyzer(num_workers=1)
    assert batch == [single.analyze([t])[0] for t in texts]


def test_tokenized_corpus_round_trip_and_cache(tmp_path: Path) -> None:
    tokens = [["이미지", "layer"], [], ["layer"]]
    stored = TokenizedCorpus.from_tokens(tokens)
    assert stored.vocab == ["이미지", "layer"] and stored.offsets.tolist() == [0, 2, 2, 3]
    stored.save(tmp_path / "t.npz")
    assert TokenizedCorpus.load(tmp_path / "t.npz").to_tokens() == tokens

    class Counting(PlainAnalyzer):
        calls = 0

        def analyze(self, texts, progress=None):
            Counting.calls += 1
            return super().analyze(texts, progress)

    texts = ["A b", "c"]
    assert analyze_cached(Counting(), texts, tmp_path / "c.npz") == [["a", "b"], ["c"]]
    assert analyze_cached(Counting(), texts, tmp_path / "c.npz") == [["a", "b"], ["c"]]
    assert Counting.calls == 1


def test_bm25s_robertson_ranks_as_rank_bm25() -> None:
    """rank-bm25's BM25Okapi is the reference implementation.

    The one formula difference: rank-bm25 multiplies the tf part by (k1 + 1), bm25s does not
    (as Lucene since 8.0), a constant factor per query that leaves every ranking unchanged.
    """
    k1 = 1.2
    reference = BM25Okapi(DOCS, k1=k1, b=0.75)
    ours = bm25s.BM25(k1=k1, b=0.75, method="robertson")
    ours.index(DOCS, show_progress=False)
    for query in (
        ["layer", "image"],
        ["colour"],
        ["crop", "tool", "font"],
        ["gimp", "mask", "brush", "size"],
    ):
        expected = reference.get_scores(query)
        assert expected.max() > 0
        np.testing.assert_allclose(ours.get_scores(query) * (k1 + 1), expected, rtol=1e-5)
        assert list(np.argsort(-ours.get_scores(query), kind="stable")) == list(
            np.argsort(-expected, kind="stable")
        )


def test_bm25s_lucene_formula_by_hand() -> None:
    k1, b = 0.9, 0.4
    ours = bm25s.BM25(k1=k1, b=b, method="lucene")
    ours.index(DOCS, show_progress=False)
    n, avgdl = len(DOCS), sum(map(len, DOCS)) / len(DOCS)

    def score(query: list[str], doc: list[str]) -> float:
        total = 0.0
        for term in query:
            df = sum(term in d for d in DOCS)
            tf = doc.count(term)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            total += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
        return total

    for query in (["layer", "image"], ["colour", "tool"]):
        np.testing.assert_allclose(ours.get_scores(query), [score(query, d) for d in DOCS], rtol=1e-5)


def test_retriever_ranks_caches_and_handles_empty_queries(tiny_beir: Path) -> None:
    data = load_beir(tiny_beir)
    retriever = get_retriever("bm25-ko").build()
    retriever.index(data)
    run = retriever.search({"q1": "이미지를 자르려면", "q3": "crop borders", "e": "", "p": "을를"}, k=10)
    ranked = run.to_dict()
    assert max(ranked["q1"], key=ranked["q1"].get) == "d2"
    assert list(ranked["q3"]) == ["d3"]  # only documents sharing a term are retrieved
    assert "e" not in ranked and "p" not in ranked  # nothing to match: no results
    assert retriever.stats()["index_bytes"] > 0
    # second build loads the cached index and gives identical scores
    cached = (cache_dir() / "indexes").glob("bm25-*/*")
    assert len(list(cached)) == 1
    again = get_retriever("bm25-ko").build()
    again.index(data)
    assert again.search({"q1": "이미지를 자르려면"}, k=10).to_dict()["q1"] == ranked["q1"]


def test_cache_is_keyed_by_dataset_checksum(tiny_beir: Path) -> None:
    retriever = get_retriever("bm25-plain").build()
    retriever.index(load_beir(tiny_beir))
    assert retriever.search({"q": "colour"}, k=5).to_dict() == {}
    with (tiny_beir / "corpus.jsonl").open("a") as f:
        f.write('{"_id": "d6", "title": "", "text": "colour colour"}\n')
    retriever.index(load_beir(tiny_beir))
    assert list(retriever.search({"q": "colour"}, k=5).to_dict()["q"]) == ["d6"]


def test_top_k_larger_than_corpus(tiny_beir: Path) -> None:
    retriever = get_retriever("bm25-plain").build()
    retriever.index(load_beir(tiny_beir), use_cache=False)
    assert sorted(retriever.search({"q": "the crop tool layer"}, k=1000).to_dict()["q"]) == ["d3", "d4"]
    assert not (cache_dir() / "indexes").exists()


def test_registry_refuses_duplicates() -> None:
    spec = retriever_registry()["bm25-ko"]
    with pytest.raises(ValueError, match="'bm25-ko' is already registered"):
        register(RetrieverSpec(name="bm25-ko", family="bm25", factory=BM25Retriever, description="x"))
    assert spec.fingerprint != retriever_registry()["bm25-plain"].fingerprint


def test_index_cache_is_keyed_by_analyzer_version(tiny_beir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_beir(tiny_beir)
    first = get_retriever("bm25-ko").build()
    before = first.cache_path(data)
    monkeypatch.setattr(KiwiAnalyzer, "key", "kiwi-other-version")
    assert get_retriever("bm25-ko").build().cache_path(data) != before
