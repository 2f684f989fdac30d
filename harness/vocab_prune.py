"""`python -m harness.vocab_prune`: `models.vocab_prune` with registered dataset names as corpora too.

`--corpus gimp-ko` prunes on the documents of a registered dataset (their full text: title and
text), never its queries, so that no evaluation query shapes the vocabulary. Files and BEIR
folders are read by `models.vocab_prune` itself.
"""

from __future__ import annotations

import sys

from harness.datasets import load_dataset, resolve_dataset
from harness.registry import dataset_registry
from models.vocab_prune import Corpus, main

__all__ = ["dataset_corpus"]


def dataset_corpus(name: str) -> Corpus:
    """A registered dataset's documents as a pruning corpus."""
    spec = resolve_dataset(name, dataset_registry())
    data = load_dataset(spec)
    return Corpus(name, tuple(doc.full_text for doc in data.corpus.values()), source=f"dataset {spec.name}")


if __name__ == "__main__":
    sys.exit(main(datasets=dataset_corpus))
