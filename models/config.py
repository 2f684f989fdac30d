"""Typed training configuration, loaded from YAML: unknown keys and bad values are errors naming the key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from common.config import StrictModel, load_yaml_model

__all__ = [
    "CheckpointEvalConfig",
    "DataConfig",
    "LexicalConfig",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "TrainingConfig",
]


class LexicalConfig(StrictModel):
    """BM25's term weight over the model's tokens, added to every document vector (models.lexical);
    its average document length is measured on the training documents."""

    k1: float = Field(1.2, gt=0)
    b: float = Field(0.75, ge=0, le=1)


class ModelConfig(StrictModel):
    base: str = "bert-base-multilingual-cased"  # directory, hub id, or a named offline model
    max_length: int = Field(256, ge=8, le=8192)  # document tokens seen in training
    # document tokens at inference: what the checkpoint declares, and what the harness,
    # sentence-transformers (and an OpenSearch export) encode with (capped by the model's positions)
    inference_max_length: int = Field(512, ge=8, le=8192)
    activation: Literal["log1p", "l0"] = "log1p"
    idf: str = "corpus"  # corpus: computed on the training documents; base: the base's idf.json; or a path
    trainable_idf: bool = False
    # top encoder layers trained with the MLM head (embeddings, tied decoder and lower layers frozen:
    # models.encoder.train_top_layers); None trains the whole model
    train_layers: int | None = Field(None, ge=0)
    lexical: LexicalConfig | None = None  # None: the vectors are the model's alone


class DataConfig(StrictModel):
    train: list[str] = Field(min_length=1)  # registered datasets / BEIR directories (their train qrels)
    split: str = "train"
    hard_negatives: int = Field(1, ge=0, le=64)  # per query, mined by `negatives_retriever`
    negatives_retriever: str = "bm25-ko"
    negatives_depth: int = Field(30, ge=1)  # mined among this many top results, skipping positives
    max_pairs: int | None = Field(None, ge=1)  # sample at most this many pairs (seeded)
    # sample at most this many pairs of each dataset (seeded, before max_pairs): keeps one large
    # source (thousands of UI strings) from crowding out a small one (a manual's hundred queries);
    # a mapping caps the datasets it names (as `train` spells them) and leaves the others whole
    max_pairs_per_dataset: PositiveInt | dict[str, PositiveInt] | None = None
    # teacher scores for distillation: none; data (teacher/<split>.tsv beside the qrels: query-id,
    # corpus-id, score); ensemble (a dense and a sparse retriever score each example's candidates,
    # each min-max normalised per query, averaged, scaled)
    teacher: Literal["none", "data", "ensemble"] = "none"
    teacher_models: list[str] = Field(default_factory=lambda: ["e5-small-nano", "splade-en-tiny"])
    teacher_scale: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _caps_name_training_sets(self) -> DataConfig:
        caps = self.max_pairs_per_dataset
        if isinstance(caps, dict):
            for name in caps:
                if name not in self.train:
                    raise ValueError(f"max_pairs_per_dataset: {name!r} is not one of data.train")
        return self

    def pair_cap(self, name: str) -> int | None:
        """How many pairs of the training set `name` (as `train` spells it) are kept at most."""
        caps = self.max_pairs_per_dataset
        return caps.get(name) if isinstance(caps, dict) else caps


class LossConfig(StrictModel):
    temperature: float = Field(1.0, gt=0)
    # false: a query's softmax runs over its own positive and hard negatives only, not over the other
    # queries' documents (the OpenSearch tuning sample's use_in_batch_negatives: false)
    in_batch_negatives: bool = True
    lambda_flops: float = Field(1e-3, ge=0)
    flops_warmup_steps: int = Field(100, ge=0)
    # DF-FLOPS (Porco et al., 2025; models.losses.df_flops): FLOPS with per-token weights that grow
    # as idf falls, on the quadratic warm-up of lambda_flops; 0 leaves it out
    lambda_df_flops: float = Field(0.0, ge=0)
    l0_threshold: int | None = Field(None, ge=1)  # regularise only documents with more active dims
    distill: Literal["none", "kl", "margin_mse"] = "none"
    distill_weight: float = Field(1.0, ge=0)


class TrainConfig(StrictModel):
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-5, gt=0)
    # lr of the MLM head (transform, LayerNorm, vocabulary bias); None: `lr`. Adam moves a parameter by
    # about lr per step whatever its gradient, so at an encoder's lr a token's bias (a logit prior of
    # a few units) cannot move in a short run
    head_lr: float | None = Field(None, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(0, ge=0)
    max_steps: int = Field(100, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    # auto: BF16 autocast on CUDA, fp32 on CPU; on: BF16 on CPU too (fast on CPUs with AMX), checkpoints
    # evaluated in BF16 as well
    bf16: Literal["auto", "on", "off"] = "auto"
    save_every: int = Field(50, ge=1)
    log_every: int = Field(10, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    eval_at_start: bool = True  # save and evaluate step 0: the base model with the run's idf, for reference


class CheckpointEvalConfig(StrictModel):
    """How every saved checkpoint is evaluated."""

    datasets: list[str] = Field(default_factory=list)
    metric: str = "ndcg@10"  # picks best_model/
    top_k: int = Field(100, ge=1)


class TrainingConfig(StrictModel):
    name: str = Field(min_length=1)
    seed: int = 42
    output_dir: Path
    model: ModelConfig = ModelConfig()
    data: DataConfig
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    eval: CheckpointEvalConfig = CheckpointEvalConfig()

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.eval.datasets and self.train.save_every > self.train.max_steps:
            raise ValueError("train.save_every exceeds train.max_steps: no checkpoint would be evaluated")
        if (self.loss.distill == "none") != (self.data.teacher == "none"):
            raise ValueError("loss.distill and data.teacher go together: set both or neither")
        if self.data.teacher == "ensemble" and len(self.data.teacher_models) != 2:
            raise ValueError("data.teacher_models: the ensemble takes two retrievers (dense, sparse)")
        return self

    @classmethod
    def from_yaml(cls, path: Path) -> TrainingConfig:
        return load_yaml_model(path, cls)

    def fingerprint(self) -> str:
        """Hash of the whole configuration: the same config trains the same model."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
