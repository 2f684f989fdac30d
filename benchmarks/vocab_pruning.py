"""Vocabulary pruning (BLADE) of a SPLADE-doc masked-LM: what it keeps, what it changes, what it saves.

    python benchmarks/vocab_pruning.py [--model DIR] [--corpus gimp-ko --corpus gimp-en] [--docs 600]
                                       [--repeats 3] [--json out.json] [--no-history]

1. `models.vocab_prune.prune_vocabulary` prunes `--model` (default: the small English SPLADE) on the
   documents of the `--corpus` datasets (default gimp-ko and gimp-en) into a temporary folder:
   vocabulary before and after, seconds.
2. Tokenization change, as the pruning report measures it (a text changed when its token strings
   differ): on the pruning documents themselves (0 by construction, measured) and on held-out text,
   the queries of the same datasets, every split (the GIMP sets took them out of their documents:
   harness/data/gimp/README.md); unknown tokens before and after.
3. `SpladeDocEncoder.encode` of the source and of the pruned checkpoint on the same first `--docs`
   documents (taken from the corpora in turn, tokenization included), best of `--repeats` each,
   alternating: docs/s and the ratio. The pruned vectors are checked against the source's at the kept ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _measure import in_subprocess, seconds

_ROW_KEYS = ("role", "texts", "tokens", "changed_texts", "changed_tokens", "changed_token_share",
             "unk_before", "unk_after")  # fmt: skip


def _corpora(names: list[str]) -> tuple[list[Any], list[Any]]:
    """(documents of each dataset, the queries of each dataset as held-out text)."""
    from harness.datasets import load_dataset, read_dataset_specs, resolve_dataset
    from models.vocab_prune import Corpus

    registry = read_dataset_specs()
    documents, queries = [], []
    for name in names:
        data = load_dataset(resolve_dataset(name, registry))
        source = str(data.path)
        documents.append(Corpus(name, tuple(d.full_text for d in data.corpus.values()), source=source))
        queries.append(Corpus(f"{name} queries", tuple(data.queries.values()), source=source))
    return documents, queries


def _sample(corpora: list[Any], n_docs: int) -> list[str]:
    """The first `n_docs` documents, one from each corpus in turn."""
    streams = [iter(c.documents) for c in corpora]
    texts: list[str] = []
    while len(texts) < n_docs and streams:
        for stream in list(streams):
            text = next(stream, None)
            if text is None:
                streams.remove(stream)
            elif len(texts) < n_docs:
                texts.append(text)
    return texts


def bench(model_name: str, names: list[str], n_docs: int, repeats: int) -> dict[str, Any]:
    import tempfile

    import numpy as np
    import torch

    from harness.retrievers.splade import english_splade_dir
    from models.checkpoint import load_encoder, read_manifest
    from models.vocab_prune import prune_vocabulary

    model_dir = Path(model_name or english_splade_dir())
    documents, queries = _corpora(names)
    with tempfile.TemporaryDirectory(prefix="vocab-pruning-bench-") as tmp:
        out = Path(tmp) / "pruned"
        prune_s = seconds(lambda: prune_vocabulary(model_dir, out, documents, queries))
        report = read_manifest(out)["vocab_pruning"]
        source, pruned = load_encoder(model_dir), load_encoder(out)
    texts = _sample(documents, n_docs)
    for encoder in (source, pruned):
        encoder.encode(texts[:16])  # warm-up
    best = {"source": float("inf"), "pruned": float("inf")}
    for _ in range(repeats):  # alternating: drifts of a shared machine hit both alike
        best["source"] = min(best["source"], seconds(lambda: source.encode(texts)))
        best["pruned"] = min(best["pruned"], seconds(lambda: pruned.encode(texts)))
    kept = report["kept_old_ids"]
    worst = float(np.abs(source.encode(texts).vectors[:, kept] - pruned.encode(texts).vectors).max())
    rows = {row["spec"] + ("" if row["role"] == "check" else " documents"): row for row in report["corpora"]}
    return {
        "model": model_name or "splade-en-tiny",
        "tokenizer_model": report["tokenizer_model"],
        "corpora": names,
        "vocab_before": report["vocab_before"],
        "vocab_after": report["vocab_after"],
        "kept_by_rule": report["kept_by_rule"],
        "prune_s": round(prune_s, 2),
        "tokenization": {spec: {k: row[k] for k in _ROW_KEYS} for spec, row in rows.items()},
        "docs": len(texts),
        "threads": torch.get_num_threads(),
        "encode_docs_per_s_source": round(len(texts) / best["source"], 1),
        "encode_docs_per_s_pruned": round(len(texts) / best["pruned"], 1),
        "encode_speedup": round(best["source"] / best["pruned"], 3),
        "max_abs_diff_at_kept_ids": worst,
        "report": {key: value for key, value in report.items() if key != "kept_old_ids"},
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rich.console import Console
    from rich.table import Table

    from models.vocab_prune import report_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="a masked-LM folder (default: the small English SPLADE)")
    parser.add_argument("--corpus", action="append", help="dataset to prune on (default: gimp-ko, gimp-en)")
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    names = args.corpus or ["gimp-ko", "gimp-en"]
    r = in_subprocess(bench, args.model, names, args.docs, args.repeats)
    console = Console()
    console.print(f"Pruning {r['model']} on the documents of {', '.join(names)}: {r['prune_s']} s")
    console.print(report_table(r["report"]))
    speed = Table(title=f"SPLADE-doc encoding, {r['docs']} documents, {r['threads']} threads")
    cells = {
        "source docs/s": f"{r['encode_docs_per_s_source']:,}",
        "pruned docs/s": f"{r['encode_docs_per_s_pruned']:,}",
        "speed-up": f"{r['encode_speedup']:.2f}x",
        "max |diff| at kept ids": f"{r['max_abs_diff_at_kept_ids']:.1e}",
        "peak RSS MB": f"{r['peak_rss_mb']:,.0f}",
    }
    for column in cells:
        speed.add_column(column, justify="right")
    speed.add_row(*cells.values())
    console.print(speed)
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    if not args.no_history:
        from history import figures_from, record_and_print

        record_and_print(figures_from(f"vocab_pruning.{r['model']}.docs{r['docs']}", r, {
            "vocab_after": ("pieces", "lower"), "encode_speedup": ("ratio", "higher"),
            "encode_docs_per_s_pruned": ("docs/s", "higher"), "peak_rss_mb": ("MB", "lower"),
        }), console)  # fmt: skip


if __name__ == "__main__":
    main()
