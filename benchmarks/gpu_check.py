"""BF16 on CUDA: a few training steps in fp32 and in BF16 autocast from the same start, loss parity
and speed-up. Run where a GPU is at hand; CI never needs one.

    python benchmarks/gpu_check.py [--steps 20] [--batch-size 32] [--max-length 256] [--tolerance 0.05]

Exit status 0 when every BF16 loss is within the relative tolerance of the fp32 loss of the same
step, 1 when not, 2 without a CUDA device.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

from _training_setup import small_setup


def run(model, tokenizer, idf, examples, bf16: str, args: argparse.Namespace) -> tuple[list[float], float]:
    import torch

    from models.config import TrainingConfig
    from models.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        config = TrainingConfig.model_validate({
            "name": f"gpu-{bf16}", "seed": 0, "output_dir": out, "data": {"train": ["gimp-en"]},
            "model": {"max_length": args.max_length},
            "train": {"batch_size": args.batch_size, "max_steps": args.steps, "save_every": args.steps,
                      "log_every": 1, "bf16": bf16, "lr": 2e-5},
        })  # fmt: skip
        torch.manual_seed(0)
        trainer = Trainer(config, copy.deepcopy(model), tokenizer, idf, examples)
        torch.cuda.synchronize()
        started = time.perf_counter()
        trainer.train()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        losses = [json.loads(line)["loss"] for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return losses, seconds


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        return 2
    model, tokenizer, idf, examples = small_setup(n_examples=4 * args.batch_size * args.steps)
    fp32, fp32_s = run(model, tokenizer, idf, examples, "off", args)
    bf16, bf16_s = run(model, tokenizer, idf, examples, "on", args)
    worst = max(abs(a - b) / max(abs(a), 1e-9) for a, b in zip(fp32, bf16, strict=True))
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"steps {args.steps}, batch {args.batch_size}, max length {args.max_length}")
    print(f"fp32 loss first/last {fp32[0]:.4f}/{fp32[-1]:.4f}, {fp32_s:.2f} s")
    print(f"bf16 loss first/last {bf16[0]:.4f}/{bf16[-1]:.4f}, {bf16_s:.2f} s")
    print(f"largest relative loss difference {worst:.4f} (tolerance {args.tolerance})")
    print(f"BF16 speed-up {fp32_s / bf16_s:.2f}x")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
