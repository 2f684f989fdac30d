"""Analyzers, BM25 formulas (against rank-bm25 and by hand), the retriever and its caches."""

from __future__ import annotations

import math
from pathlib import Path

import bm25s
import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from common.paths import cache_dir
from harness.analyzers import (
    KiwiAnalyzer,
    LuceneCJKAnalyzer,
    LuceneEnglishAnalyzer,
    PlainAnalyzer,
    TokenizedCorpus,
    XlmrPiecesAnalyzer,
    analyze_cached,
    lucene_porter_stem,
)
from harness.datasets import load_beir
from harness.evaluation import evaluate_run
from harness.retrievers import get_retriever, register, retriever_registry
from harness.retrievers.base import RetrieverSpec
from harness.retrievers.bm25 import BM25Retriever, LuceneBM25Retriever, lucene_doc_lengths

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


# --------------------------------------------------------------------------- Lucene's conditions
# Expected analyzer outputs below were checked against Lucene 8.7's EnglishAnalyzer/CJKAnalyzer.


def test_lucene_english_analyzer_by_hand() -> None:
    analyzer = LuceneEnglishAnalyzer()
    text = "The GIMP's layers aren't hidden; John’s brushes are in 3.5 e.g. www.gimp.org wi-fi 1,000 foo_bar"
    # possessives ('s, ’s) and stop words (the, are, in) go, "e.g." loses its final dot, numbers
    # and dotted names stay whole, the hyphen splits; lower case is Java's, per character
    assert analyzer.analyze([text, "", "ÜBER İstanbul ΣΟΦΊΑ"]) == [
        ["gimp", "layer", "aren't", "hidden", "john", "brush", "3.5", "e.g", "www.gimp.org", "wi", "fi",
         "1,000", "foo_bar"],
        [],
        ["über", "istanbul", "σοφία"],
    ]  # fmt: skip
    assert "lucene-en" in analyzer.key and "regex-" in analyzer.key


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("caresses", "caress"),
        ("ponies", "poni"),
        ("ties", "ti"),
        ("relational", "relat"),
        ("generalization", "gener"),
        ("hopeful", "hope"),
        ("agreed", "agre"),
        ("feed", "feed"),
        ("sized", "size"),
        ("hopping", "hop"),
        ("falling", "fall"),
        ("meetings", "meet"),
        # Lucene's (Porter's reference code) departures from the paper and from Snowball's "porter"
        ("possibly", "possibl"),
        ("archaeology", "archaeolog"),
        ("us", "us"),
    ],
)
def test_lucene_porter_stemmer(word: str, stem: str) -> None:
    assert lucene_porter_stem(word) == stem


def test_lucene_cjk_analyzer_by_hand() -> None:
    text = "한국어 이 문장은 GIMP에서 日本語 漢字한글 ＡＢＣ ｶﾞｷﾞ the an s www it's 한국 어"
    # CJK stop words: English's but "an", and s, t, www
    assert LuceneCJKAnalyzer().analyze([text]) == [
        ["한국", "국어", "이", "문장", "장은", "gimp에서", "日本", "本語", "漢字", "字한", "한글",
         "abc", "ガギ", "an", "it's", "한국", "어"]
    ]  # fmt: skip


def test_lucene_doc_lengths_are_smallfloat_norms() -> None:
    lengths = [0, 1, 23, 24, 31, 32, 39, 40, 41, 100, 1000, 123456]
    # SmallFloat.byte4ToInt(SmallFloat.intToByte4(n)) in Lucene 8.7
    expected = [0, 1, 23, 24, 31, 32, 39, 40, 40, 96, 984, 122904]
    assert lucene_doc_lengths(np.array(lengths)).tolist() == expected


def _lucene_field_scores(
    query: list[str], field: list[list[str]], k1: float = 0.9, b: float = 0.4
) -> np.ndarray:
    """BM25 of one Lucene field by hand: N and avgdl over the documents with a term in the field."""
    present = [doc for doc in field if doc]
    n, avgdl = len(present), sum(map(len, present)) / len(present)
    scores = np.zeros(len(field))
    for i, doc in enumerate(field):
        assert len(doc) <= 24  # Lucene's one-byte norms are exact up to here
        for term in query:
            df = sum(term in d for d in present)
            tf = doc.count(term)
            if tf:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                scores[i] += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
    return scores


MULTIFIELD_CORPUS = {
    "d1": ("Layer masks", "A layer mask hides parts of a layer."),
    "d2": ("", "The crop tool removes the borders of an image layer."),  # no title
    "d3": ("Crop tool", "Crop an image to its selection."),
    "d4": ("Masks and channels", "Channels store a selection; a mask is a channel."),
    "d5": ("Text tool", "The text tool writes text on a new layer."),
}


def test_multifield_is_the_sum_of_two_lucene_fields_by_hand(tmp_path: Path, make_beir) -> None:
    root = make_beir(tmp_path / "mf", MULTIFIELD_CORPUS, {"q": "layer mask"}, {"test": [("q", "d1", 1)]})
    data = load_beir(root)
    retriever = get_retriever("bm25-multifield").build()
    assert isinstance(retriever, LuceneBM25Retriever)
    retriever.index(data)
    analyzer = LuceneEnglishAnalyzer()
    titles = analyzer.analyze([title for title, _ in MULTIFIELD_CORPUS.values()])
    texts = analyzer.analyze([text for _, text in MULTIFIELD_CORPUS.values()])
    for query in ("layer mask", "crop tool layers", "channel selection text", "the"):
        tokens = analyzer.analyze([query])[0]
        expected = _lucene_field_scores(tokens, titles) + _lucene_field_scores(tokens, texts)
        np.testing.assert_allclose(retriever.scores(tokens), expected, rtol=2e-6)
        ranked = retriever.search({"q": query}, k=3).to_dict().get("q", {})
        by_hand = dict(zip(data.corpus, expected.tolist(), strict=True))
        assert (
            list(ranked) == sorted((d for d in by_hand if by_hand[d] > 0), key=lambda d: (-by_hand[d], d))[:3]
        )
    # the title-less d2 scores on its text only; the empty query retrieves nothing
    assert retriever.scores(["crop"])[1] == pytest.approx(_lucene_field_scores(["crop"], texts)[1], rel=2e-6)
    assert retriever.search({"e": "", "s": "the of"}, k=5).to_dict() == {}
    # the two field indexes are cached and give identical scores when loaded
    assert sorted(p.name for p in retriever.cache_path(data).iterdir()) == ["text", "title"]
    again = get_retriever("bm25-multifield").build()
    again.index(data)
    assert (
        again.search({"q": "layer mask"}, k=5).to_dict()
        == retriever.search({"q": "layer mask"}, k=5).to_dict()
    )
    assert again.stats()["index_bytes"] == retriever.stats()["index_bytes"] > 0


def test_lucene_bm25_ties_at_the_cut_go_by_docid(tmp_path: Path, make_beir) -> None:
    corpus = {
        "d9": ("Mask", "layer mask"),
        "d3": ("Mask", "layer mask"),
        "d7": ("Layer mask", "layer mask"),  # the best
        "d5": ("Mask", "layer mask"),
        "d1": ("Mask", "layer mask"),
        "d2": ("Crop", "crop tool"),
    }
    data = load_beir(make_beir(tmp_path / "ties", corpus, {"q": "mask"}, {"test": [("q", "d1", 1)]}))
    for name in ("bm25-multifield", "bm25-flat"):
        retriever = get_retriever(name).build()
        retriever.index(data, use_cache=False)
        ranked = retriever.search({"q": "layer mask"}, k=3).to_dict()["q"]
        assert list(ranked) == ["d7", "d1", "d3"]
        tied = retriever.scores(["layer", "mask"])
        assert tied[0] == tied[1] == tied[3] == tied[4] < tied[2]


def test_lucene_bm25_keeps_lucene_length_norms(tmp_path: Path, make_beir) -> None:
    corpus = {"long": ("", " ".join(["layer"] + ["filler"] * 99)), "short": ("", "layer mask tool")}
    data = load_beir(make_beir(tmp_path / "norms", corpus, {"q": "layer"}, {"test": [("q", "long", 1)]}))
    retriever = get_retriever("bm25-flat").build()
    retriever.index(data, use_cache=False)
    k1, b, avgdl = 0.9, 0.4, (100 + 3) / 2
    idf = math.log(1 + (2 - 2 + 0.5) / (2 + 0.5))
    # Lucene reads the 100-term document back as 96 terms long (one-byte norm)
    expected = [idf / (1 + k1 * (1 - b + b * dl / avgdl)) for dl in (96, 3)]
    np.testing.assert_allclose(retriever.scores(["layer"]), expected, rtol=1e-6)


def test_bm25_flat_on_tiny_beir(tiny_beir: Path) -> None:
    data = load_beir(tiny_beir)
    retriever = get_retriever("bm25-flat").build()
    retriever.index(data)
    queries = data.split_queries("test")
    run = retriever.search(queries, k=10)
    # Korean eojeol are single Lucene tokens: only q2 ("투명하게" in d1) and q3 ("borders" ->
    # "border" in d3) match their relevant document, each at rank 1
    assert list(run.to_dict()) == ["q2", "q3"]
    assert list(run.to_dict()["q3"]) == ["d3"]
    result = evaluate_run(data.qrels["test"], run, ["ndcg@10"])
    assert result.per_query["ndcg@10"] == {"q1": 0.0, "q2": 1.0, "q3": 1.0, "q4": 0.0}
    assert result.mean["ndcg@10"] == pytest.approx(0.5)
    # a second path: bm25s' own Lucene scores on the same tokens (every document under 24 terms)
    tokens = LuceneEnglishAnalyzer().analyze([doc.full_text for doc in data.corpus.values()])
    reference = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    reference.index(tokens, show_progress=False)
    for query in ("crop borders", "layer mask transparent", "이미지의 tool"):
        query_tokens = LuceneEnglishAnalyzer().analyze([query])[0]
        np.testing.assert_allclose(
            retriever.scores(query_tokens), reference.get_scores(query_tokens), rtol=1e-6
        )


def test_xlmr_analyzer_gives_the_models_pieces_and_reads_nfd_as_nfc() -> None:
    import unicodedata

    analyzer = XlmrPiecesAnalyzer()
    text = "GIMP 레이어 마스크를 사용하면"
    assert analyzer.analyze([text, "Layer masks in GIMP"]) == [
        ["▁G", "IMP", "▁레이", "어", "▁마", "스크", "를", "▁사용", "하면"],
        ["▁La", "yer", "▁mask", "s", "▁in", "▁G", "IMP"],
    ]
    assert analyzer.analyze([unicodedata.normalize("NFD", text)]) == analyzer.analyze([text])
    assert analyzer.key.startswith("xlmr-pieces-v1-")


def test_bm25_xlmr_is_registered_off_the_default_run_and_ranks(tiny_beir: Path) -> None:
    spec = retriever_registry()["bm25-xlmr"]
    assert not spec.default and spec.params["analyzer"] == "xlmr"
    retriever = spec.build()
    retriever.index(load_beir(tiny_beir))
    ranked = retriever.search({"q1": "이미지를 자르려면"}, k=10).to_dict()
    assert max(ranked["q1"], key=ranked["q1"].get) == "d2"
