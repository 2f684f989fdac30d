"""IDF of a dated corpus with recent documents weighing more, and the tokens trending in it.

Input: JSONL `{"id", "text", "date"}`, the date ISO 8601 (a date, or a datetime whose date part is
taken as written). Each document weighs w = 0.5 ** (age_days / half_life_days), its age counted in
whole days back from the reference date (the newest date, or `--reference`). The weighted document
frequency of a token is the sum of the weights of the documents holding it, N the sum of all
weights, and idf = log(1 + (N - df + 0.5) / (df + 0.5)) as the query side computes it
(`models.idf.idf_from_df`); `idf.json` is written by `models.idf.IdfWeights.to_json`, the
query side's one writer. Tokens are those of the checkpoint's tokenizer.

Trends: the documents of the last `recent_days` days (age < recent_days) against all the earlier
ones. For each token, r of the n_r recent and e of the n_e earlier documents hold it; the
two-proportion z statistic z = (r/n_r - e/n_e) / sqrt(p (1 - p) (1/n_r + 1/n_e)), p = (r + e) /
(n_r + n_e), with its one-sided p-value. A token trends where r >= `min_count` and z >= `z_threshold`;
`trends.json` lists them (most significant first), and `trend_boost` multiplies their idf (1.0:
none): a boost found in the data, in place of a hand-written list of boosted words.

`changelog-corpus` turns Debian changelogs (`/usr/share/doc/*/changelog.Debian.gz`) into such a
corpus, one document per entry dated by its ` -- Name <mail>  Thu, 01 Jan 2024 ...` line: real
dated English text on any Debian machine.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from common.errors import WorkbenchError
from common.files import atomic_write, read_jsonl, read_lines, write_json
from harness.console import console, meter, user_errors
from harness.prepare.step import StepRun, run_step

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Trend",
    "build_changelog_corpus",
    "build_temporal_idf",
    "decay_weight",
    "find_trends",
    "parse_date",
    "read_changelog",
    "read_dated",
    "register",
    "weighted_frequencies",
]

VERSION = "1"
CHANGELOG_VERSION = "1"


def parse_date(value: Any) -> date | None:
    """The date of an ISO 8601 date or datetime string; None where it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip()).date()
    except ValueError:
        return None


def read_dated(path: Path) -> Iterator[tuple[int, str, date]]:
    """(line, text, date) of each document; a missing text or a date that does not parse is an
    error naming the line (dates are what this step is about: a wrong one would weigh wrongly)."""
    for line, obj in read_jsonl(path):
        text = obj.get("text")
        if not isinstance(text, str):
            raise WorkbenchError(f"{path}:{line}: 'text' missing or not a string")
        when = parse_date(obj.get("date"))
        if when is None:
            raise WorkbenchError(f"{path}:{line}: date {obj.get('date')!r} is not an ISO 8601 date")
        yield line, text, when


def decay_weight(age_days: int | float, half_life_days: float) -> float:
    """0.5 ** (age / half-life): 1 for a document of the reference date, 1/2 one half-life older."""
    return 0.5 ** (age_days / half_life_days)


@dataclass(frozen=True)
class Frequencies:
    weighted_df: np.ndarray  # (vocab,) float64: sum of the weights of the documents holding a token
    weighted_docs: float  # sum of all weights: the N of the idf
    recent_df: np.ndarray  # (vocab,) int64: recent documents holding the token
    earlier_df: np.ndarray  # (vocab,) int64
    recent_docs: int
    earlier_docs: int


def weighted_frequencies(
    docs: Iterable[tuple[str, float, bool]], tokenizer: Any, batch_size: int = 512
) -> Frequencies:
    """Weighted and recent/earlier document frequencies of (text, weight, is recent) documents.

    `models.idf.document_frequencies` counts every document once; this is the same count (over
    the same `distinct_tokens`) with a weight per document and the two windows of the trend test.
    """
    import numpy as np

    from models.idf import distinct_tokens

    vocab = len(tokenizer)
    weighted = np.zeros(vocab, dtype=np.float64)
    recent = np.zeros(vocab, dtype=np.int64)
    earlier = np.zeros(vocab, dtype=np.int64)
    totals = {"weight": 0.0, "recent": 0, "earlier": 0}
    for (_, weight, is_recent), unique in distinct_tokens(docs, tokenizer, lambda d: d[0], batch_size):
        weighted[unique] += weight
        (recent if is_recent else earlier)[unique] += 1
        totals["weight"] += weight
        totals["recent" if is_recent else "earlier"] += 1
    return Frequencies(
        weighted, totals["weight"], recent, earlier, int(totals["recent"]), int(totals["earlier"])
    )


@dataclass(frozen=True)
class Trend:
    token: str  # as idf.json keys it: tokenizer.decode([id])
    token_id: int
    recent_df: int
    earlier_df: int
    z: float
    p: float


def find_trends(
    freq: Frequencies, tokenizer: Any, min_count: int = 5, z_threshold: float = 3.0
) -> list[Trend]:
    """Tokens held by significantly more recent than earlier documents (module docstring), best first."""
    import numpy as np

    n_r, n_e = freq.recent_docs, freq.earlier_docs
    if n_r == 0 or n_e == 0:
        return []
    r, e = freq.recent_df.astype(np.float64), freq.earlier_df.astype(np.float64)
    pooled = (r + e) / (n_r + n_e)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_r + 1 / n_e))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (r / n_r - e / n_e) / se, 0.0)
    special = set(tokenizer.all_special_ids)
    chosen = [int(i) for i in np.flatnonzero((freq.recent_df >= min_count) & (z >= z_threshold))]
    trends = [
        Trend(
            token=tokenizer.decode([i]),
            token_id=i,
            recent_df=int(freq.recent_df[i]),
            earlier_df=int(freq.earlier_df[i]),
            z=float(z[i]),
            p=0.5 * math.erfc(float(z[i]) / math.sqrt(2)),
        )
        for i in chosen
        if i not in special
    ]
    return sorted(trends, key=lambda t: (-t.z, t.token_id))


def build_temporal_idf(
    corpus: Path,
    out: Path,
    tokenizer: Path,
    half_life_days: float = 180.0,
    reference: date | None = None,
    recent_days: int = 30,
    min_count: int = 5,
    z_threshold: float = 3.0,
    trend_boost: float = 1.0,
    force: bool = False,
) -> dict[str, Any]:
    """`out/idf.json` (time-decayed idf, trending tokens boosted) and `out/trends.json` of a dated
    corpus, with the tokenizer of the model folder `tokenizer`. Returns the manifest."""
    if half_life_days <= 0 or recent_days < 1 or min_count < 1 or trend_boost <= 0:
        raise WorkbenchError(
            "temporal-idf: half_life_days and trend_boost must be > 0, recent_days and min_count >= 1"
        )
    corpus, tokenizer = Path(corpus), Path(tokenizer)
    params = {
        "half_life_days": half_life_days,
        "reference": reference.isoformat() if reference else None,
        "recent_days": recent_days,
        "min_count": min_count,
        "z_threshold": z_threshold,
        "trend_boost": trend_boost,
    }

    def build(run: StepRun) -> None:
        from models.checkpoint import load_tokenizer
        from models.idf import IdfWeights, idf_from_df

        newest = oldest = None
        documents = 0
        for _, _, when in read_dated(corpus):  # first pass: the dates (the reference is the newest)
            newest = when if newest is None or when > newest else newest
            oldest = when if oldest is None or when < oldest else oldest
            documents += 1
        if newest is None or oldest is None:
            raise WorkbenchError(f"{corpus}: no documents")
        ref = reference or newest
        tok = load_tokenizer(tokenizer)

        def weighted() -> Iterator[tuple[str, float, bool]]:
            with meter("temporal idf", documents, "documents") as m:
                for line, text, when in read_dated(corpus):
                    m.advance()
                    age = (ref - when).days
                    if age < 0:
                        run.problem("after the reference date", f"{corpus}: line {line}", when.isoformat())
                        continue
                    run.count("documents")
                    run.count("recent documents" if age < recent_days else "earlier documents")
                    yield text, decay_weight(age, half_life_days), age < recent_days

        freq = weighted_frequencies(weighted(), tok)
        if freq.weighted_docs <= 0:
            raise WorkbenchError(f"{corpus}: no document dated on or before {ref.isoformat()}")
        weights = idf_from_df(freq.weighted_df, freq.weighted_docs)  # type: ignore[arg-type]
        trends = find_trends(freq, tok, min_count, z_threshold)
        for trend in trends:
            weights[trend.token_id] *= trend_boost
        IdfWeights(weights, tok).to_json(run.out / "idf.json")
        write_json(
            run.out / "trends.json",
            {
                "reference_date": ref.isoformat(),
                "recent_days": recent_days,
                "recent_documents": freq.recent_docs,
                "earlier_documents": freq.earlier_docs,
                "boost": trend_boost,
                "trends": [t.__dict__ for t in trends],
            },
            indent=1,
        )
        run.count("trending tokens", len(trends))
        run.extra.update(
            reference_date=ref.isoformat(),
            oldest_date=oldest.isoformat(),
            newest_date=newest.isoformat(),
            weighted_documents=round(freq.weighted_docs, 6),
        )

    # the tokenizer's own files, not the weights beside them: they define the ids
    defining = [tokenizer / name for name in ("tokenizer.json", "tokenizer_config.json")]
    if not defining[0].is_file():
        raise WorkbenchError(f"{tokenizer}: no tokenizer.json (give a model folder as --tokenizer)")
    inputs = [corpus, *(p for p in defining if p.is_file())]
    return run_step(out, "temporal-idf", VERSION, inputs, params, build, force=force)


# --------------------------------------------------------------------------- Debian changelogs

_HEADER = re.compile(r"^(?P<package>[a-z0-9][a-z0-9+.-]*) \((?P<version>[^)]+)\)")
_TRAILER = re.compile(r"^ -- (?:(?P<who>.*?>)\s+)?(?P<date>.*?)\s*$")  # the date after the maintainer


def read_changelog(path: Path, run: StepRun | None = None) -> Iterator[dict[str, str]]:
    """`{"id", "text", "date"}` per entry of a Debian changelog: text = the entry's lines between
    its header and its ` -- ` trailer, date = the trailer's date in UTC. An entry whose date does
    not parse, or that has no trailer, is counted as a problem (with `run`) and skipped."""
    package = version = None
    body: list[str] = []
    entry = 0
    for line_no, line in read_lines(path):
        line = line.rstrip("\n")
        header = _HEADER.match(line)
        if header:
            if package is not None and run is not None:
                run.problem("changelog entry without trailer", f"{path}: line {line_no}", "next entry begins")
            package, version, body = header["package"], header["version"], []
            continue
        trailer = _TRAILER.match(line)
        if trailer and package is not None:
            entry += 1
            try:
                when = email.utils.parsedate_to_datetime(trailer["date"]).astimezone(UTC).date()
            except (TypeError, ValueError, IndexError, OverflowError):
                if run is not None:
                    run.problem("undated changelog entry", f"{path}: line {line_no}", trailer["date"])
                package = None
                continue
            text = " ".join(" ".join(s.strip() for s in body if s.strip()).split())
            yield {"id": f"{package}/{version}#{entry}", "text": text, "date": when.isoformat()}
            package = None
        elif package is not None:
            body.append(line)
    if package is not None and run is not None:
        run.problem("changelog entry without trailer", f"{path}: line {line_no}", "end of file")


def build_changelog_corpus(files: Sequence[Path], out: Path, force: bool = False) -> dict[str, Any]:
    """`out/documents.jsonl`: every entry of the changelog files (the same file linked twice read
    once) as a dated document. Returns the manifest."""
    unique = sorted({Path(p).resolve() for p in files})
    if not unique:
        raise WorkbenchError("changelog-corpus: no changelog files")

    def build(run: StepRun) -> None:
        with atomic_write(run.out / "documents.jsonl") as f, meter("changelogs", len(unique), "files") as m:
            for path in unique:
                for record in read_changelog(path, run):
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    run.count("entries")
                run.count("files")
                m.advance()

    return run_step(out, "changelog-corpus", CHANGELOG_VERSION, unique, {}, build, force=force)


def register(app: typer.Typer) -> None:
    """Add the `temporal-idf` and `changelog-corpus` commands."""

    @app.command("temporal-idf")
    def temporal_idf_command(
        corpus: Annotated[Path, typer.Argument(help='dated JSONL: {"id", "text", "date"} per line')],
        out: Annotated[Path, typer.Option("--out", help="folder for idf.json and trends.json")],
        tokenizer: Annotated[Path, typer.Option("--tokenizer", help="a model folder (its tokenizer.json)")],
        half_life_days: Annotated[float, typer.Option(help="a document this old weighs 1/2")] = 180.0,
        reference: Annotated[
            str | None, typer.Option(help="reference date (ISO); default: the newest")
        ] = None,
        recent_days: Annotated[int, typer.Option(help="the trend test's recent window, days")] = 30,
        min_count: Annotated[int, typer.Option(help="recent documents a trending token needs")] = 5,
        z_threshold: Annotated[float, typer.Option(help="z a trending token needs")] = 3.0,
        trend_boost: Annotated[float, typer.Option(help="multiply a trending token's idf by this")] = 1.0,
        force: Annotated[bool, typer.Option(help="rebuild even when up to date")] = False,
    ) -> None:
        """Time-decayed idf.json of a dated corpus, and its trending tokens."""
        with user_errors():
            when = None
            if reference is not None:
                when = parse_date(reference)
                if when is None:
                    raise WorkbenchError(f"--reference {reference!r} is not an ISO 8601 date")
            build_temporal_idf(
                corpus,
                out,
                tokenizer,
                half_life_days=half_life_days,
                reference=when,
                recent_days=recent_days,
                min_count=min_count,
                z_threshold=z_threshold,
                trend_boost=trend_boost,
                force=force,
            )

    @app.command("changelog-corpus")
    def changelog_corpus_command(
        out: Annotated[Path, typer.Option("--out", help="folder for documents.jsonl")],
        files: Annotated[
            list[Path] | None,
            typer.Argument(help="changelog files; default /usr/share/doc/*/changelog.Debian.gz"),
        ] = None,
        force: Annotated[bool, typer.Option(help="rebuild even when up to date")] = False,
    ) -> None:
        """A dated corpus (one document per entry) from Debian changelogs."""
        with user_errors():
            chosen = files or sorted(Path("/usr/share/doc").glob("*/changelog.Debian.gz"))
            manifest = build_changelog_corpus(chosen, out, force=force)
            console.log(f"changelog-corpus: {manifest['counts'].get('entries', 0):,} entries")
