"""What `train.py` needs from the harness: training examples from registered datasets (with hard
negatives mined by a harness retriever), the base model's location, and the checkpoint hook that
evaluates each saved checkpoint with the same code as `evaluate.py` and stores it on the leaderboard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from common.errors import WorkbenchError
from common.files import make_folder, read_pair_scores, write_json
from common.paths import cache_dir
from harness.cache import read_cache
from harness.console import console
from harness.datasets import Dataset, load_dataset, resolve_dataset
from harness.evaluation import validate_metrics
from harness.prepare.negatives import judged_pairs, mine_negatives, mined_path, read_mined_negatives
from harness.registry import dataset_registry
from harness.retrievers import resolve_retriever
from harness.retrievers.splade import splade_spec
from harness.runner import EvalConfig
from harness.session import evaluate_report_record
from models.config import TrainingConfig
from models.trainer import Example, Trainer, check_allowed_changes, latest_checkpoint

__all__ = [
    "build_examples",
    "check_before_training",
    "checkpoint_evaluator",
    "make_trainer",
    "progress_line",
    "teacher_scores",
]


def check_before_training(
    config: TrainingConfig, source: Path, resume: bool = False, allow_changes: Collection[str] = ()
) -> None:
    """What the harness can check of a config before any work: the settings allowed to change on
    resume, the metric, the datasets, the negatives retriever, the output folder (a run already
    there is continued only with `resume`, never trained over). Errors name the config file and the key."""
    check_allowed_changes(allow_changes)
    try:
        validate_metrics([config.eval.metric])
    except WorkbenchError as exc:
        raise WorkbenchError(f"{source}: eval.metric: {exc}") from None
    registry = dataset_registry()
    for key, names in (("data.train", config.data.train), ("eval.datasets", config.eval.datasets)):
        for name in names:
            try:
                resolve_dataset(name, registry)
            except WorkbenchError as exc:
                raise WorkbenchError(f"{source}: {key}: {exc}") from None
    try:
        resolve_retriever(config.data.negatives_retriever)
    except WorkbenchError as exc:
        raise WorkbenchError(f"{source}: data.negatives_retriever: {exc}") from None
    output = Path(config.output_dir)
    try:
        make_folder(output, create=False)
    except WorkbenchError as exc:
        raise WorkbenchError(f"{source}: output_dir: {exc}") from None
    earlier = [output / "checkpoints", output / "evaluations.jsonl", output / "final_model"]
    if not resume and any(p.exists() for p in earlier):
        raise WorkbenchError(
            f"{source}: output_dir: {output} holds a run already; continue it with --resume, "
            "or choose another output_dir"
        )
    if resume and latest_checkpoint(output) is None:
        raise WorkbenchError(
            f"{source}: output_dir: {output} holds no checkpoint to resume from; train without --resume"
        )


def build_examples(config: TrainingConfig) -> tuple[list[Example], list[str], dict[str, str]]:
    """(examples, every training document's text for idf, dataset name -> checksum).

    Each judged (query, document) pair of the training split with relevance > 0 is an example;
    its hard negatives are those of `negatives/<split>.jsonl` beside the qrels where the dataset
    has one (the `negatives` step's output), else the top documents of `negatives_retriever` that
    are not judged relevant, in rank order (`harness.prepare.negatives.mine_negatives`); topped
    up with random documents (seeded; counted in the log) when there are too few.
    `max_pairs_per_dataset` samples each dataset's pairs, then `max_pairs` samples all of them, with
    the config's seed, before any teacher scores them.
    """
    registry = dataset_registry()
    corpus_texts: list[str] = []
    checksums: dict[str, str] = {}
    data_cfg = config.data
    # per dataset: (name, data, query ids, candidates: the positive, then its negatives)
    prepared: list[tuple[str, Dataset, list[str], list[list[str]]]] = []
    for name in data_cfg.train:
        spec = resolve_dataset(name, registry)
        data = load_dataset(spec.model_copy(update={"splits": [data_cfg.split]}))
        checksums[spec.name] = data.checksum
        corpus_texts.extend(doc.full_text for doc in data.corpus.values())
        qrels = data.qrels[data_cfg.split]
        pairs = judged_pairs(data, data_cfg.split)
        cap = data_cfg.pair_cap(name)
        if cap and len(pairs) > cap:
            keep = sorted(random.Random(f"{config.seed}:{spec.name}").sample(range(len(pairs)), cap))
            console.log(f"{spec.name}: {cap} of its {len(pairs)} pairs sampled (seed {config.seed})")
            pairs = [pairs[i] for i in keep]
        negatives = read_mined_negatives(data, data_cfg.split)
        if negatives is not None:
            console.log(f"{spec.name}: negatives read from {mined_path(data.path, data_cfg.split)}")
        elif data_cfg.hard_negatives:
            negatives = mine_negatives(
                data,
                data_cfg.split,
                data_cfg.hard_negatives,
                data_cfg.negatives_retriever,
                data_cfg.negatives_depth,
            )
        doc_ids = list(data.corpus)
        rng = random.Random(config.seed)
        topped_up = 0
        candidates: list[list[str]] = []  # per pair: the positive, then its negatives
        for qid, doc in pairs:
            mined = (negatives or {}).get((qid, doc), [])[: data_cfg.hard_negatives]
            judged = {d for d, rel in qrels[qid].items() if rel > 0}
            while len(mined) < data_cfg.hard_negatives and len(doc_ids) > len(judged) + len(mined):
                candidate = rng.choice(doc_ids)  # too few hard ones: random documents fill the layout
                if candidate not in judged and candidate not in mined:
                    mined = [*mined, candidate]
                    topped_up += 1
            if len(mined) < data_cfg.hard_negatives:
                raise WorkbenchError(
                    f"{spec.name}: too few documents for {data_cfg.hard_negatives} negatives"
                )
            candidates.append([doc, *mined])
        prepared.append((spec.name, data, [qid for qid, _ in pairs], candidates))
        console.log(f"{spec.name}: {len(pairs)} training pairs, {topped_up} random negatives topped up")
    total = sum(len(query_ids) for _, _, query_ids, _ in prepared)
    if not total:
        raise WorkbenchError(
            f"no training examples in the {data_cfg.split!r} split of {', '.join(data_cfg.train)}"
        )
    chosen = list(range(total))
    if data_cfg.max_pairs and total > data_cfg.max_pairs:
        chosen = random.Random(config.seed).sample(chosen, data_cfg.max_pairs)
        console.log(f"{data_cfg.max_pairs} of the {total} pairs sampled (seed {config.seed})")
    wanted, offset = set(chosen), 0
    built: dict[int, Example] = {}
    for name, data, query_ids, candidates in prepared:
        mine = [i for i in range(len(query_ids)) if offset + i in wanted]
        teacher = (
            _teacher(config, data, name, [(query_ids[i], candidates[i]) for i in mine]) if mine else None
        )
        for i in mine:
            qid, docs = query_ids[i], candidates[i]
            built[offset + i] = Example(
                query=data.queries[qid],
                positive=data.corpus[docs[0]].full_text,
                negatives=tuple(data.corpus[d].full_text for d in docs[1:]),
                teacher_scores=None if teacher is None else teacher(qid, docs),
            )
        offset += len(query_ids)
    return [built[i] for i in chosen], corpus_texts, checksums


def _teacher(
    config: TrainingConfig,
    data: Dataset,
    name: str,
    candidates: list[tuple[str, list[str]]],
) -> Callable[[str, list[str]], tuple[float, ...]] | None:
    """Teacher scores of a query's candidates (positive first), or None without distillation.

    `data`: teacher/<split>.tsv beside the qrels (query-id, corpus-id, score), every candidate
    scored. `ensemble`: each of the two retrievers scores the examples' candidates
    (`teacher_scores`, cached); per query, each teacher's candidate scores are min-max normalised,
    averaged and scaled (0 where a retriever did not match a candidate).
    """
    if config.data.teacher == "none":
        return None
    split = config.data.split
    if config.data.teacher == "data":
        path = data.path / "teacher" / f"{split}.tsv"
        if not path.is_file():
            raise WorkbenchError(f"{name}: data.teacher is 'data' but {path} does not exist")
        table = {(qid, doc): float(rel) for _, qid, doc, rel in read_pair_scores(path)}

        def from_data(qid: str, docs: list[str]) -> tuple[float, ...]:
            missing = [d for d in docs if (qid, d) not in table]
            if missing:
                raise WorkbenchError(
                    f"{path}: no teacher score for query {qid!r} and document {missing[0]!r}"
                )
            return tuple(table[(qid, d)] for d in docs)

        return from_data
    import torch

    from models.losses import ensemble_teacher_scores

    wanted: dict[str, set[str]] = {}
    for qid, docs in candidates:
        wanted.setdefault(qid, set()).update(docs)
    dense, sparse = (teacher_scores(model, data, wanted) for model in config.data.teacher_models)

    def from_ensemble(qid: str, docs: list[str]) -> tuple[float, ...]:
        rows = [torch.tensor([[table[qid].get(d, 0.0) for d in docs]]) for table in (dense, sparse)]
        return tuple(ensemble_teacher_scores(*rows, scale=config.data.teacher_scale)[0].tolist())

    return from_ensemble


def teacher_scores(
    model: str, data: Dataset, wanted: Mapping[str, Collection[str]]
) -> dict[str, dict[str, float]]:
    """`model`'s score of each (query id, document id) in `wanted` (absent: did not match), cached.

    A retriever whose scores do not depend on the other documents (dense: a dot product of two
    vectors) encodes only the wanted documents, which makes a slow dense teacher affordable; any
    other (BM25: idf and length norms come from the whole corpus) indexes the whole corpus as it
    would in an evaluation. The table is kept under the cache folder, keyed by the retriever's
    model hash, the corpus, the queries' texts and the wanted pairs: computed once per training set.
    """
    retriever = resolve_retriever(model).build()
    queries = {qid: data.queries[qid] for qid in wanted}
    key = hashlib.sha256(
        json.dumps(
            [data.corpus_checksum, sorted((q, queries[q], sorted(docs)) for q, docs in wanted.items())],
            ensure_ascii=False,
        ).encode()
    ).hexdigest()[:24]
    folder = f"{retriever.spec.family}-{retriever.model_hash()}"
    path = cache_dir() / "teacher-scores" / folder / f"{key}.json"
    if path.is_file():
        cached = read_cache(path, lambda: json.loads(path.read_text(encoding="utf-8")))
        if cached is not None:
            return cached
    if retriever.scores_independent_of_corpus and not retriever.cache_path(data).exists():
        needed = set().union(*wanted.values()) if wanted else set()
        corpus = {doc_id: doc for doc_id, doc in data.corpus.items() if doc_id in needed}
        retriever.index(dataclasses.replace(data, corpus=corpus), use_cache=False)
    else:
        retriever.index(data)
        corpus = data.corpus
    ranked = retriever.search(queries, len(corpus)).to_dict()
    table = {
        qid: {doc: float(score) for doc, score in ranked.get(qid, {}).items() if doc in docs}
        for qid, docs in wanted.items()
    }
    write_json(path, table)
    pairs = sum(map(len, wanted.values()))
    console.log(f"{retriever.spec.name}: teacher scores of {pairs} pairs cached in {path}")
    return table


def checkpoint_evaluator(
    config: TrainingConfig, run_id: str, leaderboard: Path
) -> Callable[[Path, int, str], dict[str, float] | None]:
    """The trainer's on_checkpoint hook: evaluate on the config's datasets, report, record.

    The same evaluation as `evaluate.py` (`harness.session.evaluate_report_record`); each report goes
    to `<output_dir>/evaluations/<checkpoint name>/`, outside the checkpoint (which may be pruned),
    and the mean of the configured metric over the datasets is returned.
    """
    registry = dataset_registry()
    datasets = [resolve_dataset(name, registry) for name in config.eval.datasets]
    metrics = tuple(dict.fromkeys([config.eval.metric, "ndcg@10", "recall@100"]))
    eval_config = EvalConfig(metrics=metrics, top_k=config.eval.top_k)

    def evaluate_checkpoint(path: Path, step: int, kind: str) -> dict[str, float] | None:
        if not datasets:
            return None
        spec = splade_spec(str(path), name=f"{run_id}@{step}", bf16=config.train.bf16)
        report_dir = Path(config.output_dir) / "evaluations" / path.name
        run = {"run_id": run_id, "step": step, "checkpoint_kind": kind, "config_hash": config.fingerprint()}
        result = evaluate_report_record(
            datasets, [spec], eval_config, report_dir, leaderboard, replace=True, run=run
        )
        values = [row.metrics[config.eval.metric] for row in result.rows]
        mean = sum(values) / len(values)
        console.log(f"step {step} ({kind}): mean {config.eval.metric} {mean:.4f} over {len(values)} datasets")
        return {config.eval.metric: mean}

    return evaluate_checkpoint


def make_trainer(
    config: TrainingConfig,
    leaderboard: Path | None,
    log: Callable[[dict[str, float]], None] | None = None,
    resume: bool = False,
) -> Trainer:
    """The trainer of `config`, seeded: base model, examples, idf and manifest as `train.py` uses them.

    Each saved checkpoint is evaluated into `leaderboard` (None: none is evaluated). With `resume`,
    the run keeps the id of its latest checkpoint (an allowed change may alter the fingerprint).
    """
    import numpy as np
    import torch

    from common.provenance import git_revision
    from harness.bases import resolve_base_model
    from harness.leaderboard import Leaderboard
    from models.checkpoint import load_idf, load_masked_lm, read_manifest
    from models.idf import IdfWeights

    # the examples and the base first: computing teacher scores or building a base on first use runs
    # models that may draw random numbers, and a first run must train exactly like a later one (both
    # read from the cache)
    examples, corpus, checksums = build_examples(config)
    base = resolve_base_model(config.model.base)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    model, tokenizer = load_masked_lm(base)
    if config.model.idf == "corpus":
        idf = IdfWeights.from_corpus(corpus, tokenizer)
    elif config.model.idf == "base":
        idf = load_idf(Path(base), tokenizer)
    else:
        idf = IdfWeights.from_json(Path(config.model.idf), tokenizer)
    run_id = f"{config.name}-{config.fingerprint()[:8]}"
    latest = latest_checkpoint(config.output_dir) if resume else None
    if latest is not None:
        run_id = read_manifest(latest).get("run_id", run_id)
    hook = None
    if leaderboard is not None:
        Leaderboard(leaderboard).close()  # an unusable database fails now, not after the first checkpoint
        hook = checkpoint_evaluator(config, run_id, leaderboard)
    manifest = {"run_id": run_id, "base_model": config.model.base, "git_revision": git_revision(),
                "data_checksums": checksums, "training_examples": len(examples)}  # fmt: skip
    return Trainer(config, model, tokenizer, idf, examples, on_checkpoint=hook, log=log, manifest=manifest)


_RATES = ("lr", "samples_per_s", "tokens_per_s")


def progress_line(record: dict[str, float], max_steps: int, samples_per_step: int) -> str:
    """One plain log line of a logged step: loss parts, lr, speed and the training time left.

    For output that is not a terminal, where rich progress bars do not draw. The time left counts
    training steps at the logged speed, not the evaluations between them.
    """
    step = int(record["step"])
    parts = " ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "step" and k not in _RATES)
    speed = record.get("samples_per_s", 0.0)
    left = (max_steps - step) * samples_per_step / speed if speed > 0 else float("nan")
    eta = f"{int(left // 60)}m{int(left % 60):02d}s" if left == left else "?"
    return (
        f"step {step}/{max_steps} | {parts} | lr {record.get('lr', float('nan')):.3g} | "
        f"{speed:.1f} samples/s | ETA {eta}"
    )
