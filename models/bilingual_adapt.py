"""Bilingual bag-of-words adaptation of an MLM head: an English text should switch on the pieces of
its Korean translation, and a Korean text those of its English one.

A SPLADE-doc model can only match a Korean query against an English document through the Korean
pieces that the document's MLM logits switch on (the query side is its tokens, no model). Masked-LM
training teaches a head to predict the pieces of the text it reads, not of its translation. This
step trains it on aligned string pairs (the Firefox / Thunderbird interface strings of `make
prepare-bilingual`, their `train` split only):

- each batch is `batch_size / 2` pairs, fed as their English strings then their Korean strings
  (cut at `max_length` tokens);
- a text's target is every non-special piece of the pair, both languages (its own pieces and its
  translation's);
- the loss is a balanced binary cross-entropy on the text's max-pooled logits, the quantity the
  SPLADE activation log(1 + ReLU) reads: the mean of -log sigmoid(z) over the target pieces plus
  the mean of -log(1 - sigmoid(z)) over every other piece (`bag_of_words_loss`), so the target is
  switched on and the rest off;
- trained as in `models.mlm_adapt` (`train_head`): the head and the top `train_layers` layers,
  the embeddings frozen; BF16 autocast by default.

Held-out pairs (never trained on) give the loss, the share of target pieces switched on (recall),
the share of the translation's own pieces switched on (what cross-lingual retrieval needs) and the
pieces on per text, before and after: the manifest's `bilingual_adaptation` entry.

    python -m models.bilingual_adapt --model DIR --out DIR --pairs aligned.jsonl [--steps N] ...
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from common.errors import WorkbenchError
from common.files import read_jsonl, sha256_file
from models.checkpoint import load_idf, load_masked_lm, save_derived_checkpoint
from models.mlm_adapt import (
    add_head_training_arguments,
    head_training_settings,
    loss_summary,
    run_head_command,
    train_head,
)
from models.vocab_prune import Track, refuse_output

__all__ = [
    "FORMAT",
    "BilingualConfig",
    "adapt_bilingual",
    "adapt_bilingual_checkpoint",
    "bag_of_words_loss",
    "main",
    "read_aligned_pairs",
]

FORMAT = "bilingual-adaptation/1"


@dataclass(frozen=True)
class BilingualConfig:
    steps: int = 300
    batch_size: int = 32  # texts: half of them pairs' English strings, half their Korean strings
    max_length: int = 64
    lr: float = 5e-4
    warmup_steps: int = 20
    weight_decay: float = 0.0
    train_layers: int = 2
    held_out: int = 256  # pairs kept aside to measure before and after
    bf16: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        least_values = {"steps": 1, "warmup_steps": 0, "held_out": 1, "train_layers": 0, "max_length": 8}
        for key, least in least_values.items():
            if getattr(self, key) < least:
                raise WorkbenchError(
                    f"bilingual adaptation: {key} must be >= {least}, got {getattr(self, key)}"
                )
        if self.batch_size < 2 or self.batch_size % 2:
            raise WorkbenchError(f"bilingual adaptation: batch_size must be even, got {self.batch_size}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise WorkbenchError(f"bilingual adaptation: lr must be > 0 and weight_decay >= 0, got {self}")


def read_aligned_pairs(path: Path, split: str = "train") -> list[tuple[str, str]]:
    """(Korean, English) of every line of an aligned.jsonl (`{"ko", "en", "split", ...}`) in `split`;
    a line without both strings or its split is an error naming the file and line."""
    pairs: list[tuple[str, str]] = []
    for line, row in read_jsonl(Path(path)):
        ko, en, row_split = row.get("ko"), row.get("en"), row.get("split")
        if not (isinstance(ko, str) and isinstance(en, str) and isinstance(row_split, str)):
            raise WorkbenchError(f"{path}: line {line}: needs strings ko, en and split")
        if row_split == split and ko.strip() and en.strip():
            pairs.append((ko, en))
    if not pairs:
        raise WorkbenchError(f"{path}: no aligned pair in the {split!r} split")
    return pairs


def bag_of_words_loss(max_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Balanced binary cross-entropy of [N, V] max-pooled logits against [N, V] 0/1 targets: per text,
    the mean of softplus(-z) over its target pieces plus the mean of softplus(z) over the others;
    the mean over texts."""
    on = (targets * torch.nn.functional.softplus(-max_logits)).sum(1) / targets.sum(1).clamp_min(1)
    off_mask = 1 - targets
    off = (off_mask * torch.nn.functional.softplus(max_logits)).sum(1) / off_mask.sum(1).clamp_min(1)
    return (on + off).mean()


class _Batches:
    """Texts and their targets for consecutive slices of the pairs."""

    def __init__(self, tokenizer: Any, vocab_size: int, config: BilingualConfig) -> None:
        self.tokenizer, self.vocab_size, self.config = tokenizer, vocab_size, config
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """(encoded texts: the English strings then the Korean ones; their targets)."""
        texts = [en for _, en in pairs] + [ko for ko, _ in pairs]
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.config.max_length, padding=True, return_tensors="pt"
        )
        pieces = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        targets = torch.zeros(len(texts), self.vocab_size)
        half = len(pairs)
        for i in range(half):
            both = [*pieces[i], *pieces[half + i]]
            targets[i, both] = 1.0
            targets[half + i, both] = 1.0
        targets[:, self.special] = 0.0
        return dict(encoded), targets


def _max_logits(model: Any, encoded: dict[str, torch.Tensor], bf16: bool) -> torch.Tensor:
    """[N, V] per-text maxima of the MLM logits over the non-padding positions, float32."""
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(**encoded).logits
    padding = encoded["attention_mask"].unsqueeze(-1) == 0
    return logits.float().masked_fill(padding, torch.finfo(torch.float32).min).amax(dim=1)


def _held_out_score(
    model: Any,
    held_out: list[tuple[dict[str, torch.Tensor], torch.Tensor]],
    own: list[torch.Tensor],
    bf16: bool,
) -> dict[str, float]:
    """Loss, recall of the target pieces, recall of the translation's pieces not in the text itself,
    pieces on per text."""
    model.eval()
    loss, recall, translation, active, texts = 0.0, 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for (encoded, targets), text_pieces in zip(held_out, own, strict=True):
            z = _max_logits(model, encoded, bf16)
            on = z > 0
            n = targets.shape[0]
            loss += float(bag_of_words_loss(z, targets)) * n
            recall += float(((on & (targets > 0)).sum(1) / targets.sum(1).clamp_min(1)).sum())
            foreign = (targets > 0) & (text_pieces == 0)
            translation += float(((on & foreign).sum(1) / foreign.sum(1).clamp_min(1)).sum())
            active += float(on.sum())
            texts += n
    return {
        "loss": loss / texts,
        "recall": recall / texts,
        "translation_recall": translation / texts,
        "pieces_on": active / texts,
        "texts": texts,
    }


def adapt_bilingual(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    config: BilingualConfig = BilingualConfig(),
    progress: Track | None = None,
) -> dict[str, Any]:
    """Train `model`'s MLM head (and top layers) in place on the (Korean, English) `pairs`; the report."""
    torch.manual_seed(config.seed)
    order = list(pairs)
    random.Random(config.seed).shuffle(order)
    if len(order) <= config.held_out:
        raise WorkbenchError(
            f"bilingual adaptation: {len(order)} pairs, more than held_out={config.held_out} needed"
        )
    train, kept = order[: -config.held_out], order[-config.held_out :]
    vocab_size = int(model.get_output_embeddings().weight.shape[0])
    make = _Batches(tokenizer, vocab_size, config)
    per_batch = config.batch_size // 2
    held_out = [make(kept[s : s + per_batch]) for s in range(0, len(kept), per_batch)]
    own = []  # each held-out text's own pieces (the rest of its target is its translation's)
    for encoded, targets in held_out:
        mine = torch.zeros_like(targets)
        mine.scatter_(1, encoded["input_ids"], 1.0)
        mine[:, make.special] = 0.0
        own.append(mine)
    before = _held_out_score(model, held_out, own, config.bf16)

    def loss_at(step: int) -> tuple[torch.Tensor, int]:
        start = (step * per_batch) % len(train)
        encoded, targets = make(train[start : start + per_batch])
        loss = bag_of_words_loss(_max_logits(model, encoded, config.bf16), targets)
        return loss, int(encoded["attention_mask"].sum())

    trained, losses, tokens, seconds = train_head(model, config, loss_at, "bilingual adaptation", progress)
    after = _held_out_score(model, held_out, own, config.bf16)
    return {
        "format": FORMAT,
        "config": asdict(config),
        "pairs": len(order),
        "epochs": round(config.steps * per_batch / len(train), 3),
        "trained_parameter_count": sum(p.numel() for _, p in trained),
        **loss_summary(losses),
        "held_out_before": before,
        "held_out_after": after,
        "tokens": tokens,
        "seconds": round(seconds, 1),
    }


def adapt_bilingual_checkpoint(
    model_dir: Path,
    out_dir: Path,
    pairs_file: Path,
    config: BilingualConfig = BilingualConfig(),
    force: bool = False,
    progress: Track | None = None,
) -> dict[str, Any]:
    """Adapt the checkpoint in `model_dir` on the train pairs of `pairs_file` and write a complete
    checkpoint to `out_dir` (an existing one only with `force`) with the source's idf.json; the
    report is returned and kept in the manifest's `bilingual_adaptation`."""
    refuse_output(model_dir, out_dir, force)
    pairs = read_aligned_pairs(pairs_file)
    model, tokenizer = load_masked_lm(model_dir)
    idf = load_idf(Path(model_dir), tokenizer)
    report = adapt_bilingual(model, tokenizer, pairs, config, progress)
    report["pairs_file"] = {"path": str(pairs_file), "sha256": sha256_file(Path(pairs_file))}
    save_derived_checkpoint(
        Path(model_dir), Path(out_dir), model, tokenizer, idf, {"bilingual_adaptation": report}
    )
    return report


def report_lines(report: dict[str, Any]) -> list[str]:
    before, after = report["held_out_before"], report["held_out_after"]
    return [
        f"{report['config']['steps']} steps ({report['epochs']} epochs of {report['pairs']:,} pairs), "
        f"{report['trained_parameter_count']:,} parameters trained, {report['seconds']} s",
        f"train loss {report['train_loss_first']:.3f} -> {report['train_loss_last']:.3f}",
        f"held-out loss {before['loss']:.3f} -> {after['loss']:.3f}, translation pieces on "
        f"{before['translation_recall']:.1%} -> {after['translation_recall']:.1%}, pieces on per text "
        f"{before['pieces_on']:,.0f} -> {after['pieces_on']:,.0f} ({after['texts']} texts)",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    defaults = BilingualConfig()
    parser = argparse.ArgumentParser(
        prog="python -m models.bilingual_adapt",
        description="Train a masked-LM's head so that a text switches on its translation's pieces.",
    )
    add_head_training_arguments(parser, defaults)
    parser.add_argument("--pairs", type=Path, required=True, help="aligned.jsonl of make prepare-bilingual")
    args = parser.parse_args(argv)

    def adapt(progress: Track) -> dict[str, Any]:
        config = BilingualConfig(**head_training_settings(args))
        return adapt_bilingual_checkpoint(args.model, args.out, args.pairs, config, args.force, progress)

    return run_head_command(adapt, report_lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
