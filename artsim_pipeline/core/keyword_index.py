"""Search by words, the keyword part: the tokens of a work and of a query, and the BM25 index.

Tokens (what ``core.text_search`` documents): case-folded, accent-folded, English stop words
dropped, Snowball-stemmed, plus the work's identifiers kept whole.

Keeping the index up to date without the whole collection's Python work
    A work's tokens depend only on the fields :func:`keyword_document` reads
    (``SOURCE_FIELDS``) and on the tokeniser itself (:func:`tokenizer_signature`).
    :func:`update_documents` keeps every work's tokens beside the fields they came from (one
    JSON text per work, ``source``) and tokenises again only the works whose fields changed,
    the new ones, or all of them when the tokeniser did (a kept row is reused only for the same
    work, fields and tokeniser, so whatever file it comes from it holds a fresh build's tokens).
    BM25 has no incremental add (every document's scores depend on the collection's document
    frequencies and mean length), so :meth:`KeywordIndex.from_documents` rebuilds it from the
    kept tokens, vectorised (polars and numpy), to the same scores, float for float, as
    ``bm25s``' own ``BM25(method="lucene").index`` (:meth:`KeywordIndex.build`): a search ranks
    and scores exactly as over a fresh build.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from artsim_pipeline.core.code_version import code_fingerprint

# letters NFKD leaves alone, folded the way a curator would type them
_FOLD = str.maketrans({"ø": "o", "Ø": "o", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe", "ß": "ss", "ł": "l", "Ł": "l",
                       "đ": "d", "Đ": "d", "þ": "th", "Þ": "th", "ð": "d", "Ð": "d", "ı": "i"})
_WORD = re.compile(r"\w+", re.UNICODE)
# the `artworks` columns keyword_document reads (a test checks it reads no other)
SOURCE_FIELDS = ("artwork_id", "source_id", "title", "artists", "classification", "object_type", "medium", "culture", "tags")
DOCUMENT_COLUMNS = ("artwork_id", "source", "tokens")


# -- tokens ----------------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Case- and accent-folded: ``"Interiør, Strandgade"`` -> ``"interior, strandgade"``."""
    if text.isascii():  # most titles and ids: nothing to decompose, and casefold is lower there
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


_LOCAL = threading.local()  # a PyStemmer stemmer is not safe to share between threads


def _stemmer():
    stemmer = getattr(_LOCAL, "stemmer", None)
    if stemmer is None:
        import Stemmer  # PyStemmer: Snowball, in C

        stemmer = _LOCAL.stemmer = Stemmer.Stemmer("english")
    return stemmer


def keyword_tokens(text: str) -> list[str]:
    """Words of ``text``: folded, without English stop words, stemmed (``"Cats"`` -> ``"cat"``)."""
    from bm25s.stopwords import STOPWORDS_EN

    words = [w for w in _WORD.findall(fold(text)) if w not in STOPWORDS_EN]
    return _stemmer().stemWords(words) if words else []


def identifier_key(value: Any) -> str | None:
    """An identifier as one token (folded, no spaces): ``"KKSgb6775/3"`` -> ``"kksgb6775/3"``."""
    key = "".join(fold(str(value)).split()) if value is not None else ""
    return key or None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v is not None]


def keyword_document(row: Mapping[str, Any]) -> list[str]:
    """The BM25 tokens of an ``artworks`` row: title, makers, kind, medium, culture, tags, ids."""
    parts = [row.get("title"), *_as_list(row.get("artists")), row.get("classification"), row.get("object_type"),
             row.get("medium"), row.get("culture"), *_as_list(row.get("tags"))]
    tokens = keyword_tokens(" ".join(str(p) for p in parts if p))
    tokens += [k for k in {identifier_key(row.get("artwork_id")), identifier_key(row.get("source_id"))} if k]
    return tokens


def query_tokens(query: str) -> list[str]:
    """The query's words, plus the whole query as one identifier token when it has no spaces."""
    tokens = keyword_tokens(query)
    whole = identifier_key(query)
    if whole and " " not in query.strip() and whole not in tokens:
        tokens.append(whole)
    return tokens


def iter_documents(artworks: pl.DataFrame) -> Iterable[tuple[str, list[str]]]:
    """(artwork_id, keyword tokens) for each distinct work of an ``artworks`` frame, in order."""
    frame = artworks.unique("artwork_id", keep="first", maintain_order=True)
    for row in frame.iter_rows(named=True):
        yield row["artwork_id"], keyword_document(row)


def tokenizer_signature() -> str:
    """Changes whenever the tokens of a document could: the code of the functions that make them
    and everything of this package they read (:func:`~artsim_pipeline.core.code_version.code_fingerprint`:
    the folding table, the word pattern..., so an edit needs no version bump), the stop words
    and the stemmer's version. Kept tokens made under another signature are made again."""
    import Stemmer
    from bm25s.stopwords import STOPWORDS_EN

    code = code_fingerprint(fold, keyword_tokens, identifier_key, _as_list, keyword_document)
    digest = hashlib.sha256(code.encode())
    digest.update("\x1f".join(sorted(STOPWORDS_EN)).encode() + f"PyStemmer {Stemmer.version()}".encode())
    return digest.hexdigest()[:16]


# -- kept tokens -----------------------------------------------------------------------------------


def keyword_sources(works: pl.DataFrame) -> pl.DataFrame:
    """``artwork_id`` and ``source``: the fields :func:`keyword_document` reads, as one JSON text
    (equal texts, equal tokens; a missing column counts as empty)."""
    missing = [pl.lit(None, dtype=pl.String).alias(c) for c in SOURCE_FIELDS if c not in works.columns]
    return works.with_columns(missing).select("artwork_id", pl.struct(SOURCE_FIELDS).struct.json_encode().alias("source"))


def _empty_documents() -> pl.DataFrame:
    return pl.DataFrame(schema={"artwork_id": pl.String, "source": pl.String, "tokens": pl.List(pl.String)})


def update_documents(works: pl.DataFrame, kept: pl.DataFrame | None, kept_signature: str | None
                     ) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Every distinct work's tokens (``DOCUMENT_COLUMNS``, in ``artwork_id`` order) and what was
    done: the ``kept`` tokens (an earlier result, made under ``kept_signature``) of works whose
    fields are unchanged are reused; the other works are tokenised."""
    signature = tokenizer_signature()
    works = works.unique("artwork_id", keep="first", maintain_order=True)
    sources = keyword_sources(works)
    reused, removed = _empty_documents(), 0
    if kept is not None and kept_signature == signature:
        kept = kept.select(DOCUMENT_COLUMNS).unique("artwork_id", keep="first")
        reused = sources.join(kept, on=["artwork_id", "source"], how="inner")
        removed = kept.join(sources, on="artwork_id", how="anti").height
    todo = works.join(reused.select("artwork_id"), on="artwork_id", how="anti")
    columns = [c for c in SOURCE_FIELDS if c in todo.columns]
    tokens = [keyword_document(row) for row in todo.select(columns).iter_rows(named=True)]
    fresh = (pl.DataFrame({"artwork_id": todo["artwork_id"], "tokens": pl.Series(tokens, dtype=pl.List(pl.String))})
             .join(sources, on="artwork_id", how="left").select(DOCUMENT_COLUMNS))
    documents = pl.concat([reused.select(DOCUMENT_COLUMNS), fresh]).sort("artwork_id")
    reason = ("no kept tokens" if kept is None else "tokeniser changed" if kept_signature != signature else "fields changed or new")
    return documents, {"tokenised": fresh.height, "reused": reused.height, "removed": removed,
                       "why_tokenised": reason if fresh.height else None, "tokenizer": signature}


# -- the keyword index -------------------------------------------------------------------------------


def _lucene_scores(tokens: pl.Series, k1: float, b: float) -> tuple[dict[str, Any], dict[str, int]]:
    """bm25s' eager index (``scores``: a CSC matrix of vocabulary x documents, and its
    ``vocab_dict``) for documents given as token lists, computed the way
    ``bm25s.BM25(method="lucene").index`` computes it: idf in Python floats stored as float32,
    the term-frequency part in float64 (NumPy 2 promotion), each score rounded once to float32."""
    n_docs = len(tokens)
    lengths = tokens.list.len().fill_null(0).cast(pl.Int64).to_numpy()
    pairs = (pl.DataFrame({"doc": pl.int_range(n_docs, eager=True, dtype=pl.Int32), "token": tokens})
             .explode("token").drop_nulls("token"))
    vocab = pairs["token"].unique().sort()
    term_of_pair = pairs["token"].cast(pl.Enum(vocab)).to_physical().to_numpy().astype(np.int64)
    # each (term, document) once, with its count, in CSC order (by term, then document)
    width = max(n_docs, 1)
    cell, tf = np.unique(term_of_pair * width + pairs["doc"].to_numpy(), return_counts=True)
    term, doc = cell // width, (cell % width).astype(np.int32)
    frequency = np.bincount(term, minlength=len(vocab))
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(frequency, out=indptr[1:])
    distinct, which = np.unique(frequency, return_inverse=True)
    idf = np.asarray([math.log(1 + (n_docs - df + 0.5) / (df + 0.5)) for df in distinct.tolist()], dtype=np.float32)[which]
    data = np.zeros(0, np.float32)
    if len(term):
        tf = tf.astype(np.float32).astype(np.float64)
        length = lengths[doc].astype(np.float64)
        tfc = tf / (k1 * ((1 - b) + b * length / lengths.mean()) + tf)
        data = (idf[term].astype(np.float64) * tfc).astype(np.float32)
    vocab_dict = dict(zip(vocab.to_list(), range(len(vocab)), strict=True))
    if "" not in vocab_dict:  # bm25s' empty token, last
        vocab_dict[""] = len(vocab)
    return {"data": data, "indices": doc, "indptr": indptr, "num_docs": n_docs}, vocab_dict


class KeywordIndex:
    """BM25 (``bm25s``) over keyword documents, with the artwork id of every document, and the
    documents themselves (``DOCUMENT_COLUMNS``) when it was built from them: what a later build
    reuses (:func:`update_documents`)."""

    def __init__(self, ids: Sequence[str], retriever: Any, documents: pl.DataFrame | None = None,
                 tokenizer: str | None = None) -> None:
        self.ids = list(ids)
        self.retriever = retriever
        self.vocab = retriever.vocab_dict
        self.documents = documents
        self.tokenizer = tokenizer

    @classmethod
    def build(cls, ids: Sequence[str], documents: Sequence[list[str]]) -> KeywordIndex:
        """bm25s' own indexing of token lists (Python, per document): the reference
        :meth:`from_documents` is tested against."""
        import bm25s

        if len(ids) != len(documents):
            raise ValueError(f"{len(ids)} ids for {len(documents)} documents")
        retriever = bm25s.BM25(method="lucene")
        retriever.index([list(d) for d in documents], show_progress=False)
        return cls(ids, retriever)

    @classmethod
    def from_documents(cls, documents: pl.DataFrame, tokenizer: str | None = None) -> KeywordIndex:
        """The index of ``documents`` (``artwork_id``, ``tokens`` and, to be kept, ``source``),
        vectorised; scores equal :meth:`build`'s over the same token lists."""
        import bm25s

        if documents["artwork_id"].n_unique() != documents.height:
            raise ValueError("documents repeat an artwork_id")
        retriever = bm25s.BM25(method="lucene")
        retriever.scores, retriever.vocab_dict = _lucene_scores(documents["tokens"], retriever.k1, retriever.b)
        retriever.unique_token_ids_set = set(retriever.vocab_dict.values())
        retriever.nonoccurrence_array = None
        return cls(documents["artwork_id"].to_list(), retriever, documents, tokenizer)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, tokens: Sequence[str], n: int, mask: np.ndarray | None = None,
               all_terms: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Document positions with a positive BM25 score, best first (at most ``n``), among the
        documents ``mask`` allows; ties keep document order. With ``all_terms`` only documents
        holding every query token the collection knows count (tokens it has never seen are
        ignored, so a misspelt extra word does not empty the ranking)."""
        known = [t for t in tokens if t in self.vocab]
        if not known or not self.ids or n < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = np.asarray(self.retriever.get_scores(known), dtype=np.float32)
        if all_terms and len(set(known)) > 1:
            for token in set(known):
                scores = np.where(np.asarray(self.retriever.get_scores([token])) > 0, scores, 0.0)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        hits = np.flatnonzero(scores > 0)
        if hits.size > n:
            hits = hits[np.argpartition(-scores[hits], n - 1)[:n]]
        order = np.lexsort((hits, -scores[hits]))
        return hits[order].astype(np.int64), scores[hits[order]]
