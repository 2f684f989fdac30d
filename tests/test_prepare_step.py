"""The data pipeline's step runner: manifest, no-op re-runs, clean failure; progress off a terminal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from common.errors import WorkbenchError
from harness.prepare.step import MANIFEST, StepRun, run_step


def _inputs(tmp_path: Path) -> Path:
    source = tmp_path / "dump.txt"
    source.write_text("line one\nline two\n", encoding="utf-8")
    return source


def _build(run: StepRun) -> None:
    (run.out / "out.txt").write_text("built", encoding="utf-8")
    run.count("lines", 2)
    for n in range(25):
        run.problem("bad line", f"dump.txt: line {n + 1}", "no tab")
    run.extra["languages"] = ["ko"]


def test_manifest_records_inputs_params_counts_and_problems(tmp_path: Path) -> None:
    source = _inputs(tmp_path)
    manifest = run_step(tmp_path / "out", "demo", "1", [source], {"seed": 3}, _build)
    on_disk = json.loads((tmp_path / "out" / MANIFEST).read_text(encoding="utf-8"))
    assert on_disk == manifest
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest["inputs"] == [{"name": "dump.txt", "bytes": 18, "sha256": digest}]
    assert manifest["step"] == "demo" and manifest["version"] == "1" and manifest["params"] == {"seed": 3}
    assert manifest["counts"] == {"lines": 2} and manifest["languages"] == ["ko"]
    bad = manifest["problems"]["bad line"]
    assert bad["count"] == 25 and len(bad["examples"]) == 20  # all counted, the first 20 kept
    assert bad["examples"][0] == "dump.txt: line 1: no tab"
    assert "git_revision" in manifest["provenance"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.txt", "out"]  # no leftovers


def test_rerun_is_a_noop_until_an_input_or_parameter_changes(tmp_path: Path) -> None:
    source = _inputs(tmp_path)
    calls: list[int] = []

    def build(run: StepRun) -> None:
        calls.append(1)
        _build(run)

    run_step(tmp_path / "out", "demo", "1", [source], {"seed": 3}, build)
    stamp = (tmp_path / "out" / "out.txt").stat().st_mtime_ns
    run_step(tmp_path / "out", "demo", "1", [source], {"seed": 3}, build)
    assert len(calls) == 1 and (tmp_path / "out" / "out.txt").stat().st_mtime_ns == stamp
    run_step(tmp_path / "out", "demo", "1", [source], {"seed": 4}, build)  # parameter
    run_step(tmp_path / "out", "demo", "2", [source], {"seed": 4}, build)  # step version
    source.write_text("line one\nline 2\n", encoding="utf-8")  # input content
    run_step(tmp_path / "out", "demo", "2", [source], {"seed": 4}, build)
    run_step(tmp_path / "out", "demo", "2", [source], {"seed": 4}, build, force=True)
    assert len(calls) == 5


def test_a_failing_build_leaves_the_previous_output_and_nothing_half_written(tmp_path: Path) -> None:
    source = _inputs(tmp_path)
    run_step(tmp_path / "out", "demo", "1", [source], {}, _build)
    before = (tmp_path / "out" / MANIFEST).read_text(encoding="utf-8")

    def broken(run: StepRun) -> None:
        (run.out / "out.txt").write_text("half", encoding="utf-8")
        raise WorkbenchError("dump.txt: line 2: not UTF-8")

    with pytest.raises(WorkbenchError, match="line 2"):
        run_step(tmp_path / "out", "demo", "1", [source], {"seed": 1}, broken)
    assert (tmp_path / "out" / MANIFEST).read_text(encoding="utf-8") == before
    assert (tmp_path / "out" / "out.txt").read_text(encoding="utf-8") == "built"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.txt", "out"]
    with pytest.raises(WorkbenchError, match="missing.xml: no such input file"):
        run_step(tmp_path / "new", "demo", "1", [tmp_path / "missing.xml"], {}, _build)
    assert not (tmp_path / "new").exists()


def test_unreadable_manifest_is_named(tmp_path: Path) -> None:
    source = _inputs(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(WorkbenchError, match=r"manifest.json: unreadable manifest"):
        run_step(tmp_path / "out", "demo", "1", [source], {}, _build)


def test_meter_logs_plain_lines_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.console import console, meter

    assert not console.is_terminal  # pytest captures stderr
    with meter("pages", unit="pages", every_s=0) as progress:
        progress.advance(3)
        progress.advance(2)
    lines = [line for line in capsys.readouterr().err.splitlines() if "pages:" in line]
    assert len(lines) == 3  # one per advance (every 0 s), one at the end
    assert "pages: 3 pages" in lines[0] and "pages: 5 pages" in lines[-1]


def _wikipedia_dump(path: Path) -> Path:
    import bz2
    from xml.sax.saxutils import escape

    pages = []
    for n in range(12):
        text = (
            f"'''문서 {n}'''는 [[레이어]]와 마스크 {n}번을 설명한다.{{{{각주}}}} 투명도 조절 방법 {n}.\n\n"
            f"== 사용법 ==\n도구 {n}을 선택하고 이미지를 자른다. 결과를 저장한다.\n"
        )
        pages.append(
            f"<page><title>문서 {n}</title><ns>0</ns><id>{n + 1}</id><revision><id>{n + 100}</id>"
            f"<timestamp>2024-01-0{n % 9 + 1}T00:00:00Z</timestamp>"
            f'<text xml:space="preserve">{escape(text)}</text></revision></page>\n'
        )
    xml = (
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="ko">'
        "<siteinfo><dbname>kowiki</dbname></siteinfo>\n" + "".join(pages) + "</mediawiki>\n"
    )
    path.write_bytes(bz2.compress(xml.encode("utf-8")))
    return path


def test_the_command_line_chains_dump_pairs_negatives_into_training_examples(tmp_path: Path) -> None:
    """`python -m harness.prepare`: a Korean dump -> articles -> pairs (BEIR, split by article) ->
    BM25 negatives, which the trainer's example builder reads as they are."""
    import subprocess
    import sys

    from harness.datasets import load_beir
    from harness.training import build_examples
    from models.config import TrainingConfig

    def prepare(*args: str | Path) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "harness.prepare", *map(str, args)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    listing = prepare("--help")
    for step in ("wikipedia", "namuwiki", "pairs", "bilingual", "corpora", "synonyms", "negatives",
                 "temporal-idf"):  # fmt: skip
        assert step in listing
    dump = _wikipedia_dump(tmp_path / "kowiki-pages-articles.xml.bz2")
    prepare("wikipedia", dump, "--out", tmp_path / "articles", "--language", "ko")
    articles = tmp_path / "articles" / "articles.jsonl.gz"
    prepare("pairs", articles, "--out", tmp_path / "pairs", "--kinds", "title-summary,section")
    pairs = load_beir(tmp_path / "pairs")
    split_of = {}
    for split, qrels in pairs.qrels.items():
        for docs in qrels.values():
            for doc in docs:
                article = doc.split("/")[0]
                assert split_of.setdefault(article, split) == split  # never one article in two splits
    assert len(split_of) == 12 and "train" in pairs.qrels
    prepare("negatives", tmp_path / "pairs", "--out", tmp_path / "mined", "--count", "2")
    assert "up to date" in prepare(
        "negatives", tmp_path / "pairs", "--out", tmp_path / "mined", "--count", "2"
    )
    config = TrainingConfig.model_validate({
        "name": "t", "output_dir": str(tmp_path / "run"), "data": {"train": [str(tmp_path / "mined")],
        "hard_negatives": 2},
    })  # fmt: skip
    examples, _, _ = build_examples(config)
    n_train = sum(len(docs) for docs in pairs.qrels["train"].values())
    assert len(examples) == n_train and all(len(e.negatives) == 2 for e in examples)
    assert all(e.positive not in e.negatives for e in examples)
