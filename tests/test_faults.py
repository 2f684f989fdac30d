"""Fault injection: bad inputs, broken environments and interruptions, each with the exit code, the
message and the state of the outputs it must leave.

Interruptions are real signals at exact places (`common.faults`: $WORKBENCH_FAULT), sent to a
`train.py` or `evaluate.py` subprocess; the run is then resumed in-process and compared with an
uninterrupted one. Every other case runs the command in-process (typer's CliRunner).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
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


# --------------------------------------------------------------------------- bad input, environment


def _data(root: Path) -> Path:
    """A good BEIR folder to break."""
    return write_beir(root / "data", dict(TINY_CORPUS), TRAIN_QUERIES, TRAIN_QRELS)


def _model(root: Path, tiny_checkpoint: Path) -> Path:
    """A copy of the tiny checkpoint to break."""
    return Path(shutil.copytree(tiny_checkpoint, root / "model"))


def _edit(path: Path, text: str | bytes) -> None:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _evaluate(root: Path, data: Path | str, model: Path | str = "bm25-plain", *extra: str) -> list[str]:
    return ["--dataset", str(data), "--model", str(model), "--output", str(root / "report"),
            "--leaderboard", str(root / "board.sqlite"), *extra]  # fmt: skip


def _break_data(change: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    def build(root: Path, tiny_checkpoint: Path) -> list[str]:
        data = _data(root)
        change(data)
        return _evaluate(root, data, "bm25-plain", "--strict")

    return build


def _break_model(change: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    def build(root: Path, tiny_checkpoint: Path) -> list[str]:
        model = _model(root, tiny_checkpoint)
        change(model)
        return _evaluate(root, _data(root), model, "--no-cache")

    return build


def _lines(path: Path, *extra: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in extra)


@dataclass(frozen=True)
class Fault:
    kind: str
    build: Callable[[Path, Path], list[str]]  # (scratch folder, tiny checkpoint) -> arguments
    code: int
    message: str  # a fragment of the output (white space folded)


def _check_fails_cleanly(app: typer.Typer, args: list[str], case: Fault) -> None:
    """The command ends with the case's exit code and message, in a line, not a traceback."""
    result = runner.invoke(app, args)
    output = " ".join(result.output.split())
    assert result.exit_code == case.code, output
    assert case.message in output
    assert result.exception is None or isinstance(result.exception, SystemExit)


EVALUATE_FAULTS = {
    "corpus missing": Fault("dataset", _break_data(lambda d: (d / "corpus.jsonl").unlink()), 2, "corpus"),
    "queries line not JSON": Fault(
        "dataset",
        _break_data(lambda d: _lines(d / "queries.jsonl", "{oops")),
        2,
        "queries.jsonl:6: malformed JSON",
    ),
    "corpus bytes not UTF-8": Fault(
        "dataset",
        _break_data(
            lambda d: _edit(d / "corpus.jsonl", (d / "corpus.jsonl").read_bytes() + b'{"_id": "\xff"}\n')
        ),
        2,
        "corpus.jsonl:6: not UTF-8",
    ),
    "duplicate document id": Fault(
        "dataset",
        _break_data(lambda d: _lines(d / "corpus.jsonl", '{"_id": "d1", "text": "again"}')),
        2,
        "d1",
    ),
    "empty document id": Fault(
        "dataset",
        _break_data(lambda d: _lines(d / "corpus.jsonl", '{"_id": "", "text": "x"}')),
        2,
        "corpus.jsonl:6",
    ),
    "document id with a space": Fault(
        "dataset",
        _break_data(lambda d: _lines(d / "corpus.jsonl", '{"_id": "d 9", "text": "x"}')),
        2,
        "corpus.jsonl:6",
    ),
    "qrels name an unknown query (strict)": Fault(
        "dataset", _break_data(lambda d: _lines(d / "qrels" / "test.tsv", "nope\td1\t1")), 2, "nope"
    ),
    "queries empty": Fault(
        "dataset", _break_data(lambda d: _edit(d / "queries.jsonl", "")), 2, "queries.jsonl: no queries"
    ),
    "qrels missing": Fault("dataset", _break_data(lambda d: shutil.rmtree(d / "qrels")), 2, "qrels"),
    "unknown dataset name": Fault(
        "dataset", lambda root, ck: _evaluate(root, "no-such-set"), 2, "no-such-set"
    ),
    "model folder missing": Fault(
        "model", lambda root, ck: _evaluate(root, _data(root), root / "absent"), 2, "absent"
    ),
    "config.json not JSON": Fault(
        "model",
        _break_model(lambda m: _edit(m / "config.json", "{not json")),
        2,
        "config.json: not a readable JSON",
    ),
    "config.json missing": Fault(
        "model", _break_model(lambda m: (m / "config.json").unlink()), 2, "model: no config.json"
    ),
    "weights truncated": Fault(
        "model",
        _break_model(lambda m: _truncate(m / "model.safetensors")),
        2,
        "model.safetensors: cannot load the masked-LM weights",
    ),
    "weights random bytes": Fault(
        "model",
        _break_model(lambda m: _edit(m / "model.safetensors", os.urandom(4096))),
        2,
        "model.safetensors",
    ),
    "config.json missing, no manifest": Fault(  # still a SPLADE-doc folder: router_config.json
        "model",
        _break_model(lambda m: ((m / "config.json").unlink(), (m / "manifest.json").unlink())),
        2,
        "model: no config.json; not a Hugging Face checkpoint",
    ),
    "a folder with no model files": Fault(
        "model",
        lambda root, ck: ((root / "empty").mkdir(), _evaluate(root, _data(root), root / "empty"))[1],
        2,
        "empty: no config.json (a masked-LM checkpoint has one) and no modules.json",
    ),
    "tokenizer.json not JSON": Fault(
        "model",
        _break_model(lambda m: _edit(m / "tokenizer.json", "{oops")),
        2,
        "tokenizer.json: cannot load the tokenizer",
    ),
    "tokenizer.json missing": Fault(
        "model", _break_model(lambda m: (m / "tokenizer.json").unlink()), 2, "no tokenizer.json"
    ),
    "idf.json missing": Fault(
        "model", _break_model(lambda m: (m / "idf.json").unlink()), 2, "idf.json not found"
    ),
    "idf.json not JSON": Fault(
        "model", _break_model(lambda m: _edit(m / "idf.json", "{oops")), 2, "idf.json"
    ),
    "idf weights negative": Fault(
        "model", _break_model(lambda m: _edit(m / "idf.json", '{"레이어": -1.0}')), 2, "negative"
    ),
    "unknown retriever": Fault(
        "model", lambda root, ck: _evaluate(root, _data(root), "no-such-model"), 2, "no-such-model"
    ),
    "output is a file": Fault(
        "output",
        lambda root, ck: (_edit(root / "report", "x"), _evaluate(root, _data(root)))[1],
        2,
        "report: is a file; a folder was to be written there",
    ),
    "output inside a file": Fault(
        "output",
        lambda root, ck: (
            _edit(root / "f", "x"),
            [*_evaluate(root, _data(root))[:-4], "--output", str(root / "f" / "r")],
        )[1],
        2,
        "f: is a file, not a folder",
    ),
    "cache location is a file": Fault(
        "output",
        lambda root, ck: (
            _edit(root / "cache", "x"),
            os.environ.update(WORKBENCH_CACHE=str(root / "cache")),  # conftest's monkeypatch restores it
            _evaluate(root, _data(root)),
        )[2],
        2,
        "$WORKBENCH_CACHE is a file, not a folder",
    ),
    "leaderboard is a folder": Fault(  # found before the evaluation, not after it
        "leaderboard",
        lambda root, ck: [*_evaluate(root, _data(root))[:-2], "--leaderboard", str(root)],
        2,
        "is a directory, not a leaderboard database",
    ),
    "leaderboard not SQLite": Fault(
        "leaderboard",
        lambda root, ck: (_edit(root / "board.sqlite", os.urandom(2048)), _evaluate(root, _data(root)))[1],
        2,
        "not a usable leaderboard database",
    ),
    "leaderboard inside a file": Fault(
        "leaderboard",
        lambda root, ck: (
            _edit(root / "f", "x"),
            [*_evaluate(root, _data(root))[:-2], "--leaderboard", str(root / "f" / "board.sqlite")],
        )[1],
        2,
        "f: is a file, not a folder",
    ),
    "unknown metric": Fault(
        "option",
        lambda root, ck: _evaluate(root, _data(root), "bm25-plain", "--metric", "ndgc@10"),
        2,
        "ndgc@10",
    ),
    "unknown significance test": Fault(
        "option",
        lambda root, ck: _evaluate(root, _data(root), "bm25-plain", "--stat-test", "magic"),
        2,
        "magic",
    ),
}


@pytest.mark.parametrize("name", list(EVALUATE_FAULTS))
def test_evaluate_faults(name: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    case = EVALUATE_FAULTS[name]
    args = case.build(tmp_path, tiny_checkpoint)
    _check_fails_cleanly(evaluate.app, args, case)
    report = Path(args[args.index("--output") + 1])
    assert not (report / "results.json").is_file()
    assert not list(report.parent.glob(f".{report.name}*"))  # no hidden temporary folder left


CACHE_FAULTS = {  # retriever, cached file (glob under the cache folder) to truncate
    "analyzed corpus": ("bm25-plain", "analyzed/plain-*/*.npz"),  # read where no index is cached
    "bm25 parameters": ("bm25-plain", "indexes/bm25-*/*/params.index.json"),
    "bm25 postings": ("bm25-plain", "indexes/bm25-*/*/data.csc.index.npy"),
    "bm25 vocabulary": ("bm25-plain", "indexes/bm25-*/*/vocab.index.json"),
    "multi-field document list": ("bm25-multifield", "indexes/bm25-*/*/title/documents.npy"),
    "splade document vectors": ("tiny", "indexes/splade-doc-*/*/documents.npz"),
    "splade document figures": ("tiny", "indexes/splade-doc-*/*/documents.json"),
    "corpus idf weights": ("idf-only-en", "indexes/idf-only-*/*/idf.json"),
}


@pytest.mark.parametrize("name", list(CACHE_FAULTS))
def test_a_damaged_cache_is_named_and_built_again(
    name: str, tiny_checkpoint: Path, tmp_path: Path, private_cache: Path
) -> None:
    retriever, pattern = CACHE_FAULTS[name]
    model = tiny_checkpoint if retriever == "tiny" else retriever
    data = _data(tmp_path)
    first = runner.invoke(evaluate.app, [*_evaluate(tmp_path / "a", data, model), "--json"])
    assert first.exit_code == 0, first.output
    (damaged,) = private_cache.glob(pattern)
    _truncate(damaged)
    if pattern.startswith("analyzed/"):
        shutil.rmtree(private_cache / "indexes")
    again = runner.invoke(evaluate.app, [*_evaluate(tmp_path / "b", data, model), "--json"])
    output = " ".join(again.output.split())
    assert again.exit_code == 0, output
    assert "unreadable cache" in output
    assert any(p.name in output for p in (damaged, damaged.parent, damaged.parent.parent))
    results = [json.loads((tmp_path / d / "report" / "results.json").read_text())["results"] for d in "ab"]
    assert [r["metrics"] for r in results[0]] == [r["metrics"] for r in results[1]]
    third = runner.invoke(evaluate.app, _evaluate(tmp_path / "c", data, model))  # the rebuilt cache reads
    assert third.exit_code == 0 and "unreadable cache" not in third.output


def _train_config(edit: Callable[[dict, Path, Path], None]) -> Callable[[Path, Path], list[str]]:
    """train.py arguments for the good config of the interruption cases, edited."""

    def build(root: Path, tiny_checkpoint: Path) -> list[str]:
        path = _training_config(root, tiny_checkpoint, _data(root))
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        edit(config, root, tiny_checkpoint)
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return ["--config", str(path), "--leaderboard", str(root / "board.sqlite")]

    return build


def _set(key: str, value: object) -> Callable[[dict, Path, Path], None]:
    """Set `key` (dotted) to `value`, or to `value(scratch folder, tiny checkpoint)`."""

    def edit(config: dict, root: Path, tiny_checkpoint: Path) -> None:
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value(root, tiny_checkpoint) if callable(value) else value

    return edit


def _unchanged(config: dict, root: Path, tiny_checkpoint: Path) -> None:
    pass


TRAIN_FAULTS = {
    "config file missing": Fault(
        "config", lambda root, ck: ["--config", str(root / "none.yaml")], 2, "none.yaml"
    ),
    "config not YAML": Fault(
        "config",
        lambda root, ck: (_edit(root / "c.yaml", "name: [oops"), ["--config", str(root / "c.yaml")])[1],
        2,
        "c.yaml",
    ),
    "unknown key": Fault("config", _train_config(_set("train.max_stpes", 3)), 2, "train.max_stpes"),
    "wrong type": Fault("config", _train_config(_set("train.batch_size", "many")), 2, "train.batch_size"),
    "invalid metric": Fault("config", _train_config(_set("eval.metric", "ndgc@10")), 2, "eval.metric"),
    "unknown eval dataset": Fault(
        "config", _train_config(_set("eval.datasets", ["no-such-set"])), 2, "no-such-set"
    ),
    "unknown training dataset": Fault(
        "config", _train_config(_set("data.train", ["no-such-set"])), 2, "data.train"
    ),
    "output_dir is a file": Fault(
        "config",
        _train_config(_set("output_dir", lambda root, ck: (_edit(root / "f", "x"), str(root / "f"))[1])),
        2,
        "/f: is a file, not a folder",
    ),
    "output_dir inside a file": Fault(
        "config",
        _train_config(
            _set("output_dir", lambda root, ck: (_edit(root / "f", "x"), str(root / "f" / "o"))[1])
        ),
        2,
        "/o: cannot be created: ",
    ),
    "base model missing": Fault(
        "model", _train_config(_set("model.base", lambda root, ck: str(root / "absent"))), 2, "absent"
    ),
    "base weights truncated": Fault(
        "model",
        _train_config(
            _set(
                "model.base",
                lambda root, ck: (_truncate((m := _model(root, ck)) / "model.safetensors"), str(m))[1],
            )
        ),
        2,
        "model.safetensors",
    ),
    "idf file missing": Fault(
        "model", _train_config(_set("model.idf", lambda root, ck: str(root / "idf.json"))), 2, "idf.json"
    ),
    "leaderboard not SQLite": Fault(
        "leaderboard",
        lambda root, ck: (
            _edit(root / "board.sqlite", os.urandom(2048)),
            _train_config(_unchanged)(root, ck),
        )[1],
        2,
        "not a usable leaderboard database",
    ),
    "unknown negatives retriever": Fault(
        "config", _train_config(_set("data.negatives_retriever", "nosuch")), 2, "data.negatives_retriever"
    ),
    "a run already in output_dir, no --resume": Fault(
        "resume",
        _train_config(
            _set(
                "output_dir",
                lambda root, ck: ((root / "run" / "checkpoints").mkdir(parents=True), str(root / "run"))[1],
            )
        ),
        2,
        "holds a run already; continue it with --resume",
    ),
    "resume with nothing to resume": Fault(
        "resume",
        lambda root, ck: [*_train_config(_unchanged)(root, ck), "--resume"],
        2,
        "holds no checkpoint to resume from; train without --resume",
    ),
    "unsafe change allowed": Fault(
        "resume",
        lambda root, ck: [
            *_train_config(_unchanged)(root, ck),
            "--resume",
            "--allow-change",
            "loss.temperature",
        ],
        2,
        "loss.temperature",
    ),
}


@pytest.mark.parametrize("name", list(TRAIN_FAULTS))
def test_train_faults(name: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    case = TRAIN_FAULTS[name]
    _check_fails_cleanly(train.app, case.build(tmp_path, tiny_checkpoint), case)
    assert not (tmp_path / "out").exists()  # refused before the output folder is made


LEADERBOARD_FAULTS = {  # `evaluate.py leaderboard` and `record`, which only read or add
    "reading a file that is not SQLite": Fault(
        "leaderboard",
        lambda root, ck: (
            _edit(root / "b.sqlite", os.urandom(2048)),
            ["leaderboard", "--db", str(root / "b.sqlite")],
        )[1],
        2,
        "not a usable leaderboard database",
    ),
    "reading a folder": Fault(
        "leaderboard", lambda root, ck: ["leaderboard", "--db", str(root)], 2, "is a directory"
    ),
    "ranking by a metric nobody has": Fault(
        "leaderboard",
        lambda root, ck: (
            runner.invoke(evaluate.app, _evaluate(root, _data(root))),
            ["leaderboard", "--db", str(root / "board.sqlite"), "--metric", "map@7"],
        )[1],
        2,
        "metrics present:",
    ),
    "recording a folder that is no report": Fault(
        "leaderboard",
        lambda root, ck: ["record", str(root), "--leaderboard", str(root / "b.sqlite")],
        2,
        "results.json",
    ),
}


@pytest.mark.parametrize("name", list(LEADERBOARD_FAULTS))
def test_leaderboard_faults(name: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    case = LEADERBOARD_FAULTS[name]
    args = case.build(tmp_path, tiny_checkpoint)

    def files() -> list[str]:  # SQLite's own -wal and -shm files aside
        return sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm")))

    before = files()
    _check_fails_cleanly(evaluate.app, args, case)
    assert files() == before  # nothing written
