"""Regression checks: every (dataset, retriever) pair whose scores a dataset's YAML expects.

Each dataset lists `expected:` scores by registered retriever (published numbers, or the anchors
this harness measured on the embedded tasks). `run_regressions` evaluates those pairs with the
same code as `evaluate.py` and checks each expected metric: OK within `OK_TOLERANCE`, OKish within
`OKISH_TOLERANCE`, else FAIL (`harness.runner.check_expected`, as pyserini's two-click runs do).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common.errors import WorkbenchError
from harness.datasets import DatasetSpec
from harness.retrievers import get_retriever
from harness.runner import EvalConfig, evaluate_all

__all__ = ["RegressionCheck", "plan_regressions", "run_regressions"]


@dataclass(frozen=True)
class RegressionCheck:
    dataset: str
    split: str
    retriever: str
    metric: str
    expected: float
    got: float
    delta: float
    verdict: str  # OK, OKish or FAIL


def plan_regressions(
    registry: dict[str, DatasetSpec],
    datasets: Sequence[str] = (),
    models: Sequence[str] = (),
    embedded_only: bool = False,
) -> list[tuple[DatasetSpec, list[str]]]:
    """The datasets with expected scores and, for each, the retrievers expected (registry order),
    narrowed to `datasets` / `models` where given and to the embedded datasets with `embedded_only`."""
    unknown = [d for d in datasets if d not in registry]
    if unknown:
        raise WorkbenchError(
            f"unknown dataset {', '.join(unknown)}; registered: {', '.join(sorted(registry))}"
        )
    plan = []
    for spec in registry.values():
        if (datasets and spec.name not in datasets) or (embedded_only and spec.source.type != "embedded"):
            continue
        names = [name for name in spec.expected or {} if not models or name in models]
        if names:
            plan.append((spec, names))
    expected = {name for _, names in plan for name in names}
    missing = [m for m in models if m not in expected]
    if missing:
        raise WorkbenchError(f"no expected scores for {', '.join(missing)} on the datasets selected")
    if not plan:
        raise WorkbenchError("no dataset selected has expected scores")
    return plan


def _depth(metrics: Sequence[str]) -> int:
    """The ranking depth the metrics need: their largest cutoff, at least 100."""
    cutoffs = [int(m.group(1)) for name in metrics if (m := re.search(r"@(\d+)$", name))]
    return max([100, *cutoffs])


def run_regressions(
    plan: list[tuple[DatasetSpec, list[str]]], use_cache: bool = True
) -> list[RegressionCheck]:
    """Evaluate each planned pair on the dataset's evaluation splits and check every expected metric."""
    checks = []
    with tempfile.TemporaryDirectory(prefix="regress-") as out:
        for spec, names in plan:
            metrics = tuple(dict.fromkeys(m for name in names for m in (spec.expected or {})[name]))
            config = EvalConfig(metrics=metrics, top_k=_depth(metrics), use_cache=use_cache)
            rows, _ = evaluate_all([spec], [get_retriever(name) for name in names], config, Path(out))
            checks += [
                RegressionCheck(
                    row.dataset,
                    row.split,
                    row.retriever,
                    metric,
                    check["expected"],
                    row.metrics[metric],
                    check["delta"],
                    check["verdict"],
                )
                for row in rows
                for metric, check in row.checks.items()
            ]
    return checks
