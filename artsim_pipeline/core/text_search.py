"""Finding works by words: keyword (BM25) and meaning (vector) rankings fused by reciprocal rank.

No Dagster import and no model loading here: query embedders are injected as callables, so the
same :class:`TextSearch` serves ``artsim search``, the web app, the JSON API and the benchmark.

Rankings (each a list of catalogue positions, best first, at most ``FusionConfig.candidates``):

``keyword``
    BM25 (the ``bm25s`` library, Lucene variant) over each work's title, makers, kind
    (classification / object type), medium, culture, tags and identifiers (``artwork_id`` and the
    museum's own number, kept whole so ``KKSgb6775/3`` is one token). Tokens are case-folded,
    accent-folded (``Hammershøi`` = ``hammershoi``), English stop words dropped, Snowball-stemmed
    (tokens and the index: ``core.keyword_index``, whose names are re-exported here).
``text``
    cosine between the query's text vector and each work's metadata text vector (the
    ``text_embeddings`` model, all-MiniLM-L6-v2 by default) through an hnswlib index; only works
    at or above ``min_text_similarity`` count, so unrelated works are not listed just because a
    nearest neighbour always exists.
``image``
    when the image backbone is a dual image-text encoder (CLIP / SigLIP): cosine between the
    query embedded by the encoder's *text* tower and each work's *image* vector, so works are
    found by what they depict even when their metadata lacks the word.

Fusion: ``score(w) = sum_r weight_r / (rrf_k + rank_r(w))`` over the rankings that returned
``w`` (rank 1 = best), reported divided by its maximum (every ranking that ran put ``w``
first), so 1.0 is a perfect agreement. Works whose identifier or whole title equals the query
come first whatever the fusion says (an accession number typed in is a request for that work).

Filters (:class:`SearchFilters`) restrict every ranking before the top candidates are taken:
museum, kind of work (classification or object type, case-insensitive on the normalised value)
and a year range that must overlap ``date_begin..date_end``. A filter that no work passes is a
:class:`SearchQueryError`, as is an empty query.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import polars as pl

from artsim_pipeline.core.ann import EXACT_FILTER_MAX, AnnIndex
# the keyword part (tokens, BM25), re-exported: callers use text_search's names
from artsim_pipeline.core.keyword_index import (  # noqa: F401
    _WORD, KeywordIndex, fold, identifier_key, iter_documents, keyword_document, keyword_tokens, query_tokens,
)

RESULT_KEYS = ("artwork_id", "score", "title", "artists", "source", "classification", "landing_url")
RANKERS = ("keyword", "text", "image")
MAX_QUERY_CHARS = 500
# the parts of a search index (stored as folders of these names: resources/artefacts/)
KEYWORD_DIR, TEXT_DIR, IMAGE_DIR = "keyword", "text", "image"


class SearchQueryError(ValueError):
    """A query that cannot be answered as asked: empty, too long, or filters no work passes."""


# -- query settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchFilters:
    """Museum, kind of work and year range; ``None`` means "any"."""

    source: str | None = None
    kind: str | None = None
    date_from: int | None = None
    date_to: int | None = None

    @classmethod
    def clean(cls, source: Any = None, kind: Any = None, date_from: Any = None, date_to: Any = None) -> SearchFilters:
        """From user input: blanks mean "any", years must be whole numbers, from <= to."""
        def text(value: Any) -> str | None:
            value = " ".join(str(value).split()) if value is not None else ""
            return value or None

        def year(value: Any, name: str) -> int | None:
            if value is None or (isinstance(value, str) and not value.strip()):
                return None
            try:
                return int(str(value).strip())
            except ValueError:
                raise SearchQueryError(f"{name} must be a year (a whole number, negative for BC), not {value!r}") from None

        lo, hi = year(date_from, "from"), year(date_to, "to")
        if lo is not None and hi is not None and lo > hi:
            raise SearchQueryError(f"the year range {lo}..{hi} is empty: 'from' is after 'to'")
        return cls(text(source), text(kind), lo, hi)

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.source, self.kind, self.date_from, self.date_to))


@dataclass(frozen=True)
class FusionConfig:
    """Weights of the rankings in the fusion (0 turns one off), the RRF constant, how many
    candidates each ranking contributes, and the similarity floors of the vector rankings."""

    keyword_weight: float = 1.0
    text_weight: float = 1.0
    image_weight: float = 1.0
    rrf_k: int = 60
    candidates: int = 100
    min_text_similarity: float = 0.15
    min_image_similarity: float = 0.0
    keyword_all_terms: bool = True

    def weight(self, ranker: str) -> float:
        return float(getattr(self, f"{ranker}_weight"))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FusionConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


def clean_query(query: Any) -> str:
    """The query with whitespace collapsed; empty or overlong queries are refused."""
    text = " ".join(str(query or "").split())
    if not text:
        raise SearchQueryError("the search text is empty: type some words, a maker or an accession number")
    if len(text) > MAX_QUERY_CHARS:
        raise SearchQueryError(f"the search text is longer than {MAX_QUERY_CHARS} characters")
    return text


# -- the catalogue: filters and display --------------------------------------------------------------


_DISPLAY = ("artwork_id", "title", "artists", "source", "classification", "landing_url")


class Catalog:
    """Every work that can be found, in one order (its *position*), with what the filters and the
    results need. Built from the ``artworks`` table (all museums)."""

    def __init__(self, artworks: pl.DataFrame) -> None:
        frame = artworks.unique("artwork_id", keep="first", maintain_order=True)
        for column, dtype in (("classification", pl.String), ("object_type", pl.String), ("date_begin", pl.Int64),
                              ("date_end", pl.Int64), ("title", pl.String), ("landing_url", pl.String), ("source_id", pl.String)):
            if column not in frame.columns:
                frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(column))
        if "source" not in frame.columns:
            frame = frame.with_columns(pl.col("artwork_id").str.split(":").list.first().alias("source"))
        if "artists" not in frame.columns:
            frame = frame.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("artists"))
        self.frame = frame.select(_DISPLAY).with_columns(pl.col("artists").fill_null([]))
        self.ids: list[str] = frame["artwork_id"].to_list()
        self.position = {a: i for i, a in enumerate(self.ids)}
        self.sources = np.asarray(frame["source"].fill_null("").to_list(), dtype=object)
        self._kind_codes, self.kind_names, self._kind_counts = _kind_columns(frame)
        begin = frame["date_begin"].cast(pl.Float64).to_numpy()
        end = frame["date_end"].cast(pl.Float64).to_numpy()
        self.date_begin = np.where(np.isnan(begin), end, begin)
        self.date_end = np.where(np.isnan(end), begin, end)
        self._exact: dict[str, list[int]] = {}
        titles = frame["title"].to_list()
        source_ids = frame["source_id"].to_list()
        for i, artwork_id in enumerate(self.ids):
            for key in {identifier_key(artwork_id), identifier_key(source_ids[i]), _title_key(titles[i])}:
                if key:
                    self._exact.setdefault(key, []).append(i)

    def __len__(self) -> int:
        return len(self.ids)

    def kinds(self) -> list[tuple[str, int]]:
        """Kinds of work (classification and object type values) with their counts, most common first."""
        return sorted(((self.kind_names[k], c) for k, c in self._kind_counts.items()), key=lambda kc: (-kc[1], kc[0]))

    def museums(self) -> list[str]:
        return sorted({s for s in self.sources.tolist() if s})

    def mask(self, filters: SearchFilters | None) -> np.ndarray | None:
        """Positions the filters allow (None: no filter); raises SearchQueryError when none do."""
        if filters is None or not filters.active:
            return None
        keep = np.ones(len(self.ids), dtype=bool)
        if filters.source is not None:
            if filters.source not in set(self.sources.tolist()):
                raise SearchQueryError(f"no works from museum {filters.source!r}; museums: {', '.join(self.museums())}")
            keep &= self.sources == filters.source
        if filters.kind is not None:
            code = {fold(n): c for c, n in enumerate(self.kind_names)}.get(fold(filters.kind.strip()))
            if code is None:
                raise SearchQueryError(self._unknown_kind(filters.kind))
            keep &= (self._kind_codes == code).any(axis=1)
        if filters.date_from is not None:
            keep &= self.date_end >= filters.date_from  # NaN (undated) compares False
        if filters.date_to is not None:
            keep &= self.date_begin <= filters.date_to
        if not keep.any():
            raise SearchQueryError(f"no work matches these filters ({describe_filters(filters)})")
        return keep

    def _unknown_kind(self, kind: str) -> str:
        names = [n for n, _ in self.kinds()]
        close = difflib.get_close_matches(kind, names, n=3, cutoff=0.6) or difflib.get_close_matches(
            kind.casefold(), [n.casefold() for n in names], n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else f"kinds include {', '.join(names[:8])}"
        return f"no works of kind {kind!r}: {hint}"

    def exact_matches(self, query: str, mask: np.ndarray | None) -> list[int]:
        """Positions whose artwork id, museum number or whole title equals the query."""
        hits = {*self._exact.get(identifier_key(query) or "", []), *self._exact.get(_title_key(query) or "", [])}
        return sorted(p for p in hits if mask is None or mask[p])

    def rows(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        if not len(positions):
            return []
        return self.frame[list(positions)].to_dicts()


def _title_key(title: Any) -> str | None:
    return " ".join(_WORD.findall(fold(title))) or None if isinstance(title, str) else None


def _kind_columns(frame: pl.DataFrame) -> tuple[np.ndarray, list[str], dict[int, int]]:
    """Per work, the codes of its (up to two) kinds; the display name of each code (its most
    common spelling); how many works have each kind."""
    spellings: dict[str, dict[str, int]] = {}
    columns = [frame["classification"].to_list(), frame["object_type"].to_list()]
    folded: dict[str, str] = {}  # a collection has few distinct kinds: each spelling folded once
    for column in columns:
        for value in column:
            if isinstance(value, str) and value.strip():
                spelling = value.strip()
                key = folded.get(spelling)
                if key is None:
                    key = folded[spelling] = fold(spelling)
                spellings.setdefault(key, {}).setdefault(spelling, 0)
                spellings[key][spelling] += 1
    keys = sorted(spellings)
    code_of = {k: i for i, k in enumerate(keys)}
    names = [max(spellings[k].items(), key=lambda kv: (kv[1], kv[0]))[0] for k in keys]
    codes = np.full((frame.height, 2), -1, dtype=np.int32)
    counts: dict[int, int] = {}
    for j, column in enumerate(columns):
        for i, value in enumerate(column):
            if isinstance(value, str) and value.strip():
                codes[i, j] = code_of[folded[value.strip()]]
    for row in codes:
        for code in set(row.tolist()) - {-1}:
            counts[code] = counts.get(code, 0) + 1
    return codes, names, counts


def describe_filters(filters: SearchFilters) -> str:
    parts = []
    if filters.source:
        parts.append(f"museum {filters.source}")
    if filters.kind:
        parts.append(f"kind {filters.kind}")
    if filters.date_from is not None or filters.date_to is not None:
        parts.append(f"years {'' if filters.date_from is None else filters.date_from}..{'' if filters.date_to is None else filters.date_to}")
    return ", ".join(parts) or "none"


# -- vector rankings ---------------------------------------------------------------------------------


class VectorRanking:
    """An :class:`AnnIndex` whose items are works of the catalogue."""

    def __init__(self, index: AnnIndex, catalog: Catalog) -> None:
        self.index = index
        self.catalog = catalog
        live = {a: index.label_of(a) for a in index.ids}
        self.label_of_position = np.fromiter((live.get(a, -1) for a in catalog.ids), dtype=np.int64, count=len(catalog))
        self._labels = max(live.values(), default=-1) + 1

    def allowed(self, mask: np.ndarray | None):
        """The hnswlib filter for a catalogue mask: labels when few (exact search), else a lookup."""
        if mask is None:
            return None
        labels = self.label_of_position[mask]
        labels = labels[labels >= 0]
        if labels.size <= EXACT_FILTER_MAX:
            return frozenset(labels.tolist())
        table = np.zeros(self._labels, dtype=bool)
        table[labels] = True
        return lambda label: bool(table[label])

    def rank(self, vector: np.ndarray, n: int, mask: np.ndarray | None, floor: float) -> tuple[list[int], list[float]]:
        allowed = self.allowed(mask)
        if allowed is not None and not callable(allowed) and not allowed:
            return [], []
        n = min(n, len(self.index))
        if n < 1:
            return [], []
        ids, scores = self.index.query(vector, n, filter_labels=allowed, ef=max(n, self.index.config.ef))
        positions, kept = [], []
        for artwork_id, score in zip(ids[0], scores[0], strict=True):
            if artwork_id is None or not score >= floor:
                continue
            position = self.catalog.position.get(artwork_id)
            if position is not None:
                positions.append(position)
                kept.append(float(score))
        return positions, kept


def reciprocal_rank_fusion(rankings: Mapping[str, Sequence[Any]], weights: Mapping[str, float], rrf_k: int = 60) -> list[tuple[Any, float]]:
    """Items of several best-first rankings by ``sum weight / (rrf_k + rank)`` (rank from 1),
    best first; ties go to the better best rank, then to the earlier ranking's order."""
    score: dict[Any, float] = {}
    best: dict[Any, tuple[int, int]] = {}
    for r, (name, items) in enumerate(rankings.items()):
        w = float(weights.get(name, 0.0))
        if w <= 0:
            continue
        for rank, item in enumerate(items, start=1):
            score[item] = score.get(item, 0.0) + w / (rrf_k + rank)
            best[item] = min(best.get(item, (rank, r)), (rank, r))
    return sorted(score.items(), key=lambda kv: (-kv[1], best[kv[0]]))


# -- the search --------------------------------------------------------------------------------------


Embed = Callable[[str], np.ndarray]


class TextSearch:
    """Keyword, text-vector and (optional) image-vector rankings over one catalogue, fused."""

    def __init__(
        self,
        catalog: Catalog,
        keyword: KeywordIndex,
        text_index: AnnIndex | None,
        embed_text: Embed | None,
        image_index: AnnIndex | None = None,
        embed_image_text: Embed | None = None,
        config: FusionConfig | None = None,
    ) -> None:
        self.catalog = catalog
        self.config = config or FusionConfig()
        self.keyword = keyword
        self._keyword_positions = np.fromiter((catalog.position.get(a, -1) for a in keyword.ids), dtype=np.int64,
                                              count=len(keyword))
        self._doc_of_position = np.full(len(catalog), -1, dtype=np.int64)
        found = self._keyword_positions >= 0
        self._doc_of_position[self._keyword_positions[found]] = np.flatnonzero(found)
        self.text = VectorRanking(text_index, catalog) if text_index is not None and embed_text else None
        self.image = VectorRanking(image_index, catalog) if image_index is not None and embed_image_text else None
        self._embed = {"text": embed_text, "image": embed_image_text}

    @property
    def rankers(self) -> list[str]:
        """The rankings this search can run (``image`` only with a dual image-text encoder)."""
        return ["keyword"] + [name for name in ("text", "image") if getattr(self, name) is not None]

    def rankings(self, query: str, filters: SearchFilters | None = None, only: Collection[str] | None = None,
                 mask: np.ndarray | None = None) -> dict[str, list[int]]:
        """Each ranking's best catalogue positions for the query (what the fusion combines)."""
        wanted = [r for r in self.rankers if (only is None or r in only) and (only is not None or self.config.weight(r) > 0)]
        if mask is None:
            mask = self.catalog.mask(filters)
        n = self.config.candidates
        out: dict[str, list[int]] = {}
        if "keyword" in wanted:
            doc_mask = None
            if mask is not None:
                doc_mask = np.zeros(len(self.keyword), dtype=bool)
                ok = self._keyword_positions >= 0
                doc_mask[ok] = mask[self._keyword_positions[ok]]
            # fused: only works holding every known query word (partial matches of a descriptive
            # query are noise next to the meaning rankings); alone: plain BM25
            all_terms = self.config.keyword_all_terms and only is None
            docs, _ = self.keyword.search(query_tokens(query), n, doc_mask, all_terms=all_terms)
            out["keyword"] = [int(p) for p in self._keyword_positions[docs] if p >= 0]
        for name in ("text", "image"):
            if name in wanted:
                vector = np.asarray(self._embed[name](query), dtype=np.float32).reshape(-1)
                floor = self.config.min_text_similarity if name == "text" else self.config.min_image_similarity
                out[name] = getattr(self, name).rank(vector, n, mask, floor)[0]
        return out

    def search(self, query: Any, k: int = 10, filters: SearchFilters | None = None,
               only: Collection[str] | None = None) -> list[dict[str, Any]]:
        """The ``k`` best works for ``query`` (dicts with ``RESULT_KEYS`` plus ``ranks``: each
        ranking's rank of the work, and ``exact`` when its id or title is the query).

        ``only`` runs just those rankings, at equal weight (``{"keyword"}`` is plain BM25).
        """
        query = clean_query(query)
        if k < 1:
            raise SearchQueryError("k must be at least 1")
        if only is not None and not set(only) <= set(RANKERS):
            raise ValueError(f"unknown rankings {sorted(set(only) - set(RANKERS))}")
        mask = self.catalog.mask(filters)
        rankings = self.rankings(query, filters, only, mask)
        weights = {r: (1.0 if only is not None else self.config.weight(r)) for r in rankings}
        fused = reciprocal_rank_fusion(rankings, weights, self.config.rrf_k)
        best = sum(weights.values()) / (self.config.rrf_k + 1) or 1.0
        exact = self.catalog.exact_matches(query, mask) if only is None or "keyword" in only else []
        pinned = set(exact)
        order = [(p, 1.0) for p in exact] + [(p, s / best) for p, s in fused if p not in pinned]
        order = order[:k]
        ranks = {name: {p: i for i, p in enumerate(items, start=1)} for name, items in rankings.items()}
        results = []
        for (position, score), row in zip(order, self.catalog.rows([p for p, _ in order]), strict=True):
            row = {key: row.get(key) for key in RESULT_KEYS if key != "score"} | {"score": round(float(min(score, 1.0)), 6)}
            row["artists"] = list(row.get("artists") or [])
            row["ranks"] = {name: r[position] for name, r in ranks.items() if position in r}
            if position in exact:
                row["ranks"]["exact"] = 1
            results.append(row)
        return results


def public(result: Mapping[str, Any]) -> dict[str, Any]:
    """A result with exactly the ``--json`` keys (``RESULT_KEYS``), in that order."""
    return {key: result.get(key) for key in RESULT_KEYS}

