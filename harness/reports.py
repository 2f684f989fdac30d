"""Report writers: the console table, report.md and results.json, all from the same rows."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from common.files import atomic_write
from harness.runner import OK_TOLERANCE, OKISH_TOLERANCE, EvalConfig, Row

__all__ = [
    "EFFICIENCY",
    "TEXT_COLUMNS",
    "console_table",
    "efficiency_cells",
    "efficiency_columns",
    "efficiency_table",
    "efficiency_value",
    "flat_results",
    "markdown_report",
    "markdown_table",
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


TEXT_COLUMNS = frozenset({"dataset", "split", "retriever", "model", "family"})  # left-aligned in tables

# efficiency figures a retriever's stats() may give: (key, column header, format)
EFFICIENCY = (
    ("doc_active_mean", "doc dims mean", "{:.1f}"),
    ("doc_active_p99", "doc dims p99", "{:.0f}"),
    ("query_active_mean", "query dims mean", "{:.1f}"),
    ("flops", "FLOPS", "{:.3f}"),
    ("index_bytes", "index MB", "{:.2f}"),
    ("encode_docs_per_s", "encode docs/s", "{:.1f}"),
    ("latency_p50_ms", "p50 ms", "{:.2f}"),
    ("latency_p99_ms", "p99 ms", "{:.2f}"),
    ("truncated_documents", "truncated docs", "{:.0f}"),
)


def efficiency_columns(stats: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """The EFFICIENCY entries (key, header, format) that some of `stats` report, in that order."""
    return [(key, head, fmt) for key, head, fmt in EFFICIENCY if any(key in s for s in stats)]


def efficiency_value(stats: Mapping[str, Any], key: str, fmt: str) -> str:
    """One efficiency cell: `-` where not reported; index bytes shown in MB."""
    value = stats.get(key)
    if value is None:
        return "-"
    return fmt.format(value / 1e6 if key == "index_bytes" else value)


def efficiency_cells(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the efficiency table: only the figures some retriever reported."""
    present = efficiency_columns([r.stats for r in rows])
    header = ["dataset", "retriever", *(head for _, head, _ in present)]
    cells = [
        [row.dataset, row.retriever, *(efficiency_value(row.stats, key, fmt) for key, _, fmt in present)]
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


def efficiency_table(rows: Sequence[Row]) -> Table:
    header, cells = efficiency_cells(rows)
    table = Table(title="Efficiency (FLOPS = sum over tokens of p_query(t) x p_document(t))")
    for name in header:
        table.add_column(name, justify="left" if name in {"dataset", "retriever"} else "right")
    for line in cells:
        table.add_row(*line)
    return table


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
    rows: Sequence[Row],
    config: EvalConfig,
    warnings: Sequence[str],
    elapsed_s: float,
    provenance: dict[str, Any],
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What results.json holds; `provenance` is `common.provenance.provenance()`, `run` the
    training checkpoint the rows are recorded under on the leaderboard (None: an evaluate.py run)."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_revision": provenance["git_revision"],
        "versions": provenance["versions"],
        "config": {
            "metrics": list(config.metrics),
            "top_k": config.top_k,
            "significance": {"test": config.stat_test, "max_p": config.max_p, "seed": config.seed},
            "strict": config.strict,
            "use_cache": config.use_cache,
        },
        "elapsed_s": elapsed_s,
        "warnings": list(warnings),
        "run": run,
        "results": [row.to_json() for row in rows],
    }


def flat_results(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Every dataset x retriever x metric as one record (what `--json` prints)."""
    return [
        {"dataset": r.dataset, "split": r.split, "retriever": r.retriever, "metric": m, "value": v}
        for r in rows
        for m, v in r.metrics.items()
    ]


def markdown_table(header: list[str], cells: list[list[str]]) -> list[str]:
    """A Markdown table's lines: the TEXT_COLUMNS left-aligned, the others (figures) right."""
    aligns = ["---" if name in TEXT_COLUMNS else "---:" for name in header]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(aligns) + "|",
        *("| " + " | ".join(line) + " |" for line in cells),
    ]


def markdown_report(doc: dict[str, Any], rows: Sequence[Row], config: EvalConfig) -> str:
    header, cells = table_cells(rows, config)
    lines = [
        "# Retrieval evaluation",
        "",
        f"Created {doc['created']} at git revision `{doc['git_revision']}` in {doc['elapsed_s']:.1f} s; "
        f"top {config.top_k} per query.",
        "",
        *markdown_table(header, cells),
        "",
        _legend(config) + ".",
        "",
        "## Efficiency",
        "",
        *markdown_table(*efficiency_cells(rows)),
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
