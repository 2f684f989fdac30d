"""Evaluate retrievers on datasets: index, search, score, test significance, keep run files."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.errors import WorkbenchError
from common.files import safe_file_name
from harness.console import console
from harness.datasets import DatasetSpec, load_dataset
from harness.evaluation import DEFAULT_METRICS, evaluate_run, paired_test, validate_metrics, write_trec_run
from harness.retrievers.base import RetrieverSpec

__all__ = ["EvalConfig", "Row", "check_expected", "covers", "evaluate_all"]

OK_TOLERANCE = 5e-5  # equal at four decimals
OKISH_TOLERANCE = 0.01


def check_expected(expected: dict[str, float], got: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Compare scores with expected ones (pyserini / Anserini style): OK, OKish or FAIL; a metric
    absent from `got` (the runner leaves out those deeper than its top-k) is not checked."""
    checks = {}
    for metric, value in expected.items():
        if metric not in got:
            continue
        delta = got[metric] - value
        verdict = "OK" if abs(delta) <= OK_TOLERANCE else "OKish" if abs(delta) <= OKISH_TOLERANCE else "FAIL"
        checks[metric] = {"expected": value, "delta": delta, "verdict": verdict}
    return checks


@dataclass(frozen=True)
class EvalConfig:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    top_k: int = 1000
    use_cache: bool = True
    strict: bool = False
    stat_test: str = "student"
    max_p: float = 0.05
    seed: int = 42


@dataclass
class Row:
    """One retriever on one split of one dataset."""

    dataset: str
    split: str
    dataset_checksum: str
    retriever: str
    spec: dict[str, Any]
    model_hash: str  # the retriever's parameters and model content (`Retriever.model_hash`)
    n_queries: int
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    timing: dict[str, float]
    stats: dict[str, float]
    run_file: str
    # metric -> {"baseline", "p_value", "significant", "delta"}; empty for the baseline itself
    significance: dict[str, dict[str, Any]] = field(default_factory=dict)
    # metric -> {"expected", "delta", "verdict"} for the scores the dataset's YAML expects
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def verdict(self) -> str | None:
        """The worst verdict over the checked metrics, or None when nothing was expected."""
        verdicts = [c["verdict"] for c in self.checks.values()]
        return next((v for v in ("FAIL", "OKish", "OK") if v in verdicts), None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"verdict": self.verdict}


def covers(retriever: RetrieverSpec, dataset: DatasetSpec) -> bool:
    """Whether the retriever declares every language of the dataset (undeclared: yes)."""
    return (
        not retriever.languages or not dataset.languages or set(dataset.languages) <= set(retriever.languages)
    )


def evaluate_all(
    datasets: list[DatasetSpec],
    retrievers: list[RetrieverSpec],
    config: EvalConfig,
    out_dir: Path,
    match_languages: bool = False,
) -> tuple[list[Row], list[str]]:
    """Every retriever on every dataset; run files go to `out_dir/runs`. Returns rows and warnings.

    With `match_languages`, a retriever skips the datasets whose languages it does not cover.
    The first retriever evaluated on a dataset is the baseline of its significance tests.
    """
    validate_metrics(config.metrics)
    for kind, names in (("dataset", [d.name for d in datasets]), ("retriever", [r.name for r in retrievers])):
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise WorkbenchError(f"{kind} named more than once: {', '.join(repeated)}")
    rows: list[Row] = []
    warnings: list[str] = []
    too_deep = [m for m in config.metrics if "@" in m and int(m.split("@")[1]) > config.top_k]
    if too_deep:
        warnings.append(
            f"top-k {config.top_k} is shallower than {', '.join(too_deep)}: "
            f"those metrics see only the top {config.top_k}"
        )
        console.log(f"[yellow]warning[/] {warnings[-1]}")
    built = {r.name: r.build() for r in retrievers}  # one instance re-indexes each dataset
    for dspec in datasets:
        console.log(f"[bold]{dspec.name}[/]: loading")
        data = load_dataset(dspec, strict=config.strict)
        for warning in data.warnings:
            console.log(f"[yellow]warning[/] {warning}")
        warnings.extend(data.warnings)
        for rspec in retrievers:
            if match_languages and not covers(rspec, dspec):
                console.log(f"{dspec.name}: {rspec.name} skipped (languages {','.join(rspec.languages)})")
                continue
            retriever = built[rspec.name]
            started = time.perf_counter()
            retriever.index(data, use_cache=config.use_cache)
            index_s = time.perf_counter() - started
            truncated = int(retriever.stats().get("truncated_documents", 0))
            if truncated:
                warnings.append(f"{dspec.name}: {rspec.name} truncated {truncated} documents")
                console.log(f"[yellow]warning[/] {warnings[-1]}")
            for split in dspec.splits:
                queries = data.split_queries(split)
                started = time.perf_counter()
                run = retriever.search(queries, config.top_k)
                search_s = time.perf_counter() - started
                if dspec.remove_query_ids:
                    run = run.without_query_ids()
                result = evaluate_run(data.qrels[split], run, config.metrics)
                run_file = f"runs/{safe_file_name(f'{dspec.name}.{split}.{rspec.name}')}.trec.gz"
                write_trec_run(run, out_dir / run_file, tag=rspec.name)
                rows.append(
                    Row(
                        dataset=dspec.name,
                        split=split,
                        dataset_checksum=data.checksum,
                        retriever=rspec.name,
                        spec=rspec.describe(),
                        model_hash=retriever.model_hash(),
                        n_queries=len(queries),
                        metrics=result.mean,
                        per_query=result.per_query,
                        timing={
                            "index_s": index_s,
                            "search_s": search_s,
                            "queries_per_s": len(queries) / search_s if search_s > 0 else float("inf"),
                        },
                        stats=retriever.stats(),
                        run_file=run_file,
                        checks=check_expected(
                            (dspec.expected or {}).get(rspec.name, {}),
                            {m: v for m, v in result.mean.items() if m not in too_deep},
                        ),
                    )
                )
                summary = ", ".join(f"{m} {v:.4f}" for m, v in result.mean.items())
                verdict = rows[-1].verdict
                console.log(
                    f"{dspec.name}/{split} {rspec.name}: {summary}" + (f" [{verdict}]" if verdict else "")
                )
    _add_significance(rows, config)
    return rows, warnings


def _add_significance(rows: list[Row], config: EvalConfig) -> None:
    """Compare each row with the first retriever's row on the same dataset split."""
    baselines: dict[tuple[str, str], Row] = {}
    for row in rows:
        base = baselines.setdefault((row.dataset, row.split), row)
        if base is row:
            continue
        for metric in config.metrics:
            p = paired_test(row.per_query[metric], base.per_query[metric], config.stat_test, config.seed)
            row.significance[metric] = {
                "baseline": base.retriever,
                "test": config.stat_test,
                "p_value": p,
                "significant": p < config.max_p,
                "delta": row.metrics[metric] - base.metrics[metric],
            }
