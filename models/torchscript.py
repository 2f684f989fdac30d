"""The SPLADE-doc document encoder as a TorchScript trace, for OpenSearch ML Commons (SPARSE_ENCODING).

ML Commons tokenizes with the model's `tokenizer.json` and calls the traced module with
`input_ids` and `attention_mask` (batch, length) int64 tensors; the module returns
{"output": (batch, vocab)}: per vocabulary entry the maximum over the unpadded positions of
log(1 + ReLU(logit)) (log(1 + log(1 + ReLU)) for the `l0` activation), special tokens zeroed,
plus BM25's term weights for a model trained with a lexical part (`models.lexical`), which is what
`models.encoder.SpladeDocEncoder` computes (before its optional pruning).

Padding positions are multiplied by 0 before the maximum: every weight is >= 0, so a padded
position can never raise one, and an all-zero entry stays 0 as in the encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from models.encoder import SpladeDocEncoder
from models.lexical import LexicalWeights

__all__ = ["SparseEncodingModule", "trace_sparse_encoder"]


class SparseEncodingModule(torch.nn.Module):
    """(input_ids, attention_mask) -> {"output": (batch, vocab) SPLADE-doc weights}."""

    def __init__(
        self,
        model: Any,
        special_ids: list[int],
        vocab_size: int,
        l0: bool = False,
        lexical: LexicalWeights | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        keep = torch.ones(vocab_size)
        keep[special_ids] = 0.0
        self.register_buffer("keep", keep)
        self.l0 = l0
        self.lexical = lexical

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]
        values = torch.log1p(torch.relu(logits))
        if self.l0:
            values = torch.log1p(values)
        values = values * attention_mask.unsqueeze(-1).to(values.dtype)
        output = values.max(dim=1).values * self.keep
        if self.lexical is not None:  # a Python branch: the trace holds the one taken
            output = output + self.lexical(input_ids, attention_mask, self.keep)
        return {"output": output}


def trace_sparse_encoder(encoder: SpladeDocEncoder, out: Path, example: list[str] | None = None) -> Path:
    """Trace `encoder`'s model (fp32, CPU, eval mode) into the TorchScript file `out`; returns `out`.

    The trace is taken on a padded batch of two texts of different lengths, so the graph is the one
    for any batch size and length (no shape is baked into it: BERT-style models trace that way).
    """
    model = encoder.model.float().cpu().eval()
    module = SparseEncodingModule(
        model, encoder.special_ids, encoder.vocab_size, l0=encoder.activation == "l0", lexical=encoder.lexical
    ).eval()
    texts = example or ["a short text", "a somewhat longer text for the trace, with more tokens in it"]
    batch = encoder.tokenizer(texts, padding=True, truncation=True, max_length=encoder.max_length,
                              return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        traced = torch.jit.trace(module, (batch["input_ids"], batch["attention_mask"]), strict=False)
    traced.save(str(out))
    return Path(out)
