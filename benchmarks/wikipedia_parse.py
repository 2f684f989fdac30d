"""Wikipedia dump parsing: pages/s, MB/s and peak memory of the `wikipedia` step on synthetic dumps.

    python benchmarks/wikipedia_parse.py [--mb 50 200] [--workers 1 2] [--json out.json] [--no-history]

For each size in `--mb`, a seeded synthetic MediaWiki export of that many MB of uncompressed XML is
written (bz2) to a temporary folder: Korean and English pages alternating, each with a nested
infobox template, references (cite templates, named and self-closing), a table, internal, file,
category and interlanguage links, external links, bold and italic, sections and lists, plus a
redirect every 20 pages. Each dump is then parsed by `build_wikipedia` in a fresh process per
`--workers` value (the step end to end: the input's sha256, bz2, XML, cleaning, gzip output).
Reported: pages and MB (uncompressed XML) per second, the process's peak RSS and, with workers, the
largest worker's. Peak memory that does not grow from the small size to the large one is the
constant-memory check.
"""

from __future__ import annotations

import bz2
import json
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from _measure import in_subprocess

_KO = (
    "대한민국 서울 역사 문화 정부 경제 인구 도시 지역 사람 시대 전쟁 왕조 학교 대학 과학 기술 음악 영화 "
    "산업 교통 철도 강 산 바다 섬 언어 문자 종교 정치 선거 국회 대통령 회사 제품 연구 발전 변화 사회"
)
_EN = (
    "the of and in to was is for on as by with city history government population river mountain war "
    "university school music film company railway language culture science research development people"
)
KO_WORDS, EN_WORDS = tuple(_KO.split()), tuple(_EN.split())
KO_ENDINGS = ("이다.", "였다.", "한다.", "있다.", "되었다.")


def _sentence(rng: random.Random, korean: bool) -> str:
    words = KO_WORDS if korean else EN_WORDS
    out = []
    for _ in range(rng.randint(8, 18)):
        word = rng.choice(words)
        roll = rng.random()
        if roll < 0.12:
            word = f"[[{word}]]"
        elif roll < 0.18:
            word = f"[[{word} ({rng.choice(words)})|{word}]]"
        elif roll < 0.21:
            word = f"'''{word}'''"
        elif roll < 0.23:
            word = f"''{word}''"
        out.append(
            word + (rng.choice(("은", "는", "의", "에", "를")) if korean and rng.random() < 0.5 else "")
        )
    end = rng.choice(KO_ENDINGS) if korean else "."
    ref = ""
    if rng.random() < 0.3:
        ref = "<ref>{{cite web|url=https://example.org/%d|title=%s|date=2020}}</ref>" % (  # noqa: UP031
            rng.randint(1, 10**6),
            rng.choice(words),
        )
    elif rng.random() < 0.1:
        ref = f'<ref name="r{rng.randint(1, 9)}" />'
    return " ".join(out) + end + ref


def synthetic_page(rng: random.Random, k: int) -> str:
    """One page's wikitext (Korean for even k, English for odd)."""
    korean = k % 2 == 0
    words = KO_WORDS if korean else EN_WORDS
    lines = [
        "{{Infobox settlement\n| name = %s\n| image = Example.jpg\n| population = {{formatnum:%d}}\n"  # noqa: UP031
        "| area = {{convert|%d|km2}}\n}}"
        % (rng.choice(words), rng.randint(10**3, 10**7), rng.randint(1, 900))
    ]
    lines.append(" ".join(_sentence(rng, korean) for _ in range(rng.randint(2, 5))))
    lines.append(f"[[File:Example{k}.jpg|thumb|{rng.choice(words)} [[{rng.choice(words)}]]]]")
    for s in range(rng.randint(2, 6)):
        lines.append(f"\n== {rng.choice(words)} {s} ==")
        for _ in range(rng.randint(1, 4)):
            lines.append(" ".join(_sentence(rng, korean) for _ in range(rng.randint(2, 6))) + "\n")
        if rng.random() < 0.4:
            rows = "\n".join(
                f"|-\n| {rng.choice(words)} || {rng.randint(1, 999)}" for _ in range(rng.randint(2, 8))
            )
            lines.append('{| class="wikitable"\n! a !! b\n' + rows + "\n|}")
        if rng.random() < 0.4:
            lines.extend(
                f"* [[{rng.choice(words)}]] {_sentence(rng, korean)}" for _ in range(rng.randint(2, 5))
            )
        if rng.random() < 0.2:
            lines.append(f"[https://example.org/{k} {rng.choice(words)}]")
    lines.append("\n== References ==\n{{reflist}}")
    lines.append(f"[[Category:{rng.choice(words)}]]\n[[{'en' if korean else 'ko'}:{rng.choice(words)}]]")
    return "\n".join(lines)


def write_dump(path: Path, megabytes: float, seed: int = 0) -> dict[str, Any]:
    """A bz2 MediaWiki export of about `megabytes` MB of XML; returns its page count and size."""
    from xml.sax.saxutils import escape

    rng = random.Random(seed)
    target = int(megabytes * 1e6)
    written = pages = 0
    with bz2.open(path, "wb", compresslevel=9) as f:
        head = (
            '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" xml:lang="ko">\n'
            "<siteinfo><sitename>Synthetic</sitename><dbname>kowiki</dbname></siteinfo>\n"
        )
        f.write(head.encode())
        written += len(head)
        while written < target:
            pages += 1
            if pages % 20 == 0:
                text, redirect = f"#REDIRECT [[Page {pages - 1}]]", '<redirect title="x" />'
            else:
                text, redirect = synthetic_page(rng, pages), ""
            page = (
                f"<page><title>Page {pages}</title><ns>0</ns><id>{pages}</id>{redirect}"
                f"<revision><id>{pages}</id>"
                f"<timestamp>2024-01-01T00:00:00Z</timestamp>"
                f'<text xml:space="preserve">{escape(text)}</text></revision></page>\n'
            ).encode()
            f.write(page)
            written += len(page)
        f.write(b"</mediawiki>\n")
        written += 13
    return {"pages": pages, "xml_mb": written / 1e6, "bz2_mb": path.stat().st_size / 1e6}


def bench_parse(dump: str, out: str, workers: int, xml_mb: float) -> dict[str, Any]:
    from harness.prepare.wikipedia import build_wikipedia

    started = time.perf_counter()
    manifest = build_wikipedia(Path(dump), Path(out), language="ko", workers=workers, force=True)
    seconds = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    pages = manifest["counts"]["pages"]
    return {
        "workers": workers,
        "pages": pages,
        "articles": manifest["counts"].get("articles", 0),
        "seconds": round(seconds, 2),
        "pages_per_s": round(pages / seconds, 1),
        "mb_per_s": round(xml_mb / seconds, 2),
        "worker_peak_rss_mb": round(children, 1) if workers > 1 else None,
    }


def table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    out = Table(title="wikipedia step on synthetic dumps (ko/en wikitext, bz2)")
    for col in (
        "XML MB",
        "bz2 MB",
        "workers",
        "pages",
        "s",
        "pages/s",
        "MB/s",
        "peak RSS MB",
        "worker RSS MB",
    ):
        out.add_column(col, justify="right")
    for r in rows:
        out.add_row(
            f"{r['xml_mb']:,.0f}", f"{r['bz2_mb']:,.1f}", str(r["workers"]), f"{r['pages']:,}",
            f"{r['seconds']:.1f}", f"{r['pages_per_s']:,.0f}", f"{r['mb_per_s']:.2f}",
            f"{r['peak_rss_mb']:,.0f}",
            "-" if r["worker_peak_rss_mb"] is None else f"{r['worker_peak_rss_mb']:,.0f}",
        )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[50, 200], help="uncompressed XML sizes")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-history", action="store_true", help="do not append to the history")
    args = parser.parse_args(argv)
    console = Console()
    rows = []
    with tempfile.TemporaryDirectory(prefix="wikipedia-bench-") as tmp:
        for size in args.mb:
            dump = Path(tmp) / f"synthetic-{size:g}mb.xml.bz2"
            started = time.perf_counter()
            info = write_dump(dump, size)
            console.log(
                f"dump of {info['xml_mb']:,.1f} MB XML ({info['bz2_mb']:,.1f} MB bz2, "
                f"{info['pages']:,} pages) written in {time.perf_counter() - started:.1f} s"
            )
            for workers in args.workers:
                result = in_subprocess(
                    bench_parse, str(dump), str(Path(tmp) / "out"), workers, info["xml_mb"]
                )
                rows.append(info | result)
                console.log(f"{size:g} MB, {workers} workers: {result}")
            dump.unlink()
    console.print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if not args.no_history:
        from history import figures_from, record_and_print

        figures = []
        for r in rows:
            figures += figures_from(f"wikipedia_parse.{r['xml_mb']:.0f}mb.workers{r['workers']}", r, {
                "pages_per_s": ("pages/s", "higher"), "mb_per_s": ("MB/s", "higher"),
                "peak_rss_mb": ("MB", "lower"),
            })  # fmt: skip
        record_and_print(figures, console)


if __name__ == "__main__":
    main()
