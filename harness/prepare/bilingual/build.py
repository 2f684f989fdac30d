"""The bilingual step: Korean-English retrieval tasks in BEIR format from Debian's packages of the
Debian FAQ (Korean and English, aligned by section) and of Firefox ESR and Thunderbird (English
strings in `omni.ja`, Korean ones in the language packs, aligned by file and message id).

    data/prepared/bilingual/
      manifest.json  README.md
      aligned.jsonl        the aligned Mozilla strings {"ko","en","source","id","split"}
      debian-faq-ko/       Korean question (section title) -> Korean answer (section text)
      debian-faq-ko-en/    Korean question -> English answer
      debian-faq-en-ko/    English question -> Korean answer
      firefox-ko-en/  firefox-en-ko/  thunderbird-ko-en/  thunderbird-en-ko/
                           a string -> its translation among every distinct string of the other language

One `run_step` for the whole step, its inputs the six .deb files: a re-run with the same packages
and parameters is a no-op.
"""

from __future__ import annotations

import hashlib
import random
import string
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from common.errors import WorkbenchError
from common.files import write_jsonl
from harness.console import console, meter, user_errors
from harness.prepare.step import StepRun, run_step

__all__ = [
    "APPS",
    "FAQ_EN",
    "FAQ_KO",
    "PACKAGES",
    "SPLITS",
    "MozillaApp",
    "build_bilingual",
    "register",
    "split_units",
]

STEP, VERSION = "bilingual", "1"
FIREFOX, THUNDERBIRD = "140.12.0esr-1~deb12u1", "1:140.12.0esr-1~deb12u1"
PACKAGES = {  # pinned: the versions of Debian bookworm these tasks were built and checked from
    "debian-faq": "11.1",
    "debian-faq-ko": "11.1",
    "firefox-esr": FIREFOX,
    "firefox-esr-l10n-ko": FIREFOX,
    "thunderbird": THUNDERBIRD,
    "thunderbird-l10n-ko": THUNDERBIRD,
}
FAQ_EN, FAQ_KO = "usr/share/doc/debian/FAQ", "usr/share/doc/debian/FAQ/ko"
SPLITS = ("train", "dev", "test")
FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_SEED = 13
TEMPLATE = Path(__file__).with_name("README.template.md")


@dataclass(frozen=True)
class MozillaApp:
    """Where one application's strings are: (archive path in the package, its place in the app)."""

    name: str
    en_package: str
    ko_package: str
    en_archives: tuple[tuple[str, str], ...]
    ko_archives: tuple[tuple[str, str], ...]


APPS = (
    MozillaApp(
        "firefox",
        "firefox-esr",
        "firefox-esr-l10n-ko",
        (("usr/lib/firefox-esr/omni.ja", ""), ("usr/lib/firefox-esr/browser/omni.ja", "browser/")),
        (("usr/lib/firefox-esr/browser/extensions/langpack-ko@firefox-esr.mozilla.org.xpi", ""),),
    ),
    MozillaApp(
        "thunderbird",
        "thunderbird",
        "thunderbird-l10n-ko",
        (("usr/share/thunderbird/omni.ja", ""),),
        (("usr/lib/thunderbird/extensions/langpack-ko@thunderbird.mozilla.org.xpi", ""),),
    ),
)


def split_units(units: Iterable[str], seed: int, fractions: Sequence[float] = FRACTIONS) -> dict[str, str]:
    """unit -> "train" | "dev" | "test": the sorted distinct units shuffled with `seed`, the first
    round(n * test) (at least 1) to test, the next round(n * dev) (at least 1) to dev, the rest to train."""
    ordered = sorted(set(units))
    random.Random(seed).shuffle(ordered)
    n_test = max(1, round(len(ordered) * fractions[2]))
    n_dev = max(1, round(len(ordered) * fractions[1]))
    if len(ordered) - n_test - n_dev < 1:
        raise WorkbenchError(f"{len(ordered)} source units are too few for train, dev and test splits")
    return {
        unit: "test" if i < n_test else "dev" if i < n_test + n_dev else "train"
        for i, unit in enumerate(ordered)
    }


def _text_id(language: str, text: str) -> str:
    return f"{language}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _write_beir(
    run: StepRun,
    name: str,
    corpus: list[dict[str, str]],
    queries: dict[str, dict[str, Any]],
    qrels: dict[str, list[tuple[str, str]]],
) -> dict[str, Any]:
    """corpus.jsonl, queries.jsonl (the judged queries only) and qrels/<split>.tsv of one task."""
    from common.files import atomic_write

    folder = run.out / name
    judged = {qid for rows in qrels.values() for qid, _ in rows}
    counts: dict[str, Any] = {"documents": write_jsonl(folder / "corpus.jsonl", corpus)}
    counts["queries"] = write_jsonl(
        folder / "queries.jsonl", (q for q in queries.values() if q["_id"] in judged)
    )
    for split in SPLITS:
        rows = qrels[split]
        if not rows:
            raise WorkbenchError(f"{name}: no {split} pairs; the sources are too small to split")
        with atomic_write(folder / "qrels" / f"{split}.tsv") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            handle.writelines(f"{qid}\t{doc}\t1\n" for qid, doc in rows)
        counts[split] = {"queries": len({qid for qid, _ in rows}), "pairs": len(rows)}
        run.count(f"{name} {split} queries", counts[split]["queries"])
        run.count(f"{name} {split} pairs", len(rows))
    run.count(f"{name} documents", counts["documents"])
    return counts


def _faq_tasks(run: StepRun, root_en: Path, root_ko: Path, seed: int) -> tuple[dict[str, Any], int]:
    from harness.prepare.bilingual.debian_faq import align_faq

    pairs, counts = align_faq(root_en / FAQ_EN, root_ko / FAQ_KO, run.problem)
    for key, n in counts.items():
        run.count(f"debian-faq {key}", n)
    kept = [(en, ko) for en, ko in pairs if en.text and ko.text]
    run.count("debian-faq sections without own text (left out)", len(pairs) - len(kept))
    split_of = split_units((en.anchor for en, _ in kept), seed)
    results = {}
    for name, q_lang, d_lang in (
        ("debian-faq-ko", "ko", "ko"),
        ("debian-faq-ko-en", "ko", "en"),
        ("debian-faq-en-ko", "en", "ko"),
    ):
        corpus, queries, qrels = [], {}, {s: [] for s in SPLITS}
        for en, ko in kept:
            by_lang = {"en": en, "ko": ko}
            doc, query = by_lang[d_lang], by_lang[q_lang]
            corpus.append({"_id": f"{d_lang}-{en.anchor}", "title": doc.chapter, "text": doc.text})
            queries[f"q-{q_lang}-{en.anchor}"] = {"_id": f"q-{q_lang}-{en.anchor}", "text": query.title}
            qrels[split_of[en.anchor]].append((f"q-{q_lang}-{en.anchor}", f"{d_lang}-{en.anchor}"))
        results[name] = _write_beir(run, name, corpus, queries, qrels)
    return results, len(kept)


def _mozilla_tasks(
    run: StepRun, app: MozillaApp, roots: Mapping[str, Path], seed: int
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    from harness.prepare.bilingual.mozilla_l10n import align_strings, read_locale

    en_files = read_locale(
        [(roots[app.en_package] / p, pre) for p, pre in app.en_archives], "en-US", run.problem
    )
    ko_files = read_locale(
        [(roots[app.ko_package] / p, pre) for p, pre in app.ko_archives], "ko", run.problem
    )
    aligned, counts = align_strings(en_files, ko_files, run.problem)
    for key, n in sorted(counts.items()):
        run.count(f"{app.name} {key}", n)
    split_of = split_units((a.file for a in aligned), seed)
    rows = [
        {
            "ko": a.ko,
            "en": a.en,
            "source": app.en_package,
            "id": f"{a.file}#{a.id}",
            "split": split_of[a.file],
        }
        for a in aligned
    ]
    results = {}
    for q_lang, d_lang in (("ko", "en"), ("en", "ko")):
        name = f"{app.name}-{q_lang}-{d_lang}"
        corpus = {_text_id(d_lang, r[d_lang]): r[d_lang] for r in rows}
        claimed: dict[str, str] = {}  # query text -> the split that has it
        relevant: dict[str, dict[str, None]] = defaultdict(dict)  # query id -> document ids in order
        dropped = 0
        for split in SPLITS:
            for r in (r for r in rows if r["split"] == split):
                text = r[q_lang]
                if claimed.setdefault(text, split) != split:
                    dropped += 1  # the same string in an earlier split's file: kept out of this one
                    continue
                relevant[_text_id(q_lang, text)][_text_id(d_lang, r[d_lang])] = None
        run.count(f"{name} pairs left out: query string already in an earlier split", dropped)
        queries = {_text_id(q_lang, t): {"_id": _text_id(q_lang, t), "text": t} for t in claimed}
        qrels: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
        for text, split in claimed.items():
            qid = _text_id(q_lang, text)
            qrels[split].extend((qid, doc) for doc in relevant[qid])
        documents = [{"_id": doc_id, "title": "", "text": text} for doc_id, text in corpus.items()]
        results[name] = _write_beir(run, name, documents, queries, qrels)
    return results, rows


def _card(
    name: str,
    description: str,
    method: str,
    unit: str,
    packages: list[dict[str, Any]],
    counts: dict[str, Any],
    seed: int,
) -> str:
    rows, notices = [], []
    for p in packages:
        sha = p.get("sha256") or f"(extracted folder, tree {p.get('sha256_tree', '')[:16]})"
        rows.append(
            f"| {p['package']} | {p['version']} | {p.get('architecture', '')} | `{sha}` | {p['licence']} |"
        )
        if p["notice"]:
            quoted = "\n".join(f"> {line}".rstrip() for line in p["notice"].splitlines())
            notices.append(f"\nThe copyright file of {p['package']} (quoted whole):\n\n{quoted}\n")
    count_rows = [f"| {s} | {counts[s]['queries']:,} | {counts[s]['pairs']:,} |" for s in SPLITS]
    return string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        name=name,
        description=description,
        packages="\n".join(rows),
        notices="".join(notices),
        counts="\n".join(count_rows),
        documents=f"{counts['documents']:,}",
        method=method,
        unit=unit,
        seed=seed,
        fractions="/".join(f"{f:g}" for f in FRACTIONS),
    )


FAQ_METHOD = (
    f"The FAQ's DocBook XHTML chapters (`{FAQ_EN}/*.en.html`, `{FAQ_KO}/*.ko.html`) are parsed into sections "
    "(`div.section`, nested ones apart); sections align by chapter file and heading anchor, and their "
    "section numbers must agree. A query is a section's title without its number (a question); its "
    "document is the section's own text, titled by its chapter. Sections with no text of their own "
    "(only subsections) are left out."
)
MOZILLA_METHOD = (
    "Fluent (`.ftl`: a message's value as `id`, each attribute as `id.attr`), `.properties` and `.dtd` "
    "strings of en-US (`omni.ja`) and ko (the language pack `.xpi`) align by file and message id. "
    "Placeables are stripped to plain text (term references replaced by the term's value, selections "
    "by their default variant, variables dropped; printf and `#1` placeholders dropped). Left out: key "
    "bindings and CSS (`.accesskey`, `.key`, `.style`, ...), empty values, values that are only "
    "placeables, identical English and Korean, Korean without Hangul. A query is a distinct string; "
    "its relevant documents are the distinct translations it has in its split's files; the corpus is "
    "every distinct aligned string of the other language. A query string already in an earlier split "
    "(train, then dev, then test) is kept out of the later one, so no string pair is both trained on "
    "and tested. A short string is a weak document, so this is translation retrieval (bitext mining), "
    "not topical search; grouping a file's strings into one document was not done because a file's "
    "strings are unrelated labels with no common topic."
)
DESCRIPTIONS = {
    "debian-faq-ko": "Korean Debian FAQ questions (section titles) -> their Korean answers (section texts).",
    "debian-faq-ko-en": "Korean Debian FAQ questions -> the English answer of the same section.",
    "debian-faq-en-ko": "English Debian FAQ questions -> the Korean answer of the same section.",
}


def build_bilingual(
    out: Path, sources: Mapping[str, Path], seed: int = DEFAULT_SEED, force: bool = False
) -> dict[str, Any]:
    """Build every task into `out` from `sources` (package -> its .deb, or an extracted folder
    holding `usr/...`, one per name in PACKAGES); returns the step's manifest."""
    from harness.prepare.bilingual.debs import deb_record, extract_members, licence_of

    missing = [p for p in PACKAGES if p not in sources]
    if missing:
        raise WorkbenchError(f"bilingual: no source given for {', '.join(missing)}")
    members: dict[str, list[str]] = {p: [f"usr/share/doc/{p}/copyright"] for p in PACKAGES}
    members["debian-faq"].append(f"{FAQ_EN}/")
    members["debian-faq-ko"].append(f"{FAQ_KO}/")
    for app in APPS:
        members[app.en_package] += [path for path, _ in app.en_archives]
        members[app.ko_package] += [path for path, _ in app.ko_archives]

    def build(run: StepRun) -> None:
        with (
            tempfile.TemporaryDirectory(prefix="bilingual-") as tmp,
            meter("packages", len(PACKAGES), "packages") as m,
        ):
            roots, packages = {}, {}
            for package in PACKAGES:
                roots[package] = extract_members(
                    Path(sources[package]), members[package], Path(tmp) / package
                )
                copyright_file = roots[package] / members[package][0]
                licence, notice = licence_of(copyright_file.read_text(encoding="utf-8"))
                record = deb_record(Path(sources[package]))
                packages[package] = record | {
                    "package": package,
                    "version": record["version"] or PACKAGES[package],
                }
                packages[package] |= {"licence": licence, "notice": notice}
                m.advance()
            folders, faq_sections = _faq_tasks(run, roots["debian-faq"], roots["debian-faq-ko"], seed)
            faq_packages = [packages["debian-faq"], packages["debian-faq-ko"]]
            cards = {name: (DESCRIPTIONS[name], FAQ_METHOD, "FAQ section", faq_packages) for name in folders}
            aligned = []
            for app in APPS:
                app_folders, rows = _mozilla_tasks(run, app, roots, seed)
                aligned += rows
                folders |= app_folders
                for name in app_folders:
                    q, d = name.split("-")[-2:]
                    lang = {"ko": "Korean", "en": "English"}
                    text = f"{lang[q]} {app.en_package} interface strings -> their {lang[d]} translations."
                    cards[name] = (
                        text,
                        MOZILLA_METHOD,
                        "localisation file",
                        [packages[app.en_package], packages[app.ko_package]],
                    )
            run.count("aligned strings", write_jsonl(run.out / "aligned.jsonl", aligned))
        for name, (description, method, unit, used) in cards.items():
            (run.out / name / "README.md").write_text(
                _card(name, description, method, unit, used, folders[name], seed), encoding="utf-8"
            )
        index = [
            f"- `{name}/`: {cards[name][0]} ({folders[name]['documents']:,} documents)" for name in folders
        ]
        (run.out / "README.md").write_text(
            "# Korean-English tasks from Debian packages\n\n"
            + "\n".join(index)
            + '\n\n`aligned.jsonl`: every aligned Mozilla string pair `{"ko", "en", "source", "id", "split"}`'
            " (`id` is `file#message-id`, `split` the split of its file).\n"
            "Each folder's README.md is its card.\n",
            encoding="utf-8",
        )
        run.extra["packages"] = [{k: v for k, v in p.items() if k != "notice"} for p in packages.values()]
        run.extra["tasks"] = folders
        run.extra["faq_sections_used"] = faq_sections

    return run_step(
        out,
        STEP,
        VERSION,
        inputs=[Path(sources[p]) for p in PACKAGES],
        params={"packages": PACKAGES, "seed": seed, "fractions": list(FRACTIONS)},
        build=build,
        force=force,
    )


def register(app: typer.Typer) -> None:
    """Add the `bilingual` command to `app`."""

    @app.command("bilingual")
    def bilingual(
        out: Annotated[Path, typer.Option(help="output folder (one BEIR folder per task inside)")] = Path(
            "data/prepared/bilingual"
        ),
        debs: Annotated[
            Path, typer.Option(help="cache of the .deb files; missing ones are apt-get downloaded")
        ] = Path(".cache/debs"),
        seed: Annotated[
            int, typer.Option(help="seed of the train/dev/test split of the source units")
        ] = DEFAULT_SEED,
        force: Annotated[bool, typer.Option(help="rebuild even where the output is up to date")] = False,
    ) -> None:
        """Korean-English tasks from the Debian FAQ and the Firefox ESR / Thunderbird strings."""
        import time

        from harness.prepare.bilingual.debs import download_debs

        with user_errors():
            started = time.perf_counter()
            sources = download_debs(debs, PACKAGES)
            manifest = build_bilingual(out, sources, seed=seed, force=force)
            for name, counts in manifest["tasks"].items():
                splits = ", ".join(
                    f"{s} {counts[s]['queries']:,} q / {counts[s]['pairs']:,} pairs" for s in SPLITS
                )
                console.log(
                    f"{name}: {counts['documents']:,} documents, {counts['queries']:,} queries; {splits}"
                )
            console.log(f"bilingual: done in {time.perf_counter() - started:.1f}s")
