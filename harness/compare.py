"""Compare stored evaluations without re-running retrieval: deltas, paired tests, bootstrap
confidence intervals, Holm correction across the family, per-query wins, ties and losses.

Each `RunScores` is one retriever on one dataset split, with per-query metric values (what
results.json keeps for every leaderboard row). Within each dataset split the first run is the
baseline; every other run is compared with it on every metric. The family of a metric is every
(candidate, dataset split) comparison made: Holm's adjustment runs over it, so that naming more
models or datasets does not make chance differences look real.

`load_runs` reads runs from leaderboard rows (by row id or model) and from TREC run files, which
it re-scores against a dataset's qrels; `comparison_tables` and `comparison_document` show the
comparisons as rich tables and as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from common.errors import WorkbenchError
from harness.datasets import Dataset, DatasetSpec, load_dataset, resolve_dataset
from harness.evaluation import (
    STAT_TESTS,
    bootstrap_ci,
    evaluate_run,
    holm,
    paired_test,
    read_trec_run,
    validate_metrics,
    win_tie_loss,
)
from harness.leaderboard import Leaderboard
from harness.registry import dataset_registry

__all__ = [
    "COMPARE_METRICS",
    "CompareSettings",
    "Comparison",
    "RunScores",
    "compare",
    "comparison_document",
    "comparison_tables",
    "load_runs",
    "runs_from_rows",
]

COMPARE_METRICS = ("ndcg@10", "recall@100")  # the default of `evaluate.py compare`: in every default run
_ROW_ID = re.compile(r"#?([1-9][0-9]*)")  # a leaderboard row id as a source: 12 or #12


@dataclass(frozen=True)
class RunScores:
    """One retriever's evaluation of one dataset split, per query."""

    name: str  # how tables show it
    dataset: str
    split: str
    metrics: dict[str, float]  # metric -> mean over the judged queries
    per_query: dict[str, dict[str, float]]  # metric -> qid -> value
    source: str  # where it was read: "leaderboard #12", a results.json, a run file
    dataset_checksum: str | None = None
    stats: dict[str, float] = field(default_factory=dict)  # efficiency figures, where recorded


@dataclass(frozen=True)
class CompareSettings:
    test: str = "student"  # paired test: student (t-test) or fisher (randomisation)
    max_p: float = 0.05  # significance threshold, applied to the Holm-adjusted p-values
    seed: int = 42  # of the randomisation test and of the bootstrap
    n_resamples: int = 10_000  # bootstrap resamples (and randomisation draws)
    confidence: float = 0.95  # of the bootstrap interval

    def __post_init__(self) -> None:
        if self.test not in STAT_TESTS:
            raise WorkbenchError(f"unknown significance test {self.test!r}; valid: {', '.join(STAT_TESTS)}")
        if not 0.0 < self.max_p < 1.0:
            raise WorkbenchError(f"max_p {self.max_p} must lie strictly between 0 and 1")
        if self.n_resamples < 100:
            raise WorkbenchError(f"n_resamples {self.n_resamples}: at least 100 are needed")
        if not 0.0 < self.confidence < 1.0:
            raise WorkbenchError(f"confidence {self.confidence} must lie strictly between 0 and 1")

    def describe(self, family: int) -> str:
        """One line saying how comparisons were tested, `family` being the comparisons per metric."""
        test = (
            "paired t-test" if self.test == "student" else f"randomisation, {self.n_resamples:,} sign flips"
        )
        return (
            f"test: {self.test} ({test}); threshold: p Holm < {self.max_p:g}; family: {family} per metric; "
            f"seed: {self.seed}; bootstrap: {self.n_resamples:,} resamples, "
            f"{self.confidence * 100:g}% confidence"
        )


@dataclass(frozen=True)
class Comparison:
    """A candidate against the baseline of its dataset split on one metric."""

    dataset: str
    split: str
    metric: str
    baseline: str
    candidate: str
    baseline_score: float
    candidate_score: float
    delta: float  # candidate - baseline
    p_value: float  # the paired test's, unadjusted
    p_holm: float  # Holm-adjusted over the metric's family
    significant: bool  # p_holm < max_p
    ci_low: float  # bootstrap interval of the mean per-query delta
    ci_high: float
    wins: int  # queries where the candidate scores higher
    ties: int
    losses: int
    queries: int  # queries both runs judged

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    runs: Sequence[RunScores], metrics: Sequence[str], settings: CompareSettings = CompareSettings()
) -> list[Comparison]:
    """Every non-baseline run against the first run of its dataset split, on every metric."""
    groups: dict[tuple[str, str], list[RunScores]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.split), []).append(run)
    for (dataset, split), group in groups.items():
        _check_group(dataset, split, group, metrics)
    raw: list[dict[str, Any]] = []
    for (dataset, split), (base, *candidates) in groups.items():
        for run in candidates:
            for metric in metrics:
                a, b = run.per_query[metric], base.per_query[metric]
                low, high = bootstrap_ci(a, b, settings.confidence, settings.n_resamples, settings.seed)
                counts = win_tie_loss(a, b)
                raw.append({
                    "dataset": dataset, "split": split, "metric": metric,
                    "baseline": base.name, "candidate": run.name,
                    "baseline_score": base.metrics[metric], "candidate_score": run.metrics[metric],
                    "delta": run.metrics[metric] - base.metrics[metric],
                    "p_value": paired_test(a, b, settings.test, settings.seed, settings.n_resamples),
                    "ci_low": low, "ci_high": high,
                    "wins": counts.wins, "ties": counts.ties, "losses": counts.losses,
                    "queries": len(set(a) & set(b)),
                })  # fmt: skip
    adjusted: dict[int, float] = {}
    for metric in metrics:
        family = [i for i, r in enumerate(raw) if r["metric"] == metric]
        adjusted.update(zip(family, holm([raw[i]["p_value"] for i in family]), strict=True))
    return [
        Comparison(**r, p_holm=adjusted[i], significant=adjusted[i] < settings.max_p)
        for i, r in enumerate(raw)
    ]


def _check_group(dataset: str, split: str, group: list[RunScores], metrics: Sequence[str]) -> None:
    """Runs compared on one split: the same dataset version, every metric per query, shared queries."""
    where = f"{dataset}/{split}"
    names = [r.name for r in group]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise WorkbenchError(f"{where}: {', '.join(repeated)} named more than once")
    checksums = {r.dataset_checksum for r in group if r.dataset_checksum}
    if len(checksums) > 1:
        detail = ", ".join(f"{r.name} ({r.source}) {str(r.dataset_checksum)[:12]}" for r in group)
        raise WorkbenchError(f"{where}: the runs were scored on different versions of the dataset: {detail}")
    for run in group:
        missing = [m for m in metrics if m not in run.per_query or m not in run.metrics]
        if missing:
            raise WorkbenchError(
                f"{run.name} ({run.source}) on {where} has no per-query {', '.join(missing)}; "
                f"it has {', '.join(sorted(run.per_query)) or 'none'}"
            )
    base = group[0]
    for run in group[1:]:
        for metric in metrics:
            if not set(run.per_query[metric]) & set(base.per_query[metric]):
                raise WorkbenchError(f"{where}: {run.name} and {base.name} share no judged query on {metric}")


def runs_from_rows(rows: Sequence[dict[str, Any]]) -> list[RunScores]:
    """The per-query values of leaderboard rows (`Leaderboard.rows()` dicts), from the results.json
    of the report each row was recorded from (each file read once); named by the row's model."""
    documents: dict[str, list[dict[str, Any]]] = {}
    runs = []
    for row in rows:
        folder = row["per_query_path"]
        if folder not in documents:
            path = Path(folder) / "results.json"
            try:
                documents[folder] = json.loads(path.read_text(encoding="utf-8"))["results"]
            except FileNotFoundError:
                raise WorkbenchError(
                    f"leaderboard row #{row['id']} ({row['model']} on {row['dataset']}/{row['split']}): "
                    f"its per-query values were in {path}, which is gone"
                ) from None
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise WorkbenchError(f"{path}: not a results file of this workbench ({exc})") from None
        keys = ("dataset", "split", "retriever", "model_hash")
        wanted = (row["dataset"], row["split"], row["model"], row["model_hash"])
        found = [r for r in documents[folder] if tuple(r.get(k) for k in keys) == wanted]
        if not found:
            raise WorkbenchError(
                f"{Path(folder) / 'results.json'} holds no result of leaderboard row #{row['id']} "
                f"({row['model']} on {row['dataset']}/{row['split']})"
            )
        result = found[0]
        runs.append(
            RunScores(
                name=row["model"],
                dataset=row["dataset"],
                split=row["split"],
                metrics=result["metrics"],
                per_query=result["per_query"],
                source=f"leaderboard #{row['id']}",
                dataset_checksum=row["dataset_checksum"],
                stats=row.get("stats") or {},
            )
        )
    return runs


def load_runs(
    sources: Sequence[str],
    datasets: Sequence[str],
    board: Path,
    metrics: Sequence[str],
    split: str = "test",
) -> list[RunScores]:
    """One RunScores per source on each dataset split, dataset by dataset, each in the order of
    `sources`: the first source is the baseline of every dataset.

    A source is a leaderboard row id (`#12` or `12`; the row fixes its dataset), a TREC run file
    (re-scored on `metrics` against the qrels of the one dataset named), or a model as the
    leaderboard's `model` column records it (its latest row on each dataset split). `datasets` are
    registered names, BEIR directories or dataset names of the leaderboard; none: those every
    source has rows of. A name shared on one dataset gets the row id or the file added.
    """
    if len(sources) < 2:
        raise WorkbenchError(
            f"compare needs at least 2 sources (the first is the baseline), got {len(sources)}"
        )
    metrics = validate_metrics(metrics)
    files = {s for s in sources if not _ROW_ID.fullmatch(s) and Path(s).is_file()}
    looked_up = [s for s in sources if s not in files]
    rows = _board_rows(board, looked_up)
    registry = dataset_registry()
    specs = dict(_dataset(d, registry, rows) for d in datasets)
    scored_on: tuple[DatasetSpec, Dataset] | None = None  # the dataset that run files are scored on
    if files:
        first = next(s for s in sources if s in files)
        if len(specs) != 1:
            raise WorkbenchError(f"run file {first}: name the one dataset to score it on with --dataset")
        ((only, spec),) = specs.items()
        if spec is None:
            raise WorkbenchError(
                f"run file {first}: {only} is a dataset of the leaderboard but neither a registered "
                "name nor a BEIR directory, so there are no qrels to score it against"
            )
        scored_on = spec, load_dataset(spec)
    found = {s: _rows_of(s, rows, board, split) for s in looked_up}
    names = list(specs) or _common_datasets(found, board, split)
    picked = {(name, s): _pick(s, found[s], name, names, board, split) for name in names for s in looked_up}
    loaded = dict(zip(picked, runs_from_rows(list(picked.values())), strict=True))
    runs = []
    for name in names:
        group = []
        for source in sources:
            if scored_on is not None and source in files:
                run = _score_run_file(Path(source), *scored_on, split, metrics)
                group.append((run, f"({Path(source).name})"))
                continue
            run, total = loaded[name, source], len(found[source][name])
            if total > 1:
                run = replace(run, source=f"{run.source}, the latest of {total}")
            group.append((run, f"#{picked[name, source]['id']}"))
        runs.extend(_distinct_names(group, name, split))
    return runs


def _board_rows(board: Path, sources: Sequence[str]) -> list[dict[str, Any]]:
    """Every row of the leaderboard where some source must be looked up there, else none."""
    if not sources:
        return []
    if not board.is_file():
        raise WorkbenchError(
            f"{', '.join(map(repr, sources))}: not run files, and there is no leaderboard at {board} to look "
            "them up in (--leaderboard names one)"
        )
    with Leaderboard(board, readonly=True) as lb:
        return lb.rows()


def _dataset(
    name: str, registry: dict[str, DatasetSpec], rows: Sequence[dict[str, Any]]
) -> tuple[str, DatasetSpec | None]:
    """(dataset name, its spec) of a registered name or BEIR directory; a name that only the
    leaderboard knows has no spec (run files cannot be scored on it)."""
    if name not in registry and not Path(name).is_dir() and any(r["dataset"] == name for r in rows):
        return name, None
    spec = resolve_dataset(name, registry)
    return spec.name, spec


def _rows_of(
    source: str, rows: Sequence[dict[str, Any]], board: Path, split: str
) -> dict[str, list[dict[str, Any]]]:
    """The leaderboard rows a row id or model names on `split`, by dataset, oldest first."""
    match = _ROW_ID.fullmatch(source)
    if match:
        row = next((r for r in rows if r["id"] == int(match[1])), None)
        if row is None:
            raise WorkbenchError(f"no row #{match[1]} in the leaderboard {board} ({len(rows)} rows)")
        if row["split"] != split:
            raise WorkbenchError(
                f"leaderboard row #{row['id']} is of {row['dataset']}/{row['split']}, not of split {split}; "
                f"pass --split {row['split']}"
            )
        return {row["dataset"]: [row]}
    mine = [r for r in rows if r["model"] == source]
    if not mine:
        models = ", ".join(sorted({r["model"] for r in rows})) or "none"
        raise WorkbenchError(
            f"unknown source {source!r}: not a leaderboard row id, a run file, nor a model of the "
            f"leaderboard {board} (models there: {models})"
        )
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for row in mine:
        if row["split"] == split:
            by_dataset.setdefault(row["dataset"], []).append(row)
    if not by_dataset:
        has = ", ".join(sorted({f"{r['dataset']}/{r['split']}" for r in mine}))
        raise WorkbenchError(f"model {source!r} has no evaluation of split {split} in {board}; it has {has}")
    return by_dataset


def _pick(
    source: str,
    by_dataset: dict[str, list[dict[str, Any]]],
    name: str,
    names: Sequence[str],
    board: Path,
    split: str,
) -> dict[str, Any]:
    """The row of `source` on dataset `name`: a row id's own row, a model's latest."""
    if _ROW_ID.fullmatch(source):
        ((dataset, (row,)),) = by_dataset.items()
        if list(names) != [dataset]:
            raise WorkbenchError(
                f"leaderboard row #{row['id']} is of {dataset}/{split}; it cannot be compared on "
                f"{', '.join(names)}"
            )
        return row
    if name not in by_dataset:
        has = ", ".join(f"{d}/{split}" for d in by_dataset)
        raise WorkbenchError(f"model {source!r} has no evaluation of {name}/{split} in {board}; it has {has}")
    return by_dataset[name][-1]


def _common_datasets(found: dict[str, dict[str, list[dict[str, Any]]]], board: Path, split: str) -> list[str]:
    """The datasets every source has rows of, sorted; none is an error saying what each has."""
    common = set.intersection(*(set(by_dataset) for by_dataset in found.values()))
    if not common:
        has = "; ".join(f"{s}: {', '.join(by_dataset)}" for s, by_dataset in found.items())
        raise WorkbenchError(f"the sources have no dataset in common on split {split} in {board} ({has})")
    return sorted(common)


def _score_run_file(
    path: Path, spec: DatasetSpec, data: Dataset, split: str, metrics: Sequence[str]
) -> RunScores:
    """A run file re-scored against the qrels of `split` of `data` (`spec`'s), named by its tag."""
    if split not in data.qrels:
        raise WorkbenchError(f"{spec.name}: no split {split!r}; it has {', '.join(sorted(data.qrels))}")
    ranking = read_trec_run(path)
    if spec.remove_query_ids:  # as the runner scores its own runs
        ranking = ranking.without_query_ids()
    qrels = data.qrels[split]
    if not any(qid in ranking for qid in qrels):
        raise WorkbenchError(f"{path}: none of its queries is judged in {spec.name}/{split}")
    result = evaluate_run(qrels, ranking, metrics)
    return RunScores(
        name=ranking.name,
        dataset=spec.name,
        split=split,
        metrics=result.mean,
        per_query=result.per_query,
        source=f"run file {path}",
        dataset_checksum=data.checksum,
    )


def _distinct_names(group: Sequence[tuple[RunScores, str]], dataset: str, split: str) -> list[RunScores]:
    """The runs of one dataset split, a name given more than once qualified by its row id or file."""
    names = [run.name for run, _ in group]
    runs = [
        replace(run, name=f"{run.name} {tag}") if names.count(run.name) > 1 else run for run, tag in group
    ]
    final = [run.name for run in runs]
    for name in dict.fromkeys(n for n in final if final.count(n) > 1):
        sources = ", ".join(run.source for run in runs if run.name == name)
        raise WorkbenchError(
            f"{dataset}/{split}: {name!r} names more than one run ({sources}); give each run once, "
            "run files under distinct tags or file names"
        )
    return runs


def _p(value: float) -> str:
    return f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}"


def comparison_tables(comparisons: Sequence[Comparison], settings: CompareSettings) -> list[Table]:
    """One rich table per metric, a line per candidate and dataset split."""
    tables = []
    for metric in dict.fromkeys(c.metric for c in comparisons):
        lines = [c for c in comparisons if c.metric == metric]
        caption = (
            f"Δ = cand - base; CI: paired bootstrap interval of Δ; p Holm: p adjusted over the {metric} "
            f"family; ▲/▼: p Holm < {settings.max_p:g}; W/T/L: queries where the candidate wins, ties, loses"
        )
        table = Table(title=f"{escape(metric)}: each candidate against the baseline", caption=caption)
        header = ("dataset", "split", "baseline", "candidate", "base", "cand", "Δ", "CI", "p", "p Holm",
                  "sig", "W/T/L", "queries")  # fmt: skip
        for name in header:
            table.add_column(name, justify="left" if name in header[:4] else "right", no_wrap=name == "CI")
        for c in lines:
            mark = ("▲" if c.delta > 0 else "▼") if c.significant else ""
            table.add_row(
                *map(escape, (c.dataset, c.split, c.baseline, c.candidate)),
                f"{c.baseline_score:.4f}", f"{c.candidate_score:.4f}", f"{c.delta:+.4f}",
                escape(f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]"), _p(c.p_value), _p(c.p_holm), mark,
                f"{c.wins}/{c.ties}/{c.losses}", str(c.queries),
            )  # fmt: skip
        tables.append(table)
    return tables


def comparison_document(
    runs: Sequence[RunScores],
    metrics: Sequence[str],
    settings: CompareSettings,
    comparisons: Sequence[Comparison],
) -> dict[str, Any]:
    """What `evaluate.py compare --json` prints and `--output` writes."""
    return {
        "settings": asdict(settings),
        "metrics": list(metrics),
        "family_size": len(comparisons) // max(len(metrics), 1),  # comparisons per metric, Holm's m
        "runs": [
            {
                "name": r.name,
                "dataset": r.dataset,
                "split": r.split,
                "source": r.source,
                "dataset_checksum": r.dataset_checksum,
                "metrics": {m: r.metrics[m] for m in metrics},
            }
            for r in runs
        ],
        "comparisons": [c.to_json() for c in comparisons],
    }
