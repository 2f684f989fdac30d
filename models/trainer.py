"""The SPLADE-doc trainer: one code path for one process and for `torchrun` (DistributedDataParallel).

Each step takes a global batch of (query, positive, hard negatives) examples; every rank encodes
its share of the documents, the document vectors are gathered across ranks (with gradients) so
that every query sees every document of the global batch as an in-batch negative. Queries are
idf-weighted token indicators (no model). AdamW, linear warm-up then linear decay, gradient
accumulation, clipping, BF16 autocast on CUDA and fp32 on CPU, seeded. Document vectors come from
the encoder's chunked vocabulary projection with a gradient to the rows of the maxima only
(`max_pooled_logits`): the whole (length x vocabulary) logits never exist.

Checkpoints every `save_every` steps hold a complete checkpoint directory (what `evaluate.py
--model` reads) plus `trainer_state.pt` (optimizer, scheduler, RNG states, data position):
`resume=True` continues exactly where the latest one stopped. A non-finite loss or gradient stops
the run (the last good checkpoint stays). Ctrl-C finishes the step under way, saves, then stops, so
that resuming is exact; a second Ctrl-C stops at once (the last saved checkpoint stays).

Resuming refuses a run that is complete, and a configuration that differs from the checkpoint's
(naming the keys), except the keys of `RESUME_SAFE_KEYS` that the caller allows. Every evaluation
of a checkpoint is appended to `evaluations.jsonl`, so that on resume the best model is judged over
all of them and a checkpoint whose evaluation was cut short is evaluated again.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from common.errors import WorkbenchError
from common.faults import fault_point
from common.files import make_folder, remove_leftovers
from models.checkpoint import (
    copy_model,
    has_trainer_state,
    load_trainer_state,
    read_manifest,
    restore_weights,
    save_checkpoint,
)
from models.config import TrainingConfig
from models.encoder import (
    in_mlm_head,
    max_pooled_logits,
    splade_activation,
    train_top_layers,
    vocabulary_projection_skipped,
)
from models.idf import IdfWeights
from models.lexical import LexicalWeights
from models.losses import IdfAwarePenalty, build_loss

__all__ = [
    "RESUME_SAFE_KEYS",
    "Example",
    "NonFiniteError",
    "RunComplete",
    "TrainResult",
    "Trainer",
    "latest_checkpoint",
]

logger = logging.getLogger(__name__)

# settings that may differ on resume when the caller allows them: they change how long the run goes
# on and how often it saves or logs, not what a step computes (the lr decay follows max_steps)
RESUME_SAFE_KEYS = frozenset(
    {"train.max_steps", "train.save_every", "train.log_every", "train.keep_checkpoints"}
)
EVALUATIONS_FILE = "evaluations.jsonl"


@dataclass(frozen=True)
class Example:
    """One training query with its positive document, hard negatives and optional teacher scores."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    teacher_scores: tuple[float, ...] | None = None  # positive first, then the negatives


class NonFiniteError(RuntimeError):
    """The loss or the gradients stopped being finite."""


class RunComplete(WorkbenchError):
    """`resume` on a run whose final checkpoint is saved: there is nothing to do."""


def check_allowed_changes(allow_changes: Collection[str]) -> None:
    """Refuse to allow, on resume, a change of a setting outside `RESUME_SAFE_KEYS`."""
    unsafe = sorted(set(allow_changes) - RESUME_SAFE_KEYS)
    if unsafe:
        raise WorkbenchError(
            f"cannot allow {', '.join(unsafe)} to change on resume; safe: {sorted(RESUME_SAFE_KEYS)}"
        )


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The last complete checkpoint of a run (one with its trainer state), or None."""
    root = Path(output_dir) / "checkpoints"
    found = sorted(p for p in root.glob("step-*") if has_trainer_state(p)) if root.is_dir() else []
    return found[-1] if found else None


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """dotted key -> (saved value, current value) for every setting that differs."""
    old, new = _flatten(saved), _flatten(current)
    return {
        key: (old.get(key), new.get(key))
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    }


@dataclass
class TrainResult:
    steps: int
    seconds: float
    best_metric: float | None
    best_step: int | None
    checkpoints: list[Path] = field(default_factory=list)


# a checkpoint hook: (checkpoint directory, step, kind 'step' | 'final') -> evaluation metrics or None
CheckpointHook = Callable[[Path, int, str], dict[str, float] | None]


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All ranks' rows, in rank order; the local rows keep their gradient."""
    _, world = _rank_world()
    if world == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


def linear_warmup_decay(step: int, warm: int, total: int) -> float:
    """The learning-rate factor of `step`: linear warm-up over `warm` steps, then linear decay to 0
    at `total`."""
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


class Trainer:
    def __init__(
        self,
        config: TrainingConfig,
        model: Any,
        tokenizer: Any,
        idf: IdfWeights,
        examples: Sequence[Example],
        on_checkpoint: CheckpointHook | None = None,
        log: Callable[[dict[str, float]], None] | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> None:
        if not examples:
            raise ValueError("no training examples")
        negatives = {len(e.negatives) for e in examples}
        if len(negatives) != 1:
            raise ValueError(
                f"every example needs the same number of hard negatives, found {sorted(negatives)}"
            )
        self.config, self.tokenizer, self.idf = config, tokenizer, idf
        self.examples = list(examples)
        self.n_negatives = negatives.pop()
        self.on_checkpoint, self.log = on_checkpoint, log
        self.manifest = manifest or {}
        self.rank, self.world = _rank_world()
        if config.train.batch_size % self.world:
            raise ValueError(
                f"train.batch_size {config.train.batch_size} is not a multiple of {self.world} ranks"
            )
        self.device = torch.device(
            f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
        )
        self.use_bf16 = config.train.bf16 == "on" or (
            config.train.bf16 == "auto" and self.device.type == "cuda"
        )
        self.model = model.to(self.device).train()
        self.module = self.model
        if config.model.train_layers is not None:
            try:
                train_top_layers(self.module, config.model.train_layers)
            except WorkbenchError as exc:
                raise WorkbenchError(f"model.train_layers: {exc}") from None
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(self.module)
        self.idf_weights = torch.nn.Parameter(
            torch.tensor(idf.weights, device=self.device), requires_grad=config.model.trainable_idf
        )
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        self.idf_matching = IdfAwarePenalty(self.idf_weights, special_ids=self.special_ids).to(self.device)
        self.lexical = self._lexical_weights()
        groups = self._parameter_groups()
        if config.model.trainable_idf:
            groups.append({"params": [self.idf_weights], "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=config.train.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.loss_fn = build_loss(config.loss, self.idf_weights)
        self.step = 0
        self.data_rng = np.random.default_rng(config.seed)
        self.order = self.data_rng.permutation(len(self.examples))
        self.position = 0
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self._stop_requested = self._stopped_hard = False  # Ctrl-C, see _deferred_interrupt
        self._last_saved = 0

    def _parameter_groups(self) -> list[dict[str, Any]]:
        """The trained parameters in AdamW groups: the encoder at `train.lr`, the MLM head (every
        parameter outside the base model) at `train.head_lr` when set."""
        cfg = self.config.train
        named = [(name, p) for name, p in self.module.named_parameters() if p.requires_grad]
        if cfg.head_lr is None:
            return [{"params": [p for _, p in named], "weight_decay": cfg.weight_decay}]
        encoder = [p for name, p in named if not in_mlm_head(self.module, name)]
        head = [p for name, p in named if in_mlm_head(self.module, name)]
        return [
            {"params": encoder, "weight_decay": cfg.weight_decay},
            {"params": head, "weight_decay": cfg.weight_decay, "lr": cfg.head_lr},
        ]

    # ------------------------------------------------------------------ schedule and data

    def _lr_factor(self, step: int) -> float:
        return linear_warmup_decay(step, self.config.train.warmup_steps, self.config.train.max_steps)

    def _next_batch(self) -> list[Example]:
        """The next global batch in a seeded order (a new permutation each epoch)."""
        batch = []
        for _ in range(self.config.train.batch_size):
            if self.position >= len(self.order):
                self.order = self.data_rng.permutation(len(self.examples))
                self.position = 0
            batch.append(self.examples[self.order[self.position]])
            self.position += 1
        return batch

    # ------------------------------------------------------------------ model pieces

    def _lexical_weights(self) -> dict[str, LexicalWeights] | None:
        """BM25's term weights (`model.lexical`) at the training length ("train") and at the inference
        length ("saved", into every checkpoint's manifest): the same k1 and b, each with the mean
        non-special tokens of the training documents cut to that length."""
        settings = self.config.model.lexical
        if settings is None:
            return None
        documents = sorted({text for e in self.examples for text in (e.positive, *e.negatives)})
        special = set(self.special_ids)
        window = min(self.config.model.inference_max_length, self.tokenizer.model_max_length)

        def weights(limit: int) -> LexicalWeights:
            ids = self.tokenizer(documents, truncation=True, max_length=limit)["input_ids"]
            tokens = sum(sum(token not in special for token in row) for row in ids)
            return LexicalWeights(max(tokens / len(ids), 1.0), k1=settings.k1, b=settings.b)

        return {"train": weights(self.config.model.max_length), "saved": weights(window)}

    def query_vectors(self, queries: Sequence[str]) -> torch.Tensor:
        """[B, V]: relu(idf) of each distinct non-special token of each query (Geng et al., 2024)."""
        indicator = torch.zeros(len(queries), len(self.tokenizer), device=self.device)
        for row, text in enumerate(queries):
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if ids:
                indicator[row, torch.tensor(ids, device=self.device)] = 1.0
        return self.idf_matching(indicator)

    def document_vectors(self, texts: Sequence[str]) -> tuple[torch.Tensor, int]:
        """([N, V] SPLADE document vectors, differentiable; number of tokens fed to the model)."""
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.config.model.max_length,
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        mask = enc["attention_mask"]
        projection = self.module.get_output_embeddings()
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            with vocabulary_projection_skipped(self.module) as captured:
                self.model(input_ids=enc["input_ids"], attention_mask=mask)
            hidden = captured[0][mask.bool()]  # (non-padding positions, hidden), text after text
            maxima = max_pooled_logits(hidden, mask.sum(dim=1).tolist(), projection)
        pooled = splade_activation(maxima.float(), self.config.model.activation) * self.idf_matching.keep
        if self.lexical is not None:
            pooled = pooled + self.lexical["train"](enc["input_ids"], mask, self.idf_matching.keep)
        return pooled, int(mask.sum())

    def _micro_step(self, batch: Sequence[Example]) -> tuple[dict[str, torch.Tensor], int]:
        """Loss parts of one micro-batch (this rank's share), backward included, and its tokens."""
        share = len(batch) // self.world
        local = batch[self.rank * share : (self.rank + 1) * share]
        docs = [text for e in local for text in (e.positive, *e.negatives)]
        d_local, tokens = self.document_vectors(docs)
        d_all = _gather_with_grad(d_local)
        q = self.query_vectors([e.query for e in local])
        teacher = None
        if local[0].teacher_scores is not None:
            teacher = torch.tensor([e.teacher_scores for e in local], device=self.device, dtype=torch.float32)
        out = self.loss_fn(
            queries=q,
            documents=d_all,
            local_documents=d_local,
            positive_offset=self.rank * share * (1 + self.n_negatives),
            n_negatives=self.n_negatives,
            teacher_scores=teacher,
            step=self.step + 1,  # the update being computed: the regularizer's warm-up is already under way
        )
        (out.total / self.config.train.grad_accum).backward()
        return {"loss": out.total.detach(), **{k: v.detach() for k, v in out.parts.items()}}, tokens

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_dir(self, step: int) -> Path:
        return Path(self.config.output_dir) / "checkpoints" / f"step-{step:07d}"

    def _save(self, path: Path, kind: str) -> Path:
        """A complete checkpoint directory, the trainer state for resuming inside."""
        # relu: the query weights training used (a trainable idf may go negative); the raw values
        # are in the trainer state for resuming
        idf = IdfWeights(torch.relu(self.idf_weights.detach()).cpu().numpy(), self.tokenizer)
        manifest = self.manifest | {
            "training_config": self.config.model_dump(mode="json"),
            "config_hash": self.config.fingerprint(),
            "lexical": self.lexical["saved"].to_manifest() if self.lexical else None,
            "step": self.step,
            "kind": kind,
        }
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            # the saved MLM bias of special tokens is -1e4 (see models.checkpoint): keep the trained values
            "special_bias": self.module.get_output_embeddings().bias[self.special_ids].detach().cpu(),
            "idf_weights": self.idf_weights.detach().cpu(),
            "data": {
                "rng": self.data_rng.bit_generator.state,
                "order": self.order,
                "position": self.position,
            },
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "best": {"metric": self.best_metric, "step": self.best_step},
        }
        return save_checkpoint(
            path,
            self.module,
            self.tokenizer,
            idf,
            manifest,
            max_seq_length=self.config.model.inference_max_length,
            train_max_length=self.config.model.max_length,
            trainer_state=state,
        )

    def resume_from(self, path: Path) -> None:
        """Restore model, optimizer, scheduler, RNG states and data position of a checkpoint."""
        state = load_trainer_state(path, map_location=self.device)
        restore_weights(self.module, path)
        with torch.no_grad():
            self.module.get_output_embeddings().bias[self.special_ids] = state["special_bias"].to(self.device)
            self.idf_weights.copy_(state["idf_weights"].to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        self.data_rng.bit_generator.state = state["data"]["rng"]
        self.order, self.position = state["data"]["order"], state["data"]["position"]
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.best_metric, self.best_step = state["best"]["metric"], state["best"]["step"]

    def _prune(self) -> None:
        root = Path(self.config.output_dir) / "checkpoints"
        steps = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in steps[: -self.config.train.keep_checkpoints]:
            shutil.rmtree(old)

    def _after_save(self, path: Path, step: int, kind: str) -> None:
        """Evaluate a saved checkpoint through the hook, log it, keep best_model/ by the metric."""
        if self.on_checkpoint is None or self.rank != 0:
            return
        metrics = self.on_checkpoint(path, step, kind)
        value = (metrics or {}).get(self.config.eval.metric)
        if value is not None and (self.best_metric is None or value > self.best_metric):
            self.best_metric, self.best_step = value, step
            copy_model(path, Path(self.config.output_dir) / "best_model")
        record = {"step": step, "kind": kind, "checkpoint": path.name, self.config.eval.metric: value}
        with (Path(self.config.output_dir) / EVALUATIONS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")  # last: a cut-short evaluation is redone on resume

    def _evaluations(self) -> list[dict[str, Any]]:
        path = Path(self.config.output_dir) / EVALUATIONS_FILE
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that evaluation is redone
        return records

    def _catch_up_evaluations(self) -> None:
        """On resume: the best over every logged evaluation, and the checkpoints never evaluated."""
        metric = self.config.eval.metric
        done = self._evaluations()
        self.best_metric, self.best_step = None, None
        for record in done:
            value = record.get(metric)
            if value is not None and (self.best_metric is None or value > self.best_metric):
                self.best_metric, self.best_step = value, record["step"]
        evaluated = {record["checkpoint"] for record in done}
        root = Path(self.config.output_dir) / "checkpoints"
        for path in sorted(root.glob("step-*")):
            manifest = read_manifest(path)
            if path.name not in evaluated and manifest.get("kind") in ("step", "final"):
                logger.warning("%s: its evaluation did not finish; evaluating it now", path)
                self._after_save(path, int(manifest["step"]), manifest["kind"])

    def _resume(self, allow_changes: Collection[str]) -> None:
        """Continue from the latest checkpoint: refuse a complete run and unallowed config changes."""
        latest = latest_checkpoint(self.config.output_dir)
        if latest is None:
            raise FileNotFoundError(f"{self.config.output_dir}: no checkpoint to resume from")
        manifest = read_manifest(latest)
        changes = config_changes(manifest.get("training_config", {}), self.config.model_dump(mode="json"))
        refused = sorted(set(changes) - set(allow_changes))
        if refused:
            shown = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in refused)
            safe = ", ".join(sorted(RESUME_SAFE_KEYS))
            raise WorkbenchError(
                f"{latest}: the configuration differs from the one this run was trained with ({shown}); "
                f"resume with the original, or allow one of {safe} explicitly"
            )
        if manifest.get("kind") == "final" and manifest.get("step", 0) >= self.config.train.max_steps:
            raise RunComplete(
                f"{self.config.output_dir}: run already complete ({manifest['step']} steps); nothing written"
            )
        if changes:
            self.manifest = self.manifest | {"resumed_with_changes": {k: list(v) for k, v in changes.items()}}
        self.resume_from(latest)
        self._catch_up_evaluations()

    @contextmanager
    def _deferred_interrupt(self) -> Iterator[None]:
        """Ctrl-C asks to stop after the step under way (checked by the loop); a second one stops now."""
        self._stop_requested = self._stopped_hard = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_requested:
                self._stopped_hard = True
                raise KeyboardInterrupt
            self._stop_requested = True
            logger.warning(
                "interrupted: finishing step %d, then saving (Ctrl-C again to stop now)", self.step + 1
            )

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _write_metrics(self, record: dict[str, float]) -> None:
        if self.rank != 0:
            return
        path = Path(self.config.output_dir) / "metrics.jsonl"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.log:
            self.log(record)

    # ------------------------------------------------------------------ loop

    def train(self, resume: bool = False, allow_changes: Collection[str] = ()) -> TrainResult:
        """Train to `max_steps`; with `resume`, from the latest checkpoint (see the module docstring).

        `allow_changes`: settings of `RESUME_SAFE_KEYS` that may differ from the checkpoint's.
        """
        cfg = self.config.train
        check_allowed_changes(allow_changes)
        if self.rank == 0:  # hidden folders of checkpoints whose saving a kill cut short
            remove_leftovers(Path(self.config.output_dir) / "checkpoints")
        if resume:
            self._resume(allow_changes)  # before the output folder is made: nothing to resume, nothing made
        make_folder(Path(self.config.output_dir))
        saved: list[Path] = []
        if cfg.eval_at_start and not resume and self.on_checkpoint is not None:  # resumed: done before
            saved.append(self._save_step("step"))
        started = time.perf_counter()
        self._last_saved = self.step
        try:
            with self._deferred_interrupt():
                self._loop(saved)
        except KeyboardInterrupt:
            # a deferred Ctrl-C stops between steps, where the state is whole: save it unless it just
            # was; a second Ctrl-C may have cut a step, so the last saved checkpoint stays the one
            if self.rank == 0 and not self._stopped_hard and self.step != self._last_saved:
                self._save(self._checkpoint_dir(self.step), "interrupted")
            raise
        final = self._save_step("final")
        saved.append(final)
        if self.rank == 0:
            copy_model(final, Path(self.config.output_dir) / "final_model")
        return TrainResult(self.step, time.perf_counter() - started, self.best_metric, self.best_step, saved)

    def _loop(self, saved: list[Path]) -> None:
        """Optimizer steps up to max_steps, logging and saving on schedule; a requested stop ends it
        between two steps."""
        cfg = self.config.train
        window_start, window_samples, window_tokens = time.perf_counter(), 0, 0
        while self.step < cfg.max_steps:
            parts_sum: dict[str, float] = {}
            for _ in range(cfg.grad_accum):
                batch = self._next_batch()
                parts, tokens = self._micro_step(batch)
                for key, value in parts.items():
                    parts_sum[key] = parts_sum.get(key, 0.0) + float(value) / cfg.grad_accum
                window_samples += len(batch)
                window_tokens += tokens * self.world  # every rank encodes a like share
            if not math.isfinite(parts_sum["loss"]):
                raise NonFiniteError(f"step {self.step + 1}: loss is {parts_sum['loss']}")
            if self.world > 1 and self.idf_weights.grad is not None:
                # the idf weights live outside DistributedDataParallel: average their gradient here
                dist.all_reduce(self.idf_weights.grad)
                self.idf_weights.grad /= self.world
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], cfg.max_grad_norm
            )
            if not torch.isfinite(grad_norm):
                raise NonFiniteError(f"step {self.step + 1}: gradient norm is {float(grad_norm)}")
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            fault_point(f"step-{self.step}")
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                seconds = max(time.perf_counter() - window_start, 1e-9)
                self._write_metrics(
                    {
                        "step": self.step,
                        "lr": self.scheduler.get_last_lr()[0],
                        "grad_norm": float(grad_norm),
                        "samples_per_s": window_samples / seconds,
                        "tokens_per_s": window_tokens / seconds,
                        **parts_sum,
                    }
                )
                window_start, window_samples, window_tokens = time.perf_counter(), 0, 0
            if self.step % cfg.save_every == 0 and self.step < cfg.max_steps:
                saved.append(self._save_step("step"))
            if self._stop_requested:
                raise KeyboardInterrupt

    def _save_step(self, kind: str) -> Path:
        path = self._checkpoint_dir(self.step)
        if self.rank == 0:
            self._save(path, kind)
            self._last_saved = self.step
            self._after_save(path, self.step, kind)
            self._prune()
        if self.world > 1:
            dist.barrier()
        return path
