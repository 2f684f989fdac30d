"""Bilingual bag-of-words adaptation of the MLM head (models.bilingual_adapt): the loss by hand, the
aligned-pairs reader, what training does on a word-for-word toy language pair, the written checkpoint."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from conftest import TINY_CORPUS, build_tiny_mlm, build_tiny_tokenizer

from common.errors import WorkbenchError
from models.bilingual_adapt import (
    BilingualConfig,
    adapt_bilingual,
    bag_of_words_loss,
    main,
    read_aligned_pairs,
)
from models.checkpoint import load_idf, read_manifest, save_checkpoint
from models.idf import IdfWeights

# a toy lexicon of the tiny tokenizer's whole words: each Korean word translates to one English word
LEXICON = [("검색", "search"), ("모델", "model"), ("한국어", "korean"), ("문서", "document"),
           ("이미지", "image"), ("레이어", "layer"), ("마스크", "mask"), ("도구", "tool"),
           ("투명", "transparent"), ("자르기", "crop"), ("밝기", "brightness")]  # fmt: skip


def _pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """n (Korean, English) phrases of 2-3 lexicon words, translated word for word."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = rng.sample(LEXICON, rng.randint(2, 3))
        pairs.append((" ".join(ko for ko, _ in words), " ".join(en for _, en in words)))
    return pairs


def _write_aligned(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_bag_of_words_loss_by_hand() -> None:
    # text 0: targets {0, 1}, logits [0, ln 3, ln 3]: on = (ln 2 + ln(4/3)) / 2, off = softplus(ln 3) = ln 4
    # text 1: targets {2}, logits [0, 0, 0]: on = ln 2, off = (ln 2 + ln 2) / 2 = ln 2
    logits = torch.tensor([[0.0, math.log(3), math.log(3)], [0.0, 0.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    expected = ((math.log(2) + math.log(4 / 3)) / 2 + math.log(4) + 2 * math.log(2)) / 2
    assert bag_of_words_loss(logits, targets).item() == pytest.approx(expected, abs=1e-12)
    # its gradient reaches a switched-off target piece (where log(1 + relu) would give none)
    off = torch.tensor([[-5.0, 2.0]], requires_grad=True)
    bag_of_words_loss(off, torch.tensor([[1.0, 0.0]])).backward()
    assert off.grad[0, 0].item() == pytest.approx(-1 / (1 + math.exp(-5)), rel=1e-6)


def test_aligned_pairs_are_read_by_split_and_bad_lines_name_the_line(tmp_path: Path) -> None:
    rows = [
        {"ko": "레이어", "en": "Layer", "source": "firefox-esr", "id": "a#1", "split": "train"},
        {"ko": "도구", "en": "Tool", "source": "firefox-esr", "id": "a#2", "split": "test"},
        {"ko": " ", "en": "Blank", "source": "firefox-esr", "id": "a#3", "split": "train"},
        {"ko": "이미지", "en": "Image", "source": "thunderbird", "id": "b#1", "split": "train"},
    ]
    path = _write_aligned(tmp_path / "aligned.jsonl", rows)
    assert read_aligned_pairs(path) == [("레이어", "Layer"), ("이미지", "Image")]
    assert read_aligned_pairs(path, "test") == [("도구", "Tool")]
    with pytest.raises(WorkbenchError, match=r"aligned\.jsonl: no aligned pair in the 'dev' split"):
        read_aligned_pairs(path, "dev")
    bad = _write_aligned(tmp_path / "bad.jsonl", [rows[0], {"ko": "레이어", "split": "train"}])
    with pytest.raises(WorkbenchError, match=r"bad\.jsonl: line 2: needs strings ko, en and split"):
        read_aligned_pairs(bad)


CONFIG = BilingualConfig(steps=60, batch_size=16, max_length=16, lr=1e-2, warmup_steps=5, train_layers=1,
                         held_out=32, bf16=False, seed=3)  # fmt: skip


def test_adaptation_switches_on_the_translation_and_keeps_the_frozen_weights() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()
              if n.startswith(("bert.embeddings.", "bert.encoder.layer.0."))}  # fmt: skip
    report = adapt_bilingual(model, tokenizer, _pairs(400, seed=1), CONFIG)
    before, after = report["held_out_before"], report["held_out_after"]
    # held-out phrases are new combinations of the words: the word-for-word mapping was learned
    assert after["loss"] < before["loss"] - 0.5
    assert before["translation_recall"] < 0.8 and after["translation_recall"] > 0.95
    assert after["pieces_on"] < 0.6 * before["pieces_on"]  # the rest of the vocabulary switched off
    assert after["texts"] == before["texts"] == 64  # 32 held-out pairs, each language
    assert all(torch.equal(p, dict(model.named_parameters())[n]) for n, p in frozen.items())
    assert report["pairs"] == 400 and report["epochs"] == pytest.approx(60 * 8 / 368, abs=1e-3)
    # seeded: the same run gives the same weights
    again = build_tiny_mlm(len(tokenizer))
    adapt_bilingual(again, tokenizer, _pairs(400, seed=1), CONFIG)
    weights = zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in weights)


def test_bad_settings_and_too_few_pairs_are_errors() -> None:
    tokenizer = build_tiny_tokenizer()
    with pytest.raises(WorkbenchError, match="more than held_out=32"):
        adapt_bilingual(build_tiny_mlm(len(tokenizer)), tokenizer, _pairs(20, seed=1), CONFIG)
    with pytest.raises(WorkbenchError, match="batch_size must be even"):
        BilingualConfig(batch_size=7)
    with pytest.raises(WorkbenchError, match="steps must be >= 1"):
        BilingualConfig(steps=0)


def test_command_writes_a_checkpoint_with_the_source_idf_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokenizer = build_tiny_tokenizer()
    source = tmp_path / "base"
    texts = [f"{title} {text}" for title, text in TINY_CORPUS.values()]
    idf = IdfWeights.from_corpus(texts, tokenizer)
    model = build_tiny_mlm(len(tokenizer))
    save_checkpoint(source, model, tokenizer, idf, {"name": "base"}, max_seq_length=64)
    rows = [{"ko": ko, "en": en, "split": "train"} for ko, en in _pairs(80, seed=2)]
    pairs = _write_aligned(tmp_path / "aligned.jsonl", rows)
    out = tmp_path / "adapted"
    argv = ["--model", str(source), "--out", str(out), "--pairs", str(pairs), "--steps", "4",
            "--batch-size", "8", "--max-length", "16", "--held-out", "8"]  # fmt: skip
    assert main(argv) == 0
    assert "translation pieces on" in capsys.readouterr().err
    manifest = read_manifest(out)
    report = manifest["bilingual_adaptation"]
    assert report["config"]["steps"] == 4 and report["pairs"] == 80
    assert report["pairs_file"]["path"] == str(pairs)
    assert manifest["source_manifest"]["name"] == "base" and manifest["max_seq_length"] == 64
    assert json.loads((out / "idf.json").read_text()) == json.loads((source / "idf.json").read_text())
    assert load_idf(out, tokenizer).weights.tolist() == load_idf(source, tokenizer).weights.tolist()
    # again without --force: refused; a malformed pairs file: an error naming it, nothing written
    assert main(argv) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"ko": "레이어", "en": "layer", "split": "train"}\n{oops\n', encoding="utf-8")
    assert main(["--model", str(source), "--out", str(tmp_path / "x"), "--pairs", str(broken)]) == 1
    assert "broken.jsonl:2: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
