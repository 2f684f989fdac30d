"""Fault injection: bad inputs, broken environments and interruptions, each with the exit code, the
message and the state of the outputs it must leave.

Interruptions are real signals at exact places (`common.faults`: $WORKBENCH_FAULT), sent to a
`train.py` or `evaluate.py` subprocess; the run is then resumed in-process and compared with an
uninterrupted one. Every other case runs the command in-process (typer's CliRunner).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CORPUS, write_beir
from safetensors.torch import load_file
from typer.testing import CliRunner

import evaluate
import train
from common.faults import FAULT_ENV
from harness.leaderboard import Leaderboard

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

TRAIN_QUERIES = {"t1": "레이어 투명", "t2": "crop tool", "t3": "밝기", "q1": "자르기", "q2": "layer mask"}
TRAIN_QRELS = {
    "train": [("t1", "d1", 1), ("t2", "d3", 1), ("t3", "d5", 1)],
    "test": [("q1", "d2", 1), ("q2", "d4", 1)],
}


def _training_config(root: Path, base: Path, data: Path) -> Path:
    config = {
        "name": "faults",
        "output_dir": str(root / "out"),
        "model": {"base": str(base), "max_length": 32, "idf": "corpus"},
        "data": {"train": [str(data)], "hard_negatives": 1, "negatives_retriever": "bm25-plain"},
        "train": {"batch_size": 2, "max_steps": 4, "save_every": 2, "log_every": 1, "keep_checkpoints": 5},
        "eval": {"datasets": [str(data)], "metric": "ndcg@10", "top_k": 10},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def training_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir(
        tmp_path_factory.mktemp("faults-data") / "data", dict(TINY_CORPUS), TRAIN_QUERIES, TRAIN_QRELS
    )


@pytest.fixture(scope="module")
def straight_run(
    tiny_checkpoint: Path, training_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """An uninterrupted training run: its output folder."""
    root = tmp_path_factory.mktemp("straight")
    config = _training_config(root, tiny_checkpoint, training_data)
    result = runner.invoke(train.app, ["--config", str(config), "--leaderboard", str(root / "board.sqlite")])
    assert result.exit_code == 0, result.output
    return root / "out"


def _max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def _subprocess(script: str, args: list[str], fault: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {FAULT_ENV: fault}
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _leaderboard_steps(board: Path) -> list[tuple[int, str]]:
    with Leaderboard(board) as db:
        return [(r["step"], r["checkpoint_kind"]) for r in db.rows()]


@dataclass(frozen=True)
class Interruption:
    fault: str  # $WORKBENCH_FAULT
    returncode: int  # of the interrupted train.py
    checkpoints: list[str]  # complete checkpoint folders it leaves
    hidden_left: bool  # a hidden, incomplete checkpoint folder is left
    evaluated: list[int]  # steps whose evaluation was recorded before the interruption


INTERRUPTIONS = {
    "SIGKILL between saves": Interruption("step-3:KILL", -9, ["step-0000000", "step-0000002"], False, [0, 2]),
    "SIGKILL while a checkpoint is saved": Interruption(
        "checkpoint-saving@2:KILL", -9, ["step-0000000"], True, [0]
    ),
    "SIGKILL while a checkpoint is evaluated": Interruption(
        "evaluation-written@2:KILL", -9, ["step-0000000", "step-0000002"], False, [0]
    ),
    "SIGINT in a step": Interruption(
        "step-3:INT", 130, ["step-0000000", "step-0000002", "step-0000003"], False, [0, 2]
    ),
    "SIGINT while a checkpoint is saved": Interruption(
        "checkpoint-saving@2:INT", 130, ["step-0000000", "step-0000002"], False, [0, 2]
    ),
}


@pytest.mark.parametrize("name", list(INTERRUPTIONS))
def test_interrupted_training_resumes_exactly(
    name: str, tiny_checkpoint: Path, training_data: Path, straight_run: Path, tmp_path: Path
) -> None:
    case = INTERRUPTIONS[name]
    config = _training_config(tmp_path, tiny_checkpoint, training_data)
    board = tmp_path / "board.sqlite"
    args = ["--config", str(config), "--leaderboard", str(board)]
    killed = _subprocess("train.py", args, case.fault)
    assert killed.returncode == case.returncode, killed.stderr[-2000:]
    if case.returncode == 130:
        assert "interrupted: a checkpoint was saved; continue with --resume" in " ".join(
            killed.stderr.split()
        )
    checkpoints = tmp_path / "out" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("step-*")) == case.checkpoints
    assert any(checkpoints.glob(".step-*")) == case.hidden_left
    assert [step for step, _ in _leaderboard_steps(board)] == case.evaluated
    assert not (tmp_path / "out" / "final_model").exists()

    resumed = runner.invoke(train.app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert not any(checkpoints.glob(".step-*"))  # leftovers removed
    difference = _max_weight_difference(straight_run / "final_model", tmp_path / "out" / "final_model")
    print(f"{name}: max weight difference after resume {difference}")
    assert difference == 0.0
    # every checkpoint evaluated once, the interrupted one included; the best over the whole run
    steps = _leaderboard_steps(board)
    assert [s for s, _ in steps] == sorted({s for s, _ in steps}) and steps[-1] == (4, "final")
    assert {0, 2, 4} <= {s for s, _ in steps}
    logged = [json.loads(line) for line in (tmp_path / "out" / "evaluations.jsonl").read_text().splitlines()]
    assert sorted(r["step"] for r in logged) == [s for s, _ in steps]
    straight_best = (straight_run / "best_model" / "manifest.json").read_text()
    assert (
        json.loads(straight_best)["step"]
        == json.loads((tmp_path / "out/best_model/manifest.json").read_text())["step"]
    )


def test_a_report_killed_before_recording_is_recorded_afterwards(tiny_beir: Path, tmp_path: Path) -> None:
    out, board = tmp_path / "report", tmp_path / "board.sqlite"
    args = [
        "--dataset",
        str(tiny_beir),
        "--model",
        "bm25-plain",
        "--output",
        str(out),
        "--leaderboard",
        str(board),
    ]
    killed = _subprocess("evaluate.py", args, "evaluation-written:KILL")
    assert killed.returncode == -9
    assert (out / "results.json").is_file() and not any(tmp_path.glob(".report*"))
    assert not board.exists() or _leaderboard_steps(board) == []
    recorded = runner.invoke(evaluate.app, ["record", str(out), "--leaderboard", str(board)])
    assert recorded.exit_code == 0, recorded.output
    assert _leaderboard_steps(board) == [(None, None)]
