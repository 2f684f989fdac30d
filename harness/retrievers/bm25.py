"""BM25 on bm25s over a chosen analyzer, with the analyzed corpus and the index cached on disk.

Parameters default to Anserini's BEIR settings (k1 = 0.9, b = 0.4) with Lucene's BM25:
idf = log(1 + (N - df + 0.5) / (df + 0.5)), tf part = tf / (tf + k1 (1 - b + b |d| / avgdl)).

`LuceneBM25Retriever` reproduces Anserini's (pyserini's) BM25 conditions on Lucene's analyzers:
one index per field, N and avgdl of a field counting only the documents with a term in it (as
Lucene's docCount), the field scores summed (Anserini's multi-field query, a BooleanQuery of
SHOULD clauses, boost 1 each; a query term repeated n times weighs n, as Anserini's boost).
Its bm25s indexes hold Lucene's own term scores: document lengths as Lucene reads them back
from its one-byte norms (`lucene_doc_lengths`), in Lucene's float32 arithmetic. What it does not
reproduce: the float rounding of the sums (bm25s adds float32 term scores, this module adds the
fields in float64; Lucene adds in double and rounds to float, and multiplies a repeated term's
score where bm25s adds it again), so scores may differ in the last bits and ties with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from common.files import atomic_dir
from common.paths import cache_dir
from harness.analyzers import (
    Analyzer,
    KiwiAnalyzer,
    LuceneCJKAnalyzer,
    LuceneEnglishAnalyzer,
    PlainAnalyzer,
    XlmrPiecesAnalyzer,
    analyze_cached,
)
from harness.cache import read_cache
from harness.datasets import Dataset
from harness.ranking import Ranking
from harness.retrievers.base import Retriever, RetrieverSpec
from harness.retrievers.registry import register

__all__ = ["ANALYZERS", "BM25Retriever", "LuceneBM25Retriever"]

ANALYZERS: dict[str, type] = {
    "plain": PlainAnalyzer,
    "kiwi": KiwiAnalyzer,
    "lucene-en": LuceneEnglishAnalyzer,
    "lucene-cjk": LuceneCJKAnalyzer,
    "xlmr": XlmrPiecesAnalyzer,
}


def _top_k_candidates(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The documents of a full score vector that can be in its top k (k >= 1): every positive score
    at least the k-th best, so all documents tied at the cut are kept; Ranking orders them by
    (-score, docid) and cuts at k."""
    idx = np.flatnonzero(scores > 0)  # documents sharing no term with the query are not retrieved
    if len(idx) > k:
        kth = np.partition(scores[idx], len(idx) - k)[len(idx) - k]
        idx = idx[scores[idx] >= kth]
    return idx, scores[idx]


def lucene_doc_lengths(lengths: np.ndarray) -> np.ndarray:
    """Document lengths as Lucene's BM25Similarity reads them back from its one-byte norms
    (SmallFloat.intToByte4, then byte4ToInt): exact up to 31; above, 24 + (length - 24) cut to
    its 4 most significant bits (100 -> 96, 1000 -> 984)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    excess = lengths - 24
    shift = np.maximum(np.frexp(np.maximum(excess, 1).astype(np.float64))[1] - 4, 0)  # bit length - 4
    return np.where(excess >= 8, 24 + ((excess >> shift) << shift), lengths)


def _use_lucene_scores(bm25, tokens: Sequence[list[str]], k1: float, b: float) -> None:
    """Replace the term scores a bm25s index holds with Lucene's BM25Similarity (8.x/9.x) values:
    idf = (float) ln(1 + (N - df + 0.5) / (df + 0.5)), normInverse = 1 / (k1 (1 - b + b dl / avgdl))
    with dl = `lucene_doc_lengths`, score = idf - idf / (1 + tf normInverse), all in float32."""
    from scipy import sparse

    f32 = np.float32
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    vocab = bm25.vocab_dict
    term_ids = np.fromiter(
        (vocab[t] for doc in tokens for t in doc), dtype=np.int32, count=int(lengths.sum())
    )
    doc_ids = np.repeat(np.arange(len(tokens), dtype=np.int32), lengths)
    shape = (len(tokens), len(bm25.scores["indptr"]) - 1)
    tf = sparse.csc_matrix((np.ones(len(term_ids), dtype=f32), (doc_ids, term_ids)), shape=shape)
    tf.sum_duplicates()
    same_layout = np.array_equal(tf.indptr, bm25.scores["indptr"]) and np.array_equal(
        tf.indices, bm25.scores["indices"]
    )
    if not same_layout:
        raise RuntimeError("bm25s' score matrix is not laid out as expected (one column per term)")
    df = np.diff(tf.indptr)
    idf = np.log(1 + (len(tokens) - df + 0.5) / (df + 0.5)).astype(f32)
    avgdl = f32(lengths.sum() / len(tokens))
    dl = lucene_doc_lengths(lengths).astype(f32)
    norm_inverse = f32(1) / (f32(k1) * ((f32(1) - f32(b)) + f32(b) * dl / avgdl))
    weight = np.repeat(idf, df)
    bm25.scores["data"] = weight - weight / (f32(1) + tf.data * norm_inverse[tf.indices])


def _index_bytes(bm25) -> int:
    return sum(np.asarray(bm25.scores[key]).nbytes for key in ("data", "indices", "indptr"))


class BM25Retriever(Retriever):
    def __init__(
        self,
        spec: RetrieverSpec,
        analyzer: str = "kiwi",
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
    ) -> None:
        super().__init__(spec)
        self.analyzer: Analyzer = ANALYZERS[analyzer]()
        self.k1, self.b, self.method = k1, b, method
        self._bm25 = None
        self._doc_ids: list[str] = []

    def version_key(self) -> str:
        from importlib.metadata import version

        return f"{self.analyzer.key}:bm25s-{version('bm25s')}"

    def _analyze_field(self, dataset: Dataset, field: str, use_cache: bool) -> list[list[str]]:
        """Tokens of one `Document` field ("full_text", "title", "text") of every document, cached."""
        suffix = "" if field == "full_text" else f"-{field}"
        name = f"{dataset.corpus_checksum[:24]}{suffix}.npz"
        tokens_file = cache_dir() / "analyzed" / self.analyzer.key / name
        return analyze_cached(
            self.analyzer,
            [getattr(doc, field) for doc in dataset.corpus.values()],
            tokens_file if use_cache else None,
            progress=f"analyze {dataset.name}{suffix.replace('-', ' ')} ({self.analyzer.key})",
        )

    def _new_index(self, tokens: Sequence[list[str]]):
        import bm25s

        bm25 = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        bm25.index(list(tokens), show_progress=False)
        return bm25

    def index(self, dataset: Dataset, use_cache: bool = True) -> None:
        import bm25s

        self._doc_ids = list(dataset.corpus)
        path = self.cache_path(dataset)
        if use_cache and (path / "params.index.json").is_file():
            self._bm25 = read_cache(path, lambda: bm25s.BM25.load(path))
            if self._bm25 is not None:
                return
        bm25 = self._new_index(self._analyze_field(dataset, "full_text", use_cache))
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                with atomic_dir(path) as tmp:
                    bm25.save(tmp)
        self._bm25 = bm25

    def search(self, queries: Mapping[str, str], k: int) -> Ranking:
        if self._bm25 is None:
            raise RuntimeError("index() must run before search()")
        qids = list(queries)
        tokens = self.analyzer.analyze([queries[q] for q in qids])
        n_docs = len(self._doc_ids)
        hits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if k > 0 and qids and n_docs:
            # one more than k shows whether the k-th score is tied beyond the cut
            depth = min(k + 1, n_docs)
            indices, scores = self._bm25.retrieve(tokens, k=depth, show_progress=False, n_threads=0)
            for qid, query, idx, sc in zip(qids, tokens, indices, scores, strict=True):
                if depth > k and sc[k - 1] > 0 and sc[k] == sc[k - 1]:
                    # bm25s chose among the tied documents; take them all, Ranking cuts by docid
                    idx, sc = _top_k_candidates(self._bm25.get_scores(query), k)
                matched = sc > 0  # documents sharing no term with the query are not retrieved
                hits[qid] = (idx[matched], sc[matched])
        return Ranking(self.spec.name, self._doc_ids, hits, k=k)

    def stats(self) -> dict[str, float]:
        if self._bm25 is None:
            return {}
        return {
            "index_bytes": float(_index_bytes(self._bm25)),
            "vocabulary": float(len(self._bm25.vocab_dict)),
        }


class LuceneBM25Retriever(BM25Retriever):
    """Anserini's BM25 over one or more fields of each document (see the module docstring).

    Each field has its own bm25s index over the documents with a term in that field; a document
    with an empty title scores 0 on the title field. Search sums the full score vectors of the
    fields, so the top k are exact, ties at the cut broken by docid.
    """

    def __init__(
        self,
        spec: RetrieverSpec,
        fields: Sequence[str] = ("title", "text"),
        analyzer: str = "lucene-en",
        k1: float = 0.9,
        b: float = 0.4,
    ) -> None:
        super().__init__(spec, analyzer=analyzer, k1=k1, b=b, method="lucene")
        self.fields = tuple(fields)
        self._field_indexes: list[tuple[np.ndarray, object | None]] = []  # (documents, bm25s index)

    def version_key(self) -> str:
        return f"{super().version_key()}:lucene-scores-v1"

    def _new_index(self, tokens: Sequence[list[str]]):
        bm25 = super()._new_index(tokens)
        _use_lucene_scores(bm25, tokens, self.k1, self.b)
        return bm25

    def index(self, dataset: Dataset, use_cache: bool = True) -> None:
        import bm25s

        self._doc_ids = list(dataset.corpus)
        path = self.cache_path(dataset)
        if use_cache and all((path / field / "documents.npy").is_file() for field in self.fields):
            cached = read_cache(
                path,
                lambda: [
                    (
                        np.load(path / field / "documents.npy"),
                        bm25s.BM25.load(path / field)
                        if (path / field / "params.index.json").is_file()
                        else None,
                    )
                    for field in self.fields
                ],
            )
            if cached is not None:
                self._field_indexes = cached
                return
        self._field_indexes = []
        for field in self.fields:
            tokens = self._analyze_field(dataset, field, use_cache)
            documents = np.flatnonzero(np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens)))
            bm25 = self._new_index([tokens[i] for i in documents]) if len(documents) else None
            self._field_indexes.append((documents, bm25))
        if use_cache and not path.exists():
            with atomic_dir(path) as tmp:
                for field, (documents, bm25) in zip(self.fields, self._field_indexes, strict=True):
                    (tmp / field).mkdir()
                    np.save(tmp / field / "documents.npy", documents)
                    if bm25 is not None:
                        bm25.save(tmp / field)

    def scores(self, query: list[str]) -> np.ndarray:
        """Every document's score for analyzed `query`: its fields' BM25 scores summed."""
        total = np.zeros(len(self._doc_ids))
        for documents, bm25 in self._field_indexes:
            if bm25 is not None and query:
                total[documents] += bm25.get_scores(query)
        return total

    def search(self, queries: Mapping[str, str], k: int) -> Ranking:
        if not self._field_indexes:
            raise RuntimeError("index() must run before search()")
        qids = list(queries)
        tokens = self.analyzer.analyze([queries[q] for q in qids])
        hits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if k > 0 and self._doc_ids:
            for qid, query in zip(qids, tokens, strict=True):
                idx, sc = _top_k_candidates(self.scores(query), k)
                if len(idx):
                    hits[qid] = (idx, sc)
        return Ranking(self.spec.name, self._doc_ids, hits, k=k)

    def stats(self) -> dict[str, float]:
        indexes = [bm25 for _, bm25 in self._field_indexes if bm25 is not None]
        vocabulary = set().union(*(bm25.vocab_dict for bm25 in indexes))
        return {"index_bytes": float(sum(map(_index_bytes, indexes))), "vocabulary": float(len(vocabulary))}


def _lucene_spec(name: str, fields: list[str], analyzer: str, language: str, what: str) -> RetrieverSpec:
    """A LuceneBM25Retriever with Anserini's BM25 parameters; `what` describes the condition."""
    return RetrieverSpec(
        name=name,
        family="bm25",
        factory=LuceneBM25Retriever,
        description=f"{what}; Lucene's BM25 (k1 0.9, b 0.4, one-byte length norms, docCount) on "
        "bm25s; the float rounding of score sums may differ from Lucene's",
        languages=(language,),
        params={"fields": fields, "analyzer": analyzer, "k1": 0.9, "b": 0.4},
    )


def _bm25_spec(name: str, analyzer: str, what: str, default: bool = True) -> RetrieverSpec:
    """A BM25Retriever (bm25s, Lucene formula, Anserini's BEIR k1 and b) on `analyzer`."""
    return RetrieverSpec(
        name=name,
        family="bm25",
        factory=BM25Retriever,
        description=f"BM25 (bm25s, Lucene formula, k1 0.9, b 0.4) on {what}",
        languages=("ko", "en"),
        params={"analyzer": analyzer, "k1": 0.9, "b": 0.4, "method": "lucene"},
        default=default,
    )


for _spec in (
    _bm25_spec("bm25-ko", "kiwi", "Kiwi morphemes; Latin words lower-cased"),
    _bm25_spec("bm25-plain", "plain", "lower-cased \\w+ words"),
    _bm25_spec(
        "bm25-xlmr",
        "xlmr",
        "XLM-R's SentencePiece pieces (the vocabulary of e5 and the koen models: what BM25 over the "
        "sparse models' own tokens scores)",
        default=False,
    ),
    _lucene_spec(
        "bm25-flat",
        ["full_text"],
        "lucene-en",
        "en",
        "pyserini's BEIR 'flat' BM25: title and text in one field; Lucene's EnglishAnalyzer "
        "(StandardTokenizer, possessives, lower case, 33 stop words, Lucene's Porter stemmer)",
    ),
    _lucene_spec(
        "bm25-multifield",
        ["title", "text"],
        "lucene-en",
        "en",
        "pyserini's BEIR 'multifield' BM25: title and text as two fields, each with its own df, "
        "docCount and avgdl, the two field scores summed (boost 1 each); Lucene's EnglishAnalyzer",
    ),
    _lucene_spec(
        "bm25-lucene-cjk",
        ["full_text"],
        "lucene-cjk",
        "ko",
        "Anserini's '-language ko' BM25 until it switched to Nori: title and text in one field; "
        "Lucene's CJKAnalyzer (bigrams of Hangul/Han/kana runs, a lone character as a unigram, "
        "words mixing Hangul and Latin kept whole)",
    ),
):
    register(_spec)
