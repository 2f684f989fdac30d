"""The ML Commons SPARSE_ENCODING trace: reloaded with torch.jit.load it gives the encoder's vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.retrievers.splade import english_splade_dir
from models.checkpoint import load_encoder
from models.torchscript import trace_sparse_encoder

TEXTS = [
    "Inference-free sparse retrieval encodes documents only.",
    "A much longer document about layer masks, opacity and the paint tools, so that the batch is padded.",
    "Short.",
]


@pytest.mark.parametrize("activation", ["log1p", "l0"])
def test_traced_model_gives_the_encoder_vectors(tmp_path: Path, activation: str) -> None:
    encoder = load_encoder(english_splade_dir(), activation=activation, bf16=False, device="cpu")
    path = trace_sparse_encoder(encoder, tmp_path / "model.pt")
    traced = torch.jit.load(str(path))
    # another batch size and length than the trace was taken on
    batch = encoder.tokenizer(TEXTS, padding=True, truncation=True, max_length=encoder.max_length,
                              return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        output = traced(batch["input_ids"], batch["attention_mask"])
    assert set(output) == {"output"}
    assert tuple(output["output"].shape) == (len(TEXTS), encoder.vocab_size)
    expected = encoder.encode(TEXTS).vectors.toarray()
    np.testing.assert_allclose(output["output"].numpy(), expected, atol=1e-5, rtol=1e-5)
    assert (output["output"][:, encoder.special_ids] == 0).all()
    assert (expected > 0).sum(axis=1).min() > 10  # real vectors, not an empty comparison
    one = encoder.tokenizer(TEXTS[1:2], return_tensors="pt")  # a batch of one: no padding at all
    with torch.no_grad():
        alone = traced(one["input_ids"], one["attention_mask"])["output"].numpy()
    np.testing.assert_allclose(alone, expected[1:2], atol=1e-5, rtol=1e-5)
