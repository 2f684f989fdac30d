"""Edge cases found in review: ties at the cut, repeated names, stale caches, strict parsing."""

from __future__ import annotations

import hashlib
import os
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from common.errors import WorkbenchError
from common.files import atomic_dir, atomic_write, make_folder
from common.paths import cache_dir
from harness.analyzers import KiwiAnalyzer, PlainAnalyzer
from harness.datasets import DatasetSpec, load_beir, load_dataset, qrels_splits
from harness.datasets.hf_convert import convert_hf_files
from harness.evaluation import validate_metrics
from harness.ranking import Ranking
from harness.retrievers import get_retriever
from harness.runner import EvalConfig, evaluate_all


def test_bm25_breaks_ties_at_the_cut_by_docid(tmp_path: Path, make_beir) -> None:
    corpus = {f"d{i:02d}": ("", "apple") for i in range(1, 50)} | {"z": ("", "pear")}
    root = make_beir(tmp_path / "ties", corpus, {"q": "apple"}, {"test": [("q", "d01", 1)]})
    retriever = get_retriever("bm25-plain").build()
    retriever.index(load_beir(root), use_cache=False)
    ranking = retriever.search({"q": "apple", "p": "pear"}, k=3)
    assert list(ranking.to_dict()["q"]) == ["d01", "d02", "d03"]
    assert list(ranking.to_dict()["p"]) == ["z"]


def test_repeated_names_are_refused(tiny_beir: Path, tmp_path: Path) -> None:
    spec = DatasetSpec.model_validate(
        {"name": "tiny", "description": "t", "languages": ["ko"], "splits": ["test"],
         "source": {"type": "local", "path": str(tiny_beir)}}
    )  # fmt: skip
    bm25 = get_retriever("bm25-plain")
    with pytest.raises(WorkbenchError, match="dataset named more than once: tiny"):
        evaluate_all([spec, spec], [bm25], EvalConfig(), tmp_path)
    with pytest.raises(WorkbenchError, match="retriever named more than once: bm25-plain"):
        evaluate_all([spec], [bm25, bm25], EvalConfig(), tmp_path)


def test_metric_deeper_than_top_k_is_warned(tiny_beir: Path, tmp_path: Path) -> None:
    spec = DatasetSpec.model_validate(
        {"name": "tiny", "description": "t", "languages": ["ko"], "splits": ["test"],
         "source": {"type": "local", "path": str(tiny_beir)}}
    )  # fmt: skip
    config = EvalConfig(metrics=("recall@100", "ndcg@2"), top_k=5)
    _, warnings = evaluate_all([spec], [get_retriever("bm25-plain")], config, tmp_path)
    assert warnings == ["top-k 5 is shallower than recall@100: those metrics see only the top 5"]


def test_changed_source_is_downloaded_again(tmp_path: Path, make_beir) -> None:
    def archive(name: str, n_docs: int) -> tuple[str, str]:
        root = make_beir(tmp_path / name / "data", {f"d{i}": ("", "x") for i in range(n_docs)},
                         {"q": "x"}, {"test": [("q", "d0", 1)]})  # fmt: skip
        path = Path(shutil.make_archive(str(tmp_path / name / "data"), "zip", root.parent, "data"))
        return path.as_uri(), hashlib.md5(path.read_bytes()).hexdigest()

    base = {"name": "remote", "description": "r", "languages": ["en"], "splits": ["test"]}
    for n_docs in (5, 2):
        url, md5 = archive(f"v{n_docs}", n_docs)
        spec = DatasetSpec.model_validate(
            base | {"source": {"type": "beir_zip", "url": url, "md5": md5, "subdir": "data"}}
        )
        assert len(load_dataset(spec).corpus) == n_docs
    wrong = DatasetSpec.model_validate(base | {"source": {"type": "beir_zip", "url": url, "subdir": "nope"}})
    with pytest.raises(WorkbenchError, match="the archive has no folder 'nope'"):
        load_dataset(wrong)
    assert len(list((cache_dir() / "datasets").iterdir())) == 2


def test_metric_names() -> None:
    assert validate_metrics(["f1@5", "bpref", "r-precision"]) == ["f1@5", "bpref", "r-precision"]
    for name in ("bpref@10", "r-precision@5"):
        with pytest.raises(WorkbenchError, match="takes no @k cutoff"):
            validate_metrics([name])


def test_empty_corpus_and_empty_split_name_the_file(tiny_beir: Path) -> None:
    (tiny_beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    with pytest.raises(WorkbenchError, match=r"qrels/dev.tsv: no judgments of known queries"):
        load_beir(tiny_beir, ["dev"])
    (tiny_beir / "corpus.jsonl").write_text("\n")
    with pytest.raises(WorkbenchError, match="corpus.jsonl: no documents"):
        load_beir(tiny_beir)


def test_split_discovery_takes_only_tsv_files(tiny_beir: Path) -> None:
    shutil.copy(tiny_beir / "qrels" / "test.tsv", tiny_beir / "qrels" / "test.tsv.orig")
    shutil.copy(tiny_beir / "qrels" / "test.tsv", tiny_beir / "qrels" / "dev.tsv")
    assert qrels_splits(tiny_beir) == ["dev", "test"]
    assert set(load_beir(tiny_beir).qrels) == {"dev", "test"}


def test_hf_conversion_is_strict(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "corpus.tsv").write_text("_id\ttitle\ttext\nd1\tTitle One\tbody one\nd2\tT2\tbody two\n")
    (repo / "queries.jsonl").write_text('{"_id": "q1", "text": "body"}\n')
    (repo / "qrels.jsonl").write_text('{"query-id": "q1", "corpus-id": "d1", "score": 1}\n')
    files = {"corpus": "corpus.tsv", "queries": "queries.jsonl", "qrels": {"test": "qrels.jsonl"}}
    convert_hf_files(files, {}, lambda n: repo / n, tmp_path / "ok")
    data = load_beir(tmp_path / "ok")
    assert data.corpus["d1"].title == "Title One" and data.corpus["d1"].text == "body one"
    assert list(data.corpus) == ["d1", "d2"]  # the header row is not a document
    (repo / "qrels.jsonl").write_text('{"query-id": "q1", "corpus-id": "d1", "score": 1.7}\n')
    with pytest.raises(WorkbenchError, match="relevance 1.7 of 'q1' 'd1' is not an integer"):
        convert_hf_files(files, {}, lambda n: repo / n, tmp_path / "float")
    (repo / "queries.jsonl").write_text('{"id": "q1", "text": "body"}\n')
    with pytest.raises(WorkbenchError, match="queries.jsonl: no column '_id' \\(columns: id, text\\)"):
        convert_hf_files(files, {}, lambda n: repo / n, tmp_path / "column")
    (repo / "corpus.tsv").write_text("d1\ta\tb\tc\n")
    with pytest.raises(WorkbenchError, match="corpus.tsv:1: 4 columns, expected 2 or 3"):
        convert_hf_files(files, {}, lambda n: repo / n, tmp_path / "shape")


def test_outputs_get_ordinary_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f.txt") as handle:
            handle.write("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner").write_text("y")
    finally:
        os.umask(umask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_outputs_whose_place_is_taken_or_closed_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    with pytest.raises(WorkbenchError, match="/f/a/b: cannot be created: .*/f is a file, not a folder"):
        make_folder(tmp_path / "f" / "a" / "b")
    with pytest.raises(WorkbenchError, match="/f: is a file; a folder was to be written there"):
        atomic_dir(tmp_path / "f", replace=True).__enter__()
    with pytest.raises(WorkbenchError, match="/d: is a folder; a file was to be written there"):
        atomic_write(tmp_path / "d").__enter__()
    assert make_folder(tmp_path / "new" / "deeper", create=False) == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # only checked
    # root ignores permissions here, so a folder closed to writing is simulated
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "d")
    with pytest.raises(WorkbenchError, match=r"/d/out: cannot write in .*/d \(permission denied\)"):
        atomic_write(tmp_path / "d" / "out" / "x.json").__enter__()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["d", "f"]  # nothing written


def test_ranking_refuses_a_document_twice() -> None:
    with pytest.raises(ValueError, match="query 'q': a document appears twice"):
        Ranking("r", ["a", "b"], {"q": (np.array([0, 0, 1]), np.array([3.0, 2.0, 1.0]))})


def test_analyzers_normalize_unicode() -> None:
    composed = "ＧＩＭＰ에서 이미지를"
    decomposed = unicodedata.normalize("NFD", composed)
    assert (
        PlainAnalyzer().analyze([decomposed])
        == PlainAnalyzer().analyze([composed])
        == [["gimp에서", "이미지를"]]
    )
    assert KiwiAnalyzer().analyze([decomposed]) == [["gimp", "이미지"]]


def _nfd_corpus(make_beir, root: Path, form: str) -> Path:
    from conftest import TINY_CORPUS, TINY_QRELS, TINY_QUERIES

    def norm(text: str) -> str:
        return unicodedata.normalize(form, text)

    corpus = {d: (norm(title), norm(text)) for d, (title, text) in TINY_CORPUS.items()}
    return make_beir(root, corpus, {q: norm(t) for q, t in TINY_QUERIES.items()}, TINY_QRELS)


@pytest.mark.parametrize("name", ["splade-doc:tiny", "idf-only-xlmr", "e5-small-nano", "bm25-ko"])
def test_nfd_and_nfc_text_score_alike(name: str, tiny_checkpoint: Path, tmp_path: Path, make_beir) -> None:
    from conftest import TINY_QUERIES

    from harness.retrievers import resolve_retriever

    spec = resolve_retriever(f"splade-doc:{tiny_checkpoint}" if name == "splade-doc:tiny" else name)
    scores = {}
    for form in ("NFC", "NFD"):
        retriever = spec.build()
        retriever.index(load_beir(_nfd_corpus(make_beir, tmp_path / form, form)), use_cache=False)
        for query_form in ("NFC", "NFD"):
            queries = {q: unicodedata.normalize(query_form, t) for q, t in TINY_QUERIES.items()}
            scores[form, query_form] = retriever.search(queries, k=5).to_dict()
    reference = scores["NFC", "NFC"]
    assert sum(map(len, reference.values())) >= 4  # Korean queries find documents
    for other in scores.values():
        assert other.keys() == reference.keys()
        for qid in reference:
            assert other[qid] == pytest.approx(reference[qid], rel=1e-5)


def test_saved_tokenizer_json_composes_unicode_as_opensearch_reads_it(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from tokenizers import Tokenizer

    from harness.retrievers.splade import english_splade_dir
    from models.checkpoint import load_idf, load_masked_lm, load_tokenizer, save_checkpoint

    text = "레이어 마스크를 추가하면 이미지의 일부를"
    decomposed = unicodedata.normalize("NFD", text)
    raw = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))  # saved without NFC
    assert raw.encode(decomposed).ids != raw.encode(text).ids
    model, tokenizer = load_masked_lm(tiny_checkpoint)  # composes on load
    assert tokenizer(decomposed)["input_ids"] == tokenizer(text)["input_ids"]
    out = save_checkpoint(
        tmp_path / "saved", model, tokenizer, load_idf(tiny_checkpoint, tokenizer), max_seq_length=64
    )
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))  # as OpenSearch's engine reads the file
    assert raw.encode(decomposed).ids == raw.encode(text).ids == tokenizer(text)["input_ids"]
    # a tokenizer that already reads both forms alike keeps its normalizer untouched
    english = load_tokenizer(english_splade_dir())
    assert type(english.backend_tokenizer.normalizer).__name__ == "BertNormalizer"


def test_query_ids_are_removed_only_where_the_spec_says(tmp_path: Path, make_beir) -> None:
    # ArguAna-like: query "a1" is itself document "a1"; its relevant document is "a2".
    corpus = {"a1": ("", "cats purr loudly"), "a2": ("", "cats purr"), "a3": ("", "dogs bark")}
    root = make_beir(tmp_path / "data", corpus, {"a1": "cats purr loudly"}, {"test": [("a1", "a2", 1)]})
    raw = {"name": "argu", "description": "t", "languages": ["en"], "splits": ["test"],
           "source": {"type": "local", "path": str(root)}}  # fmt: skip
    bm25 = get_retriever("bm25-plain")
    config = EvalConfig(metrics=("mrr@10",), top_k=10)
    kept, _ = evaluate_all([DatasetSpec.model_validate(raw)], [bm25], config, tmp_path / "kept")
    assert kept[0].metrics["mrr@10"] == pytest.approx(0.5)  # the query's own document ranks first
    spec = DatasetSpec.model_validate(raw | {"remove_query_ids": True})
    removed, _ = evaluate_all([spec], [bm25], config, tmp_path / "removed")
    assert removed[0].metrics["mrr@10"] == pytest.approx(1.0)
    ranking = Ranking.from_dict({"a1": {"a1": 3.0, "a2": 2.0}, "b": {"a1": 1.0}})
    assert ranking.without_query_ids().to_dict() == {"a1": {"a2": 2.0}, "b": {"a1": 1.0}}
    assert ranking.to_dict()["a1"] == {"a1": 3.0, "a2": 2.0}  # the original is left as it was


def test_gzip_writes_are_byte_identical_whatever_the_file_name(tmp_path: Path) -> None:
    import gzip

    for name in ("a.jsonl.gz", "b.jsonl.gz"):
        with atomic_write(tmp_path / name) as handle:
            handle.write('{"_id": "d1", "text": "레이어"}\n')
    first, second = (tmp_path / "a.jsonl.gz").read_bytes(), (tmp_path / "b.jsonl.gz").read_bytes()
    assert first == second and first[3] == 0  # FLG 0: no file name (nor temporary name) stored
    assert gzip.decompress(first).decode() == '{"_id": "d1", "text": "레이어"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl.gz", "b.jsonl.gz"]  # no leftovers


def test_run_files_never_nest_a_model_path(tiny_checkpoint: Path, tiny_beir: Path, tmp_path: Path) -> None:
    from common.files import safe_file_name
    from harness.datasets import resolve_dataset
    from harness.retrievers import resolve_retriever

    assert safe_file_name("gimp-ko.test.bm25-ko") == "gimp-ko.test.bm25-ko"
    nested, other = safe_file_name("t.test./a/b/checkpoint-4"), safe_file_name("t.test./a_b/checkpoint-4")
    assert "/" not in nested and nested.startswith("t.test._a_b_checkpoint-4-") and nested != other
    assert safe_file_name("..") not in ("..", ".") and safe_file_name("x" * 300) != safe_file_name("x" * 301)
    spec = resolve_retriever(str(tiny_checkpoint))  # named by its path
    rows, _ = evaluate_all(
        [resolve_dataset(str(tiny_beir), {})], [spec], EvalConfig(top_k=10), tmp_path / "r"
    )
    (row,) = rows
    assert "/" in row.retriever and row.run_file.count("/") == 1  # runs/<one file>
    assert [p.name for p in (tmp_path / "r" / "runs").iterdir()] == [Path(row.run_file).name]
