"""Datasets: the registry in `datasets_cfg/`, the BEIR reader, downloads into a checked cache.

Every dataset, whatever its source, ends up as a BEIR directory that `load_beir` reads:

    corpus.jsonl[.gz]    {"_id", "title"?, "text"} per line
    queries.jsonl[.gz]   {"_id", "text"} per line
    qrels/<split>.tsv    "query-id  corpus-id  score" (header optional) or TREC "qid 0 docid rel"

Defined behaviour for imperfect data (counted in `Dataset.warnings`):
- an empty document or query is kept; an empty query retrieves nothing and scores 0;
- a judgment naming an unknown query is dropped (there is no text to search with);
- a judgment naming an unknown document is kept: it stays relevant and unretrievable,
  exactly as trec_eval counts it.
With `strict=True` unknown ids are errors instead. Duplicate ids are always errors.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import HarnessError
from harness.io import read_jsonl, read_tsv, sha256_file, sha256_tree
from models.config import describe_validation_error

__all__ = [
    "CONFIG_DIR",
    "DATA_DIR",
    "Dataset",
    "DatasetSpec",
    "Document",
    "cache_dir",
    "dataset_registry",
    "load_beir",
    "load_dataset",
    "read_qrels",
    "resolve_dataset",
]

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "datasets_cfg"
DATA_DIR = Path(__file__).resolve().parent / "data"


def cache_dir() -> Path:
    """Where downloads and indexes live: $WORKBENCH_CACHE, else ~/.cache/ko-splade-workbench."""
    env = os.environ.get("WORKBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ko-splade-workbench"


# --------------------------------------------------------------------------- specs


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where a dataset comes from; the keys allowed depend on `type`."""

    type: Literal["embedded", "local", "beir_zip", "hf"]
    path: str | None = None  # embedded: relative to harness/data; local: a directory
    url: str | None = None  # beir_zip
    md5: str | None = None  # beir_zip: the checksum its publisher gives
    sha256: str | None = None  # beir_zip
    subdir: str | None = None  # beir_zip: folder inside the archive
    repo: str | None = None  # hf: dataset repository id
    revision: str | None = None  # hf: pinned commit
    files: dict[str, Any] | None = None  # hf: corpus / queries / qrels paths in the repo
    fields: dict[str, str] | None = None  # hf: source column names, when not BEIR's

    @model_validator(mode="after")
    def _keys_for_type(self) -> Source:
        needed = {"embedded": ["path"], "local": ["path"], "beir_zip": ["url"], "hf": ["repo", "files"]}
        allowed = {
            "embedded": {"path"},
            "local": {"path"},
            "beir_zip": {"url", "md5", "sha256", "subdir"},
            "hf": {"repo", "revision", "files", "fields"},
        }
        for key in needed[self.type]:
            if getattr(self, key) is None:
                raise ValueError(f"source type {self.type!r} needs key {key!r}")
        extra = {k for k in self.model_fields_set if k != "type"} - allowed[self.type]
        if extra:
            raise ValueError(f"source type {self.type!r} does not take {sorted(extra)}")
        return self


class Counts(_Strict):
    corpus: int
    queries: dict[str, int]


class DatasetSpec(_Strict):
    """One YAML file of `datasets_cfg/`."""

    name: str
    description: str
    format: Literal["beir"] = "beir"
    languages: list[str]
    source: Source
    splits: list[str] = Field(min_length=1)
    counts: Counts | None = None
    sha256: str | None = None  # checksum of the BEIR directory (`harness.io.sha256_tree`)
    license: str | None = None
    reference: str | None = None
    default: bool = False  # part of the default `python evaluate.py` run
    expected: dict[str, dict[str, float]] | None = None  # retriever -> metric -> published

    @classmethod
    def from_yaml(cls, path: Path) -> DatasetSpec:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise HarnessError(f"{path}: malformed YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise HarnessError(f"{path}: expected a mapping at the top level")
        try:
            spec = cls.model_validate(raw)
        except ValidationError as exc:
            raise HarnessError(f"{path}: {describe_validation_error(exc)}") from None
        if spec.name != path.stem:
            raise HarnessError(f"{path}: name {spec.name!r} differs from the file name")
        return spec


def dataset_registry(config_dir: Path = CONFIG_DIR) -> dict[str, DatasetSpec]:
    """Every dataset spec, by name."""
    specs = [DatasetSpec.from_yaml(p) for p in sorted(config_dir.glob("*.yaml"))]
    return {spec.name: spec for spec in specs}


# --------------------------------------------------------------------------- reader


class Document(NamedTuple):
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title and body joined with a space, as BEIR's retrievers index them."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass
class Dataset:
    """A loaded BEIR dataset. `qrels[split][qid][docid] = relevance`."""

    name: str
    path: Path
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]
    checksum: str
    warnings: list[str] = field(default_factory=list)

    def split_queries(self, split: str) -> dict[str, str]:
        """The queries judged in `split`, in qrels order."""
        return {qid: self.queries[qid] for qid in self.qrels[split]}


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise HarnessError(f"{root}: missing {stem} (or {stem}.gz); not a BEIR dataset directory")


def _string(obj: dict[str, Any], key: str, path: Path, line: int, required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise HarnessError(f"{path}:{line}: missing key {key!r}")
        return ""
    if isinstance(value, int) and key == "_id":
        return str(value)
    if not isinstance(value, str):
        raise HarnessError(f"{path}:{line}: {key!r} must be a string")
    return value


def _read_corpus(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    for line, obj in read_jsonl(path):
        doc_id = _string(obj, "_id", path, line, required=True)
        if doc_id in corpus:
            raise HarnessError(f"{path}:{line}: duplicate document id {doc_id!r}")
        title = _string(obj, "title", path, line, required=False)
        corpus[doc_id] = Document(title, _string(obj, "text", path, line, required=True))
    return corpus


def _read_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for line, obj in read_jsonl(path):
        qid = _string(obj, "_id", path, line, required=True)
        if qid in queries:
            raise HarnessError(f"{path}:{line}: duplicate query id {qid!r}")
        queries[qid] = _string(obj, "text", path, line, required=True)
    return queries


def read_qrels(path: Path) -> list[tuple[int, str, str, int]]:
    """(line, qid, docid, relevance) rows of a BEIR TSV (header optional) or TREC qrels file."""
    rows = []
    for line, fields in read_tsv(path):
        if line == 1 and fields[-1].lower() in {"score", "relevance", "rel"}:
            continue  # BEIR header
        if len(fields) == 3:
            qid, doc_id, rel = fields
        elif len(fields) == 4:
            qid, _, doc_id, rel = fields
        else:
            raise HarnessError(f"{path}:{line}: expected 3 (BEIR) or 4 (TREC) columns")
        try:
            relevance = int(float(rel)) if float(rel).is_integer() else None
        except ValueError:
            relevance = None
        if relevance is None:
            raise HarnessError(f"{path}:{line}: relevance {rel!r} is not an integer")
        rows.append((line, qid, doc_id, relevance))
    return rows


def qrels_splits(path: Path) -> list[str]:
    """The splits of a BEIR directory: qrels/<split>.tsv or qrels/<split>.tsv.gz."""
    names = (p.name for p in (path / "qrels").glob("*") if p.is_file())
    return sorted(
        {n.removesuffix(".gz").removesuffix(".tsv") for n in names if n.endswith((".tsv", ".tsv.gz"))}
    )


def load_beir(
    path: Path, splits: Iterable[str] | None = None, strict: bool = False, name: str | None = None
) -> Dataset:
    """Read a BEIR directory; `splits` defaults to every file in qrels/."""
    path = Path(path)
    if not path.is_dir():
        raise HarnessError(f"{path}: dataset directory not found")
    corpus_path = _find(path, "corpus.jsonl")
    corpus = _read_corpus(corpus_path)
    if not corpus:
        raise HarnessError(f"{corpus_path}: no documents")
    queries = _read_queries(_find(path, "queries.jsonl"))
    splits = qrels_splits(path) if splits is None else list(splits)
    if not splits:
        raise HarnessError(f"{path}: no qrels/<split>.tsv files")
    warnings: list[str] = []
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in splits:
        qrels_path = _find(path / "qrels", f"{split}.tsv")
        judged: dict[str, dict[str, int]] = {}
        unknown_q: set[str] = set()
        unknown_d = 0
        for line, qid, doc_id, rel in read_qrels(qrels_path):
            if qid not in queries:
                if strict:
                    raise HarnessError(f"{qrels_path}:{line}: unknown query id {qid!r}")
                unknown_q.add(qid)
                continue
            if doc_id not in corpus:
                if strict:
                    raise HarnessError(f"{qrels_path}:{line}: unknown document id {doc_id!r}")
                unknown_d += 1
            if doc_id in judged.setdefault(qid, {}):
                raise HarnessError(f"{qrels_path}:{line}: duplicate judgment {qid!r} {doc_id!r}")
            judged[qid][doc_id] = rel
        if unknown_q:
            warnings.append(f"{qrels_path}: {len(unknown_q)} unknown query ids; their judgments dropped")
        if unknown_d:
            warnings.append(
                f"{qrels_path}: {unknown_d} judgments name unknown documents; kept as unretrievable"
            )
        if not judged:
            raise HarnessError(f"{qrels_path}: no judgments of known queries")
        qrels[split] = judged
    empty_docs = sum(1 for d in corpus.values() if not d.full_text.strip())
    judged_ids = {qid for split in qrels.values() for qid in split}
    empty_queries = sum(1 for qid in judged_ids if not queries[qid].strip())
    if empty_docs:
        warnings.append(f"{path}: {empty_docs} empty documents (indexed, never retrieved)")
    if empty_queries:
        warnings.append(f"{path}: {empty_queries} empty queries (retrieve nothing, score 0)")
    return Dataset(
        name=name or path.name,
        path=path,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        checksum=sha256_tree(path),
        warnings=warnings,
    )


# --------------------------------------------------------------------------- sources


def _download(url: str, target: Path, what: str) -> None:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    try:
        response = urllib.request.urlopen(url, timeout=30)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise HarnessError(f"{what}: cannot download {url} ({exc})") from None
    total = int(response.headers.get("Content-Length") or 0) or None
    columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
    try:
        with response, target.open("wb") as out, Progress(*columns, transient=True) as progress:
            task = progress.add_task(f"download {url.rsplit('/', 1)[-1]}", total=total)
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                progress.advance(task, len(block))
    except (OSError, TimeoutError) as exc:
        raise HarnessError(f"{what}: download of {url} interrupted ({exc})") from None


def _fetch_beir_zip(spec: DatasetSpec, target: Path) -> None:
    source = spec.source
    assert source.url is not None  # checked by the Source validator
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "data.zip"
        _download(source.url, archive, f"dataset {spec.name!r} (cache path {target})")
        if source.sha256 and sha256_file(archive) != source.sha256:
            raise HarnessError(f"dataset {spec.name!r}: sha256 of {source.url} differs from the YAML")
        if source.md5:
            digest = hashlib.md5(usedforsecurity=False)
            with archive.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != source.md5:
                raise HarnessError(
                    f"dataset {spec.name!r}: md5 of {source.url} is {digest.hexdigest()}, not {source.md5}"
                )
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(Path(tmp) / "x")
        except zipfile.BadZipFile as exc:
            raise HarnessError(f"dataset {spec.name!r}: {source.url} is not a zip archive ({exc})") from None
        inner = Path(tmp) / "x" / (source.subdir or "")
        if not inner.is_dir():
            raise HarnessError(f"dataset {spec.name!r}: the archive has no folder {source.subdir!r}")
        os.replace(inner, target)


def _fetch_hf(spec: DatasetSpec, target: Path) -> None:
    from harness.hf_convert import convert_hf_files

    source = spec.source
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise HarnessError(f"dataset {spec.name!r}: install huggingface_hub to fetch {source.repo}") from None
    assert source.files is not None and source.repo is not None

    def fetch(filename: str) -> Path:
        try:
            return Path(hf_hub_download(source.repo, filename, repo_type="dataset", revision=source.revision))
        except Exception as exc:  # the hub raises many types; all mean "not available here"
            raise HarnessError(
                f"dataset {spec.name!r}: cannot fetch {filename} from Hugging Face dataset "
                f"{source.repo}@{source.revision or 'main'} ({type(exc).__name__}); "
                f"cache path {target}"
            ) from None

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        convert_hf_files(source.files, source.fields or {}, fetch, Path(tmp) / "beir")
        os.replace(Path(tmp) / "beir", target)


def _materialise(spec: DatasetSpec) -> Path:
    """The BEIR directory of a spec, downloading remote sources into the cache once."""
    source = spec.source
    if source.type == "embedded":
        return DATA_DIR / str(source.path)
    if source.type == "local":
        return Path(str(source.path)).expanduser()
    source_key = hashlib.sha256(source.model_dump_json().encode()).hexdigest()[:12]
    target = cache_dir() / "datasets" / f"{spec.name}-{source_key}"  # a changed source is a new folder
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.type == "beir_zip":
        _fetch_beir_zip(spec, target)
    else:
        _fetch_hf(spec, target)
    return target


def _check_counts(spec: DatasetSpec, data: Dataset) -> None:
    if spec.sha256 and data.checksum != spec.sha256:
        raise HarnessError(
            f"dataset {spec.name!r}: checksum of {data.path} is {data.checksum}, "
            f"the YAML pins {spec.sha256} (dataset drift)"
        )
    if spec.counts is None:
        return
    found = {"corpus": len(data.corpus)} | {
        f"queries.{split}": len(data.qrels[split]) for split in spec.counts.queries if split in data.qrels
    }
    wanted = {"corpus": spec.counts.corpus} | {
        f"queries.{split}": n for split, n in spec.counts.queries.items()
    }
    drift = [
        f"{k}: expected {wanted[k]}, found {found.get(k, 'none')}"
        for k in wanted
        if found.get(k) != wanted[k]
    ]
    if drift:
        raise HarnessError(
            f"dataset {spec.name!r} at {data.path} differs from its YAML (dataset drift): " + "; ".join(drift)
        )


def load_dataset(spec: DatasetSpec, strict: bool = False) -> Dataset:
    """Materialise, read and check a registered dataset."""
    path = _materialise(spec)
    if not path.is_dir():
        raise HarnessError(f"dataset {spec.name!r}: {path} not found ({spec.source.type} source)")
    counted = list(spec.counts.queries) if spec.counts else []
    splits = list(dict.fromkeys([*spec.splits, *counted]))  # evaluation splits, then the others counted
    data = load_beir(path, splits, strict=strict, name=spec.name)
    _check_counts(spec, data)
    return data


def resolve_dataset(name_or_path: str, registry: dict[str, DatasetSpec]) -> DatasetSpec:
    """A registered name, or the path of any BEIR directory (evaluated on test, else dev)."""
    if name_or_path in registry:
        return registry[name_or_path]
    path = Path(name_or_path)
    if path.is_dir():
        found = set(qrels_splits(path))
        evaluation = [s for s in ("test", "dev") if s in found][:1] or sorted(found)[:1]
        if not evaluation:
            raise HarnessError(f"{path}: no qrels/<split>.tsv files")
        return DatasetSpec(
            name=path.resolve().name,
            description=f"BEIR directory {path}",
            languages=[],
            source=Source(type="local", path=str(path.resolve())),
            splits=evaluation,
        )
    raise HarnessError(
        f"unknown dataset {name_or_path!r}: not a registered name nor a directory; "
        f"registered: {', '.join(sorted(registry))}"
    )
