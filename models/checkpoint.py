"""SPLADE-doc checkpoint directories: one folder that OpenSearch, Hugging Face and
sentence-transformers all load.

    config.json, model.safetensors          the masked-LM (`save_pretrained`)
    tokenizer.json, tokenizer_config.json   the tokenizer (`save_pretrained`; vocab files where it has them)
    idf.json                                query-side weights, keyed as OpenSearch looks tokens up
    manifest.json                           what made it: training config, versions, git revision, data
    modules.json, router_config.json, ...   sentence-transformers' inference-free SparseEncoder layout

The saved MLM bias of the special tokens is -1e4, so that sentence-transformers' SpladePooling (which
cannot zero special dimensions) gives exactly our vectors; our encoder zeroes them anyway.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from models.encoder import SpladeDocEncoder
from models.idf import IdfWeights
from models.st_format import write_sentence_transformers_files

__all__ = ["FORMAT", "load_checkpoint", "read_manifest", "save_checkpoint"]

FORMAT = "splade-doc-checkpoint/1"
SPECIAL_LOGIT = -1e4


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "sentence-transformers", "tokenizers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def save_checkpoint(
    out_dir: Path,
    model: Any,
    tokenizer: Any,
    idf: IdfWeights,
    manifest: dict[str, Any] | None = None,
    max_seq_length: int = 512,
) -> Path:
    """Write a complete checkpoint directory; it replaces `out_dir` only once fully written.

    `manifest` holds what the caller knows (training config, git revision, data checksums,
    metrics); the format, creation time and library versions are added here.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        bias = model.get_output_embeddings().bias
        special = sorted(set(tokenizer.all_special_ids))
        saved = bias[special].detach().clone()
        try:
            with torch.no_grad():
                bias[special] = SPECIAL_LOGIT
            model.save_pretrained(tmp, safe_serialization=True)
        finally:
            with torch.no_grad():
                bias[special] = saved  # the caller's model is left as it was
        tokenizer.save_pretrained(tmp)
        idf.to_json(tmp / "idf.json")
        record = {
            "format": FORMAT,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": _versions(),
            "max_seq_length": max_seq_length,
            "special_logit": SPECIAL_LOGIT,
        } | (manifest or {})
        (tmp / "manifest.json").write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
        write_sentence_transformers_files(tmp, max_seq_length=max_seq_length)
        tmp.chmod(0o755)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.replace(out_dir, old / "x")
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def read_manifest(path: Path) -> dict[str, Any]:
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        return {}
    return json.loads(manifest.read_text(encoding="utf-8"))


def load_checkpoint(path: Path, **encoder_args: Any) -> tuple[SpladeDocEncoder, IdfWeights]:
    """The document encoder and the query weights of a checkpoint directory."""
    path = Path(path)
    encoder = SpladeDocEncoder.from_pretrained(path, **encoder_args)
    if not (path / "idf.json").is_file():
        raise ValueError(f"{path}: no idf.json (the query side of a SPLADE-doc checkpoint)")
    return encoder, IdfWeights.from_json(path / "idf.json", encoder.tokenizer)
