"""Report writers: the console table, report.md and results.json, all from the same rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from harness.io import atomic_write
from harness.provenance import git_revision, library_versions
from harness.runner import OK_TOLERANCE, OKISH_TOLERANCE, EvalConfig, Row

__all__ = [
    "console_table",
    "flat_results",
    "markdown_report",
    "results_document",
    "table_cells",
    "write_report",
]


def _cell(row: Row, metric: str, config: EvalConfig) -> str:
    value = f"{row.metrics[metric]:.4f}"
    sig = row.significance.get(metric)
    if sig and sig["significant"]:
        value += " ▲" if sig["delta"] > 0 else " ▼"
    return value


def table_cells(rows: Sequence[Row], config: EvalConfig) -> tuple[list[str], list[list[str]]]:
    """Header and cells: one line per dataset split x retriever, one column per metric."""
    header = [
        "dataset",
        "split",
        "retriever",
        "queries",
        *config.metrics,
        "index s",
        "search q/s",
        "expected",
    ]
    cells = [
        [
            row.dataset,
            row.split,
            row.retriever,
            str(row.n_queries),
            *(_cell(row, m, config) for m in config.metrics),
            f"{row.timing['index_s']:.1f}",
            f"{row.timing['queries_per_s']:.0f}",
            row.verdict or "-",
        ]
        for row in rows
    ]
    return header, cells


def _legend(config: EvalConfig) -> str:
    return (
        f"▲/▼: significantly better/worse than the first retriever of the dataset "
        f"({config.stat_test} paired test, p < {config.max_p}, seed {config.seed}). "
        f"expected: scores the dataset's YAML expects, OK within {OK_TOLERANCE:g}, "
        f"OKish within {OKISH_TOLERANCE:g}, else FAIL"
    )


def console_table(rows: Sequence[Row], config: EvalConfig) -> Table:
    header, cells = table_cells(rows, config)
    table = Table(title="Retrieval effectiveness", caption=_legend(config))
    for name in header:
        table.add_column(name, justify="left" if name in {"dataset", "split", "retriever"} else "right")
    previous = None
    for row, line in zip(rows, cells, strict=True):
        if previous is not None and (row.dataset, row.split) != previous:
            table.add_section()
        previous = (row.dataset, row.split)
        table.add_row(*line)
    return table


def results_document(
    rows: Sequence[Row], config: EvalConfig, warnings: Sequence[str], elapsed_s: float
) -> dict[str, Any]:
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "versions": library_versions(),
        "config": {
            "metrics": list(config.metrics),
            "top_k": config.top_k,
            "significance": {"test": config.stat_test, "max_p": config.max_p, "seed": config.seed},
            "strict": config.strict,
            "use_cache": config.use_cache,
        },
        "elapsed_s": elapsed_s,
        "warnings": list(warnings),
        "results": [row.to_json() for row in rows],
    }


def flat_results(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Every dataset x retriever x metric as one record (what `--json` prints)."""
    return [
        {"dataset": r.dataset, "split": r.split, "retriever": r.retriever, "metric": m, "value": v}
        for r in rows
        for m, v in r.metrics.items()
    ]


def markdown_report(doc: dict[str, Any], rows: Sequence[Row], config: EvalConfig) -> str:
    header, cells = table_cells(rows, config)
    lines = [
        "# Retrieval evaluation",
        "",
        f"Created {doc['created']} at git revision `{doc['git_revision']}` in {doc['elapsed_s']:.1f} s; "
        f"top {config.top_k} per query.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|",
        *("| " + " | ".join(line) + " |" for line in cells),
        "",
        _legend(config) + ".",
        "",
        "## Datasets",
        "",
        *sorted({f"- `{r.dataset}` checksum `{r.dataset_checksum[:16]}`" for r in rows}),
        "",
        "## Retrievers",
        "",
        *dict.fromkeys(f"- `{r.retriever}`: {r.spec['description']}" for r in rows),
        "",
        "## Versions",
        "",
        *(f"- {name} {version}" for name, version in doc["versions"].items()),
    ]
    if doc["warnings"]:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in doc["warnings"])]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, doc: dict[str, Any], rows: Sequence[Row], config: EvalConfig) -> None:
    """results.json and report.md into `out_dir` (the run files are already there)."""
    with atomic_write(out_dir / "results.json") as handle:
        json.dump(doc, handle, ensure_ascii=False, indent=1)
    with atomic_write(out_dir / "report.md") as handle:
        handle.write(markdown_report(doc, rows, config))
