"""The release report: `python evaluate.py report --release NAME`.

From the leaderboard, without re-running retrieval: the latest row of each selected model on each
selected dataset split (the test splits by default). The baseline of the significance tests is the
first `--model` named, else the first BM25 model, else the first model; every other model is
compared with it per dataset (`harness.compare`: paired test, bootstrap interval, Holm over the
family). The best model is, among those evaluated on the most datasets, the one with the highest
mean of the metric.

The folder holds `report.html` (self-contained: inline styles, plots as data: URIs, no link out),
`report.md` with the plots as PNG files beside it, `results.json` (every figure shown, the
statistics' settings, git revision and versions) and `MODEL_CARD.md` of the best model. It is
built under a temporary name and appears complete or not at all.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.errors import WorkbenchError
from common.files import atomic_dir
from common.provenance import provenance
from harness.compare import CompareSettings, Comparison, compare, runs_from_rows
from harness.console import console
from harness.leaderboard import Leaderboard
from harness.opensearch.export import card_evaluation_section, card_training_sections
from harness.plots import metric_bars, tradeoff_plot, training_curves
from harness.reports import efficiency_columns, efficiency_value, markdown_table

__all__ = ["ReleaseResult", "build_release"]

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #bbb; padding: 4px 8px; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.caption { color: #555; font-size: 13px; }
"""


@dataclass(frozen=True)
class ReleaseResult:
    out: Path
    models: list[str]
    datasets: list[str]  # dataset/split
    best: str
    seconds: float
    plot_seconds: float
    stats_seconds: float


def _select(board: Path, models: Sequence[str], datasets: Sequence[str], split: str) -> list[dict[str, Any]]:
    """The latest row of each (model, dataset) of `split`, models in the order given (else first seen)."""
    if not board.is_file():
        raise WorkbenchError(f"no leaderboard at {board}: evaluate models first (python evaluate.py)")
    with Leaderboard(board, readonly=True) as lb:
        rows = [r for r in lb.rows(split=split) if not datasets or r["dataset"] in datasets]
    if not rows:
        raise WorkbenchError(
            f"{board} holds no evaluation of split {split}"
            + (f" on {', '.join(datasets)}" if datasets else "")
        )
    present = list(dict.fromkeys(r["model"] for r in rows))
    missing = [m for m in models if m not in present]
    if missing:
        raise WorkbenchError(
            f"no evaluation of {', '.join(missing)} in {board}; models there: {', '.join(present)}"
        )
    missing = [d for d in datasets if not any(r["dataset"] == d for r in rows)]
    if missing:
        raise WorkbenchError(f"no evaluation of dataset {', '.join(missing)}/{split} in {board}")
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:  # id order: the last one wins
        latest[row["model"], row["dataset"]] = row
    order = list(models) or present
    return [latest[m, d] for m in order for d in sorted({r["dataset"] for r in rows}) if (m, d) in latest]


def _baseline(rows: Sequence[dict[str, Any]], models: Sequence[str]) -> str:
    if models:
        return models[0]
    bm25 = [r["model"] for r in rows if r["family"] == "bm25"]
    return bm25[0] if bm25 else rows[0]["model"]


def _training_run(row: dict[str, Any]) -> tuple[Path, list[dict[str, Any]], list[dict[str, Any]]] | None:
    """(output_dir, logged steps, checkpoint evaluations) of the training run a row comes from."""
    if row["run_id"] is None:
        return None
    output = Path(row["per_query_path"]).parent.parent  # <output_dir>/evaluations/<checkpoint>
    files = [output / "metrics.jsonl", output / "evaluations.jsonl"]
    if not all(f.is_file() for f in files):
        return None
    logged, evaluated = (
        [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        for f in files
    )
    return output, logged, evaluated


def _model_card(name: str, best: str, metric: str, rows: list[dict[str, Any]], run: Any) -> str:
    first = rows[0]
    lines = [
        f"# {best}",
        "",
        f"The best model of release {name}: the highest mean {metric} over its datasets.",
        "",
        "| | |",
        "|---|---|",
        f"| family | {first['family']} |",
        f"| model hash | {first['model_hash']} |",
        f"| training run | {first['run_id'] or '-'} step {'-' if first['step'] is None else first['step']} |",
        f"| config hash | {first['config_hash'] or '-'} |",
        f"| git revision | {first['git_revision']} |",
        "",
    ]
    if run is not None:
        from models.checkpoint import read_manifest

        checkpoint = run[0] / "checkpoints" / Path(first["per_query_path"]).name
        lines += card_training_sections(read_manifest(checkpoint) if checkpoint.is_dir() else {})
    lines += card_evaluation_section(rows, best)
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def build_release(
    name: str,
    board: Path,
    out: Path,
    models: Sequence[str] = (),
    datasets: Sequence[str] = (),
    metric: str = "ndcg@10",
    split: str = "test",
    settings: CompareSettings | None = None,
    replace: bool = False,
) -> ReleaseResult:
    """Write the release report of `name` into `out` (see the module docstring)."""
    started = time.perf_counter()
    settings = settings or CompareSettings()
    rows = _select(board, models, datasets, split)
    lacking = sorted({r["model"] for r in rows if metric not in r["metrics"]})
    if lacking:
        raise WorkbenchError(f"metric {metric!r} is not recorded for {', '.join(lacking)}")
    names = list(dict.fromkeys(r["model"] for r in rows))
    sets = sorted({r["dataset"] for r in rows})
    base = _baseline(rows, models)
    console.log(f"release {name}: {len(names)} models x {len(sets)} datasets, baseline {base}")
    stats_started = time.perf_counter()
    runs = runs_from_rows(rows)
    ordered = [
        r for d in sets for r in sorted((r for r in runs if r.dataset == d), key=lambda r: r.name != base)
    ]
    comparisons = compare(
        [r for r in ordered if any(x.dataset == r.dataset and x.name == base for x in ordered)],
        [metric],
        settings,
    )
    stats_seconds = time.perf_counter() - stats_started
    by = {(c.candidate, c.dataset): c for c in comparisons}
    score = {(r["model"], r["dataset"]): r["metrics"][metric] for r in rows}
    means = {
        m: sum(v for (n, _), v in score.items() if n == m) / sum(n == m for n, _ in score) for m in names
    }
    covered = {m: sum(n == m for n, _ in score) for m in names}

    def rows_of(model: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["model"] == model]

    best = max(names, key=lambda m: (covered[m], means[m], -names.index(m)))  # the widest, then the best
    best_rows = rows_of(best)
    # the training curves: of the best checkpoint's run among the models trained here
    trained = [m for m in sorted(names, key=lambda m: (-covered[m], -means[m])) if rows_of(m)[0]["run_id"]]
    found = ((m, r) for m in trained if (r := _training_run(rows_of(m)[0])) is not None)
    run_model, run = next(found, (None, None))

    plot_started = time.perf_counter()
    plots = {
        "scores.png": metric_bars(
            {m: {d: score[m, d] for d in sets if (m, d) in score} for m in names}, metric
        )
    }
    # effectiveness against efficiency on one dataset: the one with the most models
    widest = max(sets, key=lambda d: (sum((m, d) in score for m in names), -sets.index(d)))
    panels = []
    for key, label in (("flops", "FLOPS"), ("latency_p50_ms", "p50 latency (ms)")):
        costs = {r["model"]: r["stats"].get(key) for r in rows if r["dataset"] == widest}
        points = {m: (c, score[m, widest]) for m, c in costs.items() if isinstance(c, int | float)}
        panels.append((label, points))
    plots["tradeoff.png"] = tradeoff_plot(panels, f"{metric} on {widest}")
    if run is not None:
        plots["training.png"] = training_curves(run[1], run[2], metric)
    plot_seconds = time.perf_counter() - plot_started

    # tables: leaderboard (means), per dataset (scores with marks and intervals), efficiency
    board_head = ["rank", "model", f"mean {metric}", "datasets", *sets]
    board_cells = [
        [
            str(i),
            m,
            _fmt(means[m]),
            str(covered[m]),
            *(_fmt(score.get((m, d))) for d in sets),
        ]
        for i, m in enumerate(sorted(names, key=lambda m: -means[m]), start=1)
    ]
    per_dataset: dict[str, tuple[list[str], list[list[str]]]] = {}
    for d in sets:
        head = ["model", metric, "delta", "95% CI", "p", "p Holm", "W/T/L"]
        cells = []
        for m in names:
            if (m, d) not in score:
                continue
            c: Comparison | None = by.get((m, d))
            if c is None:
                cells.append(
                    [m + (" (baseline)" if m == base else ""), _fmt(score[m, d]), "", "", "", "", ""]
                )
                continue
            mark = (" ▲" if c.delta > 0 else " ▼") if c.significant else ""
            cells.append(
                [
                    m,
                    _fmt(c.candidate_score) + mark,
                    f"{c.delta:+.4f}",
                    f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]",
                    f"{c.p_value:.2g}",
                    f"{c.p_holm:.2g}",
                    f"{c.wins}/{c.ties}/{c.losses}",
                ]
            )
        per_dataset[d] = (head, cells)
    columns = efficiency_columns([r["stats"] for r in rows])
    eff_head = ["dataset", "model", *(h for _, h, _ in columns)]
    eff_cells = [
        [r["dataset"], r["model"], *(efficiency_value(r["stats"], k, f) for k, _, f in columns)] for r in rows
    ]
    origin = provenance()
    legend = (
        f"▲/▼: significantly better/worse than {base} ({settings.test} paired test, Holm-adjusted p < "
        f"{settings.max_p:g} over the {len(comparisons)} comparisons; seed {settings.seed}); 95% CI: paired "
        f"bootstrap of the delta ({settings.n_resamples:,} resamples); W/T/L: queries won, tied, lost."
    )
    document = {
        "release": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "metric": metric,
        "split": split,
        "baseline": base,
        "best": best,
        "means": means,
        "git_revision": origin["git_revision"],
        "versions": origin["versions"],
        "settings": asdict(settings),
        "rows": [
            {
                k: r[k]
                for k in (
                    "id",
                    "model",
                    "family",
                    "dataset",
                    "split",
                    "n_queries",
                    "metrics",
                    "stats",
                    "run_id",
                    "step",
                    "git_revision",
                )
            }
            for r in rows
        ],
        "comparisons": [c.to_json() for c in comparisons],
    }
    tables = [
        ("Leaderboard", board_head, board_cells),
        *((f"{d} ({split})", h, c) for d, (h, c) in per_dataset.items()),
        ("Efficiency", eff_head, eff_cells),
    ]
    titles = {
        "scores.png": f"{metric} per dataset",
        "tradeoff.png": f"Effectiveness against efficiency on {widest} (Pareto front in red)",
        "training.png": f"Training run of {run_model}",
    }
    with atomic_dir(out, replace=replace) as tmp:
        (tmp / "results.json").write_text(
            json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8"
        )
        for file, data in plots.items():
            (tmp / file).write_bytes(data)
        md = [
            f"# Release {name}",
            "",
            f"Created {document['created']} at git revision `{origin['git_revision']}`; "
            f"baseline {base}; best model **{best}**.",
            "",
        ]
        for title, head, cells in tables:
            md += [f"## {title}", "", *markdown_table(head, cells), ""]
        md += [legend, ""]
        md += [f"![{titles[f]}]({f})\n" for f in plots]
        md += ["## Versions", "", *(f"- {k} {v}" for k, v in origin["versions"].items()), ""]
        (tmp / "report.md").write_text("\n".join(md), encoding="utf-8")
        (tmp / "MODEL_CARD.md").write_text(
            _model_card(name, best, metric, best_rows, _training_run(best_rows[0])), encoding="utf-8"
        )
        (tmp / "report.html").write_text(
            _html(name, document, tables, legend, plots, titles), encoding="utf-8"
        )
    return ReleaseResult(
        out,
        names,
        [f"{d}/{split}" for d in sets],
        best,
        time.perf_counter() - started,
        plot_seconds,
        stats_seconds,
    )


def _html_table(title: str, head: list[str], cells: list[list[str]]) -> str:
    numeric = {i for i, h in enumerate(head) if h not in ("model", "dataset")}
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if i in numeric else ''}>{html.escape(v)}</td>" for i, v in enumerate(line)
        )
        + "</tr>"
        for line in cells
    )
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    table = f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
    return f"<h2>{html.escape(title)}</h2>\n{table}\n"


def _html(
    name: str,
    document: dict[str, Any],
    tables: list[tuple[str, list[str], list[list[str]]]],
    legend: str,
    plots: dict[str, bytes],
    titles: dict[str, str],
) -> str:
    parts = [
        f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>Release {html.escape(name)}</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Release {html.escape(name)}</h1>",
        f"<p>Created {html.escape(document['created'])} at git revision <code>"
        f"{html.escape(str(document['git_revision']))}</code>; baseline {html.escape(document['baseline'])}; "
        f"best model <b>{html.escape(document['best'])}</b>.</p>",
    ]
    parts += [_html_table(*t) for t in tables]
    parts.append(f'<p class="caption">{html.escape(legend)}</p>')
    for file, data in plots.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        parts.append(
            f'<h2>{html.escape(titles[file])}</h2>\n<img alt="{html.escape(titles[file])}" src="{uri}">'
        )
    versions = "".join(
        f"<li>{html.escape(k)} {html.escape(str(v))}</li>" for k, v in document["versions"].items()
    )
    parts.append(f"<h2>Versions</h2><ul>{versions}</ul></body></html>\n")
    return "\n".join(parts)
