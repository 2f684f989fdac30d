"""Hard negatives mined with a lexical retriever (BM25 over the Korean-aware analyzer by default).

`mine_negatives` is the one mining function: `harness.training.build_examples` calls it when a
dataset carries no mined file, and the `negatives` step calls it to write one. For each judged
(query, positive) pair of a split, the candidates are the retriever's top `depth` documents that no
judgment of the query calls relevant, in rank order, optionally without near-duplicates of the
positive (the same text after case and white-space folding, or word-set Jaccard >= a threshold:
such a "negative" is really a positive and teaches the model the wrong thing), then the first
`count` of them (`top`) or `count` drawn from them with a seeded generator per pair (`random`,
kept in rank order).

The step's output is a BEIR folder (every file of the input copied) plus `negatives/<split>.jsonl`,
one line per pair: {"query_id", "positive_id", "negative_ids"}; `build_examples` reads that file
where it is present instead of mining.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from common.errors import WorkbenchError
from common.files import atomic_write, read_jsonl
from harness.console import console, meter, user_errors
from harness.prepare.step import StepRun, run_step

if TYPE_CHECKING:
    from harness.datasets import Dataset

__all__ = [
    "NEGATIVES_DIR",
    "Sampling",
    "build_negatives",
    "is_near_duplicate",
    "judged_pairs",
    "mine_negatives",
    "mined_path",
    "read_mined_negatives",
    "register",
]

VERSION = "1"
NEGATIVES_DIR = "negatives"
Sampling = Literal["top", "random"]
_WORD = re.compile(r"\w+")


def mined_path(folder: Path, split: str) -> Path:
    """Where a BEIR folder keeps the mined negatives of `split`."""
    return Path(folder) / NEGATIVES_DIR / f"{split}.jsonl"


def _folded(text: str) -> str:
    """NFKC, lower case, white space collapsed: texts equal after this are the same text."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(_folded(text)))


def is_near_duplicate(candidate: str, positive: str, threshold: float) -> bool:
    """Whether `candidate` is the positive's text after case/white-space folding, or shares at
    least `threshold` of their word sets (Jaccard of lower-cased `\\w+` words after NFKC)."""
    if _folded(candidate) == _folded(positive):
        return True
    a, b = _words(candidate), _words(positive)
    return bool(a or b) and len(a & b) / len(a | b) >= threshold


def judged_pairs(data: Dataset, split: str) -> list[tuple[str, str]]:
    """The (query, document) pairs of `split` judged relevant (> 0) whose document is in the corpus."""
    return [
        (qid, doc)
        for qid, docs in data.qrels[split].items()
        for doc, rel in docs.items()
        if rel > 0 and doc in data.corpus
    ]


def mine_negatives(
    data: Dataset,
    split: str,
    count: int,
    retriever: str = "bm25-ko",
    depth: int = 30,
    near_duplicate: float | None = None,
    sampling: Sampling = "top",
    seed: int = 0,
) -> dict[tuple[str, str], list[str]]:
    """(query id, positive id) -> up to `count` negative ids for every judged pair of `split`.

    `near_duplicate`: None keeps every candidate; a threshold in (0, 1] drops the candidates that
    `is_near_duplicate` of the pair's positive. Fewer than `count` candidates give a shorter list
    (the caller decides what fills it). The retriever's index is cached as evaluations cache it.
    """
    if count < 0 or depth < 1:
        raise WorkbenchError(f"negatives: count must be >= 0 and depth >= 1 (got {count}, {depth})")
    if near_duplicate is not None and not 0 < near_duplicate <= 1:
        raise WorkbenchError(f"negatives: near-duplicate threshold must be in (0, 1], got {near_duplicate}")
    if sampling not in ("top", "random"):
        raise WorkbenchError(f"negatives: sampling must be 'top' or 'random', got {sampling!r}")
    pairs = judged_pairs(data, split)
    if count == 0 or not pairs:
        return {}
    from harness.retrievers import resolve_retriever

    qrels = data.qrels[split]
    model = resolve_retriever(retriever).build()
    model.index(data)
    queries = {qid: data.queries[qid] for qid in dict.fromkeys(qid for qid, _ in pairs)}
    ranking = model.search(queries, depth)
    ranked = {qid: doc_ids for qid, doc_ids, _ in ranking.items()}
    texts = {doc_id: doc.full_text for doc_id, doc in data.corpus.items()}
    mined: dict[tuple[str, str], list[str]] = {}
    for qid, positive in pairs:
        judged = {d for d, rel in qrels[qid].items() if rel > 0}
        candidates = [d for d in ranked.get(qid, []) if d not in judged]
        if near_duplicate is not None:
            candidates = [
                d for d in candidates if not is_near_duplicate(texts[d], texts[positive], near_duplicate)
            ]
        if sampling == "random" and len(candidates) > count:
            rng = random.Random(f"{seed}\0{qid}\0{positive}")
            chosen = set(rng.sample(range(len(candidates)), count))
            candidates = [d for i, d in enumerate(candidates) if i in chosen]
        mined[(qid, positive)] = candidates[:count]
    return mined


def read_mined_negatives(data: Dataset, split: str) -> dict[tuple[str, str], list[str]] | None:
    """The negatives of `negatives/<split>.jsonl` in the dataset's folder, None where there is none.

    Every line must name a judged pair and known documents; every judged pair must have a line.
    """
    path = mined_path(data.path, split)
    if not path.is_file():
        return None
    pairs = set(judged_pairs(data, split))
    mined: dict[tuple[str, str], list[str]] = {}
    for line, obj in read_jsonl(path):
        qid, positive, negatives = obj.get("query_id"), obj.get("positive_id"), obj.get("negative_ids")
        if not isinstance(qid, str) or not isinstance(positive, str) or not isinstance(negatives, list):
            raise WorkbenchError(
                f"{path}:{line}: expected string query_id, string positive_id and a list negative_ids"
            )
        if (qid, positive) not in pairs:
            raise WorkbenchError(f"{path}:{line}: ({qid!r}, {positive!r}) is not a judged pair of {split!r}")
        if (qid, positive) in mined:
            raise WorkbenchError(f"{path}:{line}: a second line for ({qid!r}, {positive!r})")
        unknown = [d for d in negatives if not isinstance(d, str) or d not in data.corpus]
        if unknown:
            raise WorkbenchError(f"{path}:{line}: negative {unknown[0]!r} is not a document of the corpus")
        mined[(qid, positive)] = list(negatives)
    missing = sorted(pairs - set(mined))
    if missing:
        raise WorkbenchError(
            f"{path}: no line for the judged pair {missing[0]!r} ({len(missing)} pairs missing)"
        )
    return mined


def _copy_beir(source: Path, target: Path) -> Iterator[Path]:
    """Copy every file of a BEIR folder but its manifest and mined negatives; yield each copied."""
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source)
        if relative.parts[0] == NEGATIVES_DIR or relative.as_posix() == "manifest.json":
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / relative)
        yield relative


def build_negatives(
    data: Path,
    out: Path,
    split: str = "train",
    count: int = 7,
    retriever: str = "bm25-ko",
    depth: int = 30,
    near_duplicate: float | None = 0.9,
    sampling: Sampling = "top",
    seed: int = 0,
    force: bool = False,
) -> dict[str, Any]:
    """Mine negatives of a BEIR folder's `split` into `out`: the folder copied plus
    `negatives/<split>.jsonl`. Returns the manifest."""
    from harness.datasets import load_beir

    data = Path(data)
    params = {
        "split": split,
        "count": count,
        "retriever": retriever,
        "depth": depth,
        "near_duplicate": near_duplicate,
        "sampling": sampling,
        "seed": seed,
    }

    def build(run: StepRun) -> None:
        dataset = load_beir(data, splits=[split])
        for warning in dataset.warnings:
            console.log(f"negatives: {warning}")
        mined = mine_negatives(dataset, split, count, retriever, depth, near_duplicate, sampling, seed)
        pairs = judged_pairs(dataset, split)
        with atomic_write(mined_path(run.out, split)) as f, meter("negatives", len(pairs), "pairs") as m:
            for qid, positive in pairs:
                negatives = mined.get((qid, positive), [])
                record = {"query_id": qid, "positive_id": positive, "negative_ids": negatives}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                run.count("pairs")
                run.count("negatives", len(negatives))
                if len(negatives) < count:
                    run.count("pairs with fewer negatives")
                m.advance()
        run.extra["copied"] = [p.as_posix() for p in _copy_beir(data, run.out)]

    return run_step(out, "negatives", VERSION, [data], params, build, force=force)


def register(app: typer.Typer) -> None:
    """Add the `negatives` command."""

    @app.command("negatives")
    def negatives_command(
        data: Annotated[Path, typer.Argument(help="a BEIR folder")],
        out: Annotated[
            Path, typer.Option("--out", help="output: the BEIR folder plus negatives/<split>.jsonl")
        ],
        split: Annotated[str, typer.Option(help="the qrels split whose pairs get negatives")] = "train",
        count: Annotated[int, typer.Option(help="negatives per (query, positive) pair")] = 7,
        retriever: Annotated[str, typer.Option(help="a registered retriever")] = "bm25-ko",
        depth: Annotated[int, typer.Option(help="candidates: this many top results of the retriever")] = 30,
        near_duplicate: Annotated[
            float,
            typer.Option(help="drop candidates with word Jaccard >= this with the positive; 0: keep all"),
        ] = 0.9,
        sampling: Annotated[
            str, typer.Option(help="top: the first COUNT candidates; random: COUNT drawn")
        ] = "top",
        seed: Annotated[int, typer.Option(help="seed of the random sampling")] = 0,
        force: Annotated[bool, typer.Option(help="rebuild even when up to date")] = False,
    ) -> None:
        """BM25 hard negatives of a BEIR folder's pairs, near-duplicates of the positive excluded."""
        with user_errors():
            if sampling not in ("top", "random"):
                raise WorkbenchError(f"--sampling must be 'top' or 'random', got {sampling!r}")
            build_negatives(
                data,
                out,
                split=split,
                count=count,
                retriever=retriever,
                depth=depth,
                near_duplicate=near_duplicate or None,
                sampling="top" if sampling == "top" else "random",
                seed=seed,
                force=force,
            )
