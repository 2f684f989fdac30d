"""Export a SPLADE-doc model into everything OpenSearch needs for doc-only neural sparse search.

    RELEASE/                               a checkpoint folder (`models.checkpoint`) and more:
      config.json, model.safetensors, pytorch_model.bin   the masked-LM, in both weight formats
      tokenizer.json (+ tokenizer_config.json, vocab.txt for WordPiece)
      idf.json                             query-side weights, keyed as OpenSearch looks tokens up
      manifest.json, modules.json, ...     the source's manifest; sentence-transformers' layout
      README.md                            the model card (base, data, config hash, metrics, sparsity)
      release.json                         what is inside: every file's size and sha256, the source
      ml-commons/
        <name>-sparse-encoding.zip         <name>.pt (TorchScript) + tokenizer.json: SPARSE_ENCODING
        <name>-sparse-tokenize.zip         tokenizer.json + idf.json: SPARSE_TOKENIZE
        register-sparse-encoding.json      the register request bodies (size, sha256, chunks; url
        register-sparse-tokenize.json      where a --url-base says where the zips will be served)

Doc-only mode: documents are encoded at ingest by the SPARSE_ENCODING model (the ingest pipeline's
`sparse_encoding` processor); a query is only tokenized and weighted by idf.json (SPARSE_TOKENIZE,
or client-side as the harness does). The tokenizer.json written here truncates at the model's
inference length (the manifest's `max_seq_length`), so that ML Commons never feeds the model more
positions than it has, and pads a batch to its longest text.

The checkpoint is read through `models.checkpoint` only. The release is built under a temporary
name and appears complete or not at all.
"""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import WorkbenchError
from common.files import atomic_dir, sha256_file, write_json
from common.provenance import git_revision

__all__ = [
    "CHUNK_BYTES",
    "ExportResult",
    "card_evaluation_section",
    "card_training_sections",
    "export_release",
    "leaderboard_rows",
    "register_body",
]

FORMAT = 1
CHUNK_BYTES = 10 * 1024 * 1024  # ML Commons' upload chunk (opensearch-py-ml's default)
CARD_METRICS = ("ndcg@10", "recall@100", "mrr@10")
ML_DIR = "ml-commons"
# what each ML Commons zip holds, by the release name
ZIP_MEMBERS = {
    "SPARSE_ENCODING": lambda name: (f"{name}.pt", "tokenizer.json"),
    "SPARSE_TOKENIZE": lambda name: ("tokenizer.json", "idf.json"),
}


@dataclass(frozen=True)
class ExportResult:
    out: Path
    name: str
    version: str
    files: dict[str, dict[str, Any]]  # relative path -> {"bytes", "sha256"}
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # function name -> register body
    rows: list[dict[str, Any]] = field(default_factory=list)  # the leaderboard rows in the card


def _resolve_model(model: str) -> Path:
    """A model directory, or the directory of a named offline base (`harness.bases`)."""
    from harness.bases import BASE_MODELS

    if model in BASE_MODELS:
        return Path(BASE_MODELS[model]())
    path = Path(model)
    if not path.is_dir():
        raise WorkbenchError(
            f"{model}: not a model directory nor a named offline model ({', '.join(sorted(BASE_MODELS))})"
        )
    return path


def _release_tokenizer_json(tokenizer: Any, max_length: int) -> str:
    """The tokenizer's tokenizer.json with truncation at `max_length` and padding to the longest text."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.enable_truncation(max_length=max_length)
    backend.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    return backend.to_str(pretty=True)


def _write_vocabulary(tokenizer: Any, folder: Path) -> None:
    """vocab.txt (one token per line, in id order) for a WordPiece tokenizer, as BERT tools expect.
    A SentencePiece (Unigram) vocabulary lives in tokenizer.json only: there is no .model file to add."""
    if json.loads(tokenizer.backend_tokenizer.to_str())["model"]["type"] != "WordPiece":
        return
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise WorkbenchError("the WordPiece vocabulary has gaps in its ids: no vocab.txt can list it")
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in by_id), encoding="utf-8")


def register_body(
    name: str, version: str, function_name: str, zip_path: Path, url: str | None, description: str
) -> dict[str, Any]:
    """The ML Commons body registering `zip_path`: `POST /_plugins/_ml/models/_register` where `url`
    is given, else `POST /_plugins/_ml/models/_register_meta` and `total_chunks` upload_chunk calls
    (`harness.opensearch.ml_commons` sends them)."""
    size = zip_path.stat().st_size
    body: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": description,
        "model_format": "TORCH_SCRIPT",
        "function_name": function_name,
        "model_content_size_in_bytes": size,
        "model_content_hash_value": sha256_file(zip_path),
        "total_chunks": max(1, math.ceil(size / CHUNK_BYTES)),
    }
    if url is not None:
        body["url"] = url
    return body


def leaderboard_rows(
    rows: list[dict[str, Any]], manifest: dict[str, Any], names: set[str]
) -> list[dict[str, Any]]:
    """The latest evaluation per dataset split of this model: a training checkpoint's rows by its
    run id and step (manifest), any other model's by the names it was evaluated under."""
    run_id, step = manifest.get("run_id"), manifest.get("step")
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        ours = (row["run_id"] == run_id and row["step"] == step) if run_id else row["model"] in names
        if ours:
            latest[(row["dataset"], row["split"])] = row  # rows come in insertion order
    return [latest[key] for key in sorted(latest)]


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def card_training_sections(manifest: dict[str, Any]) -> list[str]:
    """The model card's training data checksums and training configuration (none without a manifest)."""
    config = manifest.get("training_config") or {}
    data = manifest.get("data_checksums") or {}
    lines: list[str] = []
    if data:
        lines += ["## Training data", "", "| dataset | sha256 |", "|---|---|"]
        lines += [f"| {key} | `{value}` |" for key, value in sorted(data.items())]
        lines.append("")
    if config:
        loss, train = config.get("loss", {}), config.get("train", {})
        settings = json.dumps({"loss": loss, "train": train}, indent=1)
        lines += ["## Training configuration", "", "```json", settings, "```", ""]
    return lines


def card_evaluation_section(rows: list[dict[str, Any]], source: Path | str) -> list[str]:
    """The model card's evaluation table, from leaderboard rows (`leaderboard_rows`) of the model."""
    lines = ["## Evaluation (from the leaderboard)", ""]
    if rows:
        head = ["dataset", "split", "queries", *CARD_METRICS, "doc dims", "query dims", "FLOPS"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in rows:
            metrics, stats = row.get("metrics") or {}, row.get("stats") or {}
            cells = [row["dataset"], row["split"], str(row["n_queries"])]
            cells += [_fmt(metrics.get(m)) for m in CARD_METRICS]
            cells += [_fmt(stats.get("doc_active_mean"), 1), _fmt(stats.get("query_active_mean"), 1),
                      _fmt(stats.get("flops"), 2)]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "doc/query dims: mean active dimensions; FLOPS: expected multiplications per",
                  "query-document pair (Paria et al., 2020).", ""]  # fmt: skip
    else:
        lines += ["No evaluation of this model is on the leaderboard: run `python evaluate.py --model "
                  f"{source}` and export again.", ""]  # fmt: skip
    return lines


def model_card(name: str, version: str, source: Path, manifest: dict[str, Any], rows: list[dict[str, Any]],
               info: dict[str, Any], zips: dict[str, dict[str, Any]]) -> str:  # fmt: skip
    """README.md of a release: what the model is, what made it, how well it does, how to use it."""
    lines = [
        f"# {name} {version}",
        "",
        "A SPLADE-doc (inference-free learned sparse) model for OpenSearch neural sparse search in",
        "**doc-only mode**: documents are encoded at ingest by the SPARSE_ENCODING model; a query is only",
        "tokenized and weighted by `idf.json` (SPARSE_TOKENIZE), so no model runs at query time.",
        "Documents longer than the inference length are truncated.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | {info['base']} |",
        f"| exported from | `{source}` |",
        f"| training run | {manifest.get('run_id', '-')} step {manifest.get('step', '-')} |",
        f"| config hash | {manifest.get('config_hash', '-')} |",
        f"| git revision | {manifest.get('git_revision', '-')} |",
        f"| training examples | {manifest.get('training_examples', '-')} |",
        f"| inference length | {info['max_length']} tokens |",
        f"| vocabulary | {info['vocab_size']:,} |",
        f"| activation | {info['activation']} |",
        "",
        *card_training_sections(manifest),
        *card_evaluation_section(rows, source),
    ]
    lines += ["## Files for ML Commons", "", "| zip | function | bytes | sha256 |", "|---|---|---|---|"]
    for function, entry in zips.items():
        lines.append(f"| `{entry['path']}` | {function} | {entry['bytes']:,} | `{entry['sha256']}` |")
    lines += [
        "",
        "Register each zip with its body in `ml-commons/register-*.json` (with a `url`:",
        "`POST /_plugins/_ml/models/_register`; without: `POST /_plugins/_ml/models/_register_meta`, then",
        "`total_chunks` times `POST /_plugins/_ml/models/<model_id>/upload_chunk/<i>` with 10 MiB of the",
        "zip), then deploy it.",
        "Index the SPARSE_ENCODING output into a `rank_features` field; query with `neural_sparse` and the",
        "SPARSE_TOKENIZE model (or `query_tokens` weighted by `idf.json`).",
        "",
    ]
    return "\n".join(lines)


def _zip(path: Path, members: dict[str, Path]) -> None:
    """A zip of exactly `members` (name inside -> file), with fixed timestamps (same bytes each time)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, source in members.items():
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with source.open("rb") as fh, archive.open(info, "w") as out:
                shutil.copyfileobj(fh, out, 1 << 20)


def export_release(
    model: str,
    out: Path,
    *,
    name: str | None = None,
    version: str = "1.0.0",
    idf_dataset: str | None = None,
    url_base: str | None = None,
    leaderboard: Path | None = None,
    force: bool = False,
) -> ExportResult:
    """Write the release directory `out` for `model` (a checkpoint directory or a named offline model).

    The query weights are the checkpoint's idf.json, or computed on `idf_dataset`'s corpus (for a
    folder that has none, or to replace it). `url_base` is where the two zips will be served: the
    register bodies then carry `url`. Metrics for the card come from `leaderboard` (read only).
    """
    from harness.leaderboard import Leaderboard, default_path
    from models.checkpoint import idf_path, load_encoder, load_idf, read_manifest, write_checkpoint_files
    from models.idf import IdfWeights
    from models.torchscript import trace_sparse_encoder

    if Path(out).exists() and not force:  # before loading anything (atomic_dir checks again at the end)
        raise WorkbenchError(f"{out}: output directory already exists (--force replaces it)")
    source = _resolve_model(model)
    name = name or Path(out).name
    if not name or "/" in name or name.startswith("."):
        raise WorkbenchError(f"--name {name!r}: a release name is one plain path component")
    encoder = load_encoder(source, bf16=False, device="cpu")
    tokenizer = encoder.tokenizer
    if idf_dataset is not None:
        from harness.datasets import load_dataset, resolve_dataset
        from harness.registry import dataset_registry

        corpus = load_dataset(resolve_dataset(idf_dataset, dataset_registry())).corpus
        idf = IdfWeights.from_corpus([doc.full_text for doc in corpus.values()], tokenizer)
    elif idf_path(source).is_file():
        idf = load_idf(source, tokenizer)
    else:
        raise WorkbenchError(
            f"{idf_path(source)} not found: pass --idf-dataset NAME to compute the query weights on a corpus"
        )
    manifest = read_manifest(source)
    board = Path(leaderboard or default_path())
    rows: list[dict[str, Any]] = []
    if board.is_file():
        with Leaderboard(board, readonly=True) as store:
            rows = leaderboard_rows(store.rows(), manifest, {model, str(source), str(source.resolve())})
    info = {
        "max_length": encoder.max_length,
        "vocab_size": encoder.vocab_size,
        "activation": encoder.activation,
        # a model that was not trained here is its own base: a named one says which
        "base": manifest.get("base_model") or (model if model != str(source) else "-"),
    }
    base = info["base"]
    description = f"{name}: SPLADE-doc for neural sparse search in doc-only mode (base {base})"
    with atomic_dir(Path(out), replace=force) as tmp:
        release_manifest = manifest | {"exported_from": str(source.resolve())}
        write_checkpoint_files(tmp, encoder.model, tokenizer, idf, release_manifest, encoder.max_length,
                               manifest.get("train_max_length"), pytorch_bin=True)  # fmt: skip
        (tmp / "tokenizer.json").write_text(
            _release_tokenizer_json(tokenizer, encoder.max_length), encoding="utf-8"
        )
        _write_vocabulary(tokenizer, tmp)
        ml = tmp / ML_DIR
        ml.mkdir()
        trace = trace_sparse_encoder(encoder, ml / f"{name}.pt")
        files_of = {
            f"{name}.pt": trace,
            "tokenizer.json": tmp / "tokenizer.json",
            "idf.json": tmp / "idf.json",
        }
        zips = {
            "SPARSE_ENCODING": f"{name}-sparse-encoding.zip",
            "SPARSE_TOKENIZE": f"{name}-sparse-tokenize.zip",
        }
        bodies, entries = {}, {}
        for function, file_name in zips.items():
            _zip(ml / file_name, {member: files_of[member] for member in ZIP_MEMBERS[function](name)})
            url = f"{url_base.rstrip('/')}/{file_name}" if url_base else None
            body = bodies[function] = register_body(name, version, function, ml / file_name, url, description)
            size, digest = body["model_content_size_in_bytes"], body["model_content_hash_value"]
            entries[function] = {"path": f"{ML_DIR}/{file_name}", "bytes": size, "sha256": digest}
            write_json(ml / f"register-{function.lower().replace('_', '-')}.json", body, indent=1)
        trace.unlink()  # it lives in its zip
        card = model_card(name, version, source, manifest, rows, info, entries)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        files = {
            str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        write_json(
            tmp / "release.json",
            {
                "format": FORMAT,
                "name": name,
                "version": version,
                "source": str(source.resolve()),
                "manifest": {k: manifest.get(k) for k in ("run_id", "step", "config_hash", "base_model")},
                "exported_by": git_revision(),
                "files": files,
            },
            indent=1,
        )
    return ExportResult(Path(out), name, version, files, bodies, rows)
