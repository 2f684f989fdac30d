"""Turn a Hugging Face dataset's files (jsonl, tsv, parquet) into a BEIR directory.

A YAML `source: {type: hf}` names the files of the corpus, the queries and each split's qrels
inside the repository, and optionally the source's column names (`fields`) where they are not
BEIR's (`_id`, `title`, `text`; qrels `query-id`, `corpus-id`, `score`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from common.errors import WorkbenchError
from common.files import read_jsonl, read_qrels, read_tsv

__all__ = ["convert_hf_files", "read_records"]

FIELD_DEFAULTS = {
    "corpus_id": "_id",
    "corpus_title": "title",
    "corpus_text": "text",
    "query_id": "_id",
    "query_text": "text",
    "qrels_query_id": "query-id",
    "qrels_corpus_id": "corpus-id",
    "qrels_score": "score",
}


def read_records(path: Path, tsv_columns: Sequence[Sequence[str]] = ()) -> Iterator[dict[str, Any]]:
    """Rows of a .jsonl[.gz] or .parquet file as dicts.

    A .tsv[.gz] file's rows are keyed by the first of `tsv_columns` whose length matches the first
    row (e.g. [id, text] or [id, title, text]); every row must then have that many fields. A first
    row that repeats the column names is a header and is skipped.
    """
    name = path.name
    if name.endswith((".jsonl", ".jsonl.gz", ".json")):
        for _, obj in read_jsonl(path):
            yield obj
    elif name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise WorkbenchError(f"{path}: install pyarrow to read parquet files") from None
        for batch in pq.ParquetFile(path).iter_batches():
            yield from batch.to_pylist()
    elif name.endswith((".tsv", ".tsv.gz")):
        columns: Sequence[str] | None = None
        for line, values in read_tsv(path):
            if columns is None:
                columns = next((c for c in tsv_columns if len(c) == len(values)), None)
                if columns is None:
                    shapes = " or ".join(str(len(c)) for c in tsv_columns) or "known"
                    raise WorkbenchError(f"{path}:{line}: {len(values)} columns, expected {shapes}")
                if values[0] == columns[0]:
                    continue  # header
            if len(values) != len(columns):
                raise WorkbenchError(f"{path}:{line}: {len(values)} columns, expected {len(columns)}")
            yield dict(zip(columns, values, strict=True))
    else:
        raise WorkbenchError(f"{path}: unsupported file type (use .jsonl, .jsonl.gz, .tsv or .parquet)")


def _field(row: dict[str, Any], column: str, path: Path, required: bool = True) -> Any:
    if column not in row:
        if required:
            raise WorkbenchError(f"{path}: no column {column!r} (columns: {', '.join(map(str, row))})")
        return ""
    return row[column]


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def convert_hf_files(
    files: dict[str, Any], fields: dict[str, str], fetch: Callable[[str], Path], out: Path
) -> None:
    """Fetch each named file and write corpus.jsonl, queries.jsonl and qrels/<split>.tsv to `out`."""
    unknown = set(fields) - set(FIELD_DEFAULTS)
    if unknown:
        raise WorkbenchError(
            f"source.fields: unknown keys {sorted(unknown)}; valid: {sorted(FIELD_DEFAULTS)}"
        )
    for key in ("corpus", "queries", "qrels"):
        if key not in files:
            raise WorkbenchError(f"source.files: missing key {key!r}")
    f = FIELD_DEFAULTS | fields
    (out / "qrels").mkdir(parents=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for name in _as_list(files["corpus"]):
            path = fetch(name)
            shapes = (
                [f["corpus_id"], f["corpus_text"]],
                [f["corpus_id"], f["corpus_title"], f["corpus_text"]],
            )
            for row in read_records(path, shapes):
                doc = {
                    "_id": str(_field(row, f["corpus_id"], path)),
                    "title": _field(row, f["corpus_title"], path, required=False) or "",
                    "text": _field(row, f["corpus_text"], path) or "",
                }
                handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for name in _as_list(files["queries"]):
            path = fetch(name)
            for row in read_records(path, ([f["query_id"], f["query_text"]],)):
                query = {
                    "_id": str(_field(row, f["query_id"], path)),
                    "text": _field(row, f["query_text"], path) or "",
                }
                handle.write(json.dumps(query, ensure_ascii=False) + "\n")
    for split, name in dict(files["qrels"]).items():
        path = fetch(name)
        with (out / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            if path.name.endswith((".tsv", ".tsv.gz", ".txt")):
                for _, qid, doc_id, rel in read_qrels(path):
                    handle.write(f"{qid}\t{doc_id}\t{rel}\n")
                continue
            for row in read_records(path):
                qid, doc_id = _field(row, f["qrels_query_id"], path), _field(row, f["qrels_corpus_id"], path)
                score = _field(row, f["qrels_score"], path)
                if float(score) != int(float(score)):
                    raise WorkbenchError(
                        f"{path}: relevance {score!r} of {qid!r} {doc_id!r} is not an integer"
                    )
                handle.write(f"{qid}\t{doc_id}\t{int(float(score))}\n")
