"""Vocabulary pruning of a masked-LM to the languages of a task, as BLADE (Nair et al., SIGIR 2023)
prunes mBERT to the two languages of a bilingual retrieval task.

A SPLADE vector has one dimension per vocabulary piece, and a multilingual vocabulary spends most
of its pieces on languages the task never sees (XLM-R: 250,002 pieces). Pruning keeps

- every piece the tokenizer produces on the pruning corpora ("seen");
- every special and added token, and every id the model config or the tokenizer's post-processor
  and padding name ("structural");
- the pieces that let any text still tokenize without new unknowns ("fallback"): for a SentencePiece
  Unigram model every single-character piece, every "▁" + single-character piece, the byte pieces
  where it falls back to bytes, and its lowest-scored piece (the unknown piece's score is the lowest
  score minus 10, so it stays as it was); for WordPiece every single character `c` and `##c`
  (the model's continuing-subword prefix). Any other tokenizer model (BPE, ...) is refused.

The kept ids stay in their original order: new id = rank of the old id among the kept ones, so the
special tokens keep their relative order. The model's input embedding rows and its MLM head (decoder
weight, tied to the embeddings or not, and its bias) are the kept rows of the old ones; nothing else
in the model changes. On text whose tokenization does not change the pruned model's logits are
exactly the source's logits at the kept ids. The tokenizer's tokenizer.json is rewritten: the model's
vocabulary filtered and renumbered, the unknown id, the added tokens', post-processor's and padding's
ids renumbered; it is then reloaded through transformers as any checkpoint's tokenizer is.

Tokenization of the pruning corpora cannot change in theory (Unigram: Viterbi's best path uses kept
pieces only, so it stays the best among fewer; WordPiece: greedy longest match finds its pieces
still there and nothing longer), but it is measured, not assumed, as on the held-out `--check`
corpora: a text "changed" when its token strings differ before and after. The report gives, per
corpus, the texts and tokens (before) of changed texts and the unknown tokens before and after.

The output is a complete checkpoint (`models.checkpoint.save_checkpoint`): idf.json computed over the
pruning corpora's documents with the pruned tokenizer, and a manifest whose `vocab_pruning` entry
holds the report, with `kept_old_ids` (new id i is old id kept_old_ids[i]) and each corpus's sha256.

    python -m models.vocab_prune --model DIR --out DIR --corpus SPEC [--corpus SPEC ...]
                                 [--check SPEC ...] [--force]

A corpus SPEC is a plain UTF-8 text file (one text per line, `.gz` read too), a BEIR folder (its
corpus.jsonl[.gz] documents, title and text joined) or, where the caller passes a resolver for
them (the harness does: models never imports it), a registered dataset name.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from common.errors import WorkbenchError
from common.files import read_jsonl, read_lines
from models.checkpoint import (
    load_masked_lm,
    load_tokenizer,
    save_derived_checkpoint,
)
from models.idf import IdfWeights

__all__ = [
    "FORMAT",
    "Corpus",
    "DatasetResolver",
    "Pruned",
    "Track",
    "beir_corpus",
    "fallback_ids",
    "kept_ids",
    "main",
    "prune",
    "prune_masked_lm",
    "prune_tokenizer",
    "prune_tokenizer_json",
    "prune_vocabulary",
    "read_corpus",
    "refuse_output",
    "report_table",
    "rich_track",
    "seen_ids",
    "text_file_corpus",
    "tokenization_change",
    "tokenizer_json",
    "tokenizer_model",
]

FORMAT = "vocab-pruning/1"
BATCH = 256  # texts per tokenizer call
TokenizerModel = Literal["WordPiece", "Unigram"]
# progress(items, description, total): `harness.console.track` has this signature
Track = Callable[[Iterable[Any], str, int], Iterable[Any]]
_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


# --------------------------------------------------------------------------- corpora


@dataclass(frozen=True)
class Corpus:
    """Texts to prune on or to check: documents (they also give the idf) and queries."""

    spec: str  # as given on the command line
    documents: tuple[str, ...]
    queries: tuple[str, ...] = ()
    source: str = ""  # the file, folder or dataset it was read from

    @property
    def texts(self) -> tuple[str, ...]:
        return self.documents + self.queries

    @property
    def sha256(self) -> str:
        """Of the texts in order (documents, then queries), each followed by a NUL byte."""
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
        return digest.hexdigest()

    def record(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "source": self.source,
            "documents": len(self.documents),
            "queries": len(self.queries),
            "sha256": self.sha256,
        }


# a registered dataset name -> its Corpus (documents' full text and the queries of every split)
DatasetResolver = Callable[[str], Corpus]


def _nonempty(corpus: Corpus, where: Path | str) -> Corpus:
    if not any(text.strip() for text in corpus.texts):
        raise WorkbenchError(f"{where}: empty corpus (no text to prune on)")
    return corpus


def text_file_corpus(path: Path, spec: str | None = None) -> Corpus:
    """A plain UTF-8 text file (`.gz` too), one text per line; blank lines are skipped."""
    path = Path(path)
    texts = tuple(line.rstrip("\r\n") for _, line in read_lines(path) if line.strip())
    return _nonempty(Corpus(spec or str(path), texts, source=str(path)), path)


def _find_corpus_file(folder: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    raise WorkbenchError(f"{folder}: no corpus.jsonl (or corpus.jsonl.gz); not a BEIR folder")


def _field(obj: dict[str, Any], key: str, where: str, required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise WorkbenchError(f"{where}: missing key {key!r}")
        return ""
    if not isinstance(value, str):
        raise WorkbenchError(f"{where}: {key!r} must be a string")
    return value


def beir_corpus(folder: Path, spec: str | None = None) -> Corpus:
    """The documents of a BEIR folder's corpus.jsonl[.gz]: title and text joined by a space."""
    path = _find_corpus_file(Path(folder))
    documents = []
    for line, obj in read_jsonl(path):
        where = f"{path}:{line}"
        title = _field(obj, "title", where, required=False)
        text = _field(obj, "text", where, required=True)
        documents.append(f"{title} {text}".strip() if title else text)
    return _nonempty(Corpus(spec or str(folder), tuple(documents), source=str(path)), path)


def read_corpus(spec: str, datasets: DatasetResolver | None = None) -> Corpus:
    """A corpus SPEC: a text file, a BEIR folder, or a registered dataset name (with `datasets`)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return text_file_corpus(path, spec)
    if path.is_dir():
        return beir_corpus(path, spec)
    if datasets is None:
        raise WorkbenchError(
            f"corpus {spec!r}: no such file or folder (a text file, one text per line, or a BEIR "
            "folder; registered dataset names are read through the harness)"
        )
    return _nonempty(datasets(spec), spec)


# --------------------------------------------------------------------------- what to keep


def tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    """The tokenizer.json of a fast tokenizer, as a dict."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise WorkbenchError("vocabulary pruning needs a fast tokenizer (tokenizer.json)")
    return json.loads(backend.to_str())


def tokenizer_model(spec: dict[str, Any]) -> TokenizerModel:
    """The tokenizer.json model type, if pruning supports it (WordPiece, Unigram)."""
    kind = (spec.get("model") or {}).get("type")
    if kind not in ("WordPiece", "Unigram"):
        raise WorkbenchError(
            f"cannot prune a {kind or 'typeless'} tokenizer: only WordPiece (mBERT) and SentencePiece "
            "Unigram (XLM-R) vocabularies keep every text tokenizable on single characters"
        )
    return kind


def _model_vocab(spec: dict[str, Any]) -> dict[int, str]:
    """id -> piece of the tokenizer.json model's own vocabulary."""
    model = spec["model"]
    if model["type"] == "Unigram":
        return {i: piece for i, (piece, _) in enumerate(model["vocab"])}
    return {i: token for token, i in model["vocab"].items()}


def fallback_ids(spec: dict[str, Any]) -> set[int]:
    """The pieces that keep any text tokenizable without new unknowns (see the module docstring)."""
    model = spec["model"]
    kind = tokenizer_model(spec)
    if kind == "Unigram":
        scored = model["vocab"]
        keep = {i for i, (piece, _) in enumerate(scored) if len(piece) == 1}
        keep |= {i for i, (piece, _) in enumerate(scored) if len(piece) == 2 and piece[0] == "▁"}
        if model.get("byte_fallback"):
            keep |= {i for i, (piece, _) in enumerate(scored) if _BYTE_PIECE.fullmatch(piece)}
        if scored:
            keep.add(min(range(len(scored)), key=lambda i: scored[i][1]))
        return keep
    prefix = model.get("continuing_subword_prefix") or "##"
    return {
        i
        for token, i in model["vocab"].items()
        if len(token) == 1 or (token.startswith(prefix) and len(token) == len(prefix) + 1)
    }


def _processor_ids(processor: dict[str, Any] | None) -> set[int]:
    if not processor:
        return set()
    kind = processor.get("type")
    if kind == "Sequence":
        return set().union(*(_processor_ids(p) for p in processor.get("processors", [])))
    if kind == "TemplateProcessing":
        return {i for token in processor.get("special_tokens", {}).values() for i in token["ids"]}
    if kind in ("BertProcessing", "RobertaProcessing"):
        return {int(processor[key][1]) for key in ("sep", "cls")}
    return set()


def _config_token_ids(config: Any) -> dict[str, int]:
    """The model config's `*_token_id` entries that hold one id."""
    values = config.to_dict() if config is not None else {}
    return {
        key: value
        for key, value in values.items()
        if key.endswith("_token_id") and isinstance(value, int) and not isinstance(value, bool)
    }


def structural_ids(spec: dict[str, Any], tokenizer: Any, config: Any = None) -> set[int]:
    """Special and added tokens and every id the tokenizer's pipeline or the model config names."""
    ids = set(tokenizer.all_special_ids)
    ids |= {token["id"] for token in spec.get("added_tokens") or []}
    ids |= _processor_ids(spec.get("post_processor"))
    if spec.get("padding"):
        ids.add(spec["padding"]["pad_id"])
    if spec["model"]["type"] == "Unigram" and spec["model"].get("unk_id") is not None:
        ids.add(spec["model"]["unk_id"])
    elif spec["model"].get("unk_token") in (spec["model"].get("vocab") or {}):
        ids.add(spec["model"]["vocab"][spec["model"]["unk_token"]])
    ids |= {i for i in _config_token_ids(config).values() if 0 <= i < len(tokenizer)}
    return ids


def _batches(texts: Sequence[str], size: int = BATCH) -> list[Sequence[str]]:
    return [texts[start : start + size] for start in range(0, len(texts), size)]


def _tracked(batches: list[Sequence[str]], description: str, progress: Track | None) -> Iterable[Any]:
    return progress(batches, description, len(batches)) if progress else batches


def seen_ids(tokenizer: Any, texts: Sequence[str], progress: Track | None = None, name: str = "") -> set[int]:
    """Every id the tokenizer produces on `texts` (special tokens not added)."""
    seen: set[int] = set()
    for batch in _tracked(_batches(texts), f"tokenizing {name}".strip(), progress):
        for ids in tokenizer(list(batch), add_special_tokens=False, verbose=False)["input_ids"]:
            seen.update(ids)
    return seen


def kept_ids(
    tokenizer: Any,
    corpora: Sequence[Corpus],
    config: Any = None,
    progress: Track | None = None,
    spec: dict[str, Any] | None = None,
) -> tuple[list[int], dict[str, int]]:
    """(the kept old ids in order, how many each rule keeps: seen, structural, fallback);
    `spec` is the tokenizer's tokenizer.json where the caller has it already."""
    spec = spec or tokenizer_json(tokenizer)
    tokenizer_model(spec)
    seen = set().union(*(seen_ids(tokenizer, c.texts, progress, c.spec) for c in corpora))
    structural = structural_ids(spec, tokenizer, config)
    fallback = fallback_ids(spec)
    kept = sorted(seen | structural | fallback)
    return kept, {"seen": len(seen), "structural": len(structural), "fallback": len(fallback)}


# --------------------------------------------------------------------------- the tokenizer


def _renumber(old: int, mapping: dict[int, int], what: str) -> int:
    if old not in mapping:
        raise WorkbenchError(f"tokenizer.json: {what} id {old} is not among the kept ids")
    return mapping[old]


def _renumber_processor(processor: dict[str, Any] | None, mapping: dict[int, int]) -> dict[str, Any] | None:
    if not processor:
        return processor
    kind = processor.get("type")
    out = copy.deepcopy(processor)
    if kind == "Sequence":
        out["processors"] = [_renumber_processor(p, mapping) for p in processor["processors"]]
    elif kind == "TemplateProcessing":
        for token in out.get("special_tokens", {}).values():
            token["ids"] = [_renumber(i, mapping, "post-processor") for i in token["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            out[key] = [out[key][0], _renumber(int(out[key][1]), mapping, "post-processor")]
    return out


def prune_tokenizer_json(spec: dict[str, Any], kept: Sequence[int]) -> dict[str, Any]:
    """tokenizer.json restricted to `kept` (old ids, ascending), renumbered in that order."""
    mapping = {old: new for new, old in enumerate(kept)}
    model = spec["model"]
    kind = tokenizer_model(spec)
    out = copy.deepcopy({key: value for key, value in spec.items() if key != "model"})
    new_model = {key: value for key, value in model.items() if key != "vocab"}
    if kind == "Unigram":
        new_model["vocab"] = [model["vocab"][i] for i in kept if i < len(model["vocab"])]
        if model.get("unk_id") is not None:
            new_model["unk_id"] = _renumber(model["unk_id"], mapping, "unknown")
    else:
        kept_tokens = sorted((mapping[i], token) for token, i in model["vocab"].items() if i in mapping)
        new_model["vocab"] = {token: new for new, token in kept_tokens}
    out["model"] = new_model
    out["added_tokens"] = [
        token | {"id": _renumber(token["id"], mapping, f"added token {token['content']!r}")}
        for token in spec.get("added_tokens") or []
    ]
    out["post_processor"] = _renumber_processor(spec.get("post_processor"), mapping)
    if spec.get("padding"):
        out["padding"]["pad_id"] = _renumber(spec["padding"]["pad_id"], mapping, "padding")
    return out


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _renumber_tokenizer_config(path: Path, mapping: dict[int, int]) -> None:
    """tokenizer_config.json's `added_tokens_decoder` is keyed by id: renumber it."""
    config = json.loads(path.read_text(encoding="utf-8"))
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        config["added_tokens_decoder"] = {
            str(_renumber(int(i), mapping, "added token")): value for i, value in decoder.items()
        }
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def prune_tokenizer(tokenizer: Any, kept: Sequence[int], spec: dict[str, Any] | None = None) -> Any:
    """The tokenizer restricted to `kept`, saved and reloaded through transformers as a checkpoint's
    tokenizer is (`models.checkpoint.load_tokenizer`); checked to hold exactly the kept pieces."""
    pruned_spec = prune_tokenizer_json(spec or tokenizer_json(tokenizer), kept)
    mapping = {old: new for new, old in enumerate(kept)}
    with tempfile.TemporaryDirectory(prefix="vocab-prune-") as tmp:
        folder = Path(tmp)
        tokenizer.save_pretrained(folder)
        for item in folder.iterdir():  # vocabulary files would be read instead of tokenizer.json
            if item.name not in _TOKENIZER_FILES:
                item.unlink()
        (folder / "tokenizer.json").write_text(json.dumps(pruned_spec, ensure_ascii=False), encoding="utf-8")
        if (folder / "tokenizer_config.json").is_file():
            _renumber_tokenizer_config(folder / "tokenizer_config.json", mapping)
        pruned = load_tokenizer(folder)
    expected = tokenizer.convert_ids_to_tokens(list(kept))
    if len(pruned) != len(kept) or pruned.convert_ids_to_tokens(list(range(len(kept)))) != expected:
        raise WorkbenchError(
            f"the reloaded pruned tokenizer does not hold the {len(kept)} kept pieces in order "
            f"({len(pruned)} pieces): transformers rebuilt it differently"
        )
    return pruned


# --------------------------------------------------------------------------- the model


def _check_masked_lm(model: Any) -> tuple[torch.nn.Embedding, torch.nn.Linear]:
    name = type(model).__name__
    if not name.endswith("ForMaskedLM"):
        raise WorkbenchError(f"vocabulary pruning needs a *ForMaskedLM model, not {name}")
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    if not isinstance(embeddings, torch.nn.Embedding) or not isinstance(head, torch.nn.Linear):
        raise WorkbenchError(f"{name}: no word embedding and MLM decoder to prune")
    if head.weight.shape[0] != embeddings.weight.shape[0]:
        raise WorkbenchError(f"{name}: the MLM decoder and the word embedding differ in vocabulary size")
    return embeddings, head


def _vocabulary_keys(model: Any, state: dict[str, torch.Tensor]) -> set[str]:
    """The state entries indexed by vocabulary id: the word embedding, the decoder weight and bias
    (whatever their names), and what the model declares tied to them (BERT's `cls.predictions.bias`)."""
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    tensors = {t.data_ptr() for t in (embeddings.weight, head.weight, head.bias) if t is not None}
    keys = {key for key, value in state.items() if value.data_ptr() in tensors}
    tied = getattr(model, "_tied_weights_keys", None) or {}
    pairs = tied.items() if isinstance(tied, dict) else ()
    for a, b in pairs:
        if (a in keys or b in keys) and a in state and b in state:
            keys |= {a, b}
    return keys


def prune_masked_lm(model: Any, kept: Sequence[int]) -> Any:
    """A new model of the same class holding the kept rows of the word embedding and the MLM head
    (decoder weight, tied or not, and bias), with `vocab_size` and the config's token ids renumbered.
    The caller's model is left as it was."""
    embeddings, head = _check_masked_lm(model)
    rows = embeddings.weight.shape[0]
    if kept and (kept[0] < 0 or kept[-1] >= rows):
        raise WorkbenchError(f"kept ids reach {kept[-1]}, past the model's {rows} vocabulary rows")
    tied = head.weight.data_ptr() == embeddings.weight.data_ptr()
    index = torch.tensor(list(kept), dtype=torch.long)
    state = model.state_dict()
    state |= {key: state[key].index_select(0, index) for key in _vocabulary_keys(model, state)}
    config = copy.deepcopy(model.config)
    config.vocab_size = len(kept)
    config.tie_word_embeddings = tied
    mapping = {old: new for new, old in enumerate(kept)}
    for key, value in _config_token_ids(model.config).items():
        if value in mapping:
            setattr(config, key, mapping[value])
    pruned = type(model)(config).to(dtype=embeddings.weight.dtype)
    try:
        pruned.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WorkbenchError(f"{type(model).__name__}: weights outside the pruned layout ({exc})") from None
    new_embeddings, new_head = _check_masked_lm(pruned)
    if tied != (new_head.weight.data_ptr() == new_embeddings.weight.data_ptr()):
        raise WorkbenchError(
            f"{type(model).__name__}: the pruned model does not keep the source's weight tying"
        )
    return pruned.eval()


# --------------------------------------------------------------------------- measuring


def tokenization_change(
    before: Any, after: Any, corpus: Corpus, role: str, progress: Track | None = None
) -> dict[str, Any]:
    """How the pruned tokenizer `after` tokenizes `corpus` against `before`: texts whose token strings
    differ, the tokens (before) of those texts, and unknown tokens before and after."""
    tokens = changed_texts = changed_tokens = unk_before = unk_after = 0
    for batch in _tracked(_batches(corpus.texts), f"checking {corpus.spec}", progress):
        old = before(list(batch), add_special_tokens=False, verbose=False)["input_ids"]
        new = after(list(batch), add_special_tokens=False, verbose=False)["input_ids"]
        for a, b in zip(old, new, strict=True):
            tokens += len(a)
            unk_before += a.count(before.unk_token_id)
            unk_after += b.count(after.unk_token_id)
            # vocabulary strings, not the Encoding's: an unknown piece shows there as the text it covers
            if before.convert_ids_to_tokens(a) != after.convert_ids_to_tokens(b):
                changed_texts += 1
                changed_tokens += len(a)
    return corpus.record() | {
        "role": role,
        "texts": len(corpus.texts),
        "tokens": tokens,
        "changed_texts": changed_texts,
        "changed_tokens": changed_tokens,
        "changed_token_share": changed_tokens / tokens if tokens else 0.0,
        "unk_before": unk_before,
        "unk_after": unk_after,
    }


@dataclass
class Pruned:
    """A pruned model and tokenizer, and the report of what pruning kept and changed."""

    model: Any
    tokenizer: Any
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def kept_old_ids(self) -> list[int]:
        return self.report["kept_old_ids"]


def prune(
    model: Any,
    tokenizer: Any,
    corpora: Sequence[Corpus],
    checks: Sequence[Corpus] = (),
    progress: Track | None = None,
) -> Pruned:
    """Prune a masked-LM and its tokenizer to the pieces `corpora` need; measure the tokenization
    change on `corpora` and on the held-out `checks`. Nothing is written."""
    if not corpora:
        raise WorkbenchError("vocabulary pruning needs at least one corpus")
    _check_masked_lm(model)
    spec = tokenizer_json(tokenizer)
    kind = tokenizer_model(spec)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        raise WorkbenchError(f"the tokenizer has {len(tokenizer)} pieces, the model fewer rows")
    kept, counts = kept_ids(tokenizer, corpora, model.config, progress, spec)
    pruned_tokenizer = prune_tokenizer(tokenizer, kept, spec)
    pruned_model = prune_masked_lm(model, kept)
    rows = [tokenization_change(tokenizer, pruned_tokenizer, c, "prune", progress) for c in corpora]
    rows += [tokenization_change(tokenizer, pruned_tokenizer, c, "check", progress) for c in checks]
    report = {
        "format": FORMAT,
        "tokenizer_model": kind,
        "vocab_before": int(model.get_input_embeddings().weight.shape[0]),
        "vocab_after": len(kept),
        "kept_by_rule": counts,
        "corpora": rows,
        "kept_old_ids": kept,
    }
    return Pruned(pruned_model, pruned_tokenizer, report)


def refuse_output(model_dir: Path, out_dir: Path, force: bool) -> None:
    source, out = Path(model_dir).expanduser().resolve(), Path(out_dir).expanduser().resolve()
    if out == source or out in source.parents:
        raise WorkbenchError(f"{out_dir}: would replace the source model {model_dir}; choose another --out")
    if out.exists() and not force:
        raise WorkbenchError(f"{out_dir}: already exists; pass --force to replace it")


def prune_vocabulary(
    model_dir: Path,
    out_dir: Path,
    corpora: Sequence[Corpus],
    checks: Sequence[Corpus] = (),
    force: bool = False,
    progress: Track | None = None,
) -> dict[str, Any]:
    """Prune the masked-LM in `model_dir` to `corpora` and write a complete checkpoint to `out_dir`
    (an existing one only with `force`); the report is returned and kept in its manifest."""
    refuse_output(model_dir, out_dir, force)
    if not corpora:
        raise WorkbenchError("vocabulary pruning needs at least one corpus")
    model, tokenizer = load_masked_lm(model_dir)
    pruned = prune(model, tokenizer, corpora, checks, progress)
    documents = [text for corpus in corpora for text in corpus.documents] or [
        text for corpus in corpora for text in corpus.texts
    ]
    idf = IdfWeights.from_corpus(documents, pruned.tokenizer)
    save_derived_checkpoint(
        Path(model_dir), Path(out_dir), pruned.model, pruned.tokenizer, idf, {"vocab_pruning": pruned.report}
    )
    return pruned.report


# --------------------------------------------------------------------------- report and command line


def report_table(report: dict[str, Any]) -> Any:
    """The report as a rich table: one row per corpus."""
    from rich.table import Table

    table = Table(
        title=f"vocabulary {report['vocab_before']:,} -> {report['vocab_after']:,} "
        f"({report['tokenizer_model']}; kept by rule: "
        + ", ".join(f"{rule} {n:,}" for rule, n in report["kept_by_rule"].items())
        + ")"
    )
    for column in (
        "corpus",
        "role",
        "texts",
        "tokens",
        "changed texts",
        "changed tokens",
        "<unk> before -> after",
    ):
        table.add_column(column, justify="left" if column in ("corpus", "role") else "right")
    for row in report["corpora"]:
        table.add_row(
            row["spec"],
            row["role"],
            f"{row['texts']:,}",
            f"{row['tokens']:,}",
            f"{row['changed_texts']:,}",
            f"{row['changed_token_share']:.2%}",
            f"{row['unk_before']:,} -> {row['unk_after']:,}",
        )
    return table


def rich_track(console: Any) -> Track:
    def track(items: Iterable[Any], description: str, total: int) -> Iterable[Any]:
        from rich.progress import track as rich_progress

        return rich_progress(items, description=description, total=total, console=console, transient=True)

    return track


def main(argv: Sequence[str] | None = None, datasets: DatasetResolver | None = None) -> int:
    """Command line; `datasets` resolves registered dataset names (the harness passes one)."""
    from rich.console import Console

    parser = argparse.ArgumentParser(
        prog="python -m models.vocab_prune",
        description="Prune a masked-LM's vocabulary to the pieces its corpora need (BLADE) and write "
        "a complete checkpoint.",
    )
    parser.add_argument("--model", type=Path, required=True, help="masked-LM checkpoint directory")
    parser.add_argument("--out", type=Path, required=True, help="pruned checkpoint directory to write")
    parser.add_argument("--corpus", action="append", required=True, help="corpus to prune on (repeatable)")
    parser.add_argument(
        "--check", action="append", default=[], help="held-out corpus to measure (repeatable)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        refuse_output(args.model, args.out, args.force)
        corpora = [read_corpus(spec, datasets) for spec in args.corpus]
        checks = [read_corpus(spec, datasets) for spec in args.check]
        report = prune_vocabulary(args.model, args.out, corpora, checks, args.force, rich_track(console))
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    console.print(report_table(report))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
