"""Compare stored evaluations without re-running retrieval: deltas, paired tests, bootstrap
confidence intervals, Holm correction across the family, per-query wins, ties and losses.

Each `RunScores` is one retriever on one dataset split, with per-query metric values (what
results.json keeps for every leaderboard row). Within each dataset split the first run is the
baseline; every other run is compared with it on every metric. The family of a metric is every
(candidate, dataset split) comparison made: Holm's adjustment runs over it, so that naming more
models or datasets does not make chance differences look real.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.errors import WorkbenchError
from harness.evaluation import STAT_TESTS, bootstrap_ci, holm, paired_test, win_tie_loss

__all__ = ["CompareSettings", "Comparison", "RunScores", "compare", "runs_from_rows"]


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
