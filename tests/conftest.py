"""Shared fixtures: a private cache directory per test and tiny BEIR datasets in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's cache."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("WORKBENCH_CACHE", str(path))
    return path


def write_beir(
    root: Path,
    corpus: dict[str, tuple[str, str]],
    queries: dict[str, str],
    qrels: dict[str, list[tuple[str, str, int]]],
) -> Path:
    """Write a BEIR directory exactly as BEIR's zips lay it out."""
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for doc_id, (title, text) in corpus.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text, "metadata": {}}, ensure_ascii=False) + "\n")
    for split, rows in qrels.items():
        with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, doc_id, rel in rows:
                f.write(f"{qid}\t{doc_id}\t{rel}\n")
    return root


TINY_CORPUS = {
    "d1": ("레이어", "레이어 마스크를 추가하면 이미지의 일부를 투명하게 만들 수 있습니다."),
    "d2": ("자르기 도구", "자르기 도구는 이미지의 가장자리를 잘라 냅니다."),
    "d3": ("Crop tool", "The crop tool removes the borders of an image."),
    "d4": ("Layer mask", "A layer mask makes parts of a layer transparent."),
    "d5": ("색상", "색상 도구로 이미지의 밝기와 대비를 조절합니다."),
}
TINY_QUERIES = {
    "q1": "이미지를 자르려면",
    "q2": "레이어를 투명하게",
    "q3": "crop borders",
    "q4": "밝기 조절",
}
TINY_QRELS = {"test": [("q1", "d2", 1), ("q2", "d1", 1), ("q3", "d3", 1), ("q4", "d5", 2), ("q4", "d2", 0)]}


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny", TINY_CORPUS, TINY_QUERIES, TINY_QRELS)


@pytest.fixture
def make_beir():
    return write_beir
