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
