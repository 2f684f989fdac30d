"""The lexical part of a SPLADE-doc vector (BM25's term weight over the model's tokens): values by
hand, the encoder, the checkpoint, the TorchScript export and the trainer all adding the same part."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CORPUS, build_tiny_mlm, build_tiny_tokenizer

from common.errors import WorkbenchError
from models.checkpoint import load_encoder, save_checkpoint
from models.config import TrainingConfig
from models.encoder import SpladeDocEncoder
from models.idf import IdfWeights
from models.lexical import LexicalWeights
from models.torchscript import trace_sparse_encoder
from models.trainer import Example, Trainer

TEXTS = [f"{title} {text}" for title, text in TINY_CORPUS.values()]


def _keep(tokenizer) -> torch.Tensor:
    keep = torch.ones(len(tokenizer))
    keep[tokenizer.all_special_ids] = 0
    return keep


def test_weights_by_hand() -> None:
    """tf 2 and 1 in a 3-token text, avg length 2, k1 1.2, b 0.75: k1 * (0.25 + 0.75 * 3 / 2) = 1.65,
    so 2 * 2.2 / (2 + 1.65) and 2.2 / (1 + 1.65); the specials, the padding and an empty text get 0."""
    tokenizer = build_tiny_tokenizer()
    batch = tokenizer(["search model search", "", "the"], padding=True, return_tensors="pt")
    weights = LexicalWeights(2.0)(batch["input_ids"], batch["attention_mask"], _keep(tokenizer))
    search, model, the = tokenizer.convert_tokens_to_ids(["search", "model", "the"])
    assert weights[0, search].item() == pytest.approx(4.4 / 3.65)
    assert weights[0, model].item() == pytest.approx(2.2 / 2.65)
    assert int((weights[0] > 0).sum()) == 2
    assert not weights[1].any() and not weights.isnan().any()
    # one token, |d| = 1: 2.2 / (1 + 1.2 * (0.25 + 0.75 / 2))
    assert weights[2, the].item() == pytest.approx(2.2 / (1 + 1.2 * 0.625))
    assert int((weights[2] > 0).sum()) == 1


def _bm25_by_counting(tokenizer, text: str, lexical: LexicalWeights, max_length: int) -> dict[int, float]:
    """The same weights by counting the window's ids in Python."""
    ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
    counts = Counter(i for i in ids if i not in set(tokenizer.all_special_ids))
    norm = lexical.k1 * (1 - lexical.b + lexical.b * sum(counts.values()) / lexical.avg_length)
    return {i: tf * (lexical.k1 + 1) / (tf + norm) for i, tf in counts.items()}


def test_the_encoder_adds_the_lexical_part() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer))
    lexical = LexicalWeights(5.0, k1=0.9, b=0.4)
    plain = SpladeDocEncoder(model, tokenizer, max_length=16, device="cpu").encode(TEXTS).vectors.toarray()
    both = SpladeDocEncoder(model, tokenizer, max_length=16, device="cpu", lexical=lexical).encode(TEXTS)
    added = both.vectors.toarray() - plain
    assert both.truncated > 0  # the window cuts some texts: the lexical part counts the window only
    for row, text in enumerate(TEXTS):
        expected = np.zeros(len(tokenizer), dtype=np.float32)
        for token, value in _bm25_by_counting(tokenizer, text, lexical, 16).items():
            expected[token] = value
        np.testing.assert_allclose(added[row], expected, atol=1e-5)
        assert expected.sum() > 0


def test_checkpoint_declares_it_and_the_export_adds_it(tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer))
    idf = IdfWeights.from_corpus(TEXTS, tokenizer)
    lexical = LexicalWeights(7.5)
    folder = save_checkpoint(tmp_path / "m", model, tokenizer, idf, {"lexical": lexical.to_manifest()}, 64)
    assert not (folder / "modules.json").exists()  # sentence-transformers cannot add the part
    encoder = load_encoder(folder, bf16=False, device="cpu")
    assert encoder.lexical == lexical
    traced = torch.jit.load(str(trace_sparse_encoder(encoder, tmp_path / "model.pt")))
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        output = traced(batch["input_ids"], batch["attention_mask"])["output"].numpy()
    np.testing.assert_allclose(output, encoder.encode(TEXTS).vectors.toarray(), atol=1e-5, rtol=1e-5)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(manifest | {"lexical": {"k1": "x", "avg_length": 3}}))
    with pytest.raises(WorkbenchError, match=r"manifest\.json: lexical must be"):
        load_encoder(folder)


def _config(tmp_path: Path, lexical: object) -> TrainingConfig:
    return TrainingConfig.model_validate(
        {
            "name": "t",
            "output_dir": str(tmp_path),
            "model": {"base": "tiny", "max_length": 8, "inference_max_length": 32, "lexical": lexical},
            "data": {"train": ["unused"]},
            "train": {"batch_size": 2, "max_steps": 2, "save_every": 2, "eval_at_start": False},
        }
    )


def test_the_trainer_adds_it_and_saves_it(tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer()
    examples = [Example("crop tool", TEXTS[2], (TEXTS[3],)), Example("layer mask", TEXTS[3], (TEXTS[0],))]
    idf = IdfWeights.from_corpus(TEXTS, tokenizer)
    config = _config(tmp_path, {"k1": 1.5, "b": 0.5})
    trainer = Trainer(config, build_tiny_mlm(len(tokenizer), seed=3), tokenizer, idf, examples)
    plain = Trainer(_config(tmp_path / "plain", None), build_tiny_mlm(len(tokenizer), seed=3), tokenizer, idf,
                    examples)  # fmt: skip
    for module in (trainer.module, plain.module):
        module.eval()  # no dropout: the two models compute the same
    documents = [TEXTS[0], TEXTS[2], TEXTS[3]]
    special = set(tokenizer.all_special_ids)

    def mean_length(limit: int) -> float:
        ids = tokenizer(documents, truncation=True, max_length=limit)["input_ids"]
        return float(np.mean([sum(i not in special for i in row) for row in ids]))

    assert trainer.lexical["train"] == LexicalWeights(mean_length(8), k1=1.5, b=0.5)
    assert trainer.lexical["saved"] == LexicalWeights(mean_length(32), k1=1.5, b=0.5)
    assert mean_length(8) < mean_length(32)
    vectors, _ = trainer.document_vectors(documents)
    expected, _ = plain.document_vectors(documents)
    for row, text in enumerate(documents):
        for token, value in _bm25_by_counting(tokenizer, text, trainer.lexical["train"], 8).items():
            expected[row, token] += value
    torch.testing.assert_close(vectors, expected)
    assert vectors.requires_grad
    trainer.train()
    manifest = json.loads((tmp_path / "final_model" / "manifest.json").read_text())
    assert manifest["lexical"] == {"avg_length": mean_length(32), "k1": 1.5, "b": 0.5}
    assert load_encoder(tmp_path / "final_model").lexical == trainer.lexical["saved"]


@pytest.mark.parametrize(
    ("lexical", "key"), [({"k1": 1.2, "bb": 0.5}, "model.lexical.bb"), ({"b": 1.5}, "model.lexical.b")]
)
def test_config_errors_name_the_key(tmp_path: Path, lexical: object, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        _config(tmp_path, lexical)


def test_values_out_of_range_are_refused() -> None:
    for bad in ({"avg_length": 0.0}, {"avg_length": 3.0, "k1": -1.0}, {"avg_length": 3.0, "b": 2.0}):
        with pytest.raises(ValueError):
            LexicalWeights(**bad)
    assert math.isclose(LexicalWeights.from_manifest({"avg_length": 3, "k1": 1, "b": 0}, "m").b, 0.0)
    assert LexicalWeights.from_manifest(None, "m") is None
