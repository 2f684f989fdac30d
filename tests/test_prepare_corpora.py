"""The `corpora` step: each source's own file format in, a BEIR folder out; offline, a clear error."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from common.errors import WorkbenchError
from harness.datasets.beir import load_beir
from harness.prepare.corpora import SOURCES, build_corpus, register, text_id


def _jsonl_gz(path: Path, rows: list) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _read(out: Path) -> tuple[dict[str, str], dict[str, tuple[str, str]], list[tuple[str, str]]]:
    queries = {}
    for line in (out / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    corpus = {}
    for line in (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        corpus[d["_id"]] = (d["title"], d["text"])
    lines = (out / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore"
    qrels = []
    for line in lines[1:]:
        qid, doc_id, score = line.split("\t")
        assert score == "1"
        qrels.append((qid, doc_id))
    return queries, corpus, qrels


def _pairs(out: Path) -> list[tuple[str, str]]:
    """(query text, document text) of every qrel."""
    queries, corpus, qrels = _read(out)
    return [(queries[q], corpus[d][1]) for q, d in qrels]


def test_s2orc_json_lines_of_title_abstract(tmp_path: Path) -> None:
    source = _jsonl_gz(
        tmp_path / "S2ORC_title_abstract.json.gz",
        [
            ["Sparse retrieval", "We study  learned sparse\nretrieval."],
            ["Dense retrieval", "Dual encoders."],
            ["Sparse retrieval", "We study learned sparse retrieval."],  # the same pair again
            ["Only a title"],
        ],
    )
    manifest = build_corpus("s2orc", tmp_path / "out", local=source)
    assert _pairs(tmp_path / "out") == [
        ("Sparse retrieval", "We study learned sparse retrieval."),
        ("Dense retrieval", "Dual encoders."),
    ]
    assert manifest["counts"] == {"rows": 4, "queries": 2, "documents": 2, "qrels": 2}
    assert manifest["problems"]["incomplete row"]["examples"] == [
        f"{source}: line 4: needs title and abstract"
    ]
    assert manifest["source"]["hub_commit"] is None
    _, _, qrels = _read(tmp_path / "out")
    assert qrels[0] == (
        text_id("q", "Sparse retrieval"),
        text_id("d", "", "We study learned sparse retrieval."),
    )
    dataset = load_beir(tmp_path / "out", strict=True)
    assert len(dataset.corpus) == 2 and list(dataset.qrels) == ["train"]
    assert dataset.qrels["train"][qrels[1][0]] == {qrels[1][1]: 1}


def test_wikianswers_sets_pair_the_first_question_with_each_duplicate(tmp_path: Path) -> None:
    source = _jsonl_gz(
        tmp_path / "WikiAnswers.json.gz",
        [
            {"set": ["how tall is everest", "height of mount everest", "everest height in meters"]},
            {"set": ["what is sparse retrieval", "sparse retrieval meaning"]},
        ],
    )
    build_corpus("wikianswers", tmp_path / "out", local=source)
    assert _pairs(tmp_path / "out") == [
        ("how tall is everest", "height of mount everest"),
        ("how tall is everest", "everest height in meters"),
        ("what is sparse retrieval", "sparse retrieval meaning"),
    ]


def test_gooaq_parquet_by_column_name(tmp_path: Path) -> None:
    source = tmp_path / "train-00000-of-00001.parquet"
    table = pa.table(
        {
            "answer": ["Water boils at 100 °C.", "A kind of search index."],
            "question": ["when does water boil", "what is an inverted index"],
        }
    )
    pq.write_table(table, source)
    manifest = build_corpus("gooaq", tmp_path / "out", local=source, limit=1)
    assert _pairs(tmp_path / "out") == [("when does water boil", "Water boils at 100 °C.")]
    assert manifest["counts"]["rows"] == 1 and manifest["params"]["limit"] == 1


def test_msmarco_triples_give_qrels_and_negatives(tmp_path: Path) -> None:
    source = tmp_path / "triples.train.small.tsv"
    source.write_text(
        "what is splade\tSPLADE is a sparse model.\tBM25 is a ranking function.\n"
        "what is splade\tSPLADE is a sparse model.\tDense models embed text.\n"
        "what is splade\tSPLADE is a sparse model.\tBM25 is a ranking function.\n"
        "a broken line\twith two columns\n"
        "define bm25\tBM25 is a ranking function.\tSPLADE is a sparse model.\n",
        encoding="utf-8",
    )
    manifest = build_corpus("msmarco", tmp_path / "out", local=source)
    out = tmp_path / "out"
    assert _pairs(out) == [
        ("what is splade", "SPLADE is a sparse model."),
        ("define bm25", "BM25 is a ranking function."),
    ]
    splade, bm25, dense = (
        text_id("d", "", t)
        for t in ("SPLADE is a sparse model.", "BM25 is a ranking function.", "Dense models embed text.")
    )
    negatives = [json.loads(line) for line in (out / "negatives" / "train.jsonl").read_text().splitlines()]
    assert negatives == [
        {"query_id": text_id("q", "what is splade"), "positive_id": splade, "negative_ids": [bm25, dense]},
        {"query_id": text_id("q", "define bm25"), "positive_id": bm25, "negative_ids": [splade]},
    ]
    assert manifest["counts"]["documents"] == 3 and manifest["counts"]["negative lists"] == 2
    assert manifest["problems"]["malformed line"]["examples"] == [f"{source}: line 4: 2 columns, expected 3"]
    assert not (out / "teacher").exists()  # the text triples carry no teacher scores


SQUAD = {
    "version": "KorQuAD_v1.0_train",
    "data": [
        {
            "title": "파이썬",
            "paragraphs": [
                {
                    "context": "파이썬은 1991년 귀도 반 로섬이 발표한 프로그래밍 언어이다.",
                    "qas": [
                        {
                            "id": "6566495-0-0",
                            "question": "파이썬을 발표한 사람은?",
                            "answers": [{"text": "귀도 반 로섬", "answer_start": 12}],
                        },
                        {
                            "id": "6566495-0-1",
                            "question": "파이썬이 발표된 해는?",
                            "answers": [{"text": "1991년", "answer_start": 4}],
                        },
                    ],
                },
                {"context": "broken paragraph without questions"},
            ],
        }
    ],
}


def test_korquad_questions_share_one_context_document(tmp_path: Path) -> None:
    source = tmp_path / "KorQuAD_v1.0_train.json"
    source.write_text(json.dumps(SQUAD, ensure_ascii=False), encoding="utf-8")
    manifest = build_corpus("korquad", tmp_path / "out", local=source)
    queries, corpus, qrels = _read(tmp_path / "out")
    context = "파이썬은 1991년 귀도 반 로섬이 발표한 프로그래밍 언어이다."
    assert corpus == {text_id("d", "파이썬", context): ("파이썬", context)}
    assert queries == {"q6566495-0-0": "파이썬을 발표한 사람은?", "q6566495-0-1": "파이썬이 발표된 해는?"}
    assert qrels == [
        ("q6566495-0-0", text_id("d", "파이썬", context)),
        ("q6566495-0-1", text_id("d", "파이썬", context)),
    ]
    assert manifest["problems"]["malformed paragraph"]["examples"] == [
        f"{source}: data[0].paragraphs[1]: no 'qas' list"
    ]


def test_klue_mrc_json_and_parquet_leave_unanswerable_questions_out(tmp_path: Path) -> None:
    klue = {
        "version": "1.1",
        "data": [
            {
                "title": "한전 사우디 진출",
                "news_category": "기획",
                "source": "hankyung",
                "paragraphs": [
                    {
                        "context": "한국전력 등 다섯 개 업체가 서명식에 참여했다.",
                        "qas": [
                            {
                                "guid": "klue-mrc-v1_train_08578",
                                "question": "서명식에 참여한 업체 수는?",
                                "is_impossible": False,
                                "answers": [{"text": "다섯 개", "answer_start": 7}],
                            },
                            {
                                "guid": "klue-mrc-v1_train_08579",
                                "question": "서명식이 열린 도시는?",
                                "is_impossible": True,
                                "answers": [],
                            },
                        ],
                    }
                ],
            }
        ],
    }
    source = tmp_path / "klue-mrc-v1.1_train.json"
    source.write_text(json.dumps(klue, ensure_ascii=False), encoding="utf-8")
    manifest = build_corpus("klue-mrc", tmp_path / "json", local=source)
    assert _pairs(tmp_path / "json") == [
        ("서명식에 참여한 업체 수는?", "한국전력 등 다섯 개 업체가 서명식에 참여했다.")
    ]
    assert manifest["counts"]["unanswerable questions left out"] == 1
    # the Hub's parquet rows (klue/klue, mrc) give the same folder
    rows = [
        {
            "title": "한전 사우디 진출",
            "context": "한국전력 등 다섯 개 업체가 서명식에 참여했다.",
            "news_category": "기획",
            "source": "hankyung",
            "guid": q["guid"],
            "is_impossible": q["is_impossible"],
            "question_type": 1,
            "question": q["question"],
            "answers": {"answer_start": [7], "text": ["다섯 개"]},
        }
        for q in klue["data"][0]["paragraphs"][0]["qas"]
    ]
    parquet = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    build_corpus("klue-mrc", tmp_path / "parquet", local=parquet)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv"):
        assert (tmp_path / "parquet" / name).read_bytes() == (tmp_path / "json" / name).read_bytes()


def test_offline_error_names_the_dataset_and_the_file_to_place(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError) as caught:
        build_corpus("korquad", tmp_path / "out", endpoint="http://127.0.0.1:9")
    message = str(caught.value)
    assert "KorQuAD/squad_kor_v1" in message and "revision main" in message
    assert (
        "KorQuAD_v1.0_train.json" in message and "data/raw/corpora/korquad/KorQuAD_v1.0_train.json" in message
    )
    assert "--from data/raw/corpora/korquad/KorQuAD_v1.0_train.json" in message
    assert not (tmp_path / "out").exists()


def test_offline_mode_exception_of_the_hub_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args: object, **kwargs: object) -> str:
        raise LocalEntryNotFoundError("outgoing traffic has been disabled (HF_HUB_OFFLINE=1)")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(WorkbenchError, match=r"klue/klue \(config mrc\).*klue-mrc-v1\.1_train\.json"):
        build_corpus("klue-mrc", tmp_path / "out")


def test_every_source_names_a_hub_id_a_revision_and_a_local_file() -> None:
    assert list(SOURCES) == ["s2orc", "wikianswers", "gooaq", "msmarco", "korquad", "klue-mrc"]
    for spec in SOURCES.values():
        assert "/" in spec.hub_id and spec.revision and spec.local_file and spec.patterns


def test_command_builds_and_reports_bad_input(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    source = _jsonl_gz(
        tmp_path / "gooaq_pairs.jsonl.gz", [["is the sky blue", "Yes, by Rayleigh scattering."]]
    )
    result = runner.invoke(app, ["corpora", "gooaq", "--out", str(tmp_path / "out"), "--from", str(source)])
    assert result.exit_code == 0, result.output
    assert _pairs(tmp_path / "out") == [("is the sky blue", "Yes, by Rayleigh scattering.")]
    result = runner.invoke(app, ["corpora", "nq", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown corpus 'nq'" in result.output
    result = runner.invoke(
        app, ["corpora", "gooaq", "--out", str(tmp_path / "x"), "--from", str(tmp_path / "no.tsv")]
    )
    assert result.exit_code == 2 and "no such input file" in result.output
    result = runner.invoke(app, ["corpora-list"])
    assert result.exit_code == 0 and "sentence-transformers/msmarco-bm25" in result.output
