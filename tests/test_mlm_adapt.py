"""Masked-LM adaptation of the MLM head (models.mlm_adapt): BERT's masking, the loss at the chosen
positions against transformers' own, what is trained and what stays frozen, the written checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_CORPUS, build_tiny_mlm, build_tiny_tokenizer

from common.errors import WorkbenchError
from models.checkpoint import load_idf, load_masked_lm, read_manifest, save_checkpoint
from models.encoder import train_top_layers
from models.idf import IdfWeights
from models.mlm_adapt import (
    IGNORE,
    AdaptConfig,
    adapt,
    adapt_checkpoint,
    batches,
    chunk_texts,
    main,
    mask_tokens,
    masked_lm_loss,
)
from models.vocab_prune import Corpus

TEXTS = tuple(f"{title} {text}" for title, text in TINY_CORPUS.values())


def test_bert_masking_shares_and_what_is_never_masked() -> None:
    ids = torch.randint(5, 1000, (400, 250), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 1  # a special token at the start of every row
    maskable = ids != 1
    random_ids = torch.arange(5, 1000)
    inputs, labels = mask_tokens(ids, maskable, 4, random_ids, 0.15, torch.Generator().manual_seed(1))
    chosen = labels != IGNORE
    assert not chosen[:, 0].any() and (inputs[:, 0] == 1).all()
    assert torch.equal(labels[chosen], ids[chosen])  # labels: the original ids, only where chosen
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else is touched
    share = chosen.sum().item() / maskable.sum().item()
    assert abs(share - 0.15) < 0.005
    n = chosen.sum().item()
    masked = (inputs[chosen] == 4).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    assert abs(masked - 0.8) < 0.01
    assert abs(kept - 0.1) < 0.01  # (a random draw equal to the original: 1 in 995 of the 10%)
    replaced = chosen & (inputs != 4) & (inputs != ids)
    assert abs(replaced.sum().item() / n - 0.1) < 0.01
    assert ((inputs[replaced] >= 5) & (inputs[replaced] < 1000)).all()
    again = mask_tokens(ids, maskable, 4, random_ids, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)  # seeded


def test_a_batch_always_has_one_chosen_position() -> None:
    ids = torch.tensor([[1, 7, 8, 2]])
    maskable = torch.tensor([[False, True, True, False]])
    _, labels = mask_tokens(ids, maskable, 4, torch.arange(5, 9), 1e-9, torch.Generator().manual_seed(0))
    chosen = (labels != IGNORE).nonzero().tolist()
    assert len(chosen) == 1 and chosen[0][1] in (1, 2)


def test_chunks_cover_every_token_in_order() -> None:
    tokenizer = build_tiny_tokenizer()
    texts = ["", TEXTS[0] + " " + TEXTS[3], "레이어"]
    chunks = chunk_texts(tokenizer, texts, 6)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert all(len(c) <= 6 and c[0] == cls and c[-1] == sep for c in chunks)
    inner = [i for c in chunks for i in c[1:-1]]
    expected = [i for t in texts for i in tokenizer(t, add_special_tokens=False)["input_ids"]]
    assert inner == expected
    with pytest.raises(WorkbenchError, match="no room"):
        chunk_texts(tokenizer, texts, 2)


def test_batches_hold_every_chunk_once_grouped_by_length() -> None:
    chunks = [[1] * n for n in (3, 9, 4, 9, 3, 5, 8, 4)]
    grouped = batches(chunks, 2, seed=3)
    assert sorted(len(c) for b in grouped for c in b) == sorted(map(len, chunks))
    lengths = sorted(tuple(sorted(len(c) for c in b)) for b in grouped)
    assert lengths == [(3, 3), (4, 4), (5, 8), (9, 9)]
    assert [[len(c) for c in b] for b in batches(chunks, 2, seed=3)] == [[len(c) for c in b] for b in grouped]


def test_loss_at_the_chosen_positions_equals_transformers_masked_lm_loss() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer))
    padded = tokenizer.pad({"input_ids": chunk_texts(tokenizer, TEXTS, 16)}, return_tensors="pt")
    ids, attention = padded["input_ids"], padded["attention_mask"]
    maskable = attention.bool() & (ids > 4)
    inputs, labels = mask_tokens(ids, maskable, tokenizer.mask_token_id, torch.arange(5, len(tokenizer)),
                                 0.3, torch.Generator().manual_seed(0))  # fmt: skip
    with torch.no_grad():
        loss, correct = masked_lm_loss(model, inputs, attention, labels)
        reference = model(input_ids=inputs, attention_mask=attention, labels=labels)
    assert loss.item() == pytest.approx(reference.loss.item(), rel=1e-5)
    chosen = labels != IGNORE
    assert correct == int((reference.logits.argmax(-1)[chosen] == labels[chosen]).sum())


def test_only_the_head_and_the_top_layers_train() -> None:
    model = build_tiny_mlm(60)
    names = {name for name, _ in train_top_layers(model, 1)}
    assert names == {
        name for name, _ in model.named_parameters()
        if name.startswith(("cls.", "bert.encoder.layer.1."))
    }  # fmt: skip
    assert "cls.predictions.transform.dense.weight" in names and "cls.predictions.bias" in names
    assert not model.get_output_embeddings().weight.requires_grad  # tied to the frozen embeddings
    assert {n for n, _ in train_top_layers(model, 0)} == {n for n in names if n.startswith("cls.")}
    with pytest.raises(WorkbenchError, match="between 0 and the model's 2 layers"):
        train_top_layers(model, 3)


def _tiny_corpus() -> Corpus:
    return Corpus("tiny", TEXTS * 20, source="test")


CONFIG = AdaptConfig(steps=40, batch_size=8, max_length=16, lr=3e-3, warmup_steps=4, held_out=8,
                     train_layers=1, seed=5)  # fmt: skip


def test_adaptation_lowers_the_held_out_loss_and_keeps_the_frozen_weights() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("bert.embeddings.")
              or n.startswith("bert.encoder.layer.0.")}  # fmt: skip
    head = model.cls.predictions.transform.dense.weight.detach().clone()
    report = adapt(model, tokenizer, [_tiny_corpus()], CONFIG)
    assert report["held_out_after"]["loss"] < report["held_out_before"]["loss"] - 0.5
    assert report["train_loss_last"] < report["train_loss_first"]
    assert all(torch.equal(p, dict(model.named_parameters())[n]) for n, p in frozen.items())
    assert not torch.equal(head, model.cls.predictions.transform.dense.weight)
    assert report["held_out_after"]["positions"] == report["held_out_before"]["positions"] > 0
    # seeded: the same run gives the same weights
    again = build_tiny_mlm(len(tokenizer))
    adapt(again, tokenizer, [_tiny_corpus()], CONFIG)
    pairs = zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_too_little_text_and_bad_settings_are_errors() -> None:
    tokenizer = build_tiny_tokenizer()
    with pytest.raises(WorkbenchError, match="more than held_out=8"):
        adapt(build_tiny_mlm(len(tokenizer)), tokenizer, [Corpus("few", TEXTS[:2])], CONFIG)
    with pytest.raises(WorkbenchError, match="mask_prob"):
        AdaptConfig(mask_prob=1.5)
    with pytest.raises(WorkbenchError, match="steps must be >= 1"):
        AdaptConfig(steps=0)


def test_command_writes_a_checkpoint_with_the_source_idf_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokenizer = build_tiny_tokenizer()
    source = tmp_path / "base"
    idf = IdfWeights.from_corpus(TEXTS, tokenizer)
    model = build_tiny_mlm(len(tokenizer))
    save_checkpoint(source, model, tokenizer, idf, {"name": "base"}, max_seq_length=64)
    corpus_file = tmp_path / "texts.txt"
    corpus_file.write_text("\n".join(TEXTS * 20) + "\n", encoding="utf-8")
    out = tmp_path / "adapted"
    argv = ["--model", str(source), "--out", str(out), "--corpus", str(corpus_file), "--steps", "10",
            "--batch-size", "8", "--max-length", "16", "--held-out", "8"]  # fmt: skip
    assert main(argv) == 0
    assert "held-out masked-LM loss" in capsys.readouterr().err
    manifest = read_manifest(out)
    assert manifest["mlm_adaptation"]["config"]["steps"] == 10
    assert manifest["source_manifest"]["name"] == "base" and manifest["max_seq_length"] == 64
    _, reloaded = load_masked_lm(out)
    assert load_idf(out, reloaded).weights.tolist() == load_idf(source, tokenizer).weights.tolist()
    assert json.loads((out / "idf.json").read_text()) == json.loads((source / "idf.json").read_text())
    # again without --force: refused, the checkpoint kept
    assert main(argv) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    with pytest.raises(WorkbenchError, match="would replace the source model"):
        adapt_checkpoint(source, source, [_tiny_corpus()], CONFIG, force=True)
    missing = ["--model", str(source), "--out", str(tmp_path / "x"), "--corpus", str(tmp_path / "none")]
    assert main(missing) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
