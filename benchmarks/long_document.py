"""Time and peak memory of SPLADE-encoding one very long document (truncated to the model length).

    python benchmarks/long_document.py [--mb 47] [--json out.json]

The document is the embedded GIMP English corpus repeated until it holds `--mb` megabytes of
UTF-8 text, with a run of decomposed (NFD) Hangul in it. It is encoded with the English SPLADE in
a fresh process, so that the peak RSS belongs to the measurement alone; a short document is
encoded first so that the model's own load is measured apart ("baseline_rss_mb").
"""

from __future__ import annotations

import argparse
import json
import time
import unicodedata
from pathlib import Path
from typing import Any

from _measure import in_subprocess, peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]


def _document(megabytes: float) -> str:
    from common.files import read_jsonl

    texts = [
        f"{obj.get('title', '')} {obj.get('text', '')}"
        for _, obj in read_jsonl(ROOT / "data/prepared/gimp/gimp-en/corpus.jsonl.gz")
    ]
    block = " ".join(texts) + " " + unicodedata.normalize("NFD", "한국어 문서") + " "
    target = int(megabytes * 1_000_000)
    repeats = max(1, target // len(block.encode()) + 1)
    return (block * repeats)[:target]


def _encode(megabytes: float) -> dict[str, Any]:
    from harness.retrievers.splade import english_splade_dir
    from models.checkpoint import load_encoder

    encoder = load_encoder(english_splade_dir())
    encoder.encode(["a short warm-up document"])
    baseline = peak_rss_mb()
    document = _document(megabytes)
    start = time.perf_counter()
    result = encoder.encode([document])
    seconds = time.perf_counter() - start
    return {
        "document_mb": round(len(document.encode()) / 1e6, 1),
        "seconds": round(seconds, 2),
        "baseline_rss_mb": round(baseline, 1),
        "truncated": result.truncated,
        "tokens": result.tokens,
        "nonzero": int(result.vectors.nnz),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=47.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = in_subprocess(_encode, args.mb)
    print(json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
