"""Metrics with ranx, significance tests, and TREC run files.

Ties are broken by (-score, docid) everywhere: in the run files and in the metrics (ranx is
given ranks, not scores), so a result never depends on sort stability.
Queries judged but absent from the run count as retrieving nothing (trec_eval's `-c`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit
from numba.typed import List as TypedList
from ranx import metrics as rm

from common.errors import WorkbenchError
from common.files import atomic_write, read_lines
from harness.ranking import Ranking

__all__ = [
    "DEFAULT_METRICS",
    "STAT_TESTS",
    "EvalResult",
    "WinTieLoss",
    "bootstrap_ci",
    "evaluate_run",
    "holm",
    "paired_test",
    "read_trec_run",
    "validate_metrics",
    "win_tie_loss",
    "write_trec_run",
]

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "recall@1000", "map@1000")
# metric name (ranx spelling) -> ranx's metric function (qrels, run, k, rel_lvl) -> per-query array
RANX_METRICS: dict[str, Callable[..., np.ndarray]] = {
    "hits": rm.hits,
    "hit_rate": rm.hit_rate,
    "precision": rm.precision,
    "recall": rm.recall,
    "f1": rm.f1,
    "r-precision": rm.r_precision,
    "mrr": rm.reciprocal_rank,
    "map": rm.average_precision,
    "ndcg": rm.ndcg,
    "ndcg_burges": rm.ndcg_burges,
    "dcg": rm.dcg,
    "dcg_burges": rm.dcg_burges,
    "bpref": rm.bpref,
}
STAT_TESTS = ("student", "fisher")
_METRIC = re.compile(r"^(?P<name>[a-z][a-z0-9_-]*)(@(?P<k>[1-9][0-9]*))?$")
NO_CUTOFF = ("r-precision", "bpref")  # ranx ignores @k for these: refuse it rather than drop it


def validate_metrics(names: Sequence[str]) -> list[str]:
    """Check metric names (ranx spelling, `name` or `name@k`); unknown names list the valid ones."""
    checked = []
    for name in names:
        match = _METRIC.match(name)
        if not match or match["name"] not in RANX_METRICS:
            raise WorkbenchError(
                f"unknown metric {name!r}; valid: {', '.join(RANX_METRICS)} (optionally @k, e.g. ndcg@10)"
            )
        if match["k"] and match["name"] in NO_CUTOFF:
            raise WorkbenchError(f"metric {name!r}: {match['name']} takes no @k cutoff")
        checked.append(name)
    if not checked:
        raise WorkbenchError("no metrics given")
    return checked


@dataclass(frozen=True)
class EvalResult:
    """Mean and per-query values of each metric over the judged queries."""

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]  # metric -> qid -> value


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]], ranking: Ranking, metrics: Sequence[str]
) -> EvalResult:
    """Score `ranking` against `qrels` with ranx's metric kernels; neither argument is modified."""
    metrics = validate_metrics(metrics)
    if not qrels:
        raise WorkbenchError("no judged queries to evaluate")
    qids, qrels_arrays, run_arrays = _ranx_inputs(qrels, ranking)
    scores = _ranx_scores(qrels_arrays, run_arrays, metrics)
    per_query = {m: dict(zip(qids, scores[m].tolist(), strict=True)) for m in metrics}
    mean = {m: float(np.mean(scores[m])) for m in metrics}
    return EvalResult(mean=mean, per_query=per_query)


def _ranx_inputs(
    qrels: Mapping[str, Mapping[str, int]], ranking: Ranking
) -> tuple[list[str], TypedList, TypedList]:
    """(judged query ids, qrels arrays, run arrays) in ranx's internal form, one entry per judged query.

    ranx is given its internal form directly, one (n, 2) float array per query: for the run,
    document numbers with scores n, n-1, ..., 1 in the ranking's (-score, docid) order; for the
    qrels, document numbers with relevance, most relevant first (ties in the qrels' order).
    Documents are numbered exactly (ranx would hash the ids): a document of the ranking by its
    index in `ranking.doc_ids`, a judged document the ranking never saw by a negative number of
    its own. The arrays are built with numpy over all queries at once and handed out as views:
    a Python loop per query and a dict over the whole corpus cost seconds on 10,000 x 1,000.
    """
    qids = list(qrels)
    # the run: one (total, 2) array, cut into one view per query
    indices = [ranking.hits(qid)[0] for qid in qids]
    lengths = np.array([len(i) for i in indices], dtype=np.int64)
    ends = np.cumsum(lengths)
    run = np.empty((int(lengths.sum()), 2), dtype=np.float64)
    np.concatenate(indices, out=run[:, 0])  # in place: no ten-million-row temporaries
    countdown = np.arange(lengths.max(initial=0), 0, -1, dtype=np.float64)
    np.concatenate([countdown[len(countdown) - n :] for n in lengths.tolist()], out=run[:, 1])  # n, ..., 1
    # the qrels: every (query, document, relevance) judgment, sorted by query then -relevance
    counts = np.array([len(qrels[qid]) for qid in qids], dtype=np.int64)
    judged_docs = [doc for qid in qids for doc in qrels[qid]]
    rels = np.fromiter((rel for qid in qids for rel in qrels[qid].values()), np.float64, len(judged_docs))
    position = _positions(ranking.doc_ids, judged_docs)
    numbers = np.where(position >= 0, position, -1 - np.arange(len(judged_docs))).astype(np.float64)
    query = np.repeat(np.arange(len(qids)), counts)
    order = np.lexsort((np.arange(len(rels)), -rels, query))  # explicit last key: ties keep qrels order
    judgments = np.column_stack((numbers[order], rels[order]))
    return qids, _split_rows(judgments, np.cumsum(counts)), _split_rows(run, ends)


@njit(cache=True)
def _split_rows(rows: np.ndarray, ends: np.ndarray) -> TypedList:
    """The blocks of `rows` that end at `ends` (cumulative), as a typed list of views.

    Compiled once and cached on disk: the same list built with `TypedList.append` from Python
    makes numba compile its list helpers in every new process (about 1 s here), then costs a
    dispatch per query. Views of a C-contiguous array keep ranx's kernel signature, so ranx's
    own cached kernels are used.
    """
    blocks = TypedList()
    start = 0
    for end in ends:
        blocks.append(rows[start:end])
        start = end
    return blocks


def _positions(doc_ids: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """Index in `doc_ids` of each id in `wanted` (the last one if repeated), -1 where absent.

    A dict over a million-id corpus takes about 0.6 s here, and only a few thousand ids are
    wanted. So the corpus ids are hashed into an int64 array (one C loop; Python caches a
    string's hash), a table indexed by the low bits of the wanted hashes picks the candidates in
    one gather, and only those are compared as strings: a shared hash or table slot costs a
    lookup, never a wrong match.
    """
    corpus_hashes = np.fromiter(map(hash, doc_ids), np.int64, len(doc_ids))
    wanted_hashes = np.fromiter(map(hash, wanted), np.int64, len(wanted))
    mask = (1 << max(16, (64 * len(wanted)).bit_length())) - 1  # about 1 corpus id in 64 passes by chance
    table = np.zeros(mask + 1, dtype=bool)
    table[wanted_hashes & mask] = True
    candidates = np.flatnonzero(table[corpus_hashes & mask]).tolist()
    found = {doc_ids[index]: index for index in candidates}  # ascending, so the last repeat wins
    return np.fromiter((found.get(doc_id, -1) for doc_id in wanted), np.int64, len(wanted))


def _ranx_scores(
    qrels_arrays: TypedList, run_arrays: TypedList, metrics: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per-query values of each (validated) metric, from ranx's metric kernels."""
    scores = {}
    for metric in metrics:
        match = _METRIC.match(metric)
        assert match is not None  # validated by the caller
        values = RANX_METRICS[match["name"]](qrels_arrays, run_arrays, int(match["k"] or 0))
        scores[metric] = np.asarray(values, dtype=float)
    return scores


def paired_test(
    a: Mapping[str, float],
    b: Mapping[str, float],
    test: str = "student",
    seed: int = 42,
    n_permutations: int = 10_000,
) -> float:
    """Two-sided p-value of a paired test over the queries both share.

    `student`: paired t-test (scipy `ttest_rel`, as ranx uses). `fisher`: randomisation test
    flipping the sign of each per-query difference, `n_permutations` draws from `seed`.
    """
    if test not in STAT_TESTS:
        raise WorkbenchError(f"unknown significance test {test!r}; valid: {', '.join(STAT_TESTS)}")
    qids = sorted(set(a) & set(b))
    diff = _paired(a, b)
    if len(diff) < 2 or not np.any(diff):
        return 1.0
    if test == "student":
        from scipy.stats import ttest_rel

        p = float(ttest_rel([a[q] for q in qids], [b[q] for q in qids]).pvalue)
        return 1.0 if np.isnan(p) else p
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_permutations, len(diff)))
    observed = abs(diff.mean())
    permuted = np.abs((signs * diff).mean(axis=1))
    return float((np.sum(permuted >= observed - 1e-12) + 1) / (n_permutations + 1))


def _paired(a: Mapping[str, float], b: Mapping[str, float]) -> np.ndarray:
    """Per-query differences a - b over the queries both share, in query id order."""
    return np.array([a[q] - b[q] for q in sorted(set(a) & set(b))], dtype=np.float64)


def bootstrap_ci(
    a: Mapping[str, float],
    b: Mapping[str, float],
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 42,
) -> tuple[float, float]:
    """Paired bootstrap percentile interval of mean(a - b) over the queries both share.

    Each resample draws len(queries) queries with replacement (`n_resamples` draws from `seed`)
    and takes the mean difference; the interval is the central `confidence` share of those means.
    """
    if not 0.0 < confidence < 1.0:
        raise WorkbenchError(f"confidence {confidence} must lie strictly between 0 and 1")
    diff = _paired(a, b)
    if len(diff) == 0:
        raise WorkbenchError("no shared queries: the confidence interval of a difference needs some")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given (reject where adjusted < alpha).

    The i-th smallest of m p-values is multiplied by m - i + 1 (i from 1), then made monotone
    (never below the adjusted value of a smaller p) and capped at 1.
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class WinTieLoss:
    wins: int  # queries where a scores higher than b by more than the tie tolerance
    ties: int
    losses: int


def win_tie_loss(a: Mapping[str, float], b: Mapping[str, float], tolerance: float = 1e-9) -> WinTieLoss:
    """Per-query wins, ties and losses of a against b over the queries both share."""
    diff = _paired(a, b)
    return WinTieLoss(
        wins=int(np.sum(diff > tolerance)),
        ties=int(np.sum(np.abs(diff) <= tolerance)),
        losses=int(np.sum(diff < -tolerance)),
    )


def write_trec_run(ranking: Ranking, path: Path, tag: str) -> int:
    """Write a TREC run file (gzip when the name ends in .gz); returns the number of lines."""
    if not tag or any(c.isspace() for c in tag):
        raise WorkbenchError(f"run tag {tag!r} must be non-empty without spaces")
    lines = 0
    with atomic_write(path) as handle:
        for qid, doc_ids, scores in ranking.items():
            for rank, (doc_id, score) in enumerate(zip(doc_ids, scores.tolist(), strict=True), start=1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
            lines += len(doc_ids)
    return lines


def read_trec_run(path: Path) -> Ranking:
    """A TREC run file (`qid Q0 docid rank score tag` lines, `.gz` decompressed) as a Ranking named
    by its tag. Documents are ordered by (-score, docid) as everywhere in the harness; the rank
    column is checked to be an integer, not used. A malformed line, a document listed twice for a
    query or a second tag is an error naming the file and line."""
    position: dict[str, int] = {}
    hits: dict[str, tuple[list[int], list[float], list[int]]] = {}  # qid -> indices, scores, lines
    tag = None
    for line_no, line in read_lines(path):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{line_no}"
        if len(fields) != 6:
            raise WorkbenchError(
                f"{where}: expected 6 columns (qid Q0 docid rank score tag), found {len(fields)}"
            )
        qid, _, doc_id, rank, score, line_tag = fields
        try:
            int(rank)
            value = float(score)
        except ValueError:
            raise WorkbenchError(
                f"{where}: rank {rank!r} must be an integer and score {score!r} a number"
            ) from None
        if not math.isfinite(value):
            raise WorkbenchError(f"{where}: score {score!r} is not finite")
        if tag is None:
            tag = line_tag
        elif line_tag != tag:
            raise WorkbenchError(f"{where}: run tag {line_tag!r} after {tag!r}; a run file holds one run")
        indices, scores, lines = hits.setdefault(qid, ([], [], []))
        indices.append(position.setdefault(doc_id, len(position)))
        scores.append(value)
        lines.append(line_no)
    if tag is None:
        raise WorkbenchError(f"{path}: no run lines")
    doc_ids = list(position)
    for qid, (indices, _, lines) in hits.items():
        if len(set(indices)) != len(indices):
            seen: set[int] = set()
            for index, line_no in zip(indices, lines, strict=True):
                if index in seen:
                    raise WorkbenchError(
                        f"{path}:{line_no}: document {doc_ids[index]!r} listed twice for {qid!r}"
                    )
                seen.add(index)
    arrays = {qid: (np.array(indices), np.array(scores)) for qid, (indices, scores, _) in hits.items()}
    return Ranking(tag, doc_ids, arrays)
