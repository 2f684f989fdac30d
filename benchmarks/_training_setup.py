"""Shared by the training benchmarks: the small English SPLADE and examples from gimp-en."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def small_setup(n_examples: int = 512) -> tuple[Any, Any, Any, list[Any]]:
    """(model, tokenizer, idf, examples): titles as queries, their section as positive, the next
    section as negative; no retriever involved, so the benchmark measures training alone."""
    from transformers.utils import logging as hf_logging

    from harness.datasets import load_dataset, read_dataset_specs
    from harness.retrievers.splade import english_splade_dir
    from models.checkpoint import load_masked_lm
    from models.idf import IdfWeights
    from models.trainer import Example

    hf_logging.disable_progress_bar()
    model, tokenizer = load_masked_lm(english_splade_dir())
    docs = list(load_dataset(read_dataset_specs()["gimp-en"]).corpus.values())
    examples = [
        Example(doc.title, doc.text, (docs[(i + 1) % len(docs)].full_text,))
        for i, doc in enumerate(docs[:n_examples])
        if doc.title
    ]
    idf = IdfWeights.from_corpus([d.full_text for d in docs], tokenizer)
    return model, tokenizer, idf, examples
