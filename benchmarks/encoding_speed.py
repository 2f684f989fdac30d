"""SPLADE-doc document encoding on this CPU, as a share of the fp32 matmul peak measured in the same run.

    python benchmarks/encoding_speed.py [--model DIR] [--docs 600] [--repeats 3] [--json out.json]

1. Peak: the best of a plain fp32 matmul of the vocabulary projection's shape (8,192 positions x
   hidden, times hidden x vocabulary), measured before and after the encoding, GFLOP/s: the
   operation that is almost all of a small SPLADE's work.
2. FLOP per token of the model: counted by torch's FlopCounterMode on one forward pass of a batch
   of the documents (the transformer and the projection over every position, as the model defines them).
3. The harness's `SpladeDocEncoder.encode` on the first `--docs` documents of gimp-en (tokenization
   included), best of `--repeats`: tokens/s, and tokens/s x FLOP/token as a share of the peak.
The vectors are checked against plain torch (whole logits, max over positions of log(1 + ReLU)).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _measure import forward_flop_per_token, in_subprocess, matmul_peak_gflops, seconds


def bench(model_name: str, n_docs: int, repeats: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from harness.datasets import load_dataset, read_dataset_specs
    from harness.retrievers.splade import english_splade_dir
    from models.checkpoint import load_encoder

    encoder = load_encoder(model_name or english_splade_dir())
    texts = [doc.full_text for doc in list(load_dataset(read_dataset_specs()["gimp-en"]).corpus.values())]
    texts = texts[:n_docs]
    projection = encoder.model.get_output_embeddings()
    vocab, hidden = projection.weight.shape

    peak = matmul_peak_gflops(hidden, vocab)
    sample = encoder.tokenizer(texts[:32], truncation=True, max_length=encoder.max_length, padding=True,
                               return_tensors="pt")  # fmt: skip
    flop_per_token = forward_flop_per_token(encoder.model, sample)

    encoder.encode(texts[:16])  # warm-up
    best = min(seconds(lambda: encoder.encode(texts)) for _ in range(repeats))
    result = encoder.encode(texts)
    worst = 0.0
    for row in range(0, len(texts), max(1, len(texts) // 20)):  # every 20th text against plain torch
        enc = encoder.tokenizer(
            texts[row], truncation=True, max_length=encoder.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            vec = torch.log1p(torch.relu(encoder.model(**enc).logits[0])).amax(dim=0)
            vec[encoder.special_ids] = 0
        worst = max(worst, float(np.abs(result.vectors[row].toarray()[0] - vec.numpy()).max()))
    tokens_per_s = result.tokens / best
    peak = max(peak, matmul_peak_gflops(hidden, vocab))  # before and after: noise cannot flatter the share
    return {
        "model": model_name or "splade-en-tiny",
        "docs": len(texts),
        "tokens": result.tokens,
        "hidden": hidden,
        "vocab": vocab,
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": round(peak, 1),
        "mflop_per_token": round(flop_per_token / 1e6, 2),
        "encode_s": round(best, 2),
        "encode_tokens_per_s": round(tokens_per_s),
        "encode_gflops": round(tokens_per_s * flop_per_token / 1e9, 1),
        "share_of_peak": round(tokens_per_s * flop_per_token / 1e9 / peak, 3),
        "max_abs_diff_vs_plain_torch": worst,
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="a masked-LM folder (default: the small English SPLADE)")
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    r = in_subprocess(bench, args.model, args.docs, args.repeats)
    title = (
        f"SPLADE-doc encoding, {r['model']} ({r['hidden']} x {r['vocab']:,}), {r['docs']} gimp-en "
        f"documents, {r['tokens']:,} tokens, {r['threads']} threads"
    )
    table = Table(title=title)
    cells = {
        "matmul peak GFLOP/s": str(r["matmul_peak_gflops"]),
        "MFLOP/token": str(r["mflop_per_token"]),
        "tokens/s": f"{r['encode_tokens_per_s']:,}",
        "GFLOP/s": str(r["encode_gflops"]),
        "share of peak": f"{r['share_of_peak']:.0%}",
        "max |diff|": f"{r['max_abs_diff_vs_plain_torch']:.1e}",
        "peak RSS MB": f"{r['peak_rss_mb']:,.0f}",
    }
    for col in cells:
        table.add_column(col, justify="right")
    table.add_row(*cells.values())
    console = Console()
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    if not args.no_history:
        from history import figures_from, record_and_print

        record_and_print(figures_from(f"encoding_speed.{r['model']}.docs{r['docs']}", r, {
            "matmul_peak_gflops": ("GFLOP/s", "higher"), "encode_tokens_per_s": ("tokens/s", "higher"),
            "share_of_peak": ("ratio", "higher"), "peak_rss_mb": ("MB", "lower"),
        }), console)  # fmt: skip


if __name__ == "__main__":
    main()
