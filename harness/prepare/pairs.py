"""(query, document) training pairs from articles JSONL, written as a BEIR folder.

Kinds of pair, each optional (`PairOptions.kinds`):
- `title-summary`: the article title -> its first paragraph;
- `title-paragraph`: the title -> each other paragraph of the text (at most `max_paragraphs`);
- `section`: a section title, prefixed by the article title unless `section_prefix` is off ->
  the section's text (the lead, section 0, is left out: it is the summary's; at most `max_sections`);
- `ict` (inverse cloze task): a sentence of a paragraph -> the rest of that paragraph without it
  (at most `max_ict` per article; the sentence drawn with a generator seeded by article and paragraph).

Sentences (`split_sentences`) end at `.`, `?`, `!` (and the full-width `。？！`), closing quotes or
brackets included, followed by white space or the end of the text: Korean declaratives end in
`다.`, questions in `까?`, so the punctuation rule covers them; a `.` after a lone Latin capital
(an initial, "J. R. R.") is not an end. Abbreviations like "e.g." do split: kept simple.

Ids are stable: a query or document id is `<article id>/<kind>/<index>` (white space and `%` of the
article id percent-encoded, since BEIR ids hold no white space). The corpus holds one document per
distinct (title, text): a later pair with the same document reuses the first id. Documents carry
no title (the title is the query of three kinds), except ICT documents, which keep the article
title as ICT pre-training does. Within an article, equal query texts share one query id (a title
query judges its summary and paragraphs together, so none of them is mined as its negative).

Splits are by article, never by pair: sha256 of "<seed>:<article id>" as a number in [0, 1)
below `train` fraction -> train, below train + dev -> dev, else test. An empty split has no file.

`--sample N` keeps N pairs of each input by reservoir sampling (seeded), so memory holds N pairs;
without it, articles stream straight to the output and memory holds the ids seen (for duplicate
detection) and a hash per written document. The `baseline` preset: 5,000 pairs of Korean
Wikipedia into `data/prepared/baseline-kowiki-pairs` and 5,000 of NamuWiki into
`data/prepared/baseline-namuwiki-pairs`, the 10K pairs `configs/baseline_dgx.yaml` trains on (the
full `pairs` outputs, `kowiki-pairs` and `namuwiki-pairs`, are what `pretrain_korean*.yaml` name).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from common.errors import WorkbenchError
from common.files import atomic_write, read_jsonl
from harness.console import console, meter, user_errors
from harness.prepare.step import StepRun, run_step

__all__ = [
    "KINDS",
    "PRESETS",
    "Pair",
    "PairOptions",
    "article_pairs",
    "article_split",
    "build_pairs",
    "build_pairs_preset",
    "register",
    "split_sentences",
]

VERSION = "1"
KINDS = ("title-summary", "title-paragraph", "section", "ict")
SPLITS = ("train", "dev", "test")
# preset name -> input name -> (output folder name, pairs sampled from that input)
PRESETS: dict[str, dict[str, tuple[str, int]]] = {
    "baseline": {"kowiki": ("baseline-kowiki-pairs", 5000), "namuwiki": ("baseline-namuwiki-pairs", 5000)},
}

_SENTENCE_END = re.compile(r"[.?!。？！]+[\"'”’」』)\]]*(?=\s|$)")
_INITIAL = re.compile(r"(?:^|[\s(\"'])[A-Z]\.$")


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` (see the module docstring), stripped, empty ones dropped."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if match.group().startswith(".") and _INITIAL.search(
            text[max(0, match.start() - 2) : match.start() + 1]
        ):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


@dataclass(frozen=True)
class PairOptions:
    """Which pairs an article gives; every field is a parameter recorded in the manifest."""

    kinds: tuple[str, ...] = KINDS
    max_paragraphs: int = 3  # title-paragraph pairs per article
    max_sections: int = 5  # section pairs per article
    max_ict: int = 3  # ict pairs per article
    section_prefix: bool = True  # "<article title> <section title>" as the section query
    min_doc_chars: int = 20  # shorter documents give no pair
    min_sentence_chars: int = 10  # shorter sentences are no ICT query
    seed: int = 0
    dev: float = 0.05  # fraction of articles in dev
    test: float = 0.05  # fraction of articles in test

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise WorkbenchError(f"pairs: unknown kind {unknown[0]!r}" if unknown else "pairs: no kinds")
        if not (self.dev >= 0 and self.test >= 0 and self.dev + self.test < 1):
            raise WorkbenchError(f"pairs: dev {self.dev} and test {self.test} must be >= 0 and sum below 1")
        for name in ("max_paragraphs", "max_sections", "max_ict", "min_doc_chars", "min_sentence_chars"):
            if getattr(self, name) < 0:
                raise WorkbenchError(f"pairs: {name} must be >= 0")


@dataclass(frozen=True)
class Pair:
    article: str  # article id
    kind: str
    index: int  # position among the article's pairs of this kind
    query: str
    title: str  # the document's title ("" but for ict)
    text: str


def _id_part(article_id: str) -> str:
    """The article id as part of a BEIR id: `%` and white space percent-encoded (UTF-8 bytes)."""
    return re.sub(r"[%\s]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), article_id)


def article_split(article_id: str, seed: int, dev: float, test: float) -> str:
    """train, dev or test for an article: a seeded hash of its id, so every pair goes with it."""
    digest = hashlib.sha256(f"{seed}:{article_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    train = 1 - dev - test
    return "train" if position < train else "dev" if position < train + dev else "test"


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def article_pairs(article: dict[str, Any], options: PairOptions) -> list[Pair]:
    """The pairs of one article (fields checked by the caller)."""
    aid, title = article["id"], article["title"].strip()
    paragraphs = _paragraphs(article["text"])
    first = (article.get("first_paragraph") or "").strip() or (paragraphs[0] if paragraphs else "")
    pairs: list[Pair] = []
    long_enough = options.min_doc_chars

    def add(kind: str, query: str, text: str, doc_title: str = "") -> None:
        index = sum(p.kind == kind for p in pairs)
        pairs.append(Pair(aid, kind, index, query, doc_title, text))

    if "title-summary" in options.kinds and title and len(first) >= long_enough:
        add("title-summary", title, first)
    if "title-paragraph" in options.kinds and title:
        others = [p for p in paragraphs if p != first and len(p) >= long_enough]
        for paragraph in others[: options.max_paragraphs]:
            add("title-paragraph", title, paragraph)
    if "section" in options.kinds:
        sections = [
            s
            for s in article.get("sections") or []
            if s.get("level", 0) > 0
            and (s.get("title") or "").strip()
            and len((s.get("text") or "").strip()) >= long_enough
        ]
        for section in sections[: options.max_sections]:
            heading = section["title"].strip()
            query = f"{title} {heading}" if options.section_prefix and title else heading
            add("section", query, section["text"].strip())
    if "ict" in options.kinds:
        for number, paragraph in enumerate(paragraphs):
            if sum(p.kind == "ict" for p in pairs) >= options.max_ict:
                break
            sentences = split_sentences(paragraph)
            if len(sentences) < 2:
                continue
            rng = random.Random(f"{options.seed}:{aid}:{number}")
            chosen = rng.randrange(len(sentences))
            rest = " ".join(s for i, s in enumerate(sentences) if i != chosen)
            if len(sentences[chosen]) >= options.min_sentence_chars and len(rest) >= long_enough:
                add("ict", sentences[chosen], rest, title)
    return pairs


_REQUIRED = {"id": str, "title": str, "text": str}


def _articles(path: Path, run: StepRun, seen: set[str]) -> Iterator[dict[str, Any]]:
    """The usable articles of one input; the others counted as problems with their line."""
    for line, article in read_jsonl(path):
        wrong = [k for k, t in _REQUIRED.items() if not isinstance(article.get(k), t)]
        if wrong:
            run.problem("bad article", f"{path}: line {line}", f"{wrong[0]!r} missing or not a string")
            continue
        if not article["id"]:
            run.problem("bad article", f"{path}: line {line}", "empty id")
            continue
        sections = article.get("sections")
        if sections is not None and not (
            isinstance(sections, list) and all(isinstance(s, dict) for s in sections)
        ):
            run.problem("bad article", f"{path}: line {line}", "'sections' is not a list of objects")
            continue
        if article["id"] in seen:
            run.problem("duplicate article id", f"{path}: line {line}", repr(article["id"]))
            continue
        seen.add(article["id"])
        yield article


def _reservoir(pairs: Iterator[Pair], size: int, seed: int) -> list[Pair]:
    """`size` pairs drawn uniformly from the stream (algorithm R, seeded), in stream order."""
    rng = random.Random(seed)
    kept: list[tuple[int, Pair]] = []
    for number, pair in enumerate(pairs):
        if number < size:
            kept.append((number, pair))
        else:
            slot = rng.randrange(number + 1)
            if slot < size:
                kept[slot] = (number, pair)
    return [pair for _, pair in sorted(kept, key=lambda item: item[0])]


@dataclass
class _Writer:
    """Writes pairs as corpus, queries and qrels lines: documents deduplicated by content, queries
    by text within an article."""

    run: StepRun
    options: PairOptions
    corpus: IO[str]
    queries: IO[str]
    qrels: dict[str, IO[str]]
    documents: dict[bytes, str] = field(default_factory=dict)  # sha1 of (title, text) -> id
    article: str = ""
    article_queries: dict[str, str] = field(default_factory=dict)  # query text -> id
    judged: set[tuple[str, str]] = field(default_factory=set)

    def write(self, pair: Pair) -> None:
        if pair.article != self.article:
            self.article, self.article_queries, self.judged = pair.article, {}, set()
            self.run.count("articles with pairs")
        pair_id = f"{_id_part(pair.article)}/{pair.kind}/{pair.index}"
        key = hashlib.sha1(json.dumps([pair.title, pair.text], ensure_ascii=False).encode()).digest()
        doc_id = self.documents.get(key)
        if doc_id is None:
            doc_id = self.documents[key] = pair_id
            self.corpus.write(
                json.dumps({"_id": doc_id, "title": pair.title, "text": pair.text}, ensure_ascii=False) + "\n"
            )
            self.run.count("documents")
        query_id = self.article_queries.get(pair.query)
        if query_id is None:
            query_id = self.article_queries[pair.query] = pair_id
            self.queries.write(json.dumps({"_id": query_id, "text": pair.query}, ensure_ascii=False) + "\n")
            self.run.count("queries")
        if (query_id, doc_id) in self.judged:
            self.run.count("pairs repeated")
            return
        self.judged.add((query_id, doc_id))
        split = article_split(pair.article, self.options.seed, self.options.dev, self.options.test)
        self.qrels[split].write(f"{query_id}\t{doc_id}\t1\n")
        self.run.count(f"pairs {pair.kind}")
        self.run.count(f"qrels {split}")


def build_pairs(
    inputs: Sequence[Path],
    out: Path,
    options: PairOptions | None = None,
    sample: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Pairs of every article of `inputs` (articles JSONL) as a BEIR folder `out`; with `sample`,
    `sample` pairs of each input. Returns the manifest."""
    options = options or PairOptions()
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise WorkbenchError("pairs: no input files")
    if sample is not None and sample < 1:
        raise WorkbenchError(f"pairs: --sample must be at least 1, got {sample}")
    params = asdict(options) | {"sample": sample}

    def build(run: StepRun) -> None:
        seen: set[str] = set()
        qrels_dir = run.out / "qrels"
        with (
            atomic_write(run.out / "corpus.jsonl") as corpus,
            atomic_write(run.out / "queries.jsonl") as queries,
            atomic_write(qrels_dir / "train.tsv") as train,
            atomic_write(qrels_dir / "dev.tsv") as dev,
            atomic_write(qrels_dir / "test.tsv") as test,
        ):
            qrels = {"train": train, "dev": dev, "test": test}
            for handle in qrels.values():
                handle.write("query-id\tcorpus-id\tscore\n")
            writer = _Writer(run, options, corpus, queries, qrels)
            for path in inputs:
                with meter(f"pairs {path.name}", unit="articles") as m:

                    def stream(path: Path = path, m: Any = m) -> Iterator[Pair]:
                        for article in _articles(path, run, seen):
                            run.count("articles")
                            m.advance()
                            yield from article_pairs(article, options)

                    pairs = stream() if sample is None else iter(_reservoir(stream(), sample, options.seed))
                    for pair in pairs:
                        writer.write(pair)
        for split in SPLITS:
            if not run.counts[f"qrels {split}"]:
                (qrels_dir / f"{split}.tsv").unlink()
        if not run.counts["documents"]:
            raise WorkbenchError(f"pairs: no pair in {', '.join(map(str, inputs))}")

    return run_step(out, "pairs", VERSION, inputs, params, build, force=force)


def build_pairs_preset(
    name: str, inputs: dict[str, Path], root: Path = Path("data/prepared"), force: bool = False
) -> dict[str, dict[str, Any]]:
    """Run a preset: each of its inputs sampled into its folder under `root`. Returns the manifests."""
    if name not in PRESETS:
        raise WorkbenchError(f"pairs: unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    missing = [k for k in preset if k not in inputs]
    extra = [k for k in inputs if k not in preset]
    if missing or extra:
        raise WorkbenchError(
            f"pairs: preset {name!r} takes the inputs {', '.join(preset)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(extra)}" if extra else "")
        )
    manifests = {}
    for key, (folder, size) in preset.items():
        console.log(f"pairs preset {name}: {size:,} pairs of {inputs[key]} -> {root / folder}")
        manifests[key] = build_pairs([inputs[key]], Path(root) / folder, sample=size, force=force)
    return manifests


def register(app: typer.Typer) -> None:
    """Add the `pairs` and `pairs-preset` commands."""

    @app.command("pairs")
    def pairs_command(
        inputs: Annotated[list[Path], typer.Argument(help="articles JSONL files (.gz read too)")],
        out: Annotated[Path, typer.Option("--out", help="the BEIR folder to write")],
        kinds: Annotated[str, typer.Option(help=f"comma-separated kinds of {', '.join(KINDS)}")] = ",".join(
            KINDS
        ),
        sample: Annotated[
            int | None, typer.Option(help="keep N pairs of each input (seeded reservoir)")
        ] = None,
        max_paragraphs: Annotated[int, typer.Option(help="title-paragraph pairs per article")] = 3,
        max_sections: Annotated[int, typer.Option(help="section pairs per article")] = 5,
        max_ict: Annotated[int, typer.Option(help="ict pairs per article")] = 3,
        section_prefix: Annotated[bool, typer.Option(help="prefix section queries with the title")] = True,
        min_doc_chars: Annotated[int, typer.Option(help="shorter documents give no pair")] = 20,
        min_sentence_chars: Annotated[int, typer.Option(help="shorter sentences are no ict query")] = 10,
        dev: Annotated[float, typer.Option(help="fraction of articles in dev")] = 0.05,
        test: Annotated[float, typer.Option(help="fraction of articles in test")] = 0.05,
        seed: Annotated[int, typer.Option(help="seed of splits, sampling and ict sentences")] = 0,
        force: Annotated[bool, typer.Option(help="rebuild even when up to date")] = False,
    ) -> None:
        """Query-document pairs (title, section, inverse-cloze) from articles, as a BEIR folder."""
        with user_errors():
            options = PairOptions(
                kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
                max_paragraphs=max_paragraphs,
                max_sections=max_sections,
                max_ict=max_ict,
                section_prefix=section_prefix,
                min_doc_chars=min_doc_chars,
                min_sentence_chars=min_sentence_chars,
                seed=seed,
                dev=dev,
                test=test,
            )
            build_pairs(inputs, out, options, sample=sample, force=force)

    @app.command("pairs-preset")
    def pairs_preset_command(
        name: Annotated[str, typer.Argument(help=f"a preset: {', '.join(PRESETS)}")],
        inputs: Annotated[
            list[str],
            typer.Option(
                "--input", help="NAME=FILE, one per input of the preset (baseline: kowiki, namuwiki)"
            ),
        ],
        root: Annotated[Path, typer.Option(help="the folder the preset's outputs go in")] = Path(
            "data/prepared"
        ),
        force: Annotated[bool, typer.Option(help="rebuild even when up to date")] = False,
    ) -> None:
        """A named set of sampled pair folders (baseline: Korean Wikipedia 5K + NamuWiki 5K)."""
        with user_errors():
            named: dict[str, Path] = {}
            for item in inputs:
                key, sep, value = item.partition("=")
                if not sep or not key or not value:
                    raise WorkbenchError(f"--input {item!r}: expected NAME=FILE")
                named[key] = Path(value)
            build_pairs_preset(name, named, root, force=force)
