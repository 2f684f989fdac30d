"""`python -m harness.mlm_adapt`: `models.mlm_adapt` with registered dataset names as corpora too.

`--corpus gimp-ko` adapts on the documents of a registered dataset, never its queries (the
resolver of `python -m harness.vocab_prune`).
"""

from __future__ import annotations

import sys

from harness.vocab_prune import dataset_corpus
from models.mlm_adapt import main

if __name__ == "__main__":
    sys.exit(main(datasets=dataset_corpus))
