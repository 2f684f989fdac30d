"""The `corpora` step: public training pairs as BEIR folders (`corpus.jsonl`, `queries.jsonl`,
`qrels/train.tsv`; MS MARCO's triples also `negatives/train.jsonl`).

Each source is read either from the Hugging Face Hub (the parquet files of one dataset revision,
fetched with `huggingface_hub`, already a dependency, so no second copy of the data in a `datasets`
cache) or from a local file in the format the source itself distributes (`--from FILE`):

    s2orc         title -> abstract          S2ORC_title_abstract.json.gz  JSON lines [title, abstract]
    wikianswers   question -> duplicate      WikiAnswers.json.gz           JSON lines {"set": [q, ...]}
    gooaq         question -> answer         gooaq_pairs.jsonl.gz          JSON lines [question, answer]
    msmarco       query -> positive (+neg)   triples.train.small.tsv       query<TAB>positive<TAB>negative
    korquad       question -> context        KorQuAD_v1.0_train.json       SQuAD JSON
    klue-mrc      question -> context        klue-mrc-v1.1_train.json      SQuAD-like JSON (no unanswerable)

Hub parquet files and JSON lines objects are read by column name (`SourceSpec.columns`). Texts are
deduplicated: a document or query is stored once, under an id made from its content (a hash), so a
context shared by many questions is one corpus document and a re-run gives the same ids. None of
these sources carries teacher scores, so no `teacher/` folder is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from common.errors import WorkbenchError
from common.files import atomic_write, read_lines
from harness.prepare.step import StepRun, run_step

__all__ = ["SOURCES", "SourceSpec", "build_corpus", "hub_files", "read_source", "register"]

STEP, VERSION = "corpora", "1"
LOCAL_ROOT = Path("data/raw/corpora")  # where the offline message tells a user to place a file


@dataclass(frozen=True)
class SourceSpec:
    """One training source: where it lives on the Hub, what its own file is, how its rows read."""

    name: str
    hub_id: str
    config: str | None
    revision: str  # a Hub commit or branch; see REVISIONS_VERIFIED
    patterns: tuple[str, ...]  # the train split's parquet files in the repository
    kind: str  # "pairs" | "triples" | "qa"
    local_file: str  # the file name the source distributes
    origin: str  # where that file comes from
    columns: tuple[str, ...]  # the column names read from parquet rows / JSON objects


# The Hub revisions could not be resolved in this offline environment: they name the branch, and
# the commit actually downloaded is recorded in the manifest (`hub_commit`); pin a commit with
# `--revision` (or here) once it has been checked online.
REVISIONS_VERIFIED = False
_EMBEDDING_DATA = "https://huggingface.co/datasets/sentence-transformers/embedding-training-data"


def _spec(
    name: str,
    hub_id: str,
    config: str | None,
    patterns: tuple[str, ...],
    kind: str,
    local_file: str,
    origin: str,
    columns: tuple[str, ...],
) -> SourceSpec:
    return SourceSpec(name, hub_id, config, "main", patterns, kind, local_file, origin, columns)


SOURCES: dict[str, SourceSpec] = {
    spec.name: spec
    for spec in (
        _spec("s2orc", "sentence-transformers/s2orc", "title-abstract-pair",
              ("title-abstract-pair/train-*.parquet",), "pairs",
              "S2ORC_title_abstract.json.gz", _EMBEDDING_DATA, ("title", "abstract")),
        _spec("wikianswers", "sentence-transformers/wikianswers-duplicates", "pair",
              ("pair/train-*.parquet",), "pairs",
              "WikiAnswers.json.gz", _EMBEDDING_DATA, ("anchor", "positive")),
        _spec("gooaq", "sentence-transformers/gooaq", "pair",
              ("pair/train-*.parquet", "data/train-*.parquet"), "pairs",
              "gooaq_pairs.jsonl.gz", _EMBEDDING_DATA, ("question", "answer")),
        _spec("msmarco", "sentence-transformers/msmarco-bm25", "triplet",
              ("triplet/train-*.parquet",), "triples", "triples.train.small.tsv",
              "https://msmarco.z22.web.core.windows.net/msmarcoranking/triples.train.small.tar.gz",
              ("query", "positive", "negative")),
        _spec("korquad", "KorQuAD/squad_kor_v1", None,
              ("squad_kor_v1/train-*.parquet", "data/train-*.parquet", "plain_text/train-*.parquet"), "qa",
              "KorQuAD_v1.0_train.json", "https://korquad.github.io/dataset/KorQuAD_v1.0_train.json",
              ("id", "title", "context", "question")),
        _spec("klue-mrc", "klue/klue", "mrc",
              ("mrc/train-*.parquet",), "qa", "klue-mrc-v1.1_train.json",
              "https://github.com/KLUE-benchmark/KLUE (klue_benchmark/klue-mrc-v1.1)",
              ("guid", "title", "context", "question")),
    )
}  # fmt: skip

Row = dict[str, Any]


# --------------------------------------------------------------------------- fetching


def local_path(spec: SourceSpec) -> Path:
    return LOCAL_ROOT / spec.name / spec.local_file


def hub_files(
    spec: SourceSpec, revision: str | None = None, endpoint: str | None = None
) -> tuple[list[Path], str]:
    """(the train split's parquet files, the commit they come from), fetched from the Hub; offline,
    an error naming the dataset and the local file to place instead."""
    from huggingface_hub import snapshot_download

    revision = revision or spec.revision
    try:
        folder = Path(
            snapshot_download(
                spec.hub_id, repo_type="dataset", revision=revision, allow_patterns=list(spec.patterns),
                endpoint=endpoint,
            )
        )  # fmt: skip
    except Exception as exc:  # offline, unknown repository or revision, HTTP errors: all end here
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkbenchError(
            f"{spec.name}: cannot fetch the Hugging Face dataset {spec.hub_id}"
            f"{f' (config {spec.config})' if spec.config else ''} at revision {revision} ({reason}). "
            f"Offline, place the source's own file {spec.local_file} ({spec.origin}) at {local_path(spec)} "
            f"and run: python -m harness.prepare corpora {spec.name} --from {local_path(spec)} --out OUT"
        ) from None
    files = sorted(p for pattern in spec.patterns for p in folder.glob(pattern))
    if not files:
        raise WorkbenchError(
            f"{spec.name}: {spec.hub_id} at revision {revision} has no file matching "
            f"{', '.join(spec.patterns)}; pass --from {local_path(spec)} ({spec.origin})"
        )
    return files, folder.name  # snapshot folders are named by their commit


# --------------------------------------------------------------------------- reading


def _parquet_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[str, Row]]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's ArrowInvalid and friends
        raise WorkbenchError(f"{path}: not a readable parquet file ({exc})") from None
    wanted = [c for c in table.schema_arrow.names if c in columns or c in ("answers", "is_impossible")]
    row_no = 0
    for batch in table.iter_batches(batch_size=4096, columns=wanted):
        for row in batch.to_pylist():
            row_no += 1
            yield f"{path}: row {row_no}", row


def _json_lines(path: Path, columns: tuple[str, ...], run: StepRun) -> Iterator[tuple[str, Row]]:
    """Rows of a JSON-lines file whose lines are objects, `{"set": [...]}` or lists (read in the
    order of `columns`)."""
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        where = f"{path}: line {line_no}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            run.problem("malformed line", where, f"malformed JSON ({exc.msg})")
            continue
        if isinstance(value, dict) and isinstance(value.get("set"), list):
            yield where, {"set": value["set"]}
        elif isinstance(value, dict):
            yield where, value
        elif isinstance(value, list):
            yield (
                where,
                {"set": value} if len(value) != len(columns) else dict(zip(columns, value, strict=True)),
            )
        else:
            run.problem("malformed line", where, "neither a JSON object nor a list")


def _tsv_rows(path: Path, columns: tuple[str, ...], run: StepRun) -> Iterator[tuple[str, Row]]:
    for line_no, line in read_lines(path):
        line = line.rstrip("\r\n")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(columns):
            run.problem(
                "malformed line", f"{path}: line {line_no}", f"{len(fields)} columns, expected {len(columns)}"
            )
            continue
        yield f"{path}: line {line_no}", dict(zip(columns, fields, strict=True))


def _squad_rows(path: Path, id_column: str, run: StepRun) -> Iterator[tuple[str, Row]]:
    """The questions of a SQuAD-format JSON file (one document: read whole, as SQuAD's readers do),
    each question's id (`id` in KorQuAD, `guid` in KLUE) under `id_column`."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WorkbenchError(f"{path}: malformed JSON ({exc.msg}, line {exc.lineno})") from None
    except UnicodeDecodeError as exc:
        raise WorkbenchError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise WorkbenchError(f"{path}: not a SQuAD-format file (no top-level 'data' list)")
    for a, article in enumerate(document["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            run.problem("malformed article", f"{path}: data[{a}]", "no 'paragraphs' list")
            continue
        for p, paragraph in enumerate(paragraphs):
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                run.problem("malformed paragraph", f"{path}: data[{a}].paragraphs[{p}]", "no 'qas' list")
                continue
            for q, qa in enumerate(paragraph["qas"]):
                if not isinstance(qa, dict):
                    run.problem(
                        "malformed question", f"{path}: data[{a}].paragraphs[{p}].qas[{q}]", "not an object"
                    )
                    continue
                yield (
                    f"{path}: data[{a}].paragraphs[{p}].qas[{q}]",
                    {
                        id_column: qa.get("id", qa.get("guid")),
                        "title": article.get("title", ""),
                        "context": paragraph.get("context"),
                        "question": qa.get("question"),
                        "is_impossible": qa.get("is_impossible", False),
                    },
                )


def read_source(spec: SourceSpec, path: Path, run: StepRun) -> Iterator[tuple[str, Row]]:
    """(where, row) of a source file, by its format: parquet, JSON lines, TSV or SQuAD JSON."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"{path}: no such file")
    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        return _parquet_rows(path, spec.columns)
    if name.endswith(".tsv"):
        return _tsv_rows(path, spec.columns, run)
    if spec.kind == "qa" and name.endswith(".json") and path.suffix != ".gz":
        return _squad_rows(path, spec.columns[0], run)
    if name.endswith((".jsonl", ".json")):
        return _json_lines(path, spec.columns, run)
    raise WorkbenchError(f"{path}: expected {spec.local_file} (or the Hub's .parquet files) for {spec.name}")


# --------------------------------------------------------------------------- writing


def text_id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha1("\0".join(parts).encode("utf-8")).hexdigest()[:16]


class BeirWriter:
    """Writes queries, documents and qrels once each, ids from content (or the source's own ids)."""

    def __init__(self, out: Path, stack: contextlib.ExitStack, run: StepRun) -> None:
        self.run = run
        self._queries: set[str] = set()
        self._docs: set[str] = set()
        self._qrels: set[tuple[str, str]] = set()
        files = {"corpus": "corpus.jsonl", "queries": "queries.jsonl", "qrels": "qrels/train.tsv"}
        self.handles = {key: stack.enter_context(atomic_write(out / name)) for key, name in files.items()}
        self.handles["qrels"].write("query-id\tcorpus-id\tscore\n")

    def query(self, text: str, query_id: str | None = None) -> str:
        qid = query_id or text_id("q", text)
        if qid not in self._queries:
            self._queries.add(qid)
            self.handles["queries"].write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
            self.run.count("queries")
        return qid

    def document(self, text: str, title: str = "") -> str:
        doc_id = text_id("d", title, text)
        if doc_id not in self._docs:
            self._docs.add(doc_id)
            record = {"_id": doc_id, "title": title, "text": text}
            self.handles["corpus"].write(json.dumps(record, ensure_ascii=False) + "\n")
            self.run.count("documents")
        return doc_id

    def qrel(self, qid: str, doc_id: str) -> None:
        if (qid, doc_id) not in self._qrels:
            self._qrels.add((qid, doc_id))
            self.handles["qrels"].write(f"{qid}\t{doc_id}\t1\n")
            self.run.count("qrels")


def _text(row: Row, key: str) -> str | None:
    value = row.get(key)
    return " ".join(value.split()) if isinstance(value, str) and value.strip() else None


def _add_pairs(spec: SourceSpec, where: str, row: Row, out: BeirWriter) -> bool:
    texts = [
        t for t in (row["set"] if "set" in row else [row.get(c) for c in spec.columns]) if isinstance(t, str)
    ]
    texts = [" ".join(t.split()) for t in texts if t.strip()]
    if len(texts) < 2:
        out.run.problem("incomplete row", where, f"needs {' and '.join(spec.columns)}")
        return False
    qid = out.query(texts[0])
    for text in texts[1:]:  # WikiAnswers' sets: every other question is a duplicate of the first
        out.qrel(qid, out.document(text))
    return True


def _add_qa(spec: SourceSpec, where: str, row: Row, out: BeirWriter) -> bool:
    question, context = _text(row, "question"), _text(row, "context")
    if question is None or context is None:
        out.run.problem("incomplete row", where, "needs a question and a context")
        return False
    if row.get("is_impossible"):
        out.run.count("unanswerable questions left out")
        return False
    source_id = row.get(spec.columns[0])
    qid = out.query(question, f"q{source_id}" if source_id not in (None, "") else None)
    out.qrel(qid, out.document(context, str(row.get("title") or "")))
    return True


def build_corpus(
    source: str,
    out: Path,
    local: Path | None = None,
    revision: str | None = None,
    limit: int | None = None,
    force: bool = False,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """Build the BEIR folder of `source` into `out` from `local` (the source's own file, or one of
    the Hub's parquet files) or, without it, from the Hub; returns the manifest."""
    spec = SOURCES.get(source)
    if spec is None:
        raise WorkbenchError(f"unknown corpus {source!r}; choose from {', '.join(SOURCES)}")
    if limit is not None and limit < 1:
        raise WorkbenchError(f"--limit must be at least 1, got {limit}")
    commit = None
    files = [Path(local)] if local is not None else None
    if files is None:
        files, commit = hub_files(spec, revision, endpoint)
    params = {
        "source": source,
        "limit": limit,
        "hub_id": None if local else spec.hub_id,
        "revision": revision,
    }

    def build(run: StepRun) -> None:
        from harness.console import meter

        run.extra["source"] = {"name": spec.name, "hub_id": spec.hub_id, "config": spec.config,
                               "hub_commit": commit, "revision_verified": REVISIONS_VERIFIED}  # fmt: skip
        negatives: dict[tuple[str, str], list[str]] = {}
        add: Callable[[SourceSpec, str, Row, BeirWriter], bool] = _add_qa if spec.kind == "qa" else _add_pairs
        with contextlib.ExitStack() as stack, meter(f"{spec.name} rows", unit="rows") as progress:
            writer = BeirWriter(run.out, stack, run)
            taken = 0
            for file in files:
                for where, row in read_source(spec, file, run):
                    if limit is not None and taken >= limit:
                        break
                    progress.advance()
                    run.count("rows")
                    taken += 1
                    if spec.kind == "triples":
                        _add_triple(where, row, writer, negatives)
                    else:
                        add(spec, where, row, writer)
        if spec.kind == "triples":
            with atomic_write(run.out / "negatives" / "train.jsonl") as handle:
                for (qid, pid), negs in negatives.items():
                    line = {"query_id": qid, "positive_id": pid, "negative_ids": negs}
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            run.count("negative lists", len(negatives))

    return run_step(out, STEP, VERSION, files, params, build, force=force)


def _add_triple(where: str, row: Row, out: BeirWriter, negatives: dict[tuple[str, str], list[str]]) -> None:
    query, positive, negative = _text(row, "query"), _text(row, "positive"), _text(row, "negative")
    if query is None or positive is None or negative is None:
        out.run.problem("incomplete row", where, "needs a query, a positive and a negative")
        return
    qid, pid = out.query(query), out.document(positive)
    out.qrel(qid, pid)
    nid = out.document(negative)
    kept = negatives.setdefault((qid, pid), [])
    if nid not in kept and nid != pid:
        kept.append(nid)


def register(app: typer.Typer) -> None:
    """Add the `corpora` command (and `corpora-list`)."""

    @app.command("corpora")
    def corpora_command(
        source: Annotated[str, typer.Argument(help=f"one of: {', '.join(SOURCES)}")],
        out: Annotated[Path, typer.Option(help="output BEIR folder")],
        local: Annotated[
            Path | None,
            typer.Option("--from", help="the source's own file (or a Hub parquet file) instead of the Hub"),
        ] = None,
        revision: Annotated[
            str | None, typer.Option(help="Hub revision (commit), not the pinned one")
        ] = None,
        limit: Annotated[int | None, typer.Option(help="read only the first N rows")] = None,
        force: Annotated[bool, typer.Option(help="rebuild even when up to date")] = False,
    ) -> None:
        """A training source (S2ORC, WikiAnswers, GOOAQ, MS MARCO, KorQuAD, KLUE-MRC) as a BEIR folder."""
        from harness.console import user_errors

        with user_errors():
            build_corpus(source, out, local, revision, limit, force)

    @app.command("corpora-list")
    def corpora_list_command() -> None:
        """Every source: Hub id, revision, the local file it reads offline."""
        from rich.table import Table

        from harness.console import console

        table = Table("source", "kind", "Hub dataset", "revision", "local file (--from)")
        for spec in SOURCES.values():
            hub = spec.hub_id + (f" [{spec.config}]" if spec.config else "")
            table.add_row(spec.name, spec.kind, hub, spec.revision, str(local_path(spec)))
        console.print(table)
