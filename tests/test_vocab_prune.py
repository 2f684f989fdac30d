"""Vocabulary pruning (models.vocab_prune): the kept pieces, the remapped masked-LM and tokenizer, the
written checkpoint, the measured tokenization change, and bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY_SPECIALS, build_tiny_mlm, build_tiny_tokenizer

from common.errors import WorkbenchError
from models.checkpoint import (
    inference_length,
    load_encoder,
    load_idf,
    load_masked_lm,
    model_fingerprint,
    read_manifest,
)
from models.encoder import SpladeDocEncoder
from models.vocab_prune import Corpus, main, prune, prune_tokenizer_json, read_corpus, tokenizer_json

PRUNE_TEXTS = ("레이어 마스크", "The crop tool removes the borders.")
# by hand: what the tiny WordPiece tokenizer makes of PRUNE_TEXTS ...
SEEN = {"레이어", "마스크", "the", "crop", "tool", "removes", "border", "##s", "."}
# ... and its single characters and ##-single characters (conftest's TINY_WORDS)
SINGLE = set("가나다를을의는은이하게로만들수a.,?!") | {f"##{c}" for c in "를을의는은이다하게로니습s"}


def _logits(model, tokenizer, texts) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [model(**tokenizer(text, return_tensors="pt")).logits[0] for text in texts]


def _tokens(tokenizer, texts) -> list[list[str]]:
    return [tokenizer.tokenize(text) for text in texts]


# --------------------------------------------------------------------------- WordPiece


@pytest.fixture(scope="module")
def wordpiece():
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer))
    pruned = prune(model, tokenizer, [Corpus("prune", PRUNE_TEXTS)])
    return model, tokenizer, pruned


def test_wordpiece_keeps_exactly_seen_specials_and_single_characters(wordpiece) -> None:
    _, tokenizer, pruned = wordpiece
    vocab = tokenizer.get_vocab()
    expected = SEEN | set(TINY_SPECIALS) | SINGLE
    kept = tokenizer.convert_ids_to_tokens(pruned.kept_old_ids)
    assert set(kept) == expected
    assert kept == sorted(expected, key=vocab.__getitem__)  # original order, specials first
    assert pruned.tokenizer.convert_ids_to_tokens(list(range(len(expected)))) == kept
    assert pruned.report["vocab_before"] == len(tokenizer) == 74
    assert pruned.report["vocab_after"] == len(pruned.tokenizer) == len(expected) == 45
    assert pruned.report["kept_by_rule"] == {"seen": 9, "structural": 5, "fallback": 33}


def test_wordpiece_model_rows_logits_and_tokenization_equal_the_source(wordpiece) -> None:
    model, tokenizer, pruned = wordpiece
    kept = torch.tensor(pruned.kept_old_ids)
    new_model = pruned.model
    assert new_model.config.vocab_size == len(kept)
    source_rows = model.get_input_embeddings().weight[kept]
    assert torch.equal(new_model.get_input_embeddings().weight, source_rows)
    assert torch.equal(new_model.get_output_embeddings().bias, model.get_output_embeddings().bias[kept])
    head = new_model.get_output_embeddings().weight
    assert head.data_ptr() == new_model.get_input_embeddings().weight.data_ptr()  # tied, as the source
    assert _tokens(pruned.tokenizer, PRUNE_TEXTS) == _tokens(tokenizer, PRUNE_TEXTS)
    for old, new in zip(
        _logits(model, tokenizer, PRUNE_TEXTS), _logits(new_model, pruned.tokenizer, PRUNE_TEXTS), strict=True
    ):
        assert new.shape == (old.shape[0], len(kept))
        torch.testing.assert_close(new, old[:, kept], atol=1e-5, rtol=0)
    row = pruned.report["corpora"][0]
    assert (row["role"], row["texts"], row["tokens"], row["changed_texts"]) == ("prune", 2, 10, 0)
    assert new_model.get_input_embeddings().padding_idx == pruned.tokenizer.pad_token_id == 0
    assert pruned.tokenizer.mask_token_id == 4 and pruned.tokenizer.unk_token_id == 1


def test_wordpiece_change_on_held_out_text_is_measured() -> None:
    tokenizer = build_tiny_tokenizer()
    held_out = Corpus("held-out", ("search model", "레이어 마스크", "레이어를 자르기"))
    pruned = prune(build_tiny_mlm(len(tokenizer)), tokenizer, [Corpus("prune", PRUNE_TEXTS)], [held_out])
    row = pruned.report["corpora"][1]
    # search model -> [UNK] [UNK] (no single Latin letters but "a"); 레이어를 자르기 -> 레이어 ##를 [UNK]
    assert _tokens(pruned.tokenizer, held_out.texts) == [
        ["[UNK]", "[UNK]"],
        ["레이어", "마스크"],
        ["레이어", "##를", "[UNK]"],
    ]
    counts = {
        k: row[k] for k in ("texts", "tokens", "changed_texts", "changed_tokens", "unk_before", "unk_after")
    }
    assert counts == {
        "texts": 3,
        "tokens": 7,
        "changed_texts": 2,
        "changed_tokens": 5,
        "unk_before": 0,
        "unk_after": 3,
    }
    assert row["role"] == "check" and row["changed_token_share"] == pytest.approx(5 / 7)


def test_an_untied_head_keeps_its_own_rows() -> None:
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(1)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        tie_word_embeddings=False,
    )
    model = BertForMaskedLM(config).eval()
    assert model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    pruned = prune(model, tokenizer, [Corpus("prune", PRUNE_TEXTS)])
    kept = torch.tensor(pruned.kept_old_ids)
    head, embeddings = pruned.model.get_output_embeddings(), pruned.model.get_input_embeddings()
    assert head.weight.data_ptr() != embeddings.weight.data_ptr()
    assert torch.equal(head.weight, model.get_output_embeddings().weight[kept])
    assert torch.equal(embeddings.weight, model.get_input_embeddings().weight[kept])
    assert not torch.equal(head.weight, embeddings.weight)
    old, new = (
        _logits(model, tokenizer, PRUNE_TEXTS[1:])[0],
        _logits(pruned.model, pruned.tokenizer, PRUNE_TEXTS[1:])[0],
    )
    torch.testing.assert_close(new, old[:, kept], atol=1e-5, rtol=0)


def _vector_by_token(encoder, text: str, ids: list[int] | None = None) -> dict[str, float]:
    """A text's SPLADE vector as token string -> weight; with `ids`, only those dimensions."""
    vector = encoder.encode([text]).vectors
    row = (vector if ids is None else vector[:, ids])[0].tocoo()
    columns = row.col.tolist() if ids is None else [ids[j] for j in row.col.tolist()]
    return dict(zip(encoder.tokenizer.convert_ids_to_tokens(columns), row.data.tolist(), strict=True))


def test_command_writes_a_checkpoint_whose_splade_vectors_match_the_source(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "prune.txt"
    corpus.write_text("\n".join(PRUNE_TEXTS) + "\n\n", encoding="utf-8")
    held_out = tmp_path / "held-out.txt"
    held_out.write_text("search model\n레이어를 자르기\n", encoding="utf-8")
    out = tmp_path / "pruned"
    argv = [
        "--model",
        str(tiny_checkpoint),
        "--out",
        str(out),
        "--corpus",
        str(corpus),
        "--check",
        str(held_out),
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)

    model, tokenizer = load_masked_lm(out)
    assert model.config.vocab_size == len(tokenizer) == 45
    manifest = read_manifest(out)
    report = manifest["vocab_pruning"]
    assert manifest["source_fingerprint"] == model_fingerprint(tiny_checkpoint)
    assert manifest["source_model"] == str(tiny_checkpoint)
    assert inference_length(out) == inference_length(tiny_checkpoint) == 64
    assert [(r["spec"], r["role"], r["documents"], r["changed_texts"]) for r in report["corpora"]] == [
        (str(corpus), "prune", 2, 0),
        (str(held_out), "check", 2, 2),
    ]
    assert len(report["corpora"][0]["sha256"]) == 64
    _, source_tokenizer = load_masked_lm(tiny_checkpoint)
    kept_tokens = source_tokenizer.convert_ids_to_tokens(report["kept_old_ids"])
    assert tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))) == kept_tokens
    assert set(load_idf(out, tokenizer).weights.tolist()) - {1.0}  # idf over the pruning corpus

    source, pruned = load_encoder(tiny_checkpoint), load_encoder(out)
    for text in PRUNE_TEXTS:
        expected = _vector_by_token(source, text, report["kept_old_ids"])
        assert len(_vector_by_token(source, text)) > len(expected)  # expansion terms pruned away
        got = _vector_by_token(pruned, text)
        assert expected and got.keys() == expected.keys()
        assert got == pytest.approx(expected, abs=1e-5)


# --------------------------------------------------------------------------- Unigram (XLM-R)

XLMR_TEXTS = (
    "레이어 마스크를 추가하면 이미지의 일부를 투명하게 만들 수 있습니다.",
    "The crop tool removes the borders of an image.",
    "레이어 <mask>를 추가하면 The crop <mask> removes",
)
XLMR_HELD_OUT = (
    "색상 도구로 이미지의 밝기와 대비를 조절합니다.",
    "A layer mask makes parts 䨻 of a layer ☃ transparent.",
)


@dataclass
class Xlmr:
    source_model: Any
    source_tokenizer: Any
    pruned: SpladeDocEncoder  # the written checkpoint, read back by load_encoder
    report: dict[str, Any]


@pytest.fixture(scope="module")
def xlmr(tmp_path_factory: pytest.TempPathFactory) -> Xlmr:
    """The real XLM-R tokenizer and a random 250,002-row BERT of hidden size 8, saved as a plain
    Hugging Face folder, pruned by the command on XLMR_TEXTS and checked on XLMR_HELD_OUT."""
    from transformers import BertConfig, BertForMaskedLM

    from models.xlmr_tokenizer import load_xlmr_tokenizer

    tokenizer = load_xlmr_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5,
    )
    model = BertForMaskedLM(config).eval()
    root = tmp_path_factory.mktemp("xlmr")
    model.save_pretrained(root / "source")
    tokenizer.save_pretrained(root / "source")
    (root / "prune.txt").write_text("\n".join(XLMR_TEXTS), encoding="utf-8")
    (root / "held-out.txt").write_text("\n".join(XLMR_HELD_OUT), encoding="utf-8")
    argv = [
        "--model",
        str(root / "source"),
        "--out",
        str(root / "pruned"),
        "--corpus",
        str(root / "prune.txt"),
    ]
    assert main([*argv, "--check", str(root / "held-out.txt")]) == 0
    report = read_manifest(root / "pruned")["vocab_pruning"]
    return Xlmr(model, tokenizer, load_encoder(root / "pruned"), report)


def test_unigram_keeps_single_characters_and_the_source_model_at_kept_ids(xlmr: Xlmr) -> None:
    model, tokenizer = xlmr.pruned.model, xlmr.pruned.tokenizer
    kept = xlmr.report["kept_old_ids"]
    vocab = xlmr.source_tokenizer.get_vocab()
    single = {i for p, i in vocab.items() if len(p) == 1 or (len(p) == 2 and p[0] == "▁")}
    seen = {i for t in XLMR_TEXTS for i in xlmr.source_tokenizer(t, add_special_tokens=False)["input_ids"]}
    specials = {0, 1, 2, 3, 250001}
    assert single <= set(kept) and seen <= set(kept) and specials <= set(kept)
    assert set(kept) - single - seen - specials == set()  # the lowest-scored piece is a single character
    assert xlmr.report["tokenizer_model"] == "Unigram" and xlmr.report["vocab_before"] == 250_002
    assert len(tokenizer) == model.config.vocab_size == len(kept) == xlmr.report["vocab_after"] < 16_000
    assert _tokens(tokenizer, XLMR_TEXTS) == _tokens(xlmr.source_tokenizer, XLMR_TEXTS)
    assert xlmr.report["corpora"][0]["changed_texts"] == 0
    index = torch.tensor(kept)
    source_embeddings = xlmr.source_model.get_input_embeddings().weight
    assert torch.equal(model.get_input_embeddings().weight, source_embeddings[index])
    special = set(tokenizer.all_special_ids)  # saved with bias -1e4
    other = [i for i in range(len(kept)) if i not in special]
    old_logits = _logits(xlmr.source_model, xlmr.source_tokenizer, XLMR_TEXTS)
    for old, new in zip(old_logits, _logits(model, tokenizer, XLMR_TEXTS), strict=True):
        torch.testing.assert_close(new[:, other], old[:, index][:, other], atol=1e-5, rtol=0)
    source = SpladeDocEncoder(xlmr.source_model, xlmr.source_tokenizer, max_length=64)
    for text in XLMR_TEXTS:
        expected = _vector_by_token(source, text, kept)
        assert expected and _vector_by_token(xlmr.pruned, text) == pytest.approx(expected, abs=1e-5)


def test_unigram_mask_and_held_out_text(xlmr: Xlmr) -> None:
    model, tokenizer, source_tokenizer = xlmr.pruned.model, xlmr.pruned.tokenizer, xlmr.source_tokenizer
    kept = xlmr.report["kept_old_ids"]
    assert (
        tokenizer.mask_token == "<mask>" and kept[tokenizer.mask_token_id] == source_tokenizer.mask_token_id
    )
    masked = tokenizer(XLMR_TEXTS[2])["input_ids"]
    assert masked.count(tokenizer.mask_token_id) == 2
    assert [kept[i] for i in masked] == source_tokenizer(XLMR_TEXTS[2])["input_ids"]
    assert torch.equal(
        model.get_input_embeddings().weight[tokenizer.mask_token_id],
        xlmr.source_model.get_input_embeddings().weight[source_tokenizer.mask_token_id],
    )
    row = xlmr.report["corpora"][1]
    assert row["role"] == "check" and row["changed_texts"] == 2  # whole words gone: split into pieces
    assert row["unk_before"] == row["unk_after"] == 1  # 䨻 was unknown already; ☃ is still a piece
    before = [source_tokenizer(t, add_special_tokens=False)["input_ids"] for t in XLMR_HELD_OUT]
    after = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in XLMR_HELD_OUT]
    assert [ids.count(3) for ids in before] == [ids.count(tokenizer.unk_token_id) for ids in after] == [0, 1]
    assert [tokenizer.decode(ids) for ids in after] == [source_tokenizer.decode(ids) for ids in before]


# --------------------------------------------------------------------------- bad input


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_unknown_and_empty_corpora_are_clear_errors(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    base = ["--model", str(tiny_checkpoint), "--out", str(out)]
    code, err = _run([*base, "--corpus", "no-such-corpus"], capsys)
    assert code == 1 and "corpus 'no-such-corpus': no such file or folder" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    code, err = _run([*base, "--corpus", str(empty)], capsys)
    assert code == 1 and f"{empty}: empty corpus" in err
    assert not out.exists()


def test_a_malformed_corpus_line_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "beir"
    folder.mkdir()
    good = json.dumps({"_id": "d1", "title": "레이어", "text": "마스크"}, ensure_ascii=False)
    (folder / "corpus.jsonl").write_text(f"{good}\n{{not json\n", encoding="utf-8")
    with pytest.raises(WorkbenchError, match=rf"{folder / 'corpus.jsonl'}:2: malformed JSON"):
        read_corpus(str(folder))
    (folder / "corpus.jsonl").write_text(f'{good}\n{{"_id": "d2", "text": 7}}\n', encoding="utf-8")
    with pytest.raises(WorkbenchError, match=r"corpus.jsonl:2: 'text' must be a string"):
        read_corpus(str(folder))
    (folder / "corpus.jsonl").write_text(good + "\n", encoding="utf-8")
    assert read_corpus(str(folder)).documents == ("레이어 마스크",)


def test_an_existing_output_needs_force(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "prune.txt"
    corpus.write_text("\n".join(PRUNE_TEXTS), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    argv = ["--model", str(tiny_checkpoint), "--out", str(out), "--corpus", str(corpus)]
    code, err = _run(argv, capsys)
    assert code == 1 and "already exists; pass --force" in err and (out / "keep.txt").is_file()
    code, err = _run([*argv[:2], "--out", str(tiny_checkpoint), *argv[4:], "--force"], capsys)
    assert code == 1 and "would replace the source model" in err
    assert main([*argv, "--force"]) == 0
    assert not (out / "keep.txt").exists() and read_manifest(out)["vocab_pruning"]["vocab_after"] == 45


def test_a_model_that_is_not_a_masked_lm_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import BertConfig, BertModel

    tokenizer = build_tiny_tokenizer()
    folder = tmp_path / "encoder"
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    corpus = tmp_path / "prune.txt"
    corpus.write_text(PRUNE_TEXTS[0], encoding="utf-8")
    base = ["--out", str(tmp_path / "out"), "--corpus", str(corpus)]
    code, err = _run(["--model", str(folder), *base], capsys)
    assert code == 1 and "not a masked-LM checkpoint (architectures: BertModel)" in err
    code, err = _run(["--model", str(tmp_path), *base], capsys)
    assert code == 1 and "no config.json" in err
    assert not (tmp_path / "out").exists()


def test_a_bpe_tokenizer_is_refused() -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "a": 1, "b": 2, "ab": 3}
    backend = Tokenizer(BPE(vocab=vocab, merges=[("a", "b")], unk_token="[UNK]"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    with pytest.raises(WorkbenchError, match="cannot prune a BPE tokenizer"):
        prune(build_tiny_mlm(len(tokenizer)), tokenizer, [Corpus("c", ("ab",))])
    with pytest.raises(WorkbenchError, match="cannot prune a BPE tokenizer"):
        prune_tokenizer_json(tokenizer_json(tokenizer), [0, 1])


def test_registered_dataset_names_go_through_the_given_resolver(tmp_path: Path) -> None:
    def datasets(name: str) -> Corpus:
        if name != "tiny-set":
            raise WorkbenchError(f"unknown dataset {name!r}")
        return Corpus(name, ("레이어 마스크",), ("마스크",), source="registry")

    corpus = read_corpus("tiny-set", datasets)
    assert corpus.texts == ("레이어 마스크", "마스크") and corpus.record()["queries"] == 1
    with pytest.raises(WorkbenchError, match="unknown dataset 'other'"):
        read_corpus("other", datasets)
    with pytest.raises(WorkbenchError, match="empty corpus"):
        read_corpus("blank", lambda name: Corpus(name, (" ",)))


def test_harness_reads_registered_datasets_as_their_documents() -> None:
    from harness.vocab_prune import dataset_corpus

    corpus = dataset_corpus("gimp-ko")
    assert len(corpus.documents) == 1908 and corpus.queries == ()
    assert corpus.source == "dataset gimp-ko"
    with pytest.raises(WorkbenchError, match="unknown dataset 'no-such-set'"):
        read_corpus("no-such-set", dataset_corpus)
