"""Text analyzers for lexical retrieval, and an on-disk cache of analyzed corpora.

- `plain`: lower-cased Unicode word characters (`\\w+`). Korean eojeol stay whole, particles and
  endings attached ("이미지를"), which is what a whitespace analyzer gives Korean.
- `kiwi`: Kiwi morphemes (kiwipiepy) for Hangul, without the part-of-speech classes that
  Lucene's Nori analyzer drops by default (particles, endings, affixes, punctuation); other
  scripts as in `plain`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from common.files import atomic_write
from harness.console import track

T = TypeVar("T")

__all__ = ["Analyzer", "KiwiAnalyzer", "PlainAnalyzer", "TokenizedCorpus", "analyze_cached"]


class Analyzer(Protocol):
    """Turns texts into token lists; `key` changes whenever the output could change."""

    @property
    def key(self) -> str: ...

    def analyze(self, texts: Sequence[str], progress: str | None = None) -> list[list[str]]: ...


def _tracked(items: Iterable[T], total: int, progress: str | None) -> Iterable[T]:
    return items if progress is None else track(items, progress, total)


def normalize(text: str) -> str:
    """NFKC: composed Hangul syllables, full-width Latin as ASCII ("ＧＩＭＰ" -> "GIMP")."""
    return unicodedata.normalize("NFKC", text)


class PlainAnalyzer:
    """Lower-cased `\\w+` tokens of the NFKC-normalized text."""

    key = "plain-v2"
    _word = re.compile(r"\w+")

    def analyze(self, texts: Sequence[str], progress: str | None = None) -> list[list[str]]:
        return [self._word.findall(normalize(text).lower()) for text in _tracked(texts, len(texts), progress)]


# Nori's default stop tags mapped to Kiwi's tag set (Sejong-based): endings E*, particles J*,
# interjection IC, determiners MM, conjunctive adverbs MAJ, prefixes/suffixes XP*/XS*, symbols
# and punctuation S*, unknown UN.
KIWI_STOP_PREFIXES = ("E", "J", "IC", "MM", "MAJ", "XP", "XS", "S", "UN")
HANGUL = "\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f"  # syllables, jamo, compatibility jamo
_HAS_HANGUL = re.compile(f"[{HANGUL}]")
_NON_HANGUL_WORD = re.compile(f"[^\\W{HANGUL}]+")  # word characters, Hangul excluded


class KiwiAnalyzer:
    """Kiwi morphemes for Hangul, lower-cased `\\w+` words for every other script (text NFKC).

    Kiwi analyses the whole text (it needs the context), but only its morphemes that contain
    Hangul are kept: on Latin text it is no better than a word regex and sometimes worse
    (it splits "image." at a sentence end into "im" + "age."). Texts without Hangul skip Kiwi.
    """

    def __init__(self, num_workers: int = -1) -> None:
        self.num_workers = num_workers  # -1: one per core; 0 or 1: a plain per-text loop

    @property
    def key(self) -> str:
        from importlib.metadata import version

        return f"kiwi-{version('kiwipiepy')}-model-{version('kiwipiepy_model')}-v3"

    @cached_property
    def _kiwi(self):
        from kiwipiepy import Kiwi

        return Kiwi(num_workers=self.num_workers)

    def analyze(self, texts: Sequence[str], progress: str | None = None) -> list[list[str]]:
        texts = [normalize(text) for text in texts]
        korean = [i for i, text in enumerate(texts) if _HAS_HANGUL.search(text)]
        if self._kiwi.num_workers <= 1:  # Kiwi's batch mode needs worker threads
            analysed = (self._kiwi.tokenize(texts[i]) for i in korean)
        else:  # batch mode: a generator over the texts, results in input order
            analysed = self._kiwi.tokenize(texts[i] for i in korean)
        morphemes = dict(zip(korean, _tracked(analysed, len(korean), progress), strict=True))
        return [self._merge(text, morphemes.get(i, ())) for i, text in enumerate(texts)]

    @staticmethod
    def _merge(text: str, morphemes) -> list[str]:
        """Hangul morphemes and other words, in text order."""
        positioned = [
            (tok.start, tok.form)
            for tok in morphemes
            if _HAS_HANGUL.search(tok.form) and not tok.tag.startswith(KIWI_STOP_PREFIXES)
        ]
        positioned += [(m.start(), m.group().lower()) for m in _NON_HANGUL_WORD.finditer(text)]
        return [form for _, form in sorted(positioned)]


class TokenizedCorpus:
    """Token lists stored compactly: a vocabulary, concatenated ids and offsets."""

    def __init__(self, vocab: list[str], ids: np.ndarray, offsets: np.ndarray) -> None:
        self.vocab, self.ids, self.offsets = vocab, ids, offsets

    @classmethod
    def from_tokens(cls, tokens: list[list[str]]) -> TokenizedCorpus:
        vocab_index: dict[str, int] = {}
        ids = [vocab_index.setdefault(tok, len(vocab_index)) for doc in tokens for tok in doc]
        offsets = np.cumsum([0] + [len(doc) for doc in tokens], dtype=np.int64)
        return cls(list(vocab_index), np.asarray(ids, dtype=np.int32), offsets)

    def to_tokens(self) -> list[list[str]]:
        vocab = self.vocab
        return [
            [vocab[i] for i in self.ids[self.offsets[n] : self.offsets[n + 1]].tolist()]
            for n in range(len(self.offsets) - 1)
        ]

    def save(self, path: Path) -> None:
        with atomic_write(path, "wb") as handle:
            np.savez(
                handle,
                ids=self.ids,
                offsets=self.offsets,
                vocab=np.frombuffer(json.dumps(self.vocab).encode(), dtype=np.uint8),
            )

    @classmethod
    def load(cls, path: Path) -> TokenizedCorpus:
        with np.load(path) as data:
            vocab = json.loads(data["vocab"].tobytes().decode())
            return cls(vocab, data["ids"], data["offsets"])


def analyze_cached(
    analyzer: Analyzer, texts: Sequence[str], cache_file: Path | None, progress: str | None = None
) -> list[list[str]]:
    """Analyze `texts`, reusing `cache_file` when present (keyed by the caller: analyzer + data)."""
    if cache_file is not None and cache_file.is_file():
        return TokenizedCorpus.load(cache_file).to_tokens()
    tokens = analyzer.analyze(texts, progress)
    if cache_file is not None:
        TokenizedCorpus.from_tokens(tokens).save(cache_file)
    return tokens
