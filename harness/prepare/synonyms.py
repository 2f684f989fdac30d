"""The `synonyms` step: Korean-English term pairs and synonym groups for OpenSearch's
`synonym_graph` filter, with their precision measured on held-out gold pairs.

Sources of pairs:
- Wikipedia interlanguage links (`kowiki-*-langlinks.sql.gz` joined with the page titles);
- short aligned UI strings (`aligned.jsonl` lines `{"ko","en","source","id"}`, 1-3 words a side).
  A gold share of them is split off FIRST, by a seeded hash of the message id (the same id in two
  sources goes to the same side), and never used to build any group: `gold.jsonl`.

Groups: the connected components of the pairs (method `pairs`), and, from a checkpoint's input
embeddings of whole-word tokens, clusters by K-means, DBSCAN (cosine) and agglomerative clustering.

Time weighting (`--weights FILE`, a JSON `{token: weight}` such as a recency-weighted frequency):
tokens with no positive weight are left out; the `max_tokens` heaviest are clustered; K-means takes
the weights as `sample_weight` (a recent token pulls its centroid harder); DBSCAN takes them, scaled
to mean 1, as `sample_weight` (a recent token counts as more than one sample towards a core point's
`min_samples`); agglomerative clustering has no sample weights, so there the weights act only through
the choice of tokens.

Outputs: `pairs.jsonl` (`{ko, en, source}`), `gold.jsonl`, `groups.json` (`[{"method", "terms"}]`),
`synonyms.txt` (Solr equivalence lines, one group a line) and `report.json` (per method: groups,
coverage and precision on the gold pairs).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from common.errors import WorkbenchError
from common.files import atomic_write, read_jsonl, write_json, write_jsonl
from harness.prepare.step import StepRun, run_step

__all__ = [
    "CLUSTER_METHODS",
    "build_synonyms",
    "cluster_tokens",
    "format_solr_line",
    "parse_solr",
    "precision_report",
    "register",
    "split_gold",
    "vocabulary_terms",
]

STEP, VERSION = "synonyms", "1"
CLUSTER_METHODS = ("kmeans", "dbscan", "agglomerative")
_METHODS = ", ".join(CLUSTER_METHODS)
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_MARKUP = re.compile(r"[{}%<>$\\\n\t]|&[a-zA-Z#]")  # placeholders, markup, access keys: not a term
_TRAILING = re.compile(r"(?:\s*(?:…|\.\.\.|:|：))+$")


# --------------------------------------------------------------------------- terms


def normalize_term(text: str) -> str:
    """NFC, whitespace collapsed: the form a term is written in."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def term_key(text: str) -> str:
    """The form terms are compared in (case-folded)."""
    return normalize_term(text).casefold()


# --------------------------------------------------------------------------- Solr format


def _escape(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace(",", "\\,").replace("=>", "\\=>")
    return "\\" + escaped if escaped.startswith("#") else escaped


def format_solr_line(terms: Sequence[str]) -> str:
    """One Solr equivalence line `a, b, c`; commas, `=>`, backslashes and a leading `#` escaped."""
    return ", ".join(_escape(t) for t in terms)


def _split_unescaped(line: str, separator: str) -> list[str]:
    """Split on `separator` outside backslash escapes (escapes kept), as Solr's parser does."""
    parts, current, i = [], [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            current.append(line[i : i + 2])
            i += 2
        elif line.startswith(separator, i):
            parts.append("".join(current))
            current, i = [], i + len(separator)
        else:
            current.append(line[i])
            i += 1
    parts.append("".join(current))
    return parts


def _unescape(term: str) -> str:
    return re.sub(r"\\(.)", r"\1", term)


def parse_solr(text: str) -> list[list[str]]:
    """The equivalence groups of a Solr synonyms file (blank and `#` lines skipped); a `=>` mapping
    line is an error here, since this step writes none."""
    groups = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if len(_split_unescaped(line, "=>")) > 1:
            raise WorkbenchError(f"synonyms line {number}: a '=>' mapping, expected an equivalence line")
        terms = [_unescape(t).strip() for t in _split_unescaped(line, ",")]
        groups.append([t for t in terms if t])
    return groups


def solr_lines(groups: Iterable[Sequence[str]]) -> list[str]:
    """One line per group of two or more distinct terms; repeated groups written once."""
    lines, seen = [], set()
    for group in groups:
        terms, keys = [], set()
        for term in group:
            key = term_key(term)
            if key and key not in keys:
                keys.add(key)
                terms.append(normalize_term(term))
        signature = frozenset(keys)
        if len(terms) >= 2 and signature not in seen:
            seen.add(signature)
            lines.append(format_solr_line(terms))
    return lines


# --------------------------------------------------------------------------- pairs


def _gold_draw(message_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\0{message_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def short_string(text: str, max_words: int) -> str | None:
    """The term an aligned UI string gives (trailing `:`/`…` dropped), or None where it is no term:
    placeholders, markup, access keys, too many words."""
    if _MARKUP.search(text):
        return None
    term = normalize_term(_TRAILING.sub("", text.strip()))
    words = len(term.split())
    return term if 1 <= words <= max_words and any(c.isalpha() for c in term) else None


def split_gold(
    aligned: Sequence[Path], share: float, seed: int, max_words: int, run: StepRun
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train pairs, gold pairs) of the short aligned strings, gold drawn by message id, each
    (ko, en) pair once; a train pair that is also a gold pair is dropped."""
    train: dict[tuple[str, str], dict[str, str]] = {}
    gold: dict[tuple[str, str], dict[str, str]] = {}
    for path in aligned:
        for line, row in read_jsonl(path):
            ko, en, message_id = row.get("ko"), row.get("en"), row.get("id")
            if not (isinstance(ko, str) and isinstance(en, str) and message_id is not None):
                run.problem("malformed aligned line", f"{path}: line {line}", "needs string ko, en and an id")
                continue
            run.count("aligned strings")
            ko_term, en_term = short_string(ko, max_words), short_string(en, max_words)
            if ko_term is None or en_term is None:
                continue  # long strings are the pairs step's business, not a problem
            if not _HANGUL.search(ko_term) or term_key(ko_term) == term_key(en_term):
                run.count("untranslated strings")
                continue
            key = (term_key(ko_term), term_key(en_term))
            record = {"ko": ko_term, "en": en_term, "source": str(row.get("source") or "aligned")}
            target = gold if _gold_draw(str(message_id), seed) < share else train
            target.setdefault(key, record | {"id": str(message_id)})
    leaked = [key for key in train if key in gold]
    for key in leaked:
        del train[key]
    run.count("aligned pairs held out as gold duplicates", len(leaked))
    return [{k: v for k, v in r.items() if k != "id"} for r in train.values()], list(gold.values())


def pair_groups(pairs: Iterable[dict[str, str]], max_size: int, run: StepRun) -> list[list[str]]:
    """The connected components of the pair graph, 2 to `max_size` terms (larger ones join unrelated
    senses through an ambiguous term: dropped, counted)."""
    parent: dict[str, str] = {}
    shown: dict[str, str] = {}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pair in pairs:
        keys = []
        for term in (pair["ko"], pair["en"]):
            key = term_key(term)
            parent.setdefault(key, key)
            shown.setdefault(key, normalize_term(term))
            keys.append(key)
        a, b = find(keys[0]), find(keys[1])
        if a != b:
            parent[max(a, b)] = min(a, b)
    components: dict[str, list[str]] = {}
    for key in parent:
        components.setdefault(find(key), []).append(shown[key])
    groups = []
    for terms in components.values():
        if len(terms) > max_size:
            run.count("oversized pair groups dropped")
        elif len(terms) >= 2:
            groups.append(terms)
    return groups


# --------------------------------------------------------------------------- embedding clusters


def vocabulary_terms(tokenizer: Any, min_chars: int) -> list[tuple[int, str, str]]:
    """(id, vocabulary token, term) of the whole-word tokens worth clustering: no specials, no
    continuation pieces (`##x` of WordPiece, pieces without `▁` of SentencePiece), no bracketed
    reserved tokens, at least one letter and `min_chars` characters."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    specials = set(tokenizer.all_special_ids)
    sentencepiece = sum(token.startswith("▁") for token in vocab) > len(vocab) // 10
    kept = []
    for token, index in sorted(vocab.items(), key=lambda item: item[1]):
        if index in specials or re.fullmatch(r"\[.*\]|<.*>", token):
            continue
        if sentencepiece:
            if not token.startswith("▁"):
                continue
            term = token[1:]
        else:
            if token.startswith("##"):
                continue
            term = token
        if len(term) >= min_chars and any(c.isalpha() for c in term):
            kept.append((index, token, term))
    return kept


def _read_weights(path: Path) -> dict[str, float]:
    try:
        weights = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WorkbenchError(f"{path}: malformed JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(weights, dict) or not all(isinstance(v, int | float) for v in weights.values()):
        raise WorkbenchError(f"{path}: expected a JSON object {{token: weight}} of numbers")
    return {str(k): float(v) for k, v in weights.items()}


def cluster_tokens(
    embeddings: Any,
    terms: Sequence[str],
    weights: Sequence[float] | None,
    method: str,
    options: dict[str, Any],
) -> list[list[str]]:
    """Groups of `terms` whose (L2-normalised) embedding rows cluster together; clusters of one
    term, DBSCAN's noise and clusters over `max_group_size` are left out."""
    import numpy as np
    from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans

    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if len(terms) < 2:
        return []
    if method == "kmeans":
        k = options["n_clusters"] or max(2, len(terms) // 4)
        k = min(k, len(terms))
        model = KMeans(n_clusters=k, n_init=3, random_state=options["seed"])
        labels = model.fit(x, sample_weight=w).labels_
    elif method == "dbscan":
        scaled = None if w is None else w / w.mean()
        model = DBSCAN(eps=options["eps"], min_samples=options["min_samples"], metric="cosine")
        labels = model.fit(x, sample_weight=scaled).labels_
    elif method == "agglomerative":
        model = AgglomerativeClustering(
            n_clusters=None,
            distance_threshold=options["distance_threshold"],
            metric="cosine",
            linkage="average",
        )
        labels = model.fit(x).labels_
    else:
        raise WorkbenchError(f"unknown clustering method {method!r}; choose from {_METHODS}")
    clusters: dict[int, list[str]] = {}
    for label, term in zip(labels.tolist(), terms, strict=True):
        if label >= 0:
            clusters.setdefault(label, []).append(term)
    return [c for c in clusters.values() if 2 <= len(c) <= options["max_group_size"]]


def embedding_groups(
    checkpoint: Path, weights_file: Path | None, methods: Sequence[str], options: dict[str, Any], run: StepRun
) -> dict[str, list[list[str]]]:
    """Per method, the groups of the checkpoint's whole-word token embeddings."""
    from models.checkpoint import load_masked_lm

    model, tokenizer = load_masked_lm(checkpoint)
    matrix = model.get_input_embeddings().weight.detach().float().numpy()
    candidates = vocabulary_terms(tokenizer, options["min_token_chars"])
    run.count("vocabulary tokens", len(tokenizer.get_vocab()))
    run.count("whole-word tokens", len(candidates))
    weights: list[float] | None = None
    if weights_file is not None:
        table = _read_weights(weights_file)
        weighted = [(table.get(tok, table.get(term, 0.0)), (i, tok, term)) for i, tok, term in candidates]
        weighted = [item for item in weighted if item[0] > 0]
        weighted.sort(key=lambda item: (-item[0], item[1][0]))
        weighted = weighted[: options["max_tokens"]]
        candidates = [item[1] for item in weighted]
        weights = [item[0] for item in weighted]
        run.count("weighted tokens", len(candidates))
    else:
        candidates = candidates[: options["max_tokens"]]
    run.count("tokens clustered", len(candidates))
    rows = matrix[[i for i, _, _ in candidates]] if candidates else matrix[:0]
    terms = [term for _, _, term in candidates]
    from harness.console import meter

    found = {}
    with meter("clustering", total=len(methods), unit="methods") as progress:
        for method in methods:
            found[method] = cluster_tokens(rows, terms, weights, method, options)
            progress.advance()
    return found


# --------------------------------------------------------------------------- precision


def precision_report(groups: Sequence[Sequence[str]], gold: Sequence[dict[str, str]]) -> dict[str, Any]:
    """coverage: share of the gold pairs with both terms in some group; precision: share of those
    covered pairs whose two terms share a group (None where none is covered)."""
    where: dict[str, set[int]] = {}
    for number, group in enumerate(groups):
        for term in group:
            where.setdefault(term_key(term), set()).add(number)
    covered = correct = 0
    for pair in gold:
        ko, en = where.get(term_key(pair["ko"])), where.get(term_key(pair["en"]))
        if ko and en:
            covered += 1
            correct += bool(ko & en)
    return {
        "groups": len(groups),
        "terms": len(where),
        "gold_pairs": len(gold),
        "covered": covered,
        "correct": correct,
        "coverage": round(covered / len(gold), 4) if gold else None,
        "precision": round(correct / covered, 4) if covered else None,
    }


# --------------------------------------------------------------------------- the step


def _langlink_pairs(langlinks: Path, pages: Path, run: StepRun) -> Iterator[dict[str, str]]:
    from harness.prepare.langlinks import iter_langlinks, read_page_titles

    titles = read_page_titles(pages, run.problem)
    run.count("article titles", len(titles))
    for ko, en, _ in iter_langlinks(langlinks, titles, "en", run.problem, run.count):
        ko, en = normalize_term(ko), normalize_term(en)
        if term_key(ko) == term_key(en):
            run.count("identical titles left out")
            continue
        yield {"ko": ko, "en": en, "source": "langlinks"}


def build_synonyms(
    out: Path,
    langlinks: Path | None = None,
    pages: Path | None = None,
    aligned: Sequence[Path] = (),
    checkpoint: Path | None = None,
    weights: Path | None = None,
    methods: Sequence[str] = CLUSTER_METHODS,
    gold_share: float = 0.2,
    seed: int = 0,
    max_words: int = 3,
    max_group_size: int = 10,
    n_clusters: int | None = None,
    eps: float = 0.3,
    min_samples: int = 2,
    distance_threshold: float = 0.3,
    max_tokens: int = 5000,
    min_token_chars: int = 2,
    export: Sequence[str] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build pairs, gold, groups, `synonyms.txt` and the precision report into `out`; returns the
    manifest. `export` names the methods whose groups go into `synonyms.txt` (default: all run)."""
    if (langlinks is None) != (pages is None):
        raise WorkbenchError("--langlinks needs --pages (the page titles the links start from), and back")
    if langlinks is None and not aligned and checkpoint is None:
        raise WorkbenchError("nothing to build from: give --langlinks/--pages, --aligned or --checkpoint")
    if not 0 <= gold_share < 1:
        raise WorkbenchError(f"--gold-share must be in [0, 1), got {gold_share}")
    unknown = [m for m in methods if m not in CLUSTER_METHODS]
    if unknown:
        raise WorkbenchError(f"unknown clustering method {unknown[0]!r}; choose from {_METHODS}")
    if weights is not None and checkpoint is None:
        raise WorkbenchError("--weights weights the token clusters: it needs --checkpoint")
    ran = ["pairs"] + (list(methods) if checkpoint is not None else [])
    exported = list(export) if export is not None else ran
    if any(m not in ran for m in exported):
        raise WorkbenchError(f"--export {', '.join(exported)}: only {', '.join(ran)} run here")
    options = {
        "seed": seed, "n_clusters": n_clusters, "eps": eps, "min_samples": min_samples,
        "distance_threshold": distance_threshold, "max_group_size": max_group_size,
        "max_tokens": max_tokens, "min_token_chars": min_token_chars,
    }  # fmt: skip
    inputs = [p for p in (langlinks, pages, *aligned, checkpoint, weights) if p is not None]
    params = options | {
        "langlinks": langlinks is not None, "aligned": len(aligned), "checkpoint": checkpoint is not None,
        "weights": weights is not None, "methods": ran, "export": exported, "gold_share": gold_share,
        "max_words": max_words,
    }  # fmt: skip

    def build(run: StepRun) -> None:
        train, gold = split_gold(list(aligned), gold_share, seed, max_words, run)
        pairs: list[dict[str, str]] = []
        seen: set[tuple[str, str]] = set()
        gold_keys = {(term_key(g["ko"]), term_key(g["en"])) for g in gold}
        linked = _langlink_pairs(langlinks, pages, run) if langlinks is not None and pages is not None else ()
        for pair in [*linked, *train]:
            key = (term_key(pair["ko"]), term_key(pair["en"]))
            if key in gold_keys:
                run.count("pairs held out as gold")
            elif key not in seen:
                seen.add(key)
                pairs.append(pair)
        run.count("term pairs", write_jsonl(run.out / "pairs.jsonl", pairs))
        run.count("gold pairs", write_jsonl(run.out / "gold.jsonl", gold))
        by_method = {"pairs": pair_groups(pairs, max_group_size, run)}
        if checkpoint is not None:
            by_method |= embedding_groups(checkpoint, weights, methods, options, run)
        groups = [{"method": m, "terms": terms} for m, found in by_method.items() for terms in found]
        write_json(run.out / "groups.json", groups, indent=1)
        lines = solr_lines(g["terms"] for g in groups if g["method"] in exported)
        with atomic_write(run.out / "synonyms.txt") as handle:
            handle.write("".join(line + "\n" for line in lines))
        run.count("groups", len(groups))
        run.count("synonym lines", len(lines))
        report = {method: precision_report(found, gold) for method, found in by_method.items()}
        write_json(run.out / "report.json", report, indent=1)
        run.extra["precision"] = report

    return run_step(out, STEP, VERSION, inputs, params, build, force=force)


def register(app: typer.Typer) -> None:
    """Add the `synonyms` command."""

    @app.command("synonyms")
    def synonyms_command(
        out: Annotated[Path, typer.Option(help="output folder")],
        langlinks: Annotated[Path | None, typer.Option(help="kowiki-*-langlinks.sql(.gz)")] = None,
        pages: Annotated[
            Path | None,
            typer.Option(help="page titles: kowiki-*-page.sql(.gz), page_id<TAB>title TSV, articles JSONL"),
        ] = None,
        aligned: Annotated[
            list[Path] | None, typer.Option(help="aligned.jsonl of short UI strings (repeat)")
        ] = None,
        checkpoint: Annotated[
            Path | None, typer.Option(help="masked-LM folder whose token embeddings to cluster")
        ] = None,
        weights: Annotated[
            Path | None, typer.Option(help="JSON {token: recency weight} for the clusters")
        ] = None,
        methods: Annotated[str, typer.Option(help="clustering methods, comma-separated")] = ",".join(
            CLUSTER_METHODS
        ),
        gold_share: Annotated[
            float, typer.Option(help="share of aligned message ids held out as gold")
        ] = 0.2,
        seed: Annotated[int, typer.Option(help="seed of the gold draw and of K-means")] = 0,
        max_words: Annotated[int, typer.Option(help="longest aligned string taken as a term, in words")] = 3,
        max_group_size: Annotated[int, typer.Option(help="largest group kept")] = 10,
        n_clusters: Annotated[int | None, typer.Option(help="K-means clusters (default: tokens / 4)")] = None,
        eps: Annotated[float, typer.Option(help="DBSCAN cosine radius")] = 0.3,
        min_samples: Annotated[int, typer.Option(help="DBSCAN samples of a core point")] = 2,
        distance_threshold: Annotated[float, typer.Option(help="agglomerative cosine distance cut")] = 0.3,
        max_tokens: Annotated[
            int, typer.Option(help="most tokens clustered (heaviest first when weighted)")
        ] = 5000,
        min_token_chars: Annotated[int, typer.Option(help="shortest token clustered, in characters")] = 2,
        export: Annotated[
            str | None, typer.Option(help="methods written to synonyms.txt (default: all)")
        ] = None,
        force: Annotated[bool, typer.Option(help="rebuild even when up to date")] = False,
    ) -> None:
        """Korean-English term pairs and synonym groups (Solr synonyms.txt) with their precision."""
        from harness.console import console, user_errors

        with user_errors():
            manifest = build_synonyms(
                out, langlinks, pages, aligned or [], checkpoint, weights,
                [m.strip() for m in methods.split(",") if m.strip()], gold_share, seed, max_words,
                max_group_size, n_clusters, eps, min_samples, distance_threshold, max_tokens, min_token_chars,
                None if export is None else [m.strip() for m in export.split(",") if m.strip()], force,
            )  # fmt: skip
            for method, figures in manifest["precision"].items():
                console.print(
                    f"{method}: {figures['groups']:,} groups, coverage {figures['coverage']}, "
                    f"precision {figures['precision']} ({figures['correct']}/{figures['covered']} of "
                    f"{figures['gold_pairs']} gold pairs)"
                )
