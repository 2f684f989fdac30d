"""Fusion of two or more retrievers: reciprocal rank fusion, or a weighted sum of min-max scores.

Names (`harness.retrievers.resolve_retriever`):

    fusion:METHOD:R1+R2[+R3...]     R: any name resolve_retriever takes that holds no '+'
    METHOD  rrf[=K][@DEPTH]         score(d) = sum_i 1 / (K + rank_i(d)), ranks from 1; K 60 (ranx's)
            wsum[=W1,W2,...][@DEPTH]
                                    score(d) = sum_i W_i minmax_i(d), one weight per component; without
                                    weights, tuned on the dataset (below)
    DEPTH                           documents of each component fused per query (default 1000)

e.g. `fusion:rrf:bm25-plain+splade-en-tiny`, `fusion:wsum:bm25-ko+idf-only-xlmr` (tuned weights),
`fusion:wsum=0.3,0.7@100:bm25-plain+splade-en-tiny` (fixed weights, top 100 of each).

Both methods compute what `ranx.fuse` computes (the tests compare them), on the Rankings' arrays:
min-max is (s - min) / max(max - min, 1e-9) over a component's list of a query, so a list of equal
scores normalizes to 0; a document absent from a component's list gets 0 from it; ranks follow each
component's (-score, docid) order. The fused list is ordered by (-score, docid) and cut at k; k may
not exceed DEPTH.

Tuned weights: every weight vector of step 0.1 summing to 1, in `ranx.optimize_fusion`'s order, is
scored by nDCG@10 (`harness.evaluation.evaluate_run`) on a tuning split of the indexed dataset; the
best wins, a tie going to the later vector as in ranx. The tuning split is `tune_split`, by default
the first of dev, train that the dataset has and is not evaluated on; a split the dataset is
evaluated on is refused, and so is a dataset that does not say which splits it is evaluated on
(`Dataset.evaluation_splits`, set by `load_dataset`). The fused tuning runs are scored as they come
(a dataset's `remove_query_ids` is not applied to them).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from common.errors import WorkbenchError
from harness.console import console
from harness.datasets import Dataset
from harness.evaluation import evaluate_run
from harness.ranking import Ranking

# the named hybrids below name specs these modules register
from harness.retrievers import bm25, splade  # noqa: F401
from harness.retrievers.base import Retriever, RetrieverSpec
from harness.retrievers.registry import get_retriever, register

__all__ = [
    "DEFAULT_DEPTH",
    "DEFAULT_RRF_K",
    "FUSION_GRAMMAR",
    "METHODS",
    "TUNING_METRIC",
    "FusionRetriever",
    "fusion_from_name",
    "fusion_spec",
    "weight_grid",
]

METHODS = ("rrf", "wsum")
DEFAULT_RRF_K = 60
DEFAULT_DEPTH = 1000
TUNING_METRIC = "ndcg@10"
WEIGHT_STEPS = 10  # tuned weights are multiples of 1 / WEIGHT_STEPS
FUSION_GRAMMAR = "fusion:rrf[=K][@DEPTH]:R1+R2[+...] or fusion:wsum[=W1,W2,...][@DEPTH]:R1+R2[+...]"
_METHOD = re.compile(r"(?P<method>[a-z]+)(?:=(?P<param>[^@]*))?(?:@(?P<depth>[^@]*))?")


def weight_grid(n_components: int, steps: int = WEIGHT_STEPS) -> Iterator[tuple[float, ...]]:
    """Weight vectors with entries i / steps summing to 1, in `itertools.product` order (ranx's).

    ranx keeps the vectors whose float sum equals 1.0, which drops some of three or more
    components (0.1 + 0.2 + 0.7 != 1.0); this grid keeps every vector whose integer parts sum to steps.
    """
    for parts in itertools.product(range(steps + 1), repeat=n_components):
        if sum(parts) == steps:
            yield tuple(p / steps for p in parts)


class _Pool(NamedTuple):
    """The candidates of one query: each (component, document) entry with its value."""

    docs: np.ndarray  # distinct document indices
    inverse: np.ndarray  # entry -> position in docs
    component: np.ndarray  # entry -> component number
    values: np.ndarray  # entry -> 1 / (K + rank) or the min-max normalized score


def _fuse(
    pools: Mapping[str, _Pool], weights: np.ndarray, name: str, doc_ids: list[str], k: int | None
) -> Ranking:
    """The fused Ranking: per document, the sum over components of weight x value."""
    hits = {
        qid: (pool.docs, np.bincount(pool.inverse, pool.values * weights[pool.component], len(pool.docs)))
        for qid, pool in pools.items()
    }
    return Ranking(name, doc_ids, hits, k=k)


class FusionRetriever(Retriever):
    """Index every component; search fuses their top `depth` documents (see the module docstring)."""

    def __init__(
        self,
        spec: RetrieverSpec,
        components: Sequence[RetrieverSpec],
        method: str,
        depth: int = DEFAULT_DEPTH,
        rrf_k: int = DEFAULT_RRF_K,
        weights: Sequence[float] | None = None,
        tune_split: str | None = None,
    ) -> None:
        super().__init__(spec)
        self.components = [component.build() for component in components]
        self.method, self.depth, self.rrf_k, self.tune_split = method, depth, rrf_k, tune_split
        self.fixed_weights = None if weights is None else tuple(weights)
        self._weights: tuple[float, ...] | None = self.fixed_weights
        self._tuning: dict[str, float] = {}
        self._doc_ids: list[str] = []

    def version_key(self) -> str:
        """The components' model hashes (their parameters and model contents)."""
        return "+".join(f"{c.spec.name}={c.model_hash()}" for c in self.components)

    def _pools(self, queries: Mapping[str, str]) -> dict[str, _Pool]:
        """Each query's candidates: the top `depth` of every component, with their values."""
        lists: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        for number, component in enumerate(self.components):
            ranking = component.search(queries, self.depth)
            if ranking.doc_ids != self._doc_ids:
                raise RuntimeError(
                    f"{component.spec.name}: its ranking is not over the indexed corpus in order"
                )
            for qid in queries:
                indices, scores = ranking.hits(qid)
                if not len(indices):
                    continue
                if self.method == "rrf":
                    values = 1.0 / (self.rrf_k + np.arange(1, len(indices) + 1))
                else:
                    low = scores.min()
                    values = (scores - low) / max(scores.max() - low, 1e-9)
                lists.setdefault(qid, []).append((number, indices, values))
        pools = {}
        for qid, parts in lists.items():
            entries = np.concatenate([indices for _, indices, _ in parts])
            docs, inverse = np.unique(entries, return_inverse=True)
            component = np.repeat([n for n, _, _ in parts], [len(indices) for _, indices, _ in parts])
            pools[qid] = _Pool(docs, inverse, component, np.concatenate([v for _, _, v in parts]))
        return pools

    def _tuning_split(self, dataset: Dataset) -> str:
        name, splits, evaluated = self.spec.name, sorted(dataset.qrels), dataset.evaluation_splits
        if not evaluated:
            raise WorkbenchError(
                f"retriever {name!r}: dataset {dataset.name!r} does not say which of its splits are "
                "evaluated (load it with harness.datasets.load_dataset), so weights cannot be tuned on "
                "it safely; give fixed weights, fusion:wsum=W1,W2,...:R1+R2"
            )
        if self.tune_split is None:
            split = next((s for s in ("dev", "train") if s in dataset.qrels and s not in evaluated), None)
            if split is None:
                raise WorkbenchError(
                    f"retriever {name!r} tunes its weights on a dev or train split that the dataset is "
                    f"not evaluated on; dataset {dataset.name!r} has {', '.join(splits)} (evaluated on "
                    f"{', '.join(evaluated)}); give fixed weights, fusion:wsum=W1,W2,...:R1+R2"
                )
            return split
        if self.tune_split in evaluated:
            raise WorkbenchError(
                f"retriever {name!r}: cannot tune weights on split {self.tune_split!r} of dataset "
                f"{dataset.name!r}: the dataset is evaluated on it ({', '.join(evaluated)}); tune on "
                "a dev or train split"
            )
        if self.tune_split not in dataset.qrels:
            raise WorkbenchError(
                f"retriever {name!r}: dataset {dataset.name!r} has no split {self.tune_split!r} to tune "
                f"weights on; its splits: {', '.join(splits)}"
            )
        return self.tune_split

    def index(self, dataset: Dataset, use_cache: bool = True) -> None:
        """Index every component; tune the weights on the dataset where none are given (wsum)."""
        for component in self.components:
            component.index(dataset, use_cache=use_cache)
        self._doc_ids = list(dataset.corpus)
        self._weights, self._tuning = self.fixed_weights, {}
        if self.method == "rrf" or self.fixed_weights is not None:
            return
        split = self._tuning_split(dataset)
        pools = self._pools(dataset.split_queries(split))
        best, best_score = None, -math.inf
        for weights in weight_grid(len(self.components)):
            ranking = _fuse(pools, np.array(weights), self.spec.name, self._doc_ids, None)
            score = evaluate_run(dataset.qrels[split], ranking, [TUNING_METRIC]).mean[TUNING_METRIC]
            if score >= best_score:
                best, best_score = weights, score
        self._weights = best
        self._tuning = {f"tuning.{split}.{TUNING_METRIC}": best_score}
        chosen = ", ".join(f"{c.spec.name} {w:g}" for c, w in zip(self.components, best, strict=True))
        console.log(
            f"{dataset.name}: {self.spec.name} weights tuned on {split} "
            f"({TUNING_METRIC} {best_score:.4f}): {chosen}"
        )

    def search(self, queries: Mapping[str, str], k: int) -> Ranking:
        if not self._doc_ids:
            raise RuntimeError("index() must run before search()")
        if k > self.depth:
            raise WorkbenchError(
                f"retriever {self.spec.name!r}: top-k {k} is deeper than the {self.depth} documents it "
                f"fuses of each component; name a depth of at least {k}, e.g. fusion:{self.method}@{k}:..."
            )
        weights = np.ones(len(self.components)) if self._weights is None else np.array(self._weights)
        return _fuse(self._pools(queries), weights, self.spec.name, self._doc_ids, k)

    def stats(self) -> dict[str, float]:
        """Depth, K (rrf) or weights (wsum), the tuning score, and the components' summed index
        bytes and truncated documents."""
        figures: dict[str, float] = {"fusion_depth": float(self.depth)}
        if self.method == "rrf":
            figures["rrf_k"] = float(self.rrf_k)
        elif self._weights is not None:
            figures |= {
                f"weight.{c.spec.name}": w for c, w in zip(self.components, self._weights, strict=True)
            }
        figures |= self._tuning
        parts = [c.stats() for c in self.components]
        for key in ("index_bytes", "truncated_documents"):
            if any(key in p for p in parts):
                figures[key] = float(sum(p.get(key, 0.0) for p in parts))
        return figures


def _languages(components: Sequence[RetrieverSpec]) -> tuple[str, ...]:
    """The languages every component declares (a component declaring none covers all)."""
    declared = [c.languages for c in components if c.languages]
    if not declared:
        return ()
    shared = tuple(lang for lang in declared[0] if all(lang in d for d in declared[1:]))
    if not shared:
        listed = "; ".join(f"{c.name}: {','.join(c.languages)}" for c in components if c.languages)
        raise WorkbenchError(f"fused retrievers share no language ({listed})")
    return shared


def fusion_spec(
    components: Sequence[RetrieverSpec],
    method: str,
    weights: Sequence[float] | None = None,
    rrf_k: int = DEFAULT_RRF_K,
    depth: int = DEFAULT_DEPTH,
    tune_split: str | None = None,
    name: str | None = None,
) -> RetrieverSpec:
    """The spec of a fusion of `components`; its parameters are checked here (WorkbenchError)."""
    names = [c.name for c in components]
    label = name or f"fusion of {' + '.join(names)}"
    if len(components) < 2:
        raise WorkbenchError(f"{label}: fusion needs two or more retrievers, got {len(components)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise WorkbenchError(f"{label}: retriever named more than once: {', '.join(repeated)}")
    if method not in METHODS:
        raise WorkbenchError(f"{label}: unknown fusion method {method!r}; methods: {', '.join(METHODS)}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise WorkbenchError(f"{label}: depth must be a positive integer, got {depth!r}")
    params: dict[str, object] = {"components": names, "method": method, "depth": depth}
    if method == "rrf":
        if weights is not None or tune_split is not None:
            raise WorkbenchError(f"{label}: rrf takes no weights and no tuning split")
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
            raise WorkbenchError(f"{label}: rrf's K must be an integer >= 0, got {rrf_k!r}")
        params["rrf_k"] = rrf_k
        what = f"RRF (K {rrf_k})"
    else:
        if weights is not None:
            weights = [float(w) for w in weights]
            if len(weights) != len(components):
                raise WorkbenchError(
                    f"{label}: {len(weights)} weights for {len(components)} retrievers; give one each"
                )
            if not all(math.isfinite(w) and w >= 0 for w in weights) or not sum(weights) > 0:
                raise WorkbenchError(f"{label}: weights must be finite, >= 0 and not all 0, got {weights}")
            if tune_split is not None:
                raise WorkbenchError(f"{label}: fixed weights take no tuning split")
        params |= {"weights": weights, "tune_split": tune_split}
        chosen = (
            ",".join(f"{w:g}" for w in weights) if weights else f"tuned on {tune_split or 'dev or train'}"
        )
        what = f"min-max weighted sum (weights {chosen})"
    by_name = {c.name: c for c in components}
    return RetrieverSpec(
        name=name or f"fusion:{method}:{'+'.join(names)}",
        family="fusion",
        factory=lambda spec, components, **kw: FusionRetriever(spec, [by_name[n] for n in components], **kw),
        description=f"{what} of {' + '.join(names)}, top {depth} of each",
        languages=_languages(components),
        params=params,
    )


def _integer(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[0-9]+", text) else None


def fusion_from_name(name: str, resolve: Callable[[str], RetrieverSpec]) -> RetrieverSpec:
    """The spec a `fusion:...` name describes (grammar in the module docstring); `resolve` resolves
    each component's name (an unknown one raises its error)."""
    _, method_part, components = [*name.split(":", 2), "", ""][:3]
    match = _METHOD.fullmatch(method_part)
    parts = components.split("+")
    if not name.startswith("fusion:") or match is None or not all(parts):
        raise WorkbenchError(f"malformed fusion retriever {name!r}; expected {FUSION_GRAMMAR}")
    method, param = match["method"], match["param"]
    if method not in METHODS:
        raise WorkbenchError(f"{name!r}: unknown fusion method {method!r}; expected {FUSION_GRAMMAR}")
    depth = DEFAULT_DEPTH if match["depth"] is None else _integer(match["depth"])
    if depth is None:
        raise WorkbenchError(
            f"{name!r}: depth {match['depth']!r} is not an integer; expected {FUSION_GRAMMAR}"
        )
    rrf_k, weights = DEFAULT_RRF_K, None
    if param is not None and method == "rrf":
        parsed = _integer(param)
        if parsed is None:
            raise WorkbenchError(f"{name!r}: rrf's K {param!r} is not an integer; expected {FUSION_GRAMMAR}")
        rrf_k = parsed
    elif param is not None:
        try:
            weights = [float(w) for w in param.split(",")]
        except ValueError:
            raise WorkbenchError(
                f"{name!r}: weights {param!r} are not comma-separated numbers; expected {FUSION_GRAMMAR}"
            ) from None
    specs = [resolve(p) for p in parts]
    return fusion_spec(specs, method, weights=weights, rrf_k=rrf_k, depth=depth, name=name)


for _method in METHODS:  # BM25 on words with the English SPLADE; not in the default run
    register(
        fusion_spec(
            [get_retriever("bm25-plain"), get_retriever("splade-en-tiny")],
            _method,
            name=f"hybrid-{_method}-en",
        )
    )
