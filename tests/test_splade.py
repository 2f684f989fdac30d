"""SPLADE-doc: encoder (hand-computed and reference vectors), idf, fidelity, checkpoints, retrieval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import TINY_CORPUS, build_tiny_mlm, build_tiny_tokenizer

from common.errors import WorkbenchError
from harness.datasets import load_beir
from harness.retrievers.splade import IdfOnlyRetriever, splade_spec
from harness.sparse_index import SparseIndex
from models.checkpoint import (
    inference_length,
    load_encoder,
    load_idf,
    model_fingerprint,
    read_manifest,
    save_checkpoint,
)
from models.encoder import ModelLoadError, Pruning, SpladeDocEncoder
from models.idf import IdfWeights, check_fidelity, document_frequencies, idf_from_df

# ----------------------------------------------------------------------------- encoder


def _bias_only_model(tokenizer, bias: dict[str, float]):
    """Every weight 0 but the MLM output bias: each position's logits are the bias."""
    model = build_tiny_mlm(len(tokenizer))
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        out = model.get_output_embeddings()
        out.bias.fill_(-1.0)
        for token, value in bias.items():
            out.bias[tokenizer.convert_tokens_to_ids(token)] = value
    return model


def test_hand_computed_vectors_activation_and_pruning() -> None:
    tokenizer = build_tiny_tokenizer()
    e = math.e
    model = _bias_only_model(
        tokenizer, {"검색": e - 1, "layer": e**2 - 1, "crop": 0.5, "[CLS]": 3.0, "mask": -2.0}
    )
    vocab = tokenizer.get_vocab()
    encoder = SpladeDocEncoder(model, tokenizer, max_length=32)
    result = encoder.encode(["검색 모델", "", "   "])
    first = result.vectors[0].toarray()[0]
    expected = {"검색": 1.0, "layer": 2.0, "crop": math.log(1.5)}  # log(1 + relu(bias)); [CLS] zeroed
    assert {t: pytest.approx(first[vocab[t]], abs=1e-6) for t in expected} == expected
    assert int(np.count_nonzero(first)) == 3
    assert result.vectors[1].nnz == 0 and result.vectors[2].nnz == 0  # empty texts: empty vectors
    l0 = SpladeDocEncoder(model, tokenizer, activation="l0").encode(["검색"]).vectors[0].toarray()[0]
    assert l0[vocab["layer"]] == pytest.approx(math.log(3.0))  # log(1 + log(1 + relu(e^2 - 1)))
    cases = [(Pruning(top_k=2), {"layer", "검색"}), (Pruning(ratio=0.4), {"layer", "검색"}),
             (Pruning(threshold=0.5), {"layer", "검색"}), (Pruning(ratio=0.6), {"layer"})]  # fmt: skip
    for pruning, kept in cases:
        vec = SpladeDocEncoder(model, tokenizer, pruning=pruning).encode(["x"]).vectors[0]
        assert {tokenizer.convert_ids_to_tokens(int(i)) for i in vec.indices} == kept
    with pytest.raises(ValueError, match="pruning ratio"):
        Pruning(ratio=1.5)


def _reference(model, tokenizer, text: str, max_length: int) -> np.ndarray:
    """Plain torch, one text, no padding: max over positions of log(1 + relu(logits)), specials 0."""
    enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0]
    vec = torch.log1p(torch.relu(logits)).max(dim=0).values
    vec[tokenizer.all_special_ids] = 0
    return vec.numpy()


def test_batched_encoding_equals_reference_and_counts_truncation() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer), seed=3)
    texts = ["검색 모델", "The crop tool removes the borders of an image.", "레이어 " * 40, "밝기 조절?"]
    encoder = SpladeDocEncoder(model, tokenizer, max_length=24)
    result = encoder.encode(texts, max_tokens_per_batch=60)  # several batches, padded
    assert result.truncated == 1
    for row, text in enumerate(texts):
        np.testing.assert_allclose(
            result.vectors[row].toarray()[0], _reference(model, tokenizer, text, 24), atol=1e-5
        )


def test_bf16_encoding_on_cpu_is_close_to_fp32_and_a_retriever_option() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer), seed=3)
    texts = ["검색 모델", "The crop tool removes the borders of an image.", "밝기 조절?"]
    fp32 = SpladeDocEncoder(model, tokenizer, max_length=24, device="cpu").encode(texts).vectors.toarray()
    encoder = SpladeDocEncoder(model, tokenizer, max_length=24, device="cpu", bf16=True)
    assert encoder.bf16
    bf16 = encoder.encode(texts).vectors.toarray()
    assert not np.array_equal(bf16, fp32)  # it did run in BF16 ...
    cosine = (bf16 * fp32).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cosine.min() > 0.99  # ... and BF16 keeps the vectors
    with pytest.raises(WorkbenchError, match="bf16 must be 'auto', 'on' or 'off'"):
        splade_spec("unused", bf16="yes").build()
    assert splade_spec("x", bf16="on").fingerprint != splade_spec("x").fingerprint  # its own cache


def test_fused_projection_equals_whole_logits_and_restores_the_model() -> None:
    """The encoder's chunked vocabulary projection (never the whole logits) gives the maxima of the
    whole logits, chunk boundaries inside and between texts alike, and leaves the model as it was."""
    from models.encoder import _max_logits, vocabulary_projection_skipped

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer), seed=5).eval()
    projection = model.get_output_embeddings()
    hidden = torch.randn(23, projection.in_features)
    lengths = [7, 1, 15]
    whole = torch.nn.functional.linear(hidden, projection.weight, projection.bias)
    expected = torch.stack([part.amax(dim=0) for part in whole.split(lengths)])
    w, b = projection.weight, projection.bias
    starts = torch.tensor([0, 7, 8]).unsqueeze(1)
    argmax = torch.stack([part.argmax(dim=0) for part in whole.split(lengths)]) + starts
    for rows in (1, 4, 7, 64):
        torch.testing.assert_close(_max_logits(hidden, lengths, w, b, rows_per_chunk=rows)[0], expected)
        maxima, where = _max_logits(hidden, lengths, w, b, rows_per_chunk=rows, positions=True)
        torch.testing.assert_close(maxima, expected)
        assert torch.equal(where, argmax)  # the row of each maximum, for the gradient
    ids = torch.tensor([tokenizer("레이어 마스크 crop")["input_ids"]])
    with torch.no_grad(), vocabulary_projection_skipped(model) as captured:
        model(input_ids=ids)
    assert model.get_output_embeddings() is projection and captured[0].shape[:2] == ids.shape
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    torch.testing.assert_close(_max_logits(captured[0][0], [ids.shape[1]], w, b)[0][0], logits.amax(0))


def _windows_by_full_tokenization(tokenizer, texts: list[str], max_length: int) -> tuple[list, int]:
    """The peer: tokenize every text whole, keep its first window, count those with more."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_overflowing_tokens=True)
    first: dict[int, list[int]] = {}
    cut: set[int] = set()
    for window, sample in zip(encoded["input_ids"], encoded["overflow_to_sample_mapping"], strict=True):
        if sample in first:
            cut.add(sample)
        else:
            first[sample] = window
    return [first[i] for i in range(len(texts))], len(cut)


@pytest.mark.parametrize("max_length", [6, 24, 64])
def test_first_windows_equal_full_tokenization(max_length: int) -> None:
    tokenizer = build_tiny_tokenizer()
    rng = np.random.default_rng(max_length)
    pieces = ["검색", "모델을", "the", "crop", "tools", "?", "  ", "\n", "\t", "x" * 120, "밝기조절"]
    texts = [
        " ".join(rng.choice(pieces, size=int(n))) + rng.choice(["", " ", "  x"])
        for n in rng.integers(1, 300, size=120)
    ]
    texts += [" " * 500 + "검색 모델", "검색" + " " * 3000 + "모델", "x" * 5000 + " the"]
    texts = [t for t in texts if t.strip()]
    encoder = SpladeDocEncoder(build_tiny_mlm(len(tokenizer)), tokenizer, max_length=max_length)
    ids, truncated = encoder._first_windows(texts)
    expected_ids, expected_truncated = _windows_by_full_tokenization(tokenizer, texts, max_length)
    assert ids == expected_ids
    assert truncated == expected_truncated
    assert 0 < truncated < len(texts)  # both kinds occur


def test_a_huge_document_is_tokenized_only_as_far_as_its_window() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer), seed=1)
    longest = []

    class Recording:  # the tokenizer, noting the longest text it is given
        def __call__(self, texts, **kwargs):
            longest.append(max(map(len, texts)))
            return tokenizer(texts, **kwargs)

        def __getattr__(self, name):
            return getattr(tokenizer, name)

    text = "레이어 마스크 the crop tool removes borders . " * 20_000  # 0.9 M characters
    encoder = SpladeDocEncoder(model, tokenizer, max_length=24)
    encoder.tokenizer = Recording()
    result = encoder.encode([text, "검색 모델"])
    assert max(longest) <= 8 * 24
    assert result.truncated == 1 and result.tokens == 24 + 4
    np.testing.assert_allclose(
        result.vectors[0].toarray()[0], _reference(model, tokenizer, text, 24), atol=1e-5
    )


def test_not_a_masked_lm_is_refused(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(tmp_path / "encoder")  # fmt: skip
    with pytest.raises(ModelLoadError, match="not a masked-LM checkpoint \\(architectures: BertModel\\)"):
        load_encoder(tmp_path / "encoder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_encoder(tmp_path / "empty")


# ----------------------------------------------------------------------------- idf


def test_idf_formula_and_streaming() -> None:
    tokenizer = build_tiny_tokenizer()
    texts = ["검색 모델 검색", "모델", "layer"]
    df, n = document_frequencies(texts, tokenizer, batch_size=1)
    vocab = tokenizer.get_vocab()
    assert n == 3 and df[vocab["검색"]] == 1 and df[vocab["모델"]] == 2 and df[vocab["crop"]] == 0
    assert np.array_equal(df, document_frequencies(texts, tokenizer, batch_size=512)[0])
    idf = idf_from_df(df, n)
    assert idf[vocab["모델"]] == pytest.approx(math.log(1 + 1.5 / 2.5))
    assert idf[vocab["검색"]] == pytest.approx(math.log(1 + 2.5 / 1.5))
    assert idf[vocab["crop"]] == pytest.approx(math.log(1 + 3.5 / 0.5))


def test_idf_json_round_trip_and_errors(tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer()
    weights = IdfWeights.from_corpus([f"{t} {x}" for t, x in TINY_CORPUS.values()], tokenizer)
    weights.to_json(tmp_path / "idf.json")
    raw = json.loads((tmp_path / "idf.json").read_text())
    assert "[CLS]" not in raw and raw["레이어"] == pytest.approx(
        float(weights.weights[tokenizer.convert_tokens_to_ids("레이어")])
    )
    back = IdfWeights.from_json(tmp_path / "idf.json", tokenizer)
    ids, w = back.query_vector("레이어 레이어 crop zebra")  # repeated once; zebra -> [UNK] (special)
    assert tokenizer.convert_ids_to_tokens(ids.tolist()) == sorted(
        ["레이어", "crop"], key=tokenizer.get_vocab().get
    )
    np.testing.assert_allclose(w, weights.weights[ids])
    del raw["crop"]
    (tmp_path / "partial.json").write_text(json.dumps(raw))
    partial = IdfWeights.from_json(tmp_path / "partial.json", tokenizer)
    assert partial.weights[tokenizer.convert_tokens_to_ids("crop")] == 1.0  # OpenSearch's default
    for content, message in [
        ('{"레이어": 1.0, "zzz": 2.0}', "1 keys are not in the tokenizer's vocabulary \\('zzz'\\)"),
        ('{"레이어": NaN}', "weight of '레이어' is not a finite number"),
        ('{"레이어": "high"}', "weight of '레이어' is not a finite number"),
        ('{"레이어": -0.5}', "weight of '레이어' is negative: -0.5"),
        ("[1, 2]", "expected a JSON object"),
        ("{broken", "cannot read idf weights"),
    ]:
        (tmp_path / "bad.json").write_text(content)
        with pytest.raises(WorkbenchError, match=message):
            IdfWeights.from_json(tmp_path / "bad.json", tokenizer)
    weights.to_json(tmp_path / "ids.json", key_format="token_id")
    assert IdfWeights.from_json(
        tmp_path / "ids.json", tokenizer, key_format="token_id"
    ).weights.tolist() == pytest.approx(
        [1.0 if i in tokenizer.all_special_ids else w for i, w in enumerate(weights.weights.tolist())]
    )


def _sentencepiece_tokenizer():
    """A SentencePiece-style (Unigram + Metaspace) tokenizer where "▁국" and "국" are two ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), ("<pad>", 0.0), ("▁국", -1.0), ("국", -2.0),
              ("▁어", -1.5), ("어", -2.5), ("▁", -3.0), ("가", -2.0), ("▁가", -1.2), ("▁layer", -1.0),
              ("s", -2.0)]  # fmt: skip
    backend = Tokenizer(models.Unigram(pieces, unk_id=0))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def test_fidelity_wordpiece_is_exact_sentencepiece_is_not() -> None:
    wordpiece = build_tiny_tokenizer()
    weights = IdfWeights.from_corpus([f"{t} {x}" for t, x in TINY_CORPUS.values()], wordpiece)
    keys = {wordpiece.decode([i]): 1.0 for i in range(len(wordpiece)) if i not in wordpiece.all_special_ids}
    report = check_fidelity(wordpiece, keys, ["레이어 마스크를 crop", "밝기 조절"])
    assert report.collisions == {} and report.not_round_trip == [] and report.missing_share == 0.0
    assert report.keys == len(wordpiece) - 5 and weights.weights.shape == (len(wordpiece),)

    spm = _sentencepiece_tokenizer()
    idf = {"국": 1.0, "layer": 2.0, "s": 0.5, "": 0.1}
    report = check_fidelity(spm, idf, ["국어", "layers 가국"])
    assert report.collisions == {"국": [4, 5], "어": [6, 7], "가": [9, 10]}
    assert report.not_round_trip == ["layer", ""]  # the vocabulary has "▁layer"; "" is no entry
    # tokens: 국 어 | layer s 가 국 -> 어 and 가 are not keys: OpenSearch weighs them 1.0
    assert (report.query_tokens, report.missing_query_tokens) == (6, 2)
    assert report.missing_share == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_sentence_transformers_parity(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_transformers import SparseEncoder

    encoder = load_encoder(tiny_checkpoint)
    idf = load_idf(tiny_checkpoint, encoder.tokenizer)
    manifest = read_manifest(tiny_checkpoint)
    assert manifest["format"] == "splade-doc-checkpoint/1" and manifest["name"] == "tiny test model"
    assert {"torch", "transformers"} <= set(manifest["versions"])
    texts = ["레이어 마스크를 추가하면", "The crop tool removes the borders of an image.", "밝기"]
    ours = encoder.encode(texts).vectors.toarray()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st = SparseEncoder(str(tiny_checkpoint), device="cpu")
    np.testing.assert_allclose(
        st.encode_document(texts, convert_to_tensor=True).to_dense().numpy(), ours, atol=1e-5
    )
    queries = ["레이어 레이어 crop", "밝기 조절"]
    st_queries = st.encode_query(queries, convert_to_tensor=True).to_dense().numpy()
    for row, query in enumerate(queries):
        ids, weights = idf.query_vector(query)
        expected = np.zeros(st_queries.shape[1], dtype=np.float32)
        expected[ids] = weights
        np.testing.assert_allclose(st_queries[row], expected, atol=1e-6)


def test_saving_leaves_the_model_unchanged_and_replaces_whole(tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer), seed=5)
    before = model.get_output_embeddings().bias.detach().clone()
    idf = IdfWeights(np.ones(len(tokenizer)), tokenizer)
    out = save_checkpoint(tmp_path / "ck", model, tokenizer, idf, {"step": 1}, max_seq_length=64)
    assert torch.equal(model.get_output_embeddings().bias, before)
    save_checkpoint(out, model, tokenizer, idf, {"step": 2}, max_seq_length=64)
    assert read_manifest(out)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary folders left
    modes = {p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert len(modes) == 1, modes  # every file of the folder alike (safetensors writes 0600 itself)


def test_one_inference_length_for_harness_and_sentence_transformers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trained at 16 tokens, declared for inference at 96: both readers encode at 96, equally."""
    from sentence_transformers import SparseEncoder

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer), seed=3)
    idf = IdfWeights(np.ones(len(tokenizer)), tokenizer)
    path = save_checkpoint(tmp_path / "ck", model, tokenizer, idf, max_seq_length=96, train_max_length=16)
    manifest = read_manifest(path)
    assert (manifest["max_seq_length"], manifest["train_max_length"]) == (96, 16)
    assert json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"] == 96
    assert inference_length(path) == 96 and inference_length("some/hub-id") == 512
    words = [t for pair in TINY_CORPUS.values() for t in " ".join(pair).split()]
    texts = [" ".join((words * 10)[: 10 * n]) for n in range(2, 16, 3)]  # 20 to 140 words
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    assert min(lengths) > 16 and max(lengths) > 96  # all beyond the training length, some cut at 96
    harness = splade_spec(str(path)).build().encoder  # what evaluate.py encodes with
    assert harness.max_length == 96
    result = harness.encode(texts)
    assert result.truncated == sum(n > 96 for n in lengths)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    st = SparseEncoder(str(path), device="cpu")
    theirs = st.encode_document(texts, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(theirs, result.vectors.toarray(), atol=1e-5)
    # the same model cut at its training length would differ: the length matters
    short = load_encoder(path, max_length=16).encode(texts).vectors.toarray()
    assert np.abs(short - theirs).max() > 1e-2
    # a larger request is capped by the model's 128 positions
    capped = save_checkpoint(tmp_path / "capped", model, tokenizer, idf, max_seq_length=4096)
    assert read_manifest(capped)["max_seq_length"] == 128
    # a manifest from before the length was declared held the training length: read at 512, as then
    legacy = json.loads((capped / "manifest.json").read_text()) | {"max_seq_length": 16}
    del legacy["train_max_length"]
    (capped / "manifest.json").write_text(json.dumps(legacy))
    assert inference_length(capped) == 512


def test_model_fingerprint_has_one_rule(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(tiny_checkpoint, tmp_path / "copy"))
    first = model_fingerprint(copy)
    assert first == model_fingerprint(tiny_checkpoint) and model_fingerprint("owner/model") == "owner/model"
    (copy / "README.md").write_text("a model card")  # cards and the trainer state are not the model
    (copy / "trainer_state.pt").write_bytes(b"optimizer")
    assert model_fingerprint(copy) == first
    nested = copy / "query_0_SparseStaticEmbedding" / "config.json"  # nested files count
    nested.write_text(nested.read_text() + " ")
    assert model_fingerprint(copy) != first


# ----------------------------------------------------------------------------- index and retrievers


@pytest.mark.parametrize("density", [0.1, 0.01])  # postings above / below a quarter of the documents
def test_sparse_index_equals_brute_force_with_ties(density: float) -> None:
    rng = np.random.default_rng(0)
    docs = sp.random(300, 50, density=density, random_state=1, format="csr", dtype=np.float32)
    docs.data = np.round(docs.data * 4) / 4 + 0.25  # coarse weights: many tied scores
    index = SparseIndex(docs)
    assert index.nbytes == docs.nnz * 8 + (50 + 1) * 8
    dense = docs.toarray().astype(np.float64)
    for _ in range(20):
        ids = rng.choice(50, size=4, replace=False)
        weights = rng.choice([0.5, 1.0, 2.0], size=4)
        brute = dense[:, ids] @ weights
        found, scores = index.search(ids, weights, k=10)
        np.testing.assert_allclose(scores, brute[found])
        positive = np.flatnonzero(brute > 0)
        expected = sorted(positive, key=lambda d: (-brute[d], d))[:10]
        got = sorted(found.tolist(), key=lambda d: (-brute[d], d))[:10]
        assert got == expected
        assert set(found) >= set(expected) and np.all(brute[found] >= brute[expected[-1]] - 1e-12)
        if len(positive) <= 10:
            assert sorted(found) == positive.tolist()  # every document that scores, once
        everything, _ = index.search(ids, weights, k=400)  # k above the number scoring
        assert sorted(everything) == positive.tolist()


def test_splade_retriever_matches_brute_force_and_caches(
    tiny_checkpoint: Path, tiny_beir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load_beir(tiny_beir)
    retriever = splade_spec(str(tiny_checkpoint)).build()
    retriever.index(data)
    queries = {"q1": "이미지를 자르기", "q2": "layer mask transparent", "e": ""}
    ranking = retriever.search(queries, k=3)
    encoder = load_encoder(tiny_checkpoint)
    idf = load_idf(tiny_checkpoint, encoder.tokenizer)
    docs = encoder.encode([d.full_text for d in data.corpus.values()]).vectors.toarray()
    for qid in ("q1", "q2"):
        ids, weights = idf.query_vector(queries[qid])
        brute = docs[:, ids] @ weights
        order = sorted(np.flatnonzero(brute > 0), key=lambda d: (-brute[d], list(data.corpus)[d]))[:3]
        assert list(ranking.to_dict()[qid]) == [list(data.corpus)[d] for d in order]
        assert list(ranking.to_dict()[qid].values()) == pytest.approx(brute[order].tolist(), rel=1e-5)
    assert "e" not in ranking
    stats = retriever.stats()
    assert stats["doc_active_mean"] == pytest.approx(np.count_nonzero(docs, axis=1).mean())
    assert stats["index_bytes"] > 0 and stats["flops"] > 0 and stats["truncated_documents"] == 0

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("documents encoded again despite the cache")

    again = splade_spec(str(tiny_checkpoint)).build()
    monkeypatch.setattr(SpladeDocEncoder, "encode", refuse)
    again.index(data)  # from the cache
    assert again.search(queries, k=3).to_dict() == ranking.to_dict()
    with (tiny_beir / "corpus.jsonl").open("a") as f:
        f.write('{"_id": "d9", "text": "검색 모델"}\n')
    with pytest.raises(AssertionError, match="encoded again"):
        again.index(load_beir(tiny_beir))  # new data: a new cache entry


def test_cache_is_keyed_by_model(tiny_checkpoint: Path, tiny_beir: Path, tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer()
    other = save_checkpoint(
        tmp_path / "other", build_tiny_mlm(len(tokenizer), seed=9), tokenizer,
        IdfWeights(np.ones(len(tokenizer)), tokenizer), max_seq_length=64,
    )  # fmt: skip
    data = load_beir(tiny_beir)
    a, b = splade_spec(str(tiny_checkpoint)).build(), splade_spec(str(other)).build()
    assert a.cache_path(data) != b.cache_path(data)


def test_missing_or_bad_idf_json(tiny_checkpoint: Path, tiny_beir: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(tiny_checkpoint, tmp_path / "copy"))
    (copy / "idf.json").unlink()
    retriever = splade_spec(str(copy)).build()
    with pytest.raises(WorkbenchError, match="idf.json not found: compute one with `python evaluate.py idf"):
        retriever.index(load_beir(tiny_beir), use_cache=False)
    (copy / "idf.json").write_text('{"레이어": Infinity}')
    with pytest.raises(WorkbenchError, match="weight of '레이어' is not a finite number"):
        splade_spec(str(copy)).build().index(load_beir(tiny_beir), use_cache=False)
    with pytest.raises(WorkbenchError, match="not-here: checkpoint directory not found"):
        splade_spec(str(tmp_path / "not-here")).build().index(load_beir(tiny_beir), use_cache=False)


def test_idf_only_scores_by_hand(tiny_checkpoint: Path, tiny_beir: Path) -> None:
    from harness.retrievers.base import RetrieverSpec

    spec = RetrieverSpec(
        "idf-only-test", "idf-only", IdfOnlyRetriever, "t", params={"model": str(tiny_checkpoint)}
    )
    retriever = spec.build()
    data = load_beir(tiny_beir)
    retriever.index(data, use_cache=False)
    tokenizer = build_tiny_tokenizer()
    texts = [d.full_text for d in data.corpus.values()]
    idf = IdfWeights.from_corpus(texts, tokenizer)
    query = "layer 레이어"
    ids, weights = idf.query_vector(query)
    expected = {}
    for doc_id, text in zip(data.corpus, texts, strict=True):
        tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
        score = sum(float(w) * tokens.count(int(i)) for i, w in zip(ids, weights, strict=True))
        if score > 0:
            expected[doc_id] = score
    assert retriever.search({"q": query}, k=10).to_dict()["q"] == pytest.approx(expected)
