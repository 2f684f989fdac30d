"""Evaluate retrievers on retrieval datasets: `python evaluate.py --help`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, help="Score retrievers on BEIR and Korean retrieval sets.")
BoardOption = Annotated[
    Path | None,
    typer.Option(help="Leaderboard database (default $WORKBENCH_LEADERBOARD or reports/leaderboard.sqlite)."),
]
HostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--os-host",
        help="OpenSearch URL for opensearch-* retrievers (repeatable; default $OPENSEARCH_HOSTS).",
    ),
]
NoVerifyOption = Annotated[
    bool, typer.Option("--os-no-verify", help="Do not verify the cluster's TLS certificate.")
]
CaOption = Annotated[
    Path | None, typer.Option("--os-ca-certs", help="CA bundle for the cluster's TLS certificate.")
]


def _use_cluster(hosts: list[str] | None, no_verify: bool, ca_certs: Path | None) -> None:
    """The cluster of the opensearch-* retrievers: flags over OPENSEARCH_* (user and password: env only)."""
    from harness.opensearch.client import ClusterSettings
    from harness.retrievers.opensearch import use_cluster

    flags = {"hosts": hosts or None, "verify_certs": False if no_verify else None,
             "ca_certs": str(ca_certs) if ca_certs else None}  # fmt: skip
    use_cluster(ClusterSettings.from_env(**flags))


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Registered retriever, model directory, splade-doc:ID or dense:ID (repeatable).",
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", "-d", help="Registered dataset or BEIR directory (repeatable)."),
    ] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="ranx metric (repeatable).")] = None,
    top_k: Annotated[int, typer.Option(min=1, help="Documents retrieved per query.")] = 1000,
    output: Annotated[
        Path | None, typer.Option(help="Report directory (default reports/eval-<time>).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print results as JSON on stdout.")] = False,
    strict: Annotated[bool, typer.Option(help="Unknown ids in qrels are errors.")] = False,
    cache: Annotated[bool, typer.Option(help="Reuse analyzed corpora and indexes.")] = True,
    stat_test: Annotated[str, typer.Option(help="Significance test: student or fisher.")] = "student",
    max_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="p-value threshold.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the randomisation test.")] = 42,
    leaderboard: BoardOption = None,
    os_host: HostOption = None,
    os_no_verify: NoVerifyOption = False,
    os_ca_certs: CaOption = None,
) -> None:
    """Without a sub-command: evaluate (default: the default retrievers on the embedded tasks)."""
    if ctx.invoked_subcommand is not None:
        return
    import json
    from datetime import datetime

    from rich.markup import escape

    from common.errors import WorkbenchError
    from harness.console import console, user_errors
    from harness.datasets import resolve_dataset
    from harness.evaluation import DEFAULT_METRICS, STAT_TESTS, validate_metrics
    from harness.leaderboard import default_path
    from harness.registry import dataset_registry
    from harness.reports import console_table, efficiency_table, flat_results
    from harness.retrievers import resolve_retriever, retriever_registry
    from harness.runner import EvalConfig
    from harness.session import NotRecorded, evaluate_report_record

    with user_errors():
        _use_cluster(os_host, os_no_verify, os_ca_certs)
        if stat_test not in STAT_TESTS:
            raise WorkbenchError(f"unknown significance test {stat_test!r}; valid: {', '.join(STAT_TESTS)}")
        config = EvalConfig(
            metrics=tuple(validate_metrics(metric or DEFAULT_METRICS)),
            top_k=top_k,
            use_cache=cache,
            strict=strict,
            stat_test=stat_test,
            max_p=max_p,
            seed=seed,
        )
        registry = dataset_registry()
        datasets = (
            [resolve_dataset(d, registry) for d in dataset]
            if dataset
            else [s for s in registry.values() if s.default]
        )
        retrievers = (
            [resolve_retriever(m) for m in model]
            if model
            else [s for s in retriever_registry().values() if s.default]
        )
        out = output or Path("reports") / f"eval-{datetime.now():%Y%m%d-%H%M%S}"
        board = leaderboard or default_path()
        # defaults run only where a retriever's languages cover the dataset's; named ones everywhere
        try:
            result = evaluate_report_record(
                datasets, retrievers, config, out, board, match_languages=not model
            )
        except NotRecorded as exc:  # the results exist: show them before the error
            console.print(console_table(exc.rows, config))
            raise
    console.print(console_table(result.rows, config))
    console.print(efficiency_table(result.rows))
    console.print(f"report: {escape(str(out))}")
    plural = "" if result.recorded == 1 else "s"
    console.print(f"leaderboard: {result.recorded} row{plural} recorded in {escape(str(board))}")
    if json_out:
        print(json.dumps(flat_results(result.rows), ensure_ascii=False, indent=1))


@app.command("list")
def list_all() -> None:
    """List the registered retrievers and datasets."""
    from rich.console import Console
    from rich.table import Table

    from harness.console import user_errors
    from harness.registry import dataset_registry
    from harness.retrievers import retriever_registry

    with user_errors():
        datasets = dataset_registry()
    out = Console()
    table = Table(title="Retrievers")
    for col in ("name", "family", "languages", "default", "description"):
        table.add_column(col)
    for spec in retriever_registry().values():
        table.add_row(
            spec.name, spec.family, ",".join(spec.languages), "yes" if spec.default else "", spec.description
        )
    out.print(table)
    table = Table(title="Datasets")
    for col in ("name", "source", "languages", "splits", "documents", "queries", "default"):
        table.add_column(col)
    for spec in datasets.values():
        counts = spec.counts
        table.add_row(
            spec.name,
            spec.source.type,
            ",".join(spec.languages),
            ",".join(spec.splits),
            f"{counts.corpus:,}" if counts else "?",
            ", ".join(f"{k} {v:,}" for k, v in counts.queries.items()) if counts else "?",
            "yes" if spec.default else "",
        )
    out.print(table)


@app.command("idf")
def idf_command(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model directory or Hugging Face id (tokenizer).")
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Registered dataset or BEIR directory.")],
    output: Annotated[Path | None, typer.Option(help="Where to write (default MODEL/idf.json).")] = None,
    key_format: Annotated[
        str, typer.Option(help="string (decode([id]), OpenSearch) or token_id.")
    ] = "string",
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Compute idf.json on a dataset's corpus with a model's tokenizer; report its OpenSearch fidelity."""
    import json

    from rich.markup import escape
    from rich.table import Table

    from common.errors import WorkbenchError
    from harness.console import console, user_errors
    from harness.datasets import load_dataset, resolve_dataset
    from harness.registry import dataset_registry

    with user_errors():
        if key_format not in ("string", "token_id"):
            raise WorkbenchError(f"--key-format must be string or token_id, not {key_format!r}")
        from models.checkpoint import idf_path, load_tokenizer, write_idf
        from models.idf import IdfWeights, check_fidelity

        tokenizer = load_tokenizer(model)
        out = output or idf_path(Path(model))
        if out.exists() and not force:
            raise WorkbenchError(f"{out} exists; pass --force to overwrite or --output elsewhere")
        spec = resolve_dataset(dataset, dataset_registry())
        data = load_dataset(spec)
        texts = [doc.full_text for doc in data.corpus.values()]
        write_idf(out, IdfWeights.from_corpus(texts, tokenizer), key_format=key_format)
    console.print(f"wrote {out} ({len(texts):,} documents of {spec.name})")
    if key_format == "string":
        queries = [q for split in spec.splits for q in data.split_queries(split).values()]
        report = check_fidelity(tokenizer, json.loads(out.read_text(encoding="utf-8")), queries)
        table = Table(title=f"OpenSearch fidelity of {out} on {spec.name} queries")
        table.add_column("check")
        table.add_column("count", justify="right")
        table.add_column("examples")
        table.add_row("keys", f"{report.keys:,}", "")
        rows = [
            ("keys not round-tripping to an id", len(report.not_round_trip), report.not_round_trip[:5]),
            (
                "decoded strings shared by several ids",
                len(report.collisions),
                list(report.collisions.items())[:3],
            ),
        ]
        for check, count, examples in rows:
            table.add_row(check, f"{count:,}", escape(", ".join(map(repr, examples))))
        missing = f"{report.missing_query_tokens:,} / {report.query_tokens:,} ({report.missing_share:.1%})"
        table.add_row("query tokens missing from idf.json (weight 1.0)", missing, "")
        console.print(table)


@app.command("leaderboard")
def leaderboard_command(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only this dataset.")] = None,
    split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
    metric: Annotated[str, typer.Option(help="Rank by this metric.")] = "ndcg@10",
    limit: Annotated[int | None, typer.Option(min=1, help="Show the top N rows.")] = None,
    repeats: Annotated[
        bool, typer.Option("--repeats", help="Also show repeats (same model, data and code again).")
    ] = False,
    db: BoardOption = None,
) -> None:
    """Rank every recorded evaluation (evaluate.py runs and training checkpoints) by a metric."""
    import os

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from harness.console import console, user_errors
    from harness.leaderboard import Leaderboard, default_path, metric_names

    path = db or default_path()
    if not path.exists():
        console.print(f"no leaderboard at {escape(str(path))} yet: `python evaluate.py` records one")
        return
    with user_errors(), Leaderboard(path, readonly=True) as board:
        ranked = board.ranking(dataset=dataset, split=split, metric=metric, limit=limit, repeats=repeats)
    if not ranked:
        where = " and ".join(f"{k} {v}" for k, v in (("dataset", dataset), ("split", split)) if v)
        console.print(
            f"the leaderboard {escape(str(path))} holds no evaluations"
            + (f" of {escape(where)}" if where else "")
        )
        return
    others = [m for m in metric_names(ranked) if m != metric][:3]
    table = Table(
        title=f"Leaderboard by {escape(metric)} ({escape(str(path))})",
        caption="★: the best checkpoint of its training run on that dataset split; "
        "×N: evaluated N more times with the same model, data and code (--repeats lists them)",
    )
    columns = ("rank", "★", "model", "run/step", "dataset", "split", metric, *others, "×", "created (UTC)")
    for name in columns:
        justify = "right" if name in {"rank", metric, *others, "×"} else "left"
        style = "bold" if name == metric else None
        wrap = name in {"model", "run/step"}  # long checkpoint paths fold; figures never do
        table.add_column(escape(name), justify=justify, style=style, overflow="fold", no_wrap=not wrap)
    for rank, row in enumerate(ranked, start=1):
        run = "-"
        if row["run_id"] is not None:
            run = row["run_id"] + (f"/{row['step']}" if row["step"] is not None else "")
            if row["checkpoint_kind"] not in (None, "step"):
                run += f" ({row['checkpoint_kind']})"
        values = [row["metrics"].get(m) for m in (metric, *others)]
        times = (
            f"repeat of #{row['repeat_of']}"
            if row["repeat_of"]
            else (f"×{row['repeats']}" if row["repeats"] else "")
        )
        table.add_row(
            str(rank),
            "★" if row["is_best_of_run"] else "",
            escape(row["model"]),
            escape(run),
            escape(row["dataset"]),
            escape(row["split"]),
            *("-" if v is None else f"{v:.4f}" for v in values),
            times,
            row["created"][:19].replace("T", " "),
        )
    out = Console()
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 160  # piped: wide enough for checkpoint paths, as the logs are
    out.print(table)


@app.command("export")
def export_command(
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="Checkpoint directory or named offline model (splade-en-tiny, ...)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Release directory to write.")],
    name: Annotated[
        str | None, typer.Option(help="Model name in OpenSearch (default: the --out folder name).")
    ] = None,
    version: Annotated[str, typer.Option(help="Model version in the register bodies.")] = "1.0.0",
    idf_dataset: Annotated[
        str | None,
        typer.Option(help="Compute idf.json on this dataset's corpus (default: the checkpoint's)."),
    ] = None,
    url_base: Annotated[
        str | None, typer.Option(help="URL the zips will be served from: the register bodies then carry url.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing release directory.")] = False,
    leaderboard: BoardOption = None,
) -> None:
    """Export a model for OpenSearch doc-only mode: weights, tokenizer, idf.json, card, ML Commons zips."""
    from rich.markup import escape
    from rich.table import Table

    from harness.console import console, user_errors
    from harness.opensearch import export_release

    with user_errors():
        result = export_release(
            model, out, name=name, version=version, idf_dataset=idf_dataset, url_base=url_base,
            leaderboard=leaderboard, force=force,
        )  # fmt: skip
    table = Table(
        title=f"release {escape(result.name)} {escape(result.version)} in {escape(str(result.out))}"
    )
    table.add_column("file")
    table.add_column("bytes", justify="right")
    table.add_column("sha256")
    for path, entry in result.files.items():
        table.add_row(escape(path), f"{entry['bytes']:,}", entry["sha256"][:16])
    console.print(table)
    plural = "" if len(result.rows) == 1 else "s"
    console.print(f"model card: {len(result.rows)} leaderboard row{plural} of this model")


@app.command("parity")
def parity_command(
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="SPLADE-doc / IDF-only retriever or directory.")
    ],
    dataset: Annotated[
        list[str], typer.Option("--dataset", "-d", help="Registered dataset or BEIR directory.")
    ],
    split: Annotated[str, typer.Option(help="Split whose queries are compared.")] = "test",
    queries: Annotated[int | None, typer.Option(min=1, help="Only the first N queries.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the reports as JSON here.")] = None,
    os_host: HostOption = None,
    os_no_verify: NoVerifyOption = False,
    os_ca_certs: CaOption = None,
) -> None:
    """The parity gate: each model inside OpenSearch against in-process (exit 1 where it fails)."""
    from itertools import islice

    from rich.markup import escape
    from rich.table import Table

    from common.errors import WorkbenchError
    from common.files import write_json
    from harness.console import console, user_errors
    from harness.datasets import load_dataset, resolve_dataset
    from harness.opensearch.parity import check_parity
    from harness.registry import dataset_registry
    from harness.retrievers.opensearch import sparse_engine_spec

    reports = []
    with user_errors():
        _use_cluster(os_host, os_no_verify, os_ca_certs)
        for name in dataset:
            data = load_dataset(resolve_dataset(name, dataset_registry()))
            if split not in data.qrels:
                raise WorkbenchError(f"{name}: no split {split!r}; it has {', '.join(sorted(data.qrels))}")
            asked = dict(islice(data.split_queries(split).items(), queries))
            for m in model:
                engine = sparse_engine_spec(m).build()
                engine.index(data)
                reports.append(check_parity(engine, data, split, asked))
        if output is not None:
            write_json(output, [r.as_dict() for r in reports], indent=1)
    table = Table(title="Parity: OpenSearch against in-process (top 10 of Lucene-rounded scores; nDCG@10)")
    for column in ("dataset", "model", "queries", "same top 10", "max score diff", "nDCG@10 engine",
                   "nDCG@10 in-process", "delta", "gate"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("dataset", "model") else "right")
    for r in reports:
        name = escape(r.retriever.removeprefix("opensearch-splade:"))
        table.add_row(escape(r.dataset), name, str(r.queries), str(r.same_top_k),
                      f"{r.max_score_rel_diff:.1e}",
                      f"{r.ndcg_engine:.4f}", f"{r.ndcg_in_process:.4f}", f"{r.ndcg_delta:+.4f}",
                      "pass" if r.passed else "FAIL")  # fmt: skip
    console.print(table)
    if not all(r.passed for r in reports):
        raise typer.Exit(1)


@app.command("record")
def record_command(
    report: Annotated[Path, typer.Argument(help="A report folder that evaluate.py or training wrote.")],
    leaderboard: BoardOption = None,
) -> None:
    """Record a written report into the leaderboard (where recording failed when it was made)."""
    from rich.markup import escape

    from harness.console import console, user_errors
    from harness.leaderboard import default_path
    from harness.session import record_report

    board = leaderboard or default_path()
    with user_errors():
        count = record_report(report, board)
    plural = "" if count == 1 else "s"
    console.print(
        f"leaderboard: {count} row{plural} of {escape(str(report))} recorded in {escape(str(board))}"
    )


@app.command("regress")
def regress_command(
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", "-d", help="Only this dataset (repeatable).")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Only this retriever (repeatable).")
    ] = None,
    embedded: Annotated[
        bool, typer.Option("--embedded", help="Only the datasets shipped in the repository (what CI runs).")
    ] = False,
    cache: Annotated[bool, typer.Option(help="Reuse analyzed corpora and indexes.")] = True,
) -> None:
    """Check every (dataset, retriever) pair with expected scores: OK / OKish / FAIL (exit 1 on FAIL)."""
    from rich.table import Table

    from harness.console import console, user_errors
    from harness.registry import dataset_registry
    from harness.regress import plan_regressions, run_regressions
    from harness.runner import OK_TOLERANCE, OKISH_TOLERANCE

    with user_errors():
        plan = plan_regressions(dataset_registry(), dataset or (), model or (), embedded_only=embedded)
        checks = run_regressions(plan, use_cache=cache)
    table = Table(
        title="Regressions: expected scores of the datasets' YAML",
        caption=f"OK: |delta| <= {OK_TOLERANCE:g}; OKish: <= {OKISH_TOLERANCE:g}; else FAIL",
    )
    for column in ("dataset", "split", "retriever", "metric", "expected", "got", "delta", "verdict"):
        table.add_column(column, justify="right" if column in ("expected", "got", "delta") else "left")
    style = {"OK": "green", "OKish": "yellow", "FAIL": "bold red"}
    for c in checks:
        table.add_row(c.dataset, c.split, c.retriever, c.metric, f"{c.expected:.4f}", f"{c.got:.4f}",
                      f"{c.delta:+.4f}", f"[{style[c.verdict]}]{c.verdict}[/]")  # fmt: skip
    console.print(table)
    counts = {v: sum(c.verdict == v for c in checks) for v in ("OK", "OKish", "FAIL")}
    console.print(", ".join(f"{n} {v}" for v, n in counts.items()) + f" of {len(checks)} expected scores")
    if counts["FAIL"]:
        raise typer.Exit(1)


@app.command("compare")
def compare_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Two or more runs, the first the baseline: a leaderboard row id (#12), a model as the "
            "leaderboard records it (its latest row on each dataset), or a TREC run file."
        ),
    ],
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset", "-d", help="Dataset (repeatable; default: those every source has rows of)."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Split compared.")] = "test",
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", help="ranx metric (repeatable; default ndcg@10 and recall@100)."),
    ] = None,
    stat_test: Annotated[str, typer.Option(help="Paired test: student or fisher.")] = "student",
    max_p: Annotated[float, typer.Option(help="Threshold of the Holm-adjusted p-values.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the randomisation test.")] = 42,
    resamples: Annotated[
        int, typer.Option(help="Bootstrap resamples (and randomisation test draws).")
    ] = 10_000,
    confidence: Annotated[float, typer.Option(help="Confidence of the bootstrap intervals.")] = 0.95,
    leaderboard: BoardOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparisons as JSON.")] = False,
    output: Annotated[Path | None, typer.Option(help="Write the comparisons as JSON to this file.")] = None,
) -> None:
    """Compare stored runs without retrieving again: deltas, paired tests, bootstrap CIs, Holm, W/T/L."""
    import json

    from rich.markup import escape

    from common.files import write_json
    from harness.compare import (
        COMPARE_METRICS,
        CompareSettings,
        compare,
        comparison_document,
        comparison_tables,
        load_runs,
    )
    from harness.console import console, user_errors
    from harness.leaderboard import default_path

    with user_errors():
        settings = CompareSettings(
            test=stat_test, max_p=max_p, seed=seed, n_resamples=resamples, confidence=confidence
        )
        metrics = metric or list(COMPARE_METRICS)
        runs = load_runs(sources, dataset or (), leaderboard or default_path(), metrics, split)
        comparisons = compare(runs, metrics, settings)
        document = comparison_document(runs, metrics, settings, comparisons)
        if output is not None:
            write_json(output, document, indent=1)
    for dataset_split in dict.fromkeys((r.dataset, r.split) for r in runs):
        group = [r for r in runs if (r.dataset, r.split) == dataset_split]
        named = "; ".join(f"{r.name} ({r.source})" for r in group)
        console.print(escape(f"{'/'.join(dataset_split)}: baseline {named}"), highlight=False)
    for table in comparison_tables(comparisons, settings):
        console.print(table)
    console.print(escape(settings.describe(document["family_size"])), highlight=False)
    if output is not None:
        console.print(f"comparisons written to {escape(str(output))}")
    if json_out:
        print(json.dumps(document, ensure_ascii=False, indent=1))


@app.command("report")
def report_command(
    release: Annotated[
        str, typer.Option("--release", help="Release name (the folder is reports/release-NAME).")
    ],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Only this model, as the leaderboard names it (repeatable; the first is the baseline).",
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", "-d", help="Only this dataset (repeatable).")
    ] = None,
    metric: Annotated[str, typer.Option(help="The metric of the tables and plots.")] = "ndcg@10",
    split: Annotated[str, typer.Option(help="The split compared.")] = "test",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Report folder (default reports/release-NAME).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing report folder.")] = False,
    stat_test: Annotated[str, typer.Option(help="Significance test: student or fisher.")] = "student",
    max_p: Annotated[float, typer.Option(help="Threshold of the Holm-adjusted p-values.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and randomisation test.")] = 42,
    leaderboard: BoardOption = None,
) -> None:
    """A release report from the leaderboard: report.html, report.md, results.json, the model card."""
    from rich.markup import escape

    from harness.compare import CompareSettings
    from harness.console import console, user_errors
    from harness.leaderboard import default_path
    from harness.release import build_release

    with user_errors():
        settings = CompareSettings(test=stat_test, max_p=max_p, seed=seed)
        folder = out or Path("reports") / f"release-{release}"
        result = build_release(release, leaderboard or default_path(), folder, model or (), dataset or (),
                               metric=metric, split=split, settings=settings, replace=force)  # fmt: skip
    console.print(
        f"release {escape(release)}: {len(result.models)} models x {len(result.datasets)} datasets, best "
        f"{escape(result.best)}, in {result.seconds:.1f} s; report: {escape(str(result.out / 'report.html'))}"
    )


if __name__ == "__main__":
    app()
