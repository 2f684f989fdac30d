"""Make a SPLADE-doc checkpoint directory loadable by sentence-transformers' ``SparseEncoder``.

A checkpoint directory holds, at its root, what OpenSearch and Hugging Face read: ``config.json`` and
``model.safetensors`` (a masked-LM saved with ``save_pretrained``), the tokenizer files, ``idf.json``
(``tokenizer.decode([id])`` -> weight) and our ``manifest.json``. :func:`write_sentence_transformers_files`
adds, next to them, the files that make ``SparseEncoder(str(checkpoint_dir))`` build the same
inference-free model as the OpenSearch ``opensearch-neural-sparse-encoding-doc-v3-distill`` repositories:
one ``Router`` with

* a ``query`` route: ``SparseStaticEmbedding`` (one weight per vocabulary id, no model);
* a ``document`` route: ``MLMTransformer`` (the root checkpoint itself) + ``SpladePooling`` (max, relu).

Layout written (root files are never modified)::

    modules.json                         Router stored at the root (path "")
    router_config.json                   routes; the MLMTransformer's id is "", i.e. the root folder
    config_sentence_transformers.json    model_type SparseEncoder, similarity dot, empty prompts
    sentence_bert_config.json            MLMTransformer settings (max_seq_length, do_lower_case)
    document_1_SpladePooling/config.json
    query_0_SparseStaticEmbedding/config.json
    query_0_SparseStaticEmbedding/model.safetensors   the idf weight vector, float32[vocab_size]
    query_0_SparseStaticEmbedding/<tokenizer files>   byte copies of the root tokenizer files

Why the query module needs its own folder (and copies of the tokenizer files):
``SparseStaticEmbedding.load`` reads ``config.json`` from its sub-folder (the root one is the BERT
config) and loads its tokenizer with ``AutoTokenizer.from_pretrained(path, subfolder=<its folder>)``. The
weights of the masked LM are not duplicated: the Router resolves a module id ``""`` to the sub-folder
``"."``, so the document ``MLMTransformer`` loads the root ``config.json``/``model.safetensors``/tokenizer.

Why the idf weights are a ``model.safetensors`` vector and not a pointer to ``idf.json``:
``SparseStaticEmbedding.from_json`` maps keys with ``tokenizer.convert_tokens_to_ids`` (a key that is not a
vocabulary string lands on ``[UNK]``), leaves every id that is missing from the json at weight 0 (OpenSearch
uses 1.0), keeps the weights of special tokens, and its ``path`` config entry is resolved against the
current working directory (else taken as a repo id). The vector written here follows OpenSearch's lookup
instead: for every id, ``idf.get(tokenizer.decode([id]), 1.0)``, and 0 for ``tokenizer.all_special_ids``.

Parity with our encoders (checked by ``tests/test_st_format.py``):

* query vectors are equal: ``SparseStaticEmbedding`` tokenizes with ``add_special_tokens=False`` and marks
  each id present (``scatter_`` of the attention mask, so a repeated token counts once), times the weight;
* document vectors are equal on every non-special dimension; ``SpladePooling`` has no way to zero the
  special-token dimensions, so those equal ``max log1p(relu(logit))`` of the masked LM unless the
  checkpoint's MLM bias for special ids is a large finite negative number (e.g. -1e4; not ``-inf``:
  ``SpladePooling`` multiplies the logits by the attention mask and ``-inf * 0`` is NaN). Query weights of
  special ids are 0, so query-document scores are equal either way.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import safetensors.torch
import sentence_transformers
import torch
import transformers
from transformers import AutoTokenizer

from common.files import write_bytes

__all__ = [
    "DOCUMENT_MODULE_ID",
    "POOLING_MODULE_ID",
    "QUERY_MODULE_ID",
    "idf_weight_vector",
    "write_sentence_transformers_files",
]

logger = logging.getLogger(__name__)

QUERY_MODULE_ID = "query_0_SparseStaticEmbedding"
# The Router loads module ``<id>`` from sub-folder ``Path(router_path, id)``: "" is the root folder itself.
DOCUMENT_MODULE_ID = ""
POOLING_MODULE_ID = "document_1_SpladePooling"

# Class references as the OpenSearch hub repositories (sentence-transformers 5.x) write them; 6.x maps them
# to its new module paths (sentence_transformers/util/deprecated_import.py), so both major versions load them.
_ROUTER_TYPE = "sentence_transformers.models.Router"
_STATIC_TYPE = "sentence_transformers.sparse_encoder.models.SparseStaticEmbedding"
_MLM_TYPE = "sentence_transformers.sparse_encoder.models.MLMTransformer"
_POOLING_TYPE = "sentence_transformers.sparse_encoder.models.SpladePooling"

# Files ``tokenizer.save_pretrained`` may write; those present at the root are copied for the query module.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def idf_weight_vector(tokenizer: Any, idf: dict[str, float], num_dimensions: int) -> torch.Tensor:
    """Per-id query weights as OpenSearch looks them up, with special tokens removed.

    Args:
        tokenizer: The checkpoint's tokenizer.
        idf: ``idf.json``: ``tokenizer.decode([id])`` -> weight.
        num_dimensions: Length of the vector (the masked LM's ``vocab_size``).

    Returns:
        float32 tensor of shape ``(num_dimensions,)``: ``idf.get(tokenizer.decode([id]), 1.0)`` for every
        id the tokenizer knows, 0 for ``tokenizer.all_special_ids`` and for ids beyond its vocabulary.
    """
    vocab_ids = sorted(set(tokenizer.get_vocab().values()))
    if vocab_ids and vocab_ids[-1] >= num_dimensions:
        raise ValueError(f"tokenizer id {vocab_ids[-1]} does not fit {num_dimensions} dimensions")
    keys = tokenizer.batch_decode([[i] for i in vocab_ids])
    weight = torch.zeros(num_dimensions, dtype=torch.float32)
    weight[vocab_ids] = torch.tensor([float(idf.get(key, 1.0)) for key in keys], dtype=torch.float32)
    weight[list(tokenizer.all_special_ids)] = 0.0
    unmatched = set(idf) - set(keys)
    if unmatched:
        logger.warning(
            "%d idf.json key(s) match no tokenizer.decode([id]) and are ignored, e.g. %r",
            len(unmatched),
            sorted(unmatched)[:5],
        )
    return weight


def write_sentence_transformers_files(checkpoint_dir: Path, max_seq_length: int = 512) -> None:
    """Add the sentence-transformers files to a SPLADE-doc checkpoint directory (see the module docstring).

    Afterwards ``SparseEncoder(str(checkpoint_dir))`` loads an inference-free model: ``encode_query`` gives
    the idf weight of each distinct non-special query token, ``encode_document`` gives
    ``max over tokens of log1p(relu(MLM logits))`` (special-token dimensions included, see the module
    docstring). Root files are only read. Every file is written atomically, and running the function again
    on the same inputs leaves every file byte-identical.

    Args:
        checkpoint_dir: Folder holding ``config.json``, ``model.safetensors``, the tokenizer files and
            ``idf.json`` at its root.
        max_seq_length: Token limit of the document encoder (longer documents are truncated), also written as
            the query tokenizer's ``model_max_length`` (``SparseStaticEmbedding`` truncates queries there).

    Raises:
        FileNotFoundError: A root file the model needs is missing.
        ValueError: ``max_seq_length`` is not positive or exceeds the model's ``max_position_embeddings``,
            or the tokenizer's vocabulary does not fit the model's ``vocab_size``.
    """
    root = Path(checkpoint_dir)
    for name in ("config.json", "idf.json"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name} is missing")
    if not any((root / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        raise FileNotFoundError(f"{root} holds no model.safetensors")
    tokenizer_files = [name for name in _TOKENIZER_FILES if (root / name).is_file()]
    if "tokenizer_config.json" not in tokenizer_files:
        raise FileNotFoundError(f"{root / 'tokenizer_config.json'} is missing")

    model_config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    vocab_size = int(model_config["vocab_size"])
    max_positions = model_config.get("max_position_embeddings")
    if max_seq_length <= 0:
        raise ValueError(f"max_seq_length must be positive, got {max_seq_length}")
    if isinstance(max_positions, int) and max_positions > 0 and max_seq_length > max_positions:
        raise ValueError(f"max_seq_length {max_seq_length} exceeds max_position_embeddings {max_positions}")

    tokenizer = AutoTokenizer.from_pretrained(str(root))
    if len(tokenizer.get_vocab()) != vocab_size:
        # SparseStaticEmbedding sizes its weight as len(tokenizer.get_vocab()); SpladePooling gives
        # vocab_size dimensions. Query and document vectors must share one space.
        raise ValueError(
            f"tokenizer vocabulary ({len(tokenizer.get_vocab())}) differs from the model's vocab_size "
            f"({vocab_size}): SparseEncoder query and document vectors would not share dimensions"
        )
    idf = json.loads((root / "idf.json").read_text(encoding="utf-8"))
    weight = idf_weight_vector(tokenizer, idf, vocab_size)

    # Query route: config, weights, tokenizer (byte copies; only model_max_length is set).
    query_dir = root / QUERY_MODULE_ID
    write_bytes(query_dir / "config.json", _json_bytes({"frozen": True}))
    write_bytes(
        query_dir / "model.safetensors",
        safetensors.torch.save({"weight": weight.contiguous()}, metadata={"format": "pt"}),
    )
    for name in _TOKENIZER_FILES:
        target = query_dir / name
        if name not in tokenizer_files:
            target.unlink(missing_ok=True)  # stale copy of a file the root tokenizer no longer has
        elif name == "tokenizer_config.json":
            tokenizer_config = json.loads((root / name).read_text(encoding="utf-8"))
            tokenizer_config["model_max_length"] = max_seq_length
            write_bytes(target, _json_bytes(tokenizer_config))
        else:
            write_bytes(target, (root / name).read_bytes())

    # Document route: the root checkpoint is the MLMTransformer; SpladePooling in its own folder.
    write_bytes(
        root / "sentence_bert_config.json",
        _json_bytes({"max_seq_length": max_seq_length, "do_lower_case": False}),
    )
    write_bytes(
        root / POOLING_MODULE_ID / "config.json",
        _json_bytes(
            {"pooling_strategy": "max", "activation_function": "relu", "word_embedding_dimension": vocab_size}
        ),
    )

    router_config = {
        "types": {
            QUERY_MODULE_ID: _STATIC_TYPE,
            DOCUMENT_MODULE_ID: _MLM_TYPE,
            POOLING_MODULE_ID: _POOLING_TYPE,
        },
        "structure": {
            "query": [QUERY_MODULE_ID],
            "document": [DOCUMENT_MODULE_ID, POOLING_MODULE_ID],
        },
        "parameters": {"default_route": "document", "allow_empty_key": True},
    }
    write_bytes(root / "router_config.json", _json_bytes(router_config))
    write_bytes(
        root / "config_sentence_transformers.json",
        _json_bytes(
            {
                "model_type": "SparseEncoder",
                "__version__": {
                    "sentence_transformers": sentence_transformers.__version__,
                    "transformers": transformers.__version__,
                    "pytorch": torch.__version__,
                },
                "prompts": {"query": "", "document": ""},
                "default_prompt_name": None,
                "similarity_fn_name": "dot",
            }
        ),
    )
    # Written last: without modules.json, sentence-transformers does not treat the folder as its own.
    write_bytes(
        root / "modules.json", _json_bytes([{"idx": 0, "name": "0", "path": "", "type": _ROUTER_TYPE}])
    )
