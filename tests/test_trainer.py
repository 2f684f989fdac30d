"""The trainer: exact resume, Ctrl-C and non-finite stops, checkpoints, config errors, train.py end to end."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CORPUS, build_tiny_mlm, build_tiny_tokenizer
from pydantic import ValidationError

from common.errors import WorkbenchError
from models.config import DataConfig, TrainingConfig
from models.idf import IdfWeights
from models.trainer import Example, NonFiniteError, RunComplete, Trainer

TEXTS = [f"{title} {text}" for title, text in TINY_CORPUS.values()]
EXAMPLES = [
    Example("레이어 투명", TEXTS[0], (TEXTS[1],)),
    Example("자르기 도구", TEXTS[1], (TEXTS[4],)),
    Example("crop tool", TEXTS[2], (TEXTS[3],)),
    Example("layer mask", TEXTS[3], (TEXTS[2],)),
    Example("밝기 조절", TEXTS[4], (TEXTS[0],)),
]


def _config(tmp_path: Path, **train: object) -> TrainingConfig:
    return TrainingConfig.model_validate(
        {
            "name": "t",
            "seed": 7,
            "output_dir": str(tmp_path),
            "model": {"base": "tiny", "max_length": 32},
            "data": {"train": ["unused"]},
            "loss": {"lambda_flops": 0.01, "flops_warmup_steps": 2},
            "train": {"batch_size": 2, "lr": 1e-3, "max_steps": 4, "save_every": 2, "log_every": 1} | train,
        }
    )


def _trainer(config: TrainingConfig, **kwargs: object) -> Trainer:
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(config.seed)
    model = build_tiny_mlm(len(tokenizer), seed=11)
    idf = IdfWeights.from_corpus(TEXTS, tokenizer)
    return Trainer(config, model, tokenizer, idf, EXAMPLES, **kwargs)


def test_resume_after_ctrl_c_equals_training_straight(tmp_path: Path) -> None:
    straight = _trainer(_config(tmp_path / "a"))
    straight.train()

    def interrupt(record: dict[str, float]) -> None:
        if record["step"] == 2:
            raise KeyboardInterrupt

    first = _trainer(_config(tmp_path / "b", save_every=3), log=interrupt)
    with pytest.raises(KeyboardInterrupt):
        first.train()
    assert (tmp_path / "b" / "checkpoints" / "step-0000002" / "trainer_state.pt").is_file()  # saved on Ctrl-C
    resumed = _trainer(_config(tmp_path / "b", save_every=3))
    resumed.train(resume=True)
    assert resumed.step == 4
    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    lines_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lines_b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in lines_a] == [x["loss"] for x in lines_b]


def _same_weights(a: Trainer, b: Trainer) -> float:
    """The largest absolute difference between two trainers' weights (0.0: bit-identical)."""
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def _sigint_during_step(trainer: Trainer, step: int, times: int = 1) -> None:
    """Send real SIGINTs to this process in the middle of the given step (its micro-step)."""
    original = trainer._micro_step

    def micro_step(batch):  # type: ignore[no-untyped-def]
        if trainer.step + 1 == step:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return original(batch)

    trainer._micro_step = micro_step  # type: ignore[method-assign]


@pytest.mark.parametrize(("times", "saved_at"), [(1, 3), (2, 2)])
def test_a_real_ctrl_c_mid_step_resumes_bit_identically(tmp_path: Path, times: int, saved_at: int) -> None:
    # one Ctrl-C: the step under way is finished and saved (step 3); two: stop at once, without
    # saving the cut step, so the run resumes from the last regular checkpoint (step 2)
    straight = _trainer(_config(tmp_path / "a"))
    straight.train()
    first = _trainer(_config(tmp_path / "b"))
    _sigint_during_step(first, 3, times)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when launched in the background
    with pytest.raises(KeyboardInterrupt):
        first.train()
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    checkpoints = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert checkpoints[-1] == f"step-{saved_at:07d}"
    resumed = _trainer(_config(tmp_path / "b"))
    resumed.train(resume=True)
    assert _same_weights(straight, resumed) == 0.0
    losses = [[json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("a", "b")]  # fmt: skip
    assert losses[1][-(4 - saved_at) :] == losses[0][saved_at:]  # the steps after the resume


def test_resume_of_a_complete_run_writes_nothing(tmp_path: Path) -> None:
    calls = []
    evaluate = lambda path, step, kind: calls.append(step) or {"ndcg@10": 0.5}  # noqa: E731
    _trainer(_config(tmp_path), on_checkpoint=evaluate).train()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    with pytest.raises(RunComplete, match="run already complete \\(4 steps\\); nothing written"):
        _trainer(_config(tmp_path), on_checkpoint=evaluate).train(resume=True)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert calls == [0, 2, 4]  # no evaluation again, so no duplicate leaderboard row


def test_resume_refuses_an_edited_config_unless_the_change_is_allowed(tmp_path: Path) -> None:
    interrupt = lambda record: (_ for _ in ()).throw(KeyboardInterrupt) if record["step"] == 2 else None  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        _trainer(_config(tmp_path), log=interrupt).train()
    edited = _config(tmp_path, lr=5e-4, max_steps=6)
    with pytest.raises(WorkbenchError, match=r"train.lr: 0.001 -> 0.0005; train.max_steps: 4 -> 6"):
        _trainer(edited).train(resume=True)
    with pytest.raises(WorkbenchError, match="cannot allow train.lr to change"):
        _trainer(edited).train(resume=True, allow_changes=["train.lr"])
    longer = _trainer(_config(tmp_path, max_steps=6))
    longer.train(resume=True, allow_changes=["train.max_steps"])
    assert longer.step == 6
    manifest = json.loads((tmp_path / "final_model" / "manifest.json").read_text())
    assert manifest["resumed_with_changes"] == {"train.max_steps": [4, 6]}


def test_an_evaluation_cut_short_is_redone_on_resume_and_best_spans_the_run(tmp_path: Path) -> None:
    scores = {0: 0.1, 2: 0.9, 4: 0.5}

    class Killed(BaseException):
        """Stands for the process dying while checkpoint 2 is evaluated."""

    def dies_at_2(path: Path, step: int, kind: str) -> dict[str, float]:
        if step == 2:
            raise Killed
        return {"ndcg@10": scores[step]}

    with pytest.raises(Killed):
        _trainer(_config(tmp_path), on_checkpoint=dies_at_2).train()
    killed_while_saving(tmp_path / "checkpoints" / "step-0000009")  # a hidden, incomplete folder
    seen = []
    evaluate = lambda path, step, kind: seen.append(step) or {"ndcg@10": scores[step]}  # noqa: E731
    result = _trainer(_config(tmp_path), on_checkpoint=evaluate).train(resume=True)
    assert seen == [2, 4]  # step 2, never evaluated, first; then the final model
    assert (result.best_step, result.best_metric) == (2, 0.9)  # the final 0.5 does not replace it
    assert json.loads((tmp_path / "best_model" / "manifest.json").read_text())["step"] == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]
    logged = [json.loads(x)["step"] for x in (tmp_path / "evaluations.jsonl").read_text().splitlines()]
    assert logged == [0, 2, 4]


def killed_while_saving(folder: Path) -> Path:
    """The hidden folder that a process killed while building `folder` with atomic_dir leaves."""
    import subprocess
    import sys

    code = (
        "import os, signal, sys; from pathlib import Path; from common.files import atomic_dir\n"
        "with atomic_dir(Path(sys.argv[1])) as tmp:\n"
        "    (tmp / 'model.safetensors').write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)], cwd=root, env=os.environ | {"PYTHONPATH": str(root)}
    )
    assert done.returncode == -signal.SIGKILL
    (leftover,) = folder.parent.glob(f".{folder.name}.*.tmp")
    return leftover


def test_atomic_dir_removes_what_killed_writers_left(tmp_path: Path) -> None:
    from common.files import atomic_dir, remove_leftovers

    leftover = killed_while_saving(tmp_path / "report")
    host = leftover.name.split(".")[2].rsplit("-", 1)[0]  # .report.<host>-<pid>.<random>.tmp
    live = tmp_path / f".other.{host}-{os.getpid()}.x.tmp"
    live.mkdir()  # a folder being built by a live process (this one) is kept
    strange = tmp_path / ".notes.tmp"
    strange.mkdir()  # not a name this code makes: kept
    assert remove_leftovers(tmp_path, "elsewhere") == [] and leftover.exists()
    with atomic_dir(tmp_path / "report") as tmp:
        (tmp / "results.json").write_text("{}")
    assert not leftover.exists() and live.exists() and strange.exists()
    assert (tmp_path / "report" / "results.json").is_file()


def test_checkpoints_best_and_final_models(tmp_path: Path) -> None:
    seen = []

    def evaluate(path: Path, step: int, kind: str) -> dict[str, float]:
        seen.append((path.name, step, kind))
        return {"ndcg@10": {2: 0.5, 4: 0.25}[step]}

    trainer = _trainer(_config(tmp_path, eval_at_start=False), on_checkpoint=evaluate)
    result = trainer.train()
    assert seen == [("step-0000002", 2, "step"), ("step-0000004", 4, "final")]
    assert (result.best_step, result.best_metric) == (2, 0.5)
    best, final = tmp_path / "best_model", tmp_path / "final_model"
    for model_dir in (best, final):
        assert {"config.json", "model.safetensors", "idf.json", "manifest.json", "modules.json"} <= {
            p.name for p in model_dir.iterdir()
        }
        assert not (model_dir / "trainer_state.pt").exists()
    assert json.loads((best / "manifest.json").read_text())["step"] == 2
    assert json.loads((final / "manifest.json").read_text())["kind"] == "final"
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss", "infonce", "flops", "flops_weight", "lr", "samples_per_s", "tokens_per_s"} <= set(record)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = _trainer(_config(tmp_path, save_every=1))
    original = trainer.loss_fn.forward

    def poisoned(*args: object, **kwargs: object):
        out = original(*args, **kwargs)
        if kwargs["step"] == 2:
            out.total = out.total * float("nan")
        return out

    trainer.loss_fn.forward = poisoned
    with pytest.raises(NonFiniteError, match="step 2: loss is nan"):
        trainer.train()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000001"]


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    good = {"name": "x", "output_dir": "o", "data": {"train": ["gimp-en"]}}
    cases = [
        (good | {"train": {"batchsize": 4}}, "train.batchsize: Extra inputs are not permitted"),
        (good | {"train": {"lr": -1}}, "train.lr: Input should be greater than 0"),
        (good | {"model": {"activation": "gelu"}}, "model.activation: Input should be 'log1p' or 'l0'"),
        ({"name": "x", "output_dir": "o"}, "data: Field required"),
        (
            good | {"loss": {"lambda_df_flops": -0.1}},
            "loss.lambda_df_flops: Input should be greater than or equal to 0",
        ),
        (good | {"loss": {"distill": "kl"}}, "loss.distill and data.teacher go together"),
    ]
    for raw, message in cases:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(WorkbenchError, match=message):
            TrainingConfig.from_yaml(path)


def test_shipped_configs_load() -> None:
    for path in sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml")):
        config = TrainingConfig.from_yaml(path)
        assert config.name and config.train.max_steps >= 1


def test_train_py_end_to_end(tiny_checkpoint: Path, tmp_path: Path, make_beir) -> None:
    from typer.testing import CliRunner

    from harness.leaderboard import Leaderboard
    from models.checkpoint import read_manifest
    from train import app

    corpus = dict(TINY_CORPUS)
    queries = {"t1": "레이어 투명", "t2": "crop tool", "t3": "밝기", "q1": "자르기", "q2": "layer mask"}
    qrels = {"train": [("t1", "d1", 1), ("t2", "d3", 1), ("t3", "d5", 1)],
             "test": [("q1", "d2", 1), ("q2", "d4", 1)]}  # fmt: skip
    data = make_beir(tmp_path / "data", corpus, queries, qrels)
    config = {
        "name": "e2e",
        "output_dir": str(tmp_path / "out"),
        "model": {"base": str(tiny_checkpoint), "max_length": 32, "idf": "corpus"},
        "data": {"train": [str(data)], "hard_negatives": 1, "negatives_retriever": "bm25-plain"},
        "train": {"batch_size": 2, "max_steps": 2, "save_every": 1, "log_every": 1},
        "eval": {"datasets": [str(data)], "metric": "ndcg@10", "top_k": 10},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    board = tmp_path / "lb.sqlite"
    result = CliRunner().invoke(app, ["--config", str(tmp_path / "c.yaml"), "--leaderboard", str(board)])
    assert result.exit_code == 0, result.output
    rows = Leaderboard(board).rows()
    assert [(r["step"], r["checkpoint_kind"]) for r in rows] == [(0, "step"), (1, "step"), (2, "final")]
    assert (tmp_path / "out" / "best_model" / "idf.json").is_file()
    # trained at 32 tokens; declared for inference at the default 512, capped by the 128 positions
    manifest = read_manifest(tmp_path / "out" / "final_model")
    assert (manifest["max_seq_length"], manifest["train_max_length"]) == (128, 32)
    # reports live beside the checkpoints (which are pruned), one per evaluated checkpoint
    reports = sorted(p.name for p in (tmp_path / "out" / "evaluations").iterdir())
    assert reports == ["step-0000000", "step-0000001", "step-0000002"]
    assert [r["per_query_path"] for r in rows] == [str(tmp_path / "out" / "evaluations" / n) for n in reports]
    # not a terminal: one plain line per logged step instead of a progress bar
    lines = [line for line in result.output.splitlines() if line.startswith("step ") and " | " in line]
    assert [line.split(" | ")[0] for line in lines] == ["step 1/2", "step 2/2"]
    assert " | lr " in lines[0] and "samples/s | ETA " in lines[0] and lines[1].endswith("ETA 0m00s")
    resume = ["--config", str(tmp_path / "c.yaml"), "--leaderboard", str(board), "--resume"]
    again = CliRunner().invoke(app, resume)
    assert again.exit_code == 0 and "run already complete" in again.output
    assert len(Leaderboard(board).rows()) == len(rows)  # no duplicate rows
    bad = CliRunner().invoke(app, ["--config", str(tmp_path / "missing.yaml")])
    assert bad.exit_code == 2 and "missing.yaml: cannot read (No such file" in " ".join(bad.output.split())


def _first_step_gradients(trainer: Trainer) -> dict[str, torch.Tensor]:
    trainer._micro_step(trainer._next_batch())
    return {
        name: p.grad.detach().clone() for name, p in trainer.module.named_parameters() if p.grad is not None
    }


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str, result_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        grads = _first_step_gradients(_dropout_free_trainer(_config(Path(out_dir))))
        if rank == 0:
            torch.save(grads, result_file)
    finally:
        dist.destroy_process_group()


def _dropout_free_trainer(config: TrainingConfig) -> Trainer:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_mlm(len(tokenizer), seed=11)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    idf = IdfWeights.from_corpus(TEXTS, tokenizer)
    return Trainer(config, model, tokenizer, idf, EXAMPLES)


def test_two_ranks_compute_the_gradient_of_one_process(tmp_path: Path) -> None:
    """Documents gathered across 2 CPU ranks (gloo), gradients averaged by DDP: the same gradient
    as one process on the whole batch (every query against every document of the global batch)."""
    import torch.multiprocessing as mp

    single = _first_step_gradients(_dropout_free_trainer(_config(tmp_path / "single")))
    result = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp"), str(result)), nprocs=2)
    ddp = torch.load(result)
    assert ddp.keys() == single.keys()
    for name, grad in single.items():
        assert torch.allclose(grad, ddp[name], atol=1e-6, rtol=1e-4), name
    assert max(float(g.abs().max()) for g in single.values()) > 1e-2  # the gradients are not trivially 0


def _whole_logits_document_vectors(trainer: Trainer, texts: list[str]) -> tuple[torch.Tensor, int]:
    """SPLADE pooling as written in the paper, through the whole (texts, length, vocab) logits."""
    enc = trainer.tokenizer(
        texts, truncation=True, max_length=trainer.config.model.max_length, padding=True, return_tensors="pt"
    )
    values = torch.log1p(torch.relu(trainer.model(**enc).logits))
    if trainer.config.model.activation == "l0":
        values = torch.log1p(values)
    pooled = (values * enc["attention_mask"].unsqueeze(-1)).amax(dim=1)
    return pooled * trainer.idf_matching.keep, int(enc["attention_mask"].sum())


@pytest.mark.parametrize("activation", ["log1p", "l0"])
def test_fused_pooling_gives_the_gradient_of_the_whole_logits(tmp_path: Path, activation: str) -> None:
    """The trainer's document vectors (projection chunked, gradient only to each maximum's row)
    equal the whole-logits SPLADE pooling, and so do the loss and every parameter's gradient."""
    config = _config(tmp_path)
    config = config.model_copy(update={"model": config.model.model_copy(update={"activation": activation})})
    fused, whole = _dropout_free_trainer(config), _dropout_free_trainer(config)
    whole.document_vectors = lambda texts: _whole_logits_document_vectors(whole, list(texts))  # type: ignore[method-assign]
    batch = fused._next_batch()
    assert batch == whole._next_batch()
    vectors, tokens = fused.document_vectors([e.positive for e in batch])
    expected, expected_tokens = whole.document_vectors([e.positive for e in batch])
    torch.testing.assert_close(vectors, expected, atol=1e-6, rtol=1e-5)
    assert tokens == expected_tokens and int((vectors > 0).sum()) > 10
    fused_parts, _ = fused._micro_step(batch)
    whole_parts, _ = whole._micro_step(batch)
    torch.testing.assert_close(fused_parts["loss"], whole_parts["loss"], atol=1e-6, rtol=1e-5)
    grads = {n: p.grad for n, p in whole.module.named_parameters() if p.grad is not None}
    assert {n for n, p in fused.module.named_parameters() if p.grad is not None} == set(grads)
    for name, p in fused.module.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, grads[name], atol=1e-6, rtol=1e-4, msg=name)
    assert max(float(g.abs().max()) for g in grads.values()) > 1e-2


def _teacher_config(
    tmp_path: Path, data: Path, teacher: str, models: list[str] | None = None
) -> TrainingConfig:
    return TrainingConfig.model_validate(
        {
            "name": "d",
            "output_dir": str(tmp_path / "out"),
            "data": {"train": [str(data)], "hard_negatives": 1, "negatives_retriever": "bm25-ko",
                     "teacher": teacher, "teacher_models": models or ["bm25-plain", "bm25-ko"]},
            "loss": {"distill": "kl"},
        }
    )  # fmt: skip


def _train_dir(tmp_path: Path, make_beir) -> Path:
    queries = {"t1": "레이어 마스크 투명", "t2": "crop tool borders"}
    return make_beir(
        tmp_path / "data", dict(TINY_CORPUS), queries, {"train": [("t1", "d1", 1), ("t2", "d3", 1)]}
    )


def test_teacher_scores_from_data(tmp_path: Path, make_beir) -> None:
    from common.errors import WorkbenchError
    from harness.training import build_examples

    data = _train_dir(tmp_path, make_beir)
    (data / "teacher").mkdir()
    rows = "query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{float(i)}\n" for q in ("t1", "t2") for i, d in enumerate(TINY_CORPUS)
    )
    (data / "teacher" / "train.tsv").write_text(rows)
    examples, _, _ = build_examples(_teacher_config(tmp_path, data, "data"))
    doc_index = {text: i for i, text in enumerate(TEXTS)}
    for example in examples:  # score i was given to the i-th document
        candidates = (example.positive, *example.negatives)
        assert example.teacher_scores == tuple(float(doc_index[c]) for c in candidates)
    (data / "teacher" / "train.tsv").write_text("t1\td1\t1.0\n")
    with pytest.raises(WorkbenchError, match="teacher/train.tsv: no teacher score for query"):
        build_examples(_teacher_config(tmp_path, data, "data"))


def test_ensemble_teacher_by_hand(tmp_path: Path, make_beir) -> None:
    from harness.datasets import load_beir
    from harness.retrievers import get_retriever
    from harness.training import build_examples

    data = _train_dir(tmp_path, make_beir)
    examples, _, _ = build_examples(_teacher_config(tmp_path, data, "ensemble"))
    dataset = load_beir(data)
    by_text = {doc.full_text: doc_id for doc_id, doc in dataset.corpus.items()}
    tables = []
    for name in ("bm25-plain", "bm25-ko"):
        retriever = get_retriever(name).build()
        retriever.index(dataset)
        tables.append(retriever.search({"t1": "레이어 마스크 투명", "t2": "crop tool borders"}, 10).to_dict())
    for qid, example in zip(("t1", "t2"), examples, strict=True):
        docs = [by_text[t] for t in (example.positive, *example.negatives)]
        expected = []
        for table in tables:
            raw = [table.get(qid, {}).get(d, 0.0) for d in docs]
            low, high = min(raw), max(raw)
            expected.append([(r - low) / (high - low) if high > low else 0.0 for r in raw])
        by_hand = [30.0 * (a + b) / 2 for a, b in zip(*expected, strict=True)]
        assert example.teacher_scores == pytest.approx(by_hand, abs=1e-5)


def test_max_pairs_samples_before_the_teacher_scores(tmp_path: Path, make_beir, monkeypatch) -> None:
    import random

    import harness.training as training
    from harness.training import build_examples

    texts = ["레이어 마스크", "자르기 도구", "crop tool", "layer mask", "밝기 조절"]
    queries = {f"q{i}": text for i, text in enumerate(texts)}
    data = make_beir(tmp_path / "data", dict(TINY_CORPUS), queries,
                     {"train": [(f"q{i}", f"d{i + 1}", 1) for i in range(5)]})  # fmt: skip
    config = _teacher_config(tmp_path, data, "ensemble")
    everything, _, _ = build_examples(config)
    scored: list[set[str]] = []
    original = training.teacher_scores
    monkeypatch.setattr(training, "teacher_scores", lambda m, d, wanted: scored.append(set(wanted))
                        or original(m, d, wanted))  # fmt: skip
    sampled = config.model_copy(update={"data": config.data.model_copy(update={"max_pairs": 2})})
    examples, _, _ = build_examples(sampled)
    # the same examples, in the same order, as sampling all of them (what max_pairs always meant)
    assert examples == random.Random(config.seed).sample(everything, 2)
    chosen = {e.query for e in examples}
    assert scored == [{q for q, t in queries.items() if t in chosen}] * 2  # each teacher: the 2 sampled only


def test_max_pairs_per_dataset_caps_each_source(tmp_path: Path, make_beir) -> None:
    from harness.training import build_examples

    big = {f"b{i}": f"query {i}" for i in range(5)}
    big_dir = make_beir(tmp_path / "big", dict(TINY_CORPUS), big,
                        {"train": [(q, f"d{i + 1}", 1) for i, q in enumerate(big)]})  # fmt: skip
    small_dir = _train_dir(tmp_path, make_beir)  # 2 pairs
    config = TrainingConfig.model_validate(
        {"name": "d", "output_dir": str(tmp_path / "out"),
         "data": {"train": [str(big_dir), str(small_dir)], "hard_negatives": 1,
                  "negatives_retriever": "bm25-ko"}}
    )  # fmt: skip
    everything, _, _ = build_examples(config)
    assert len(everything) == 7
    capped = config.model_copy(update={"data": config.data.model_copy(update={"max_pairs_per_dataset": 2})})
    examples, _, _ = build_examples(capped)
    queries = [e.query for e in examples]
    # 2 of the big source's 5 (seeded: the same 2 every time), both of the small one's, in source order
    assert len(queries) == 4 and set(queries[:2]) < set(big.values())
    assert queries[2:] == ["레이어 마스크 투명", "crop tool borders"]
    assert [e.query for e in build_examples(capped)[0]] == queries
    sampled = [(e.query, e.positive) for e in everything[:5] if e.query in queries[:2]]
    assert [(e.query, e.positive) for e in examples[:2]] == sampled
    # a mapping caps the sources it names only: the big one's same 2, the small one's 2 untouched
    named = TrainingConfig.model_validate(
        {**config.model_dump(mode="json"),
         "data": {**config.data.model_dump(mode="json"), "max_pairs_per_dataset": {str(big_dir): 2}}}
    )  # fmt: skip
    assert [e.query for e in build_examples(named)[0]] == queries
    small_only = {**config.data.model_dump(mode="json"), "max_pairs_per_dataset": {str(small_dir): 1}}
    assert len(build_examples(config.model_copy(update={"data": DataConfig(**small_only)}))[0]) == 6
    with pytest.raises(ValidationError, match="'gimp-en' is not one of data.train"):
        DataConfig(**{**small_only, "max_pairs_per_dataset": {"gimp-en": 2}})


def test_training_does_not_depend_on_randomness_drawn_while_preparing_data(
    tiny_checkpoint: Path, tmp_path: Path, make_beir, monkeypatch
) -> None:
    # a first run computes its teacher scores and may build its base (models that may draw random
    # numbers), a later one reads both from the cache: both must start training from the same state
    import random

    import numpy as np

    from harness import bases, training

    data = make_beir(tmp_path / "data", dict(TINY_CORPUS), {"t1": "레이어 투명", "t2": "crop tool"},
                     {"train": [("t1", "d1", 1), ("t2", "d3", 1)]})  # fmt: skip
    config = TrainingConfig.model_validate(
        {
            "name": "seeded",
            "output_dir": str(tmp_path / "out"),
            "model": {"base": str(tiny_checkpoint), "max_length": 32, "idf": "corpus"},
            "data": {"train": [str(data)], "hard_negatives": 1, "negatives_retriever": "bm25-plain"},
            "train": {"batch_size": 2, "max_steps": 1, "save_every": 1},
        }
    )

    def draws_after_make_trainer() -> tuple[list[float], list[float], float]:
        trainer = training.make_trainer(config, None)
        weights = [float(p.detach().flatten()[0]) for p in trainer.module.parameters()][:3]
        return weights, torch.rand(3).tolist(), random.random() + float(np.random.rand())

    plain = draws_after_make_trainer()

    def drawing(original: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            torch.rand(100), random.random(), np.random.rand(7)
            return original(*args, **kwargs)

        return call

    monkeypatch.setattr(training, "build_examples", drawing(training.build_examples))
    assert draws_after_make_trainer() == plain
    monkeypatch.setattr(bases, "resolve_base_model", drawing(bases.resolve_base_model))
    assert draws_after_make_trainer() == plain


def test_train_layers_trains_the_head_and_the_top_layers_only(tmp_path: Path) -> None:
    config = _config(tmp_path, eval_at_start=False)
    config = config.model_copy(update={"model": config.model.model_copy(update={"train_layers": 1})})
    trainer = _trainer(config)
    before = {n: p.detach().clone() for n, p in trainer.module.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.module.named_parameters() if not torch.equal(p, before[n])}
    assert "bert.encoder.layer.1.attention.self.query.weight" in changed
    assert "cls.predictions.transform.dense.weight" in changed
    assert not {n for n in changed if n.startswith(("bert.embeddings.", "bert.encoder.layer.0."))}
    too_many = config.model_copy(update={"model": config.model.model_copy(update={"train_layers": 3})})
    with pytest.raises(WorkbenchError, match="model.train_layers: .*2 layers, got 3"):
        _trainer(too_many)


def test_head_lr_moves_the_mlm_head_at_its_own_rate(tmp_path: Path) -> None:
    # Adam's first step moves every parameter with a gradient by its group's lr (m / sqrt(v) = +-1),
    # less AdamW's decay lr * weight_decay * p: the head (transform, LayerNorm, vocabulary bias) at
    # head_lr, the encoder at lr
    config = _config(tmp_path, lr=1e-4, head_lr=1e-2, max_steps=1, save_every=1, weight_decay=0.0)
    trainer = _trainer(config)
    before = {n: p.detach().clone() for n, p in trainer.module.named_parameters()}
    trainer.train()
    moved = {n: float((p.detach() - before[n]).abs().max()) for n, p in trainer.module.named_parameters()}
    assert moved["cls.predictions.bias"] == pytest.approx(1e-2, rel=1e-3)
    assert moved["cls.predictions.transform.dense.weight"] == pytest.approx(1e-2, rel=1e-3)
    assert moved["bert.encoder.layer.1.output.dense.weight"] == pytest.approx(1e-4, rel=1e-3)
    assert max(v for n, v in moved.items() if n.startswith("bert.")) == pytest.approx(1e-4, rel=1e-3)
    assert [g["initial_lr"] for g in trainer.optimizer.param_groups] == [1e-4, 1e-2]
    plain = _trainer(_config(tmp_path / "plain", lr=1e-4, max_steps=1, save_every=1, weight_decay=0.0))
    assert len(plain.optimizer.param_groups) == 1


def test_distillation_trains(tmp_path: Path) -> None:
    examples = [Example(e.query, e.positive, e.negatives, (3.0, 1.0)) for e in EXAMPLES]
    tokenizer = build_tiny_tokenizer()
    config = _config(tmp_path).model_copy(
        update={"loss": _config(tmp_path).loss.model_copy(update={"distill": "kl"})}
    )
    trainer = Trainer(
        config, build_tiny_mlm(len(tokenizer)), tokenizer, IdfWeights.from_corpus(TEXTS, tokenizer), examples
    )
    trainer.train()
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert record["distill"] > 0 and record["distill_weight"] == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eval": {"metric": "ndcg@x"}}, "eval.metric: unknown metric 'ndcg@x'"),
        ({"eval": {"datasets": ["no-such-set"]}}, "eval.datasets: unknown dataset 'no-such-set'"),
        ({"output_dir": "FILE"}, "output_dir: "),
    ],
)
def test_train_py_checks_the_config_before_any_work(
    tiny_checkpoint: Path, tmp_path: Path, make_beir, change: dict, message: str
) -> None:
    from typer.testing import CliRunner

    from train import app

    data = make_beir(tmp_path / "data", dict(TINY_CORPUS), {"t1": "레이어"}, {"train": [("t1", "d1", 1)]})
    (tmp_path / "a-file").write_text("not a folder")
    config = {
        "name": "early",
        "output_dir": str(tmp_path / "out"),
        "model": {"base": str(tiny_checkpoint)},
        "data": {"train": [str(data)], "hard_negatives": 0},
        "train": {"batch_size": 1, "max_steps": 1, "save_every": 1},
        "eval": {"datasets": [str(data)]},
    }
    for key, value in change.items():
        config[key] = (config[key] | value) if isinstance(value, dict) else str(tmp_path / "a-file")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    args = ["--config", str(tmp_path / "c.yaml"), "--leaderboard", str(tmp_path / "lb")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert "c.yaml" in result.output and not (tmp_path / "out").exists() and not (tmp_path / "lb").exists()
