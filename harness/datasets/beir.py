"""The BEIR reader: every dataset, whatever its source, ends up as a BEIR directory read here.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from common.errors import WorkbenchError
from common.files import read_jsonl, read_qrels, sha256_tree

__all__ = ["Dataset", "Document", "load_beir", "qrels_splits"]

T = TypeVar("T")


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
    # the splits its spec evaluates on (`load_dataset` sets them); empty: not known (a bare `load_beir`)
    evaluation_splits: tuple[str, ...] = ()

    @cached_property
    def corpus_checksum(self) -> str:
        """sha256 of the documents alone (ids, titles, texts, in corpus order): what an index
        depends on. Tasks that share a corpus (gimp-en and gimp-ko-en) share their indexes."""
        digest = hashlib.sha256()
        for doc_id, doc in self.corpus.items():
            for part in (doc_id, doc.title, doc.text):
                digest.update(part.encode("utf-8", "surrogatepass"))
                digest.update(b"\0")
        return digest.hexdigest()

    def split_queries(self, split: str) -> dict[str, str]:
        """The queries judged in `split`, in qrels order."""
        return {qid: self.queries[qid] for qid in self.qrels[split]}


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise WorkbenchError(f"{root}: missing {stem} (or {stem}.gz); not a BEIR dataset directory")


def _string(obj: dict[str, Any], key: str, path: Path, line: int, required: bool) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise WorkbenchError(f"{path}:{line}: missing key {key!r}")
        return ""
    if isinstance(value, int) and key == "_id":
        return str(value)
    if not isinstance(value, str):
        raise WorkbenchError(f"{path}:{line}: {key!r} must be a string")
    return value


def _read_by_id(path: Path, what: str, value: Callable[[dict[str, Any], int], T]) -> dict[str, T]:
    """`_id` -> value(object, line) for each line of a JSONL file; ids must be unique."""
    records: dict[str, T] = {}
    for line, obj in read_jsonl(path):
        key = _string(obj, "_id", path, line, required=True)
        if not key or any(char.isspace() for char in key):  # a TREC run file could not hold it
            raise WorkbenchError(f"{path}:{line}: {what} id {key!r} is empty or contains white space")
        if key in records:
            raise WorkbenchError(f"{path}:{line}: duplicate {what} id {key!r}")
        records[key] = value(obj, line)
    return records


def _read_corpus(path: Path) -> dict[str, Document]:
    def document(obj: dict[str, Any], line: int) -> Document:
        title = _string(obj, "title", path, line, required=False)
        return Document(title, _string(obj, "text", path, line, required=True))

    return _read_by_id(path, "document", document)


def _read_queries(path: Path) -> dict[str, str]:
    return _read_by_id(path, "query", lambda obj, line: _string(obj, "text", path, line, required=True))


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
        raise WorkbenchError(f"{path}: dataset directory not found")
    corpus_path = _find(path, "corpus.jsonl")
    corpus = _read_corpus(corpus_path)
    if not corpus:
        raise WorkbenchError(f"{corpus_path}: no documents")
    queries_path = _find(path, "queries.jsonl")
    queries = _read_queries(queries_path)
    if not queries:
        raise WorkbenchError(f"{queries_path}: no queries")
    splits = qrels_splits(path) if splits is None else list(splits)
    if not splits:
        raise WorkbenchError(f"{path}: no qrels/<split>.tsv files")
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
                    raise WorkbenchError(f"{qrels_path}:{line}: unknown query id {qid!r}")
                unknown_q.add(qid)
                continue
            if doc_id not in corpus:
                if strict:
                    raise WorkbenchError(f"{qrels_path}:{line}: unknown document id {doc_id!r}")
                unknown_d += 1
            if doc_id in judged.setdefault(qid, {}):
                raise WorkbenchError(f"{qrels_path}:{line}: duplicate judgment {qid!r} {doc_id!r}")
            judged[qid][doc_id] = rel
        if unknown_q:
            warnings.append(f"{qrels_path}: {len(unknown_q)} unknown query ids; their judgments dropped")
        if unknown_d:
            warnings.append(
                f"{qrels_path}: {unknown_d} judgments name unknown documents; kept as unretrievable"
            )
        if not judged:
            raise WorkbenchError(f"{qrels_path}: no judgments of known queries")
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
