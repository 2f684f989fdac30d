"""The BEIR reader, the dataset registry and the source checks."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import urllib.error
from pathlib import Path

import pytest
import yaml

from common.errors import WorkbenchError
from common.files import sha256_tree
from common.paths import cache_dir
from harness.datasets import (
    DatasetSpec,
    Document,
    load_beir,
    load_dataset,
    resolve_dataset,
    sources,
)
from harness.datasets.hf_convert import convert_hf_files
from harness.registry import dataset_registry


def test_reads_beir_directory(tiny_beir: Path) -> None:
    data = load_beir(tiny_beir)
    assert len(data.corpus) == 5 and len(data.queries) == 4
    assert data.corpus["d3"] == Document("Crop tool", "The crop tool removes the borders of an image.")
    assert data.corpus["d3"].full_text == "Crop tool The crop tool removes the borders of an image."
    assert data.qrels == {
        "test": {"q1": {"d2": 1}, "q2": {"d1": 1}, "q3": {"d3": 1}, "q4": {"d5": 2, "d2": 0}}
    }
    assert data.split_queries("test") == {q: data.queries[q] for q in ("q1", "q2", "q3", "q4")}
    assert data.checksum == sha256_tree(tiny_beir)
    assert data.warnings == []


def test_gzip_files_and_trec_qrels_read_the_same(tiny_beir: Path, tmp_path: Path) -> None:
    other = tmp_path / "gz"
    (other / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (other / f"{name}.gz").write_bytes(gzip.compress((tiny_beir / name).read_bytes()))
    rows = (tiny_beir / "qrels" / "test.tsv").read_text().splitlines()[1:]
    trec = "".join(f"{q} 0 {d} {r}\n" for q, d, r in (row.split("\t") for row in rows))
    (other / "qrels" / "test.tsv").write_text(trec)
    a, b = load_beir(tiny_beir), load_beir(other)
    assert (a.corpus, a.queries, a.qrels) == (b.corpus, b.queries, b.qrels)


def test_corpus_checksum_depends_on_the_documents_only(tiny_beir: Path, tmp_path: Path) -> None:
    """Indexes are cached by it: tasks with the same corpus (gimp-en, gimp-ko-en) share them."""
    other = tmp_path / "other-queries"
    shutil.copytree(tiny_beir, other)
    (other / "queries.jsonl").write_text(json.dumps({"_id": "x", "text": "another query"}) + "\n")
    (other / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nx\td1\t1\n")
    a, b = load_beir(tiny_beir), load_beir(other)
    assert a.checksum != b.checksum and a.corpus_checksum == b.corpus_checksum
    expected = hashlib.sha256(
        "".join(f"{i}\0{d.title}\0{d.text}\0" for i, d in a.corpus.items()).encode()
    ).hexdigest()
    assert a.corpus_checksum == expected
    b.corpus["d1"] = Document(b.corpus["d1"].title, b.corpus["d1"].text + " changed")
    del b.__dict__["corpus_checksum"]  # computed once per loaded dataset; recompute for the edit
    assert b.corpus_checksum != a.corpus_checksum


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        (
            "corpus.jsonl",
            '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n',
            "corpus.jsonl:2: malformed JSON",
        ),
        ("corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"text": "b"}\n', "corpus.jsonl:2: missing key '_id'"),
        (
            "corpus.jsonl",
            '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n',
            "duplicate document id 'd1'",
        ),
        ("corpus.jsonl", '{"_id": "d1", "text": 5}\n', "corpus.jsonl:1: 'text' must be a string"),
        (
            "queries.jsonl",
            '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n',
            "duplicate query id 'q1'",
        ),
        ("queries.jsonl", "[1, 2]\n", "queries.jsonl:1: expected a JSON object"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td2\n", "test.tsv:2: expected 3 (BEIR) or 4"),
        ("qrels/test.tsv", "q1\td2\thigh\n", "test.tsv:1: relevance 'high' is not an integer"),
        ("qrels/test.tsv", "q1\td2\t1\nq1\td2\t1\n", "test.tsv:2: duplicate judgment"),
        # ids a TREC run file could not hold (its fields are separated by white space)
        (
            "corpus.jsonl",
            '{"_id": "d1", "text": "a"}\n{"_id": "d 2", "text": "b"}\n',
            "corpus.jsonl:2: document id 'd 2'",
        ),
        ("queries.jsonl", '{"_id": "", "text": "a"}\n', "queries.jsonl:1: query id '' is empty"),
        (
            "queries.jsonl",
            '{"_id": "q\\n1", "text": "a"}\n',
            "queries.jsonl:1: query id 'q\\n1' is empty or contains",
        ),
    ],
)
def test_malformed_files_name_file_and_line(tiny_beir: Path, file: str, content: str, message: str) -> None:
    (tiny_beir / file).write_text(content, encoding="utf-8")
    with pytest.raises(WorkbenchError, match=re.escape(message)):
        load_beir(tiny_beir)


@pytest.mark.parametrize("name", ["corpus.jsonl", "qrels/test.tsv"])
def test_bytes_that_are_not_utf8_name_the_file_and_line(tiny_beir: Path, name: str) -> None:
    path = tiny_beir / name
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"d", b"\xff", 1)  # Latin-1 where UTF-8 is expected
    path.write_bytes(b"".join(lines))
    with pytest.raises(WorkbenchError, match=re.escape(f"{name.split('/')[-1]}:3: not UTF-8 text")):
        load_beir(tiny_beir)


def test_a_truncated_gzip_is_named(tiny_beir: Path) -> None:
    corpus = tiny_beir / "corpus.jsonl"
    packed = gzip.compress(corpus.read_bytes())
    corpus.unlink()
    (tiny_beir / "corpus.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(WorkbenchError, match=r"corpus\.jsonl\.gz: truncated or corrupt gzip data"):
        load_beir(tiny_beir)


def test_unknown_ids_warn_or_fail_when_strict(tiny_beir: Path) -> None:
    with (tiny_beir / "qrels" / "test.tsv").open("a") as f:
        f.write("q9\td1\t1\nq1\td99\t1\nq1\td98\t1\n")
    data = load_beir(tiny_beir)
    assert "q9" not in data.qrels["test"]  # no text to search with: dropped
    assert data.qrels["test"]["q1"] == {"d2": 1, "d99": 1, "d98": 1}  # kept, unretrievable
    assert any("1 unknown query ids" in w for w in data.warnings)
    assert any("2 judgments name unknown documents" in w for w in data.warnings)
    with pytest.raises(WorkbenchError, match="test.tsv:7: unknown query id 'q9'"):
        load_beir(tiny_beir, strict=True)


def test_empty_documents_and_queries_are_kept_and_counted(tmp_path: Path, make_beir) -> None:
    root = make_beir(
        tmp_path / "e",
        {"d1": ("", ""), "d2": ("t", "x")},
        {"q1": " ", "q2": "x"},
        {"test": [("q1", "d1", 1), ("q2", "d2", 1)]},
    )
    data = load_beir(root)
    assert data.corpus["d1"] == Document("", "") and data.queries["q1"] == " "
    assert sorted(data.warnings) == [
        f"{root}: 1 empty documents (indexed, never retrieved)",
        f"{root}: 1 empty queries (retrieve nothing, score 0)",
    ]


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="dataset directory not found"):
        load_beir(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(WorkbenchError, match="missing corpus.jsonl"):
        load_beir(tmp_path / "x")


def _spec(path: Path, **extra: object) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "name": "tiny",
            "description": "t",
            "languages": ["ko"],
            "splits": ["test"],
            "source": {"type": "local", "path": str(path)},
        }
        | extra
    )


def test_counts_and_checksum_are_checked(tiny_beir: Path) -> None:
    good = _spec(tiny_beir, counts={"corpus": 5, "queries": {"test": 4}}, sha256=sha256_tree(tiny_beir))
    assert len(load_dataset(good).corpus) == 5
    with pytest.raises(WorkbenchError, match=r"dataset drift\): corpus: expected 6, found 5; queries.test"):
        load_dataset(_spec(tiny_beir, counts={"corpus": 6, "queries": {"test": 3}}))
    with pytest.raises(WorkbenchError, match="the YAML pins 00"):
        load_dataset(_spec(tiny_beir, sha256="00" * 32))


def test_yaml_errors_name_the_key(tmp_path: Path) -> None:
    base = {
        "name": "x",
        "description": "d",
        "languages": ["en"],
        "splits": ["test"],
        "source": {"type": "local", "path": "/tmp"},
    }
    cases = [
        (base | {"splitz": ["test"]}, "splitz: Extra inputs are not permitted"),
        (
            base | {"source": {"type": "beir_zip"}},
            "source: Value error, source type 'beir_zip' needs key 'url'",
        ),
        (base | {"source": {"type": "local", "path": "/x", "url": "u"}}, "does not take \\['url'\\]"),
        (base | {"source": {"type": "ftp", "path": "/x"}}, "source.type: Input should be"),
        (base | {"name": "y"}, "name 'y' differs from the file name"),
    ]
    for raw, message in cases:
        path = tmp_path / "x.yaml"
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(WorkbenchError, match=message):
            DatasetSpec.from_yaml(path)
    path.write_text("name: [unclosed")
    with pytest.raises(WorkbenchError, match="malformed YAML"):
        DatasetSpec.from_yaml(path)


def test_expected_scores_must_name_registered_retrievers(tmp_path: Path) -> None:
    spec = {"name": "x", "description": "d", "languages": ["en"], "splits": ["test"],
            "source": {"type": "local", "path": "/tmp"},
            "expected": {"bm25-flat": {"ndcg@10": 0.5}}}  # fmt: skip
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(spec))
    assert dataset_registry(tmp_path)["x"].expected == {"bm25-flat": {"ndcg@10": 0.5}}
    with pytest.raises(WorkbenchError, match=r"x\.yaml: expected: bm25-flat is not a registered retriever"):
        dataset_registry(tmp_path, retrievers={"bm25-ko"})


def test_shipped_registry_loads_with_real_sources() -> None:
    registry = dataset_registry()
    beir13 = {
        "trec-covid",
        "nfcorpus",
        "nq",
        "hotpotqa",
        "fiqa",
        "arguana",
        "webis-touche2020",
        "dbpedia-entity",
        "scidocs",
        "fever",
        "climate-fever",
        "scifact",
        "quora",
    }
    assert beir13 | {"miracl-ko", "mrtydi-ko", "ko-strategyqa", "autorag-retrieval"} <= set(registry)
    for name in beir13:
        source = registry[name].source
        assert source.url == f"https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
        assert source.md5 is not None and len(source.md5) == 32
    assert registry["miracl-ko"].counts.corpus == 1_486_752
    assert registry["miracl-ko"].counts.queries == {"dev": 213}
    # every expectation names a registered retriever, so each of the 43 entries (131 scores) can run:
    # BEIR 13 x 2 BM25 x 2 metrics, 2 Korean BM25 x 2, and five metrics for each embedded-task anchor
    # (gimp-en: 3 BM25, 2 English SPLADE, 2 IDF-only; gimp-ko and gimp-ko-en: 3 BM25, IDF-only)
    checks = [(d, r, m) for d, s in registry.items() for r, ms in (s.expected or {}).items() for m in ms]
    assert len(checks) == 13 * 2 * 2 + 2 * 2 + (7 + 4 + 4) * 5


def test_offline_remote_dataset_names_dataset_source_and_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(sources.urllib.request, "urlopen", refuse)
    spec = dataset_registry()["scifact"]
    with pytest.raises(WorkbenchError) as err:
        load_dataset(spec)
    text = str(err.value)
    assert "dataset 'scifact'" in text and spec.source.url in text
    assert f"cache path {cache_dir() / 'datasets' / 'scifact-'}" in text
    assert not list((cache_dir() / "datasets").glob("scifact*"))


def test_beir_zip_download_checks_md5(tiny_beir: Path, tmp_path: Path) -> None:
    archive = Path(shutil.make_archive(str(tmp_path / "tiny"), "zip", tiny_beir.parent, "tiny"))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    source = {"type": "beir_zip", "url": archive.as_uri(), "subdir": "tiny"}
    raw = {
        "name": "tiny",
        "description": "t",
        "languages": ["en"],
        "splits": ["test"],
        "counts": {"corpus": 5, "queries": {"test": 4}},
    }
    bad = DatasetSpec.model_validate(raw | {"source": source | {"md5": "0" * 32}})
    with pytest.raises(WorkbenchError, match=f"md5 of {archive.as_uri()} is {md5}"):
        load_dataset(bad)
    good = DatasetSpec.model_validate(raw | {"source": source | {"md5": md5}})
    assert len(load_dataset(good).corpus) == 5
    assert len(list((cache_dir() / "datasets").glob("tiny-*/corpus.jsonl"))) == 1


def test_hf_files_convert_to_beir(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = tmp_path / "repo"
    repo.mkdir()
    pq.write_table(
        pa.table({"docid": ["a#0", "a#1"], "title": ["A", "A"], "text": ["하나", "둘"]}),
        repo / "corpus.parquet",
    )
    (repo / "topics.tsv").write_text("7\t둘은 무엇\n")
    (repo / "qrels.txt").write_text("7 Q0 a#1 1\n7 Q0 a#0 0\n")
    convert_hf_files(
        {"corpus": ["corpus.parquet"], "queries": "topics.tsv", "qrels": {"dev": "qrels.txt"}},
        {"corpus_id": "docid"},
        lambda name: repo / name,
        tmp_path / "beir",
    )
    data = load_beir(tmp_path / "beir")
    assert data.corpus == {"a#0": Document("A", "하나"), "a#1": Document("A", "둘")}
    assert data.queries == {"7": "둘은 무엇"}
    assert data.qrels == {"dev": {"7": {"a#1": 1, "a#0": 0}}}
    with pytest.raises(WorkbenchError, match="unknown keys \\['doc_id'\\]"):
        convert_hf_files({}, {"doc_id": "x"}, lambda n: repo / n, tmp_path / "other")


def test_resolve_dataset_by_name_path_or_error(tiny_beir: Path) -> None:
    registry = dataset_registry()
    assert resolve_dataset("scifact", registry) is registry["scifact"]
    spec = resolve_dataset(str(tiny_beir), registry)
    assert spec.splits == ["test"] and spec.source.type == "local"
    with pytest.raises(WorkbenchError, match="unknown dataset 'nope'.*registered: .*scifact"):
        resolve_dataset("nope", registry)


def test_jsonl_ids_may_be_integers(tmp_path: Path) -> None:
    root = tmp_path / "ints"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(json.dumps({"_id": 1, "text": "x"}) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": 2, "text": "x"}) + "\n")
    (root / "qrels" / "test.tsv").write_text("2\t1\t1\n")
    assert load_beir(root).qrels == {"test": {"2": {"1": 1}}}
