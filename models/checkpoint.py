"""SPLADE-doc checkpoint directories: one folder that OpenSearch, Hugging Face and
sentence-transformers all load. This module is the only code that reads or writes one.

    config.json, model.safetensors          the masked-LM (`save_pretrained`)
    tokenizer.json, tokenizer_config.json   the tokenizer (`save_pretrained`; vocab files where it has them)
    idf.json                                query-side weights, keyed as OpenSearch looks tokens up
    manifest.json                           what made it: training config, versions, git revision, data,
                                            and `max_seq_length`, the one document length of inference
    modules.json, router_config.json, ...   sentence-transformers' inference-free SparseEncoder layout
    trainer_state.pt                        training checkpoints only: what resuming needs

The inference length is declared once, in the manifest (`max_seq_length`; the training length is
recorded beside it as `train_max_length`): the harness encodes with it, sentence-transformers'
files are written with it, and an OpenSearch export is to read it from there. A folder without a
manifest (a base model, a hub id) is encoded at `DEFAULT_MAX_SEQ_LENGTH`, capped by its tokenizer.

A model trained with a lexical part (`models.lexical`) records it in the manifest (`lexical`):
every encoder of the folder adds it. sentence-transformers' modules cannot, so such a folder gets
none of their files (SparseEncoder refuses it rather than giving other vectors).

The saved MLM bias of the special tokens is -1e4, so that sentence-transformers' SpladePooling (which
cannot zero special dimensions) gives exactly our vectors; our encoder zeroes them anyway.

Every folder is built under a temporary name and renamed into place only when every file in it,
the trainer state included, is complete.
"""

from __future__ import annotations

import json
import pickle
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError

from common.errors import WorkbenchError
from common.faults import fault_point
from common.files import atomic_dir, sha256_tree, write_json
from common.provenance import library_versions
from models.encoder import ModelLoadError, SpladeDocEncoder
from models.idf import IdfWeights, KeyFormat
from models.lexical import LexicalWeights
from models.st_format import write_sentence_transformers_files

__all__ = [
    "DEFAULT_MAX_SEQ_LENGTH",
    "FORMAT",
    "copy_model",
    "has_trainer_state",
    "idf_path",
    "inference_length",
    "load_encoder",
    "load_idf",
    "load_masked_lm",
    "load_tokenizer",
    "load_trainer_state",
    "model_fingerprint",
    "model_kind",
    "read_manifest",
    "restore_weights",
    "save_checkpoint",
    "write_checkpoint_files",
    "write_idf",
]

FORMAT = "splade-doc-checkpoint/1"
SPECIAL_LOGIT = -1e4
DEFAULT_MAX_SEQ_LENGTH = 512
MANIFEST_FILE = "manifest.json"
IDF_FILE = "idf.json"
TRAINER_STATE_FILE = "trainer_state.pt"


def _positions_limit(model: Any, tokenizer: Any) -> int | None:
    """The longest input the model and its tokenizer take, where either declares one."""
    limits = [
        getattr(model.config, "max_position_embeddings", None),
        getattr(tokenizer, "model_max_length", None),
    ]
    known = [int(v) for v in limits if isinstance(v, int) and 0 < v < 1_000_000]
    return min(known) if known else None


def save_checkpoint(
    out_dir: Path,
    model: Any,
    tokenizer: Any,
    idf: IdfWeights,
    manifest: dict[str, Any] | None = None,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    train_max_length: int | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint directory; it replaces `out_dir` only once fully written.

    `manifest` holds what the caller knows (training config, git revision, data checksums,
    metrics); the format, creation time, library versions and the inference length (capped by the
    model's positions) are added here. `trainer_state` (training checkpoints) is saved inside.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, replace=True) as tmp:
        write_checkpoint_files(tmp, model, tokenizer, idf, manifest, max_seq_length, train_max_length)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE_FILE)
        fault_point("checkpoint-saving")
    return out_dir


def write_checkpoint_files(
    folder: Path,
    model: Any,
    tokenizer: Any,
    idf: IdfWeights,
    manifest: dict[str, Any] | None = None,
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
    train_max_length: int | None = None,
    pytorch_bin: bool = False,
) -> int:
    """The files of a checkpoint into `folder`, which the caller builds atomically (`save_checkpoint`,
    a release export); `pytorch_bin` adds pytorch_model.bin beside model.safetensors. Returns the
    inference length written (`max_seq_length` capped by the model's positions)."""
    limit = _positions_limit(model, tokenizer)
    length = min(max_seq_length, limit) if limit else max_seq_length
    bias = model.get_output_embeddings().bias
    special = sorted(set(tokenizer.all_special_ids))
    saved = bias[special].detach().clone()
    try:
        with torch.no_grad():
            bias[special] = SPECIAL_LOGIT
        model.save_pretrained(folder, safe_serialization=True)
        if pytorch_bin:
            torch.save(model.state_dict(), Path(folder) / "pytorch_model.bin")
    finally:
        with torch.no_grad():
            bias[special] = saved  # the caller's model is left as it was
    tokenizer.save_pretrained(folder)
    idf.to_json(Path(folder) / IDF_FILE)
    record = (manifest or {}) | {  # the keys computed here win: they describe the folder
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "max_seq_length": length,
        "train_max_length": train_max_length,
        "special_logit": SPECIAL_LOGIT,
    }
    write_json(Path(folder) / MANIFEST_FILE, record, indent=1)
    if record.get("lexical") is None:
        write_sentence_transformers_files(Path(folder), max_seq_length=length)
    return length


def save_derived_checkpoint(
    source: Path, out_dir: Path, model: Any, tokenizer: Any, idf: IdfWeights, step: dict[str, Any]
) -> Path:
    """Save a checkpoint made from the one in `source` (pruned, adapted, ...): its manifest names the
    source (path, content fingerprint, manifest) beside `step` (e.g. {"vocab_pruning": report});
    the source's inference and training lengths carry over."""
    source_manifest = read_manifest(Path(source))
    manifest = {
        "source_model": str(source),
        "source_fingerprint": model_fingerprint(source),
        "source_manifest": source_manifest,
        "lexical": source_manifest.get("lexical"),
    } | step
    return save_checkpoint(
        Path(out_dir),
        model,
        tokenizer,
        idf,
        manifest,
        max_seq_length=inference_length(source),
        train_max_length=source_manifest.get("train_max_length"),
    )


def copy_model(source: Path, target: Path) -> Path:
    """Copy a checkpoint without its trainer state (best_model/, final_model/), replacing `target`."""
    with atomic_dir(Path(target), replace=True) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(TRAINER_STATE_FILE))
    return Path(target)


# --------------------------------------------------------------------------- reading


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a checkpoint directory; {} for a model folder that has none."""
    manifest = Path(path) / MANIFEST_FILE
    return _json_object(manifest) if manifest.is_file() else {}


def _json_object(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(record, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return record


def inference_length(name_or_path: str | Path) -> int:
    """The document length a model is encoded at: its manifest's `max_seq_length`, else the default.

    A manifest written before the inference length was declared (it has no `train_max_length`)
    recorded the training length there; such folders are read at the default, as they always were.
    """
    path = Path(name_or_path)
    manifest = read_manifest(path) if path.is_dir() else {}
    if "train_max_length" not in manifest:
        return DEFAULT_MAX_SEQ_LENGTH
    value = manifest.get("max_seq_length")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkbenchError(
            f"{path / MANIFEST_FILE}: max_seq_length must be a positive integer, not {value!r}"
        )
    return value


def _read_config_json(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder}: no config.json; not a Hugging Face checkpoint directory")
    return _json_object(path)


def load_masked_lm(name_or_path: str | Path) -> tuple[Any, Any]:
    """(model, fast tokenizer) of a masked-LM directory or Hugging Face id; clear errors otherwise."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    where = str(name_or_path)
    path = Path(where)
    if path.exists() and not path.is_dir():
        raise ModelLoadError(f"{where}: not a checkpoint directory")
    # a hub id is "name" or "owner/name"; anything else with a path shape is a local directory
    looks_local = path.is_absolute() or where.startswith((".", "~")) or where.count("/") > 1 or path.exists()
    if looks_local and not path.is_dir():
        raise ModelLoadError(f"{where}: checkpoint directory not found")
    if looks_local:
        _read_config_json(path)
    try:
        config = AutoConfig.from_pretrained(where)
    except (OSError, ValueError) as exc:
        reason = _first_line(exc)
        raise ModelLoadError(
            f"{where}: cannot load the model config ({reason}). A Hugging Face id needs the hub "
            "(unreachable offline); a local checkpoint directory always works"
        ) from None
    architectures = list(config.architectures or [])
    if architectures and not any(a.endswith("ForMaskedLM") for a in architectures):
        raise ModelLoadError(
            f"{where}: not a masked-LM checkpoint (architectures: {', '.join(architectures)})"
        )
    try:
        model = AutoModelForMaskedLM.from_pretrained(where)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # missing, truncated, corrupt
        weights = path / "model.safetensors" if looks_local else where
        raise ModelLoadError(f"{weights}: cannot load the masked-LM weights ({_first_line(exc)})") from None
    tokenizer = load_tokenizer(where)
    return model, tokenizer


# Canonically equivalent spellings a tokenizer must read alike: Hangul syllables and their
# conjoining jamo, precomposed Latin letters and combining accents, kana and combining voicing marks.
_EQUIVALENCE_PROBES = ("한국어 검색 모델", "café Ångström", "がぱ")


def compose_unicode(tokenizer: Any) -> Any:
    """Make `tokenizer` read NFC and NFD text alike, by putting Unicode NFC first in its normalizer
    where its own normalizer does not already give both forms the same output.

    This is the one place text is normalised for the sparse models: the normalizer is part of
    tokenizer.json, so a checkpoint saved from this tokenizer carries it to OpenSearch, whose
    document encoding and query analysis read that file. A tokenizer that already agrees (BERT's
    uncased normalizer decomposes both forms) is left as it is. Every load goes through here
    because transformers rebuilds some tokenizers' normalizers from their arguments on reload.
    """
    import unicodedata

    from tokenizers import normalizers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer: the encoder refuses it
        return tokenizer
    current = backend.normalizer

    def normalized(text: str) -> str:
        return current.normalize_str(text) if current is not None else text

    if all(
        normalized(unicodedata.normalize("NFD", p)) == normalized(unicodedata.normalize("NFC", p))
        for p in _EQUIVALENCE_PROBES
    ):
        return tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.NFC()] + ([current] if current else []))
    return tokenizer


def load_tokenizer(name_or_path: str | Path) -> Any:
    """The tokenizer of a model folder or hub id (reading NFC and NFD alike: `compose_unicode`);
    a clear error where there is none."""
    from transformers import AutoTokenizer

    local = Path(name_or_path).is_dir()
    if local and not (Path(name_or_path) / "tokenizer.json").is_file():
        # without it transformers may build another tokenizer from vocabulary files, silently
        raise ModelLoadError(f"{name_or_path}: no tokenizer.json (the tokenizer OpenSearch loads)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError, TypeError, json.JSONDecodeError) as exc:
        where = Path(name_or_path) / "tokenizer.json" if local else name_or_path
        raise ModelLoadError(f"{where}: cannot load the tokenizer ({_first_line(exc)})") from None
    return compose_unicode(tokenizer)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def load_encoder(
    name_or_path: str | Path, max_length: int | None = None, **encoder_args: Any
) -> SpladeDocEncoder:
    """The document encoder of a model folder or hub id, at its declared inference length
    (`max_length` overrides it), with the lexical part its manifest declares."""
    model, tokenizer = load_masked_lm(name_or_path)
    length = inference_length(name_or_path) if max_length is None else max_length
    path = Path(name_or_path).expanduser()
    declared = read_manifest(path).get("lexical") if path.is_dir() else None
    lexical = LexicalWeights.from_manifest(declared, str(path / MANIFEST_FILE))
    return SpladeDocEncoder(model, tokenizer, max_length=length, lexical=lexical, **encoder_args)


def idf_path(path: Path) -> Path:
    """Where a model folder keeps its query-side weights."""
    return Path(path) / IDF_FILE


def write_idf(path: Path, idf: IdfWeights, key_format: KeyFormat = "string") -> None:
    """Write an idf.json at `path`. Where it is a checkpoint's own, the sentence-transformers query
    weights of the folder are rebuilt from it, so both readers keep scoring queries alike."""
    path = Path(path)
    folder = path.parent
    own = path.name == IDF_FILE and (folder / "router_config.json").is_file()
    if own and key_format != "string":
        raise WorkbenchError(
            f"{path}: a checkpoint's idf.json is keyed by token string (OpenSearch's lookup); "
            "write token-id keys elsewhere (--output)"
        )
    idf.to_json(path, key_format=key_format)
    if own:
        try:
            write_sentence_transformers_files(folder, max_seq_length=inference_length(folder))
        except (OSError, ValueError) as exc:
            raise WorkbenchError(
                f"{folder}: idf.json written, the sentence-transformers files not ({exc})"
            ) from None


def load_idf(path: Path, tokenizer: Any, key_format: KeyFormat = "string") -> IdfWeights:
    """The query-side weights of a model folder, read as OpenSearch reads its idf.json."""
    return IdfWeights.from_json(idf_path(path), tokenizer, key_format=key_format)


def has_trainer_state(path: Path) -> bool:
    return (Path(path) / TRAINER_STATE_FILE).is_file()


def load_trainer_state(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """What a training checkpoint saved for resuming (optimizer, scheduler, RNG, data position)."""
    try:
        return torch.load(Path(path) / TRAINER_STATE_FILE, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise WorkbenchError(f"{Path(path) / TRAINER_STATE_FILE}: unreadable trainer state ({exc})") from None


def restore_weights(model: Any, path: Path) -> None:
    """Load a checkpoint's weights into `model`, which has the checkpoint's architecture."""
    saved = type(model).from_pretrained(path)
    model.load_state_dict(saved.state_dict())


def _not_model_content(relative: Path) -> bool:
    return relative.name == TRAINER_STATE_FILE or relative.suffix == ".md"


def model_fingerprint(model: str | Path) -> str:
    """Content hash of a local model folder (SPLADE-doc or dense); a hub id stands for itself.

    One rule for every folder: each file, recursively, by relative path and content, except the
    trainer state and Markdown cards, which do not change what the model computes.
    """
    path = Path(model).expanduser()
    if not path.is_dir():
        return str(model)
    return "dir-" + sha256_tree(path, skip=_not_model_content)[:32]


def model_kind(path: Path) -> Literal["masked-lm", "sentence-transformers"] | None:
    """What a model folder holds: a masked-LM (SPLADE-doc), a sentence-transformers model, or neither."""
    path = Path(path)
    if (path / MANIFEST_FILE).is_file() or (path / "router_config.json").is_file():
        return "masked-lm"  # written by save_checkpoint, or an inference-free SparseEncoder folder
    config = _read_config_json(path) if (path / "config.json").is_file() else {}
    if any(str(a).endswith("ForMaskedLM") for a in config.get("architectures") or []):
        return "masked-lm"
    if (path / "modules.json").is_file():
        return "sentence-transformers"
    return None
