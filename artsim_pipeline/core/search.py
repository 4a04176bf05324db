"""Similar-works search over an :class:`~artsim_pipeline.core.ann.AnnIndex` (no Dagster import).

Plain functions that the CLI (``artsim similar``), the UI and a later HTTP API all call:

- :func:`similar` - the k nearest *other* works of an artwork, with display metadata;
- :func:`similar_to_vector` - the same for a query vector (``artsim similar --image FILE``);
- :func:`near_duplicates` - cross-museum pairs above a similarity threshold;
- :func:`calibrate_threshold` - pick that threshold from scores of known duplicates;
- :class:`ArtworkRows` - artworks rows found by id without holding the table in memory (what
  serving decorates results with).

Result dicts have exactly the CLI ``--json`` keys: ``artwork_id``, ``score`` (cosine
similarity, higher is more similar), ``title``, ``artists`` (list of str), ``source``,
``landing_url``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from artsim_pipeline.core.ann import AnnIndex, LabelFilter, normalize, source_of

if TYPE_CHECKING:
    import pyarrow as pa

RESULT_KEYS = ("artwork_id", "score", "title", "artists", "source", "landing_url")

VectorsLookup = Mapping[str, Any] | Callable[[str], Any] | pl.DataFrame | None


class UnknownArtworkError(KeyError):
    """The artwork id is neither in the vectors lookup nor in the index."""

    def __init__(self, artwork_id: str, detail: str = "") -> None:
        self.artwork_id = artwork_id
        msg = f"unknown artwork id {artwork_id!r}"
        super().__init__(f"{msg}: {detail}" if detail else msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def _lookup_vector(artwork_id: str, vectors_lookup: VectorsLookup, index: AnnIndex) -> np.ndarray:
    """The query vector: from ``vectors_lookup`` if it has one, else the index's stored vector."""
    vec = None
    if isinstance(vectors_lookup, pl.DataFrame):
        hit = vectors_lookup.filter(pl.col("artwork_id") == artwork_id)
        if hit.height:
            vec = hit["vector"][0]
    elif isinstance(vectors_lookup, Mapping):
        vec = vectors_lookup.get(artwork_id)
    elif callable(vectors_lookup):
        try:
            vec = vectors_lookup(artwork_id)
        except KeyError:
            vec = None
    if vec is None and artwork_id in index:
        return index.get_vector(artwork_id)
    if vec is None:
        raise UnknownArtworkError(artwork_id, "no vector for it and not in the index")
    return np.asarray(vec.to_numpy() if isinstance(vec, pl.Series) else vec, dtype=np.float32)


def _source_filter(index: AnnIndex, source: str | None) -> frozenset[int] | None:
    return None if source is None else index.labels_for_source(source)


def _combine(first: LabelFilter | None, second: LabelFilter | None) -> LabelFilter | None:
    """Labels both filters allow (either may be None: no restriction)."""
    if first is None or second is None:
        return second if first is None else first
    if not callable(first) and not callable(second):
        return frozenset(first) & frozenset(second)
    def allowed(label: int, a=first, b=second) -> bool:
        return (a(label) if callable(a) else label in a) and (b(label) if callable(b) else label in b)
    return allowed


class _SortedIds(Sequence):
    """The ``artwork_id`` column of a table sorted by it, as a sequence `bisect` can search:
    each probe reads one value, so a lookup touches ~log2(n) of them."""

    def __init__(self, column: "pa.Array | pa.ChunkedArray") -> None:
        self._column = column

    def __len__(self) -> int:
        return len(self._column)

    def __getitem__(self, position):  # bisect only asks for single positions
        return self._column[position].as_py()


class ArtworkRows:
    """Artworks rows by id over tables sorted by ``artwork_id`` (Arrow, e.g. memory-mapped files,
    one per museum): a lookup is a binary search, then only the rows asked for are read, so
    serving never holds the whole table (`rows_read` counts the rows materialised).

    ``tables`` maps a museum key to its table; an id is looked up in the table of its prefix
    first, then in the others (in the given order).
    """

    def __init__(self, tables: Mapping[str, "pa.Table"]) -> None:
        self._tables = dict(tables)
        self._ids: dict[str, _SortedIds] = {}
        for source, table in self._tables.items():
            column = table.column("artwork_id")
            self._ids[source] = _SortedIds(column.chunk(0) if column.num_chunks == 1 else column)
        self.rows_read = 0

    def __len__(self) -> int:
        return sum(t.num_rows for t in self._tables.values())

    def __bool__(self) -> bool:
        return len(self) > 0

    def _position(self, artwork_id: str) -> tuple[str, int] | None:
        first = source_of(artwork_id)
        for source in [first, *(s for s in self._tables if s != first)] if first in self._tables else self._tables:
            ids = self._ids[source]
            i = bisect_left(ids, artwork_id)
            if i < len(ids) and ids[i] == artwork_id:
                return source, i
        return None

    def __contains__(self, artwork_id: object) -> bool:
        return isinstance(artwork_id, str) and self._position(artwork_id) is not None

    def row(self, artwork_id: str, columns: Sequence[str] | None = None) -> dict[str, Any] | None:
        """The artworks row of the id (every column, or those of `columns` it has), or None."""
        found = self._position(artwork_id)
        if found is None:
            return None
        self.rows_read += 1
        source, i = found
        table = self._tables[source]
        if columns is not None:  # only these columns' pages are read
            table = table.select([c for c in columns if c in table.column_names])
        return table.slice(i, 1).to_pylist()[0]

    def get(self, artwork_id: str, default: Any = None) -> dict[str, Any] | None:
        row = self.row(artwork_id)
        return default if row is None else row

    def rows(self, artwork_ids: Iterable[str], columns: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """``artwork_id -> row`` for the ids that have one (see `row`)."""
        out: dict[str, dict[str, Any]] = {}
        for aid in artwork_ids:
            if aid not in out and (row := self.row(aid, columns)) is not None:
                out[aid] = row
        return out

    def kinds(self) -> list[tuple[str, int]]:
        """Kinds of work (classification and object type values) with their counts, most common
        first: what `core.text_search.Catalog.kinds` gives for these rows, counted over the
        distinct (classification, object type) pairs, so only those two columns are read."""
        pairs = []
        for table in self._tables.values():
            present = [c for c in ("classification", "object_type") if c in table.column_names]
            if not present:
                continue  # no work of this table has a kind
            frame = pl.from_arrow(table.select(present))
            for column in ("classification", "object_type"):
                if column not in frame.columns:
                    frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
            pairs += frame.group_by("classification", "object_type").len().iter_rows()
        return kind_counts(pairs)

    def having_rows(self, artwork_ids: Sequence[str]) -> list[str]:
        """The ids that have a row, in the given order (one hash join per table, no row read)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = pa.array(list(artwork_ids), type=pa.string())
        keep = np.zeros(len(wanted), dtype=bool)
        for table in self._tables.values():
            keep |= pc.is_in(wanted, value_set=table.column("artwork_id").cast(pa.string())).to_numpy(zero_copy_only=False)
        return [a for a, k in zip(artwork_ids, keep.tolist(), strict=True) if k]


def kind_counts(pairs: Iterable[tuple[str | None, str | None, int]]) -> list[tuple[str, int]]:
    """Kinds with their counts, most common first, from ``(classification, object_type, works)``:
    a kind is a value of either column compared folded (`core.text_search.fold`), shown in its
    most common spelling; a work counts once per kind it has."""
    from artsim_pipeline.core.text_search import fold

    pairs = list(pairs)
    spellings: dict[str, dict[str, int]] = {}
    counts: dict[str, int] = {}
    for classification, object_type, works in pairs:
        keys = set()
        for value in (classification, object_type):
            if isinstance(value, str) and value.strip():
                key = fold(value.strip())
                spellings.setdefault(key, {}).setdefault(value.strip(), 0)
                spellings[key][value.strip()] += works
                keys.add(key)
        for key in keys:
            counts[key] = counts.get(key, 0) + works
    names = {key: max(spelled.items(), key=lambda kv: (kv[1], kv[0]))[0] for key, spelled in spellings.items()}
    return sorted(((names[key], count) for key, count in counts.items()), key=lambda kc: (-kc[1], kc[0]))


DISPLAY_COLUMNS = ("artwork_id", "title", "artists", "source", "landing_url")
ArtworksSource = pl.DataFrame | ArtworkRows | None


def _metadata(wanted: list[str], artworks: ArtworksSource) -> dict[str, dict]:
    """Display rows of the wanted ids: the k rows read from `ArtworkRows`, or one filter of a frame."""
    if artworks is None or not wanted:
        return {}
    if isinstance(artworks, ArtworkRows):
        return artworks.rows(wanted, DISPLAY_COLUMNS)
    meta: dict[str, dict] = {}
    cols = [c for c in DISPLAY_COLUMNS if c in artworks.columns]
    for row in artworks.filter(pl.col("artwork_id").is_in(wanted)).select(cols).iter_rows(named=True):
        meta.setdefault(row["artwork_id"], row)
    return meta


def _decorate(ids: Iterable[str | None], scores: Iterable[float], artworks: ArtworksSource) -> list[dict]:
    pairs = [(a, float(s)) for a, s in zip(ids, scores, strict=True) if a is not None]
    meta = _metadata([a for a, _ in pairs], artworks)
    out = []
    for aid, score in pairs:
        row = meta.get(aid, {})
        artists = row.get("artists")
        out.append(
            {
                "artwork_id": aid,
                "score": score,
                "title": row.get("title"),
                "artists": list(artists) if artists is not None else [],
                "source": row.get("source") or source_of(aid),
                "landing_url": row.get("landing_url"),
            }
        )
    return out


def similar(
    artwork_id: str,
    k: int,
    index: AnnIndex,
    vectors_lookup: VectorsLookup,
    artworks: ArtworksSource,
    source: str | None = None,
    filter_labels: LabelFilter | None = None,
) -> list[dict]:
    """The ``k`` works most similar to ``artwork_id``, best first, never the work itself.

    ``vectors_lookup`` gives the query vector: a mapping or callable ``artwork_id -> vector``,
    an ``artwork_vectors`` frame (``artwork_id``, ``vector``), or None; when it has no vector
    the index's stored vector is used (serving passes None: no table is scanned). ``artworks``
    (a frame or an :class:`ArtworkRows`) gives the results' display metadata. ``source`` (``"met"``, ``"smk"``) restricts results to
    one museum; ``filter_labels`` (index labels, or a ``label -> bool`` callable) restricts them
    further (see :class:`~artsim_pipeline.core.text_search.VectorRanking` for one built from
    search filters). Fewer than ``k`` come back only when fewer candidates exist. Raises
    :class:`UnknownArtworkError` (a ``KeyError``) when the id has no vector anywhere.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    vector = _lookup_vector(artwork_id, vectors_lookup, index)
    ids, scores = index.query(
        vector, k, exclude_ids=[artwork_id], filter_labels=_combine(_source_filter(index, source), filter_labels)
    )
    return _decorate(ids[0], scores[0], artworks)


def similar_to_vector(
    vector: Any,
    k: int,
    index: AnnIndex,
    artworks: ArtworksSource = None,
    source: str | None = None,
    exclude_ids: Iterable[str] = (),
    filter_labels: LabelFilter | None = None,
) -> list[dict]:
    """The ``k`` works most similar to an arbitrary query vector (e.g. an embedded image file)."""
    if k < 1:
        raise ValueError("k must be >= 1")
    ids, scores = index.query(
        vector, k, exclude_ids=list(exclude_ids), filter_labels=_combine(_source_filter(index, source), filter_labels)
    )
    return _decorate(ids[0], scores[0], artworks)


def near_duplicates(
    index: AnnIndex,
    ids: Iterable[str],
    vectors: Any,
    threshold: float,
    cross_source_only: bool = True,
    k: int = 10,
    batch: int = 20_000,
) -> pl.DataFrame:
    """Pairs of works whose cosine similarity is at least ``threshold``.

    Each of ``ids`` (with its ``vectors``) is queried for its ``k`` nearest neighbours in the
    index; pairs above the threshold are kept once (``artwork_id_a < artwork_id_b``), and with
    ``cross_source_only`` only pairs from different museums. Columns: ``artwork_id_a``,
    ``artwork_id_b``, ``score``, ``source_a``, ``source_b``, sorted by score descending.

    Limitation (kept for speed: no per-query Python filter): a work with more than ``k``
    same-museum neighbours above the threshold can hide its cross-museum ones; raise ``k``
    if collections hold many internal near-copies.
    """
    ids = [str(a) for a in ids]
    x = normalize(vectors, index.dim)
    if len(ids) != x.shape[0]:
        raise ValueError("ids and vectors differ in length")
    a_col: list[str] = []
    b_col: list[str] = []
    s_col: list[float] = []
    for start in range(0, len(ids), batch):
        q_ids = ids[start : start + batch]
        nb, sc = index.query(x[start : start + batch], k + 1)
        rows, cols = np.nonzero(sc >= threshold)  # NaN (padding) compares False
        for qi, ci in zip(rows.tolist(), cols.tolist(), strict=True):
            aid, bid, score = q_ids[qi], nb[qi, ci], sc[qi, ci]
            if bid is None or bid == aid:
                continue
            if cross_source_only and source_of(bid) == source_of(aid):
                continue
            lo, hi = (aid, bid) if aid < bid else (bid, aid)
            a_col.append(lo)
            b_col.append(hi)
            s_col.append(float(score))
    frame = pl.DataFrame(
        {"artwork_id_a": a_col, "artwork_id_b": b_col, "score": s_col},
        schema={"artwork_id_a": pl.String, "artwork_id_b": pl.String, "score": pl.Float64},
    )
    return (
        frame.group_by("artwork_id_a", "artwork_id_b")
        .agg(pl.col("score").max())
        .with_columns(
            _source_expr("artwork_id_a").alias("source_a"),
            _source_expr("artwork_id_b").alias("source_b"),
        )
        .sort(["score", "artwork_id_a", "artwork_id_b"], descending=[True, False, False])
    )


def _source_expr(column: str) -> pl.Expr:
    return pl.col(column).str.split_exact(":", 1).struct.field("field_0")


def calibrate_threshold(
    positive_scores: Iterable[float],
    negative_scores: Iterable[float] | None = None,
    *,
    target_recall: float = 0.95,
    max_false_positive_rate: float = 0.01,
) -> float:
    """A similarity threshold for :func:`near_duplicates`, from scores of known pairs.

    - Positives only (scores of known duplicates / similar pairs): the highest threshold that
      still keeps at least ``target_recall`` of them (roughly their ``1 - target_recall``
      quantile).
    - With negatives (scores of known non-duplicates, e.g. random pairs): also at least the
      ``1 - max_false_positive_rate`` quantile of the negatives, so no more than that share
      of negatives pass. When the two disagree precision wins (the higher threshold is
      returned); compare the result with the positive quantile to see the recall given up.
    """
    pos = np.asarray(list(positive_scores), dtype=np.float64)
    pos = pos[np.isfinite(pos)]
    if pos.size == 0:
        raise ValueError("need at least one finite positive score")
    if not 0.0 < target_recall <= 1.0:
        raise ValueError("target_recall must be in (0, 1]")
    pos_sorted = np.sort(pos)
    misses = int(np.floor((1.0 - target_recall) * pos.size + 1e-9))  # positives we may lose
    threshold = float(pos_sorted[min(misses, pos.size - 1)])
    if negative_scores is not None:
        neg = np.asarray(list(negative_scores), dtype=np.float64)
        neg = neg[np.isfinite(neg)]
        if neg.size:
            if not 0.0 <= max_false_positive_rate < 1.0:
                raise ValueError("max_false_positive_rate must be in [0, 1)")
            # smallest t with share(neg >= t) <= max_fpr: just above the (1-fpr) quantile
            neg_sorted = np.sort(neg)
            allowed = int(np.floor(max_false_positive_rate * neg.size))
            cut = neg_sorted[neg.size - allowed - 1]  # highest negative that must not pass
            threshold = max(threshold, float(np.nextafter(cut, np.inf)))
    return threshold
