"""`AnnIndex`: an hnswlib index with its artwork_id <-> label map and build info; lookups,
filtered k-NN queries (with exact search where a filter leaves few items), and the parts it is
stored as (writing and reading them: `resources/artefacts/`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from artsim_pipeline.core.ann.exact import brute_force_topk, normalize
from artsim_pipeline.core.ann.reduction import full_rows, rerank
from artsim_pipeline.core.ann.structure import (
    EXACT_FILTER_MAX, AnnConfig, IndexState, LabelFilter, base_info, check_ids, create_state,
)
from artsim_pipeline.core.ann.update import IndexUpdates

if TYPE_CHECKING:
    import hnswlib


class AnnIndex(IndexUpdates):
    """hnswlib index + artwork_id <-> label map + build info. See the package docstring."""

    def __init__(self, state: IndexState, config: AnnConfig, info: dict[str, Any]) -> None:
        self._s = state
        self.config = config
        self.build_info = info
        self._lock = threading.RLock()
        self._source_cache: dict[str, frozenset[int]] = {}

    # -- basic accessors ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._s.live)

    def __contains__(self, artwork_id: object) -> bool:
        return artwork_id in self._s.live

    @property
    def dim(self) -> int:
        return self._s.dim

    @property
    def search_dim(self) -> int:
        """The dimension hnswlib searches (below `dim` in a two-stage index)."""
        return self._s.search_dim

    @property
    def two_stage(self) -> bool:
        """hnswlib holds projected vectors and the full ones re-rank (`core.ann.reduction`)."""
        return self._s.full is not None

    @property
    def ids(self) -> list[str]:
        """Live artwork ids, in label order."""
        return sorted(self._s.live, key=self._s.live.__getitem__)

    @property
    def element_count(self) -> int:
        """hnswlib slots in use (live + deleted-but-not-yet-recycled)."""
        return int(self._s.index.element_count)

    @property
    def max_elements(self) -> int:
        return int(self._s.index.max_elements)

    @property
    def model_run_id(self) -> str | None:
        return self.build_info.get("model_run_id")

    @property
    def hnsw(self) -> hnswlib.Index:
        """The underlying hnswlib index (read-only use, please)."""
        return self._s.index

    def label_of(self, artwork_id: str) -> int:
        return self._s.live[artwork_id]

    def id_of(self, label: int) -> str:
        return self._s.label_ids[label]

    def get_vector(self, artwork_id: str) -> np.ndarray:
        """The stored (unit) vector of a live artwork, full-dimensional; KeyError if not indexed."""
        lab = self._s.live[artwork_id]
        with self._lock:
            return self._stored_vectors(np.asarray([lab], dtype=np.int64))[0]

    def _stored_vectors(self, labels: np.ndarray) -> np.ndarray:
        """Unit float32 full vectors of ``labels`` (from the float16 rows of a two-stage index)."""
        if self._s.full is not None:
            return full_rows(self._s.full, labels)
        return np.asarray(self._s.index.get_items(labels), dtype=np.float32)

    def id_map(self) -> pl.DataFrame:
        """Every label ever assigned: ``artwork_id``, ``label``, ``deleted``."""
        s = self._s
        return pl.DataFrame(
            {
                "artwork_id": pl.Series(s.label_ids.tolist(), dtype=pl.String),
                "label": pl.Series(np.arange(len(s.label_ids), dtype=np.int64)),
                "deleted": pl.Series(s.deleted, dtype=pl.Boolean),
            }
        )

    def labels_for_source(self, source: str) -> frozenset[int]:
        """Live labels whose artwork id starts with ``"<source>:"`` (cached until an update)."""
        source = source.rstrip(":")
        with self._lock:
            cached = self._source_cache.get(source)
            if cached is None:
                prefix = source + ":"
                cached = frozenset(
                    lab for aid, lab in self._s.live.items() if aid.startswith(prefix)
                )
                self._source_cache[source] = cached
            return cached

    # -- query ---------------------------------------------------------------------------------

    def query(
        self,
        vectors: Any,
        k: int,
        exclude_ids: Iterable[str] | None = None,
        filter_labels: LabelFilter | None = None,
        *,
        ef: int | None = None,
        num_threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """k nearest live items of each query vector: ``(ids, scores)``.

        ``ids`` is an object array of artwork ids and ``scores`` a float32 array of cosine
        similarities (``1 - distance``), both of shape ``(n_queries, k_eff)``, best first, with
        ``k_eff = min(k, live items not excluded)``. ``exclude_ids`` are dropped from every
        row (results are topped up so that k are still returned). ``filter_labels`` restricts
        results to the allowed labels (a collection of labels or a ``label -> bool``
        callable); when the filter leaves fewer than ``k_eff`` items a row is padded with
        ``None`` / NaN. Deleted items are never returned.
        """
        if k < 1:
            raise ValueError("k must be >= 1")
        x = normalize(vectors, self._s.dim)
        threads = self.config.threads if num_threads is None else num_threads
        with self._lock:
            s = self._s
            excl = {s.live[a] for a in (exclude_ids or ()) if a in s.live}
            n_live = len(s.live)
            k_eff = min(k, n_live - len(excl))
            n = x.shape[0]
            ids_out = np.full((n, max(k_eff, 0)), None, dtype=object)
            sc_out = np.full((n, max(k_eff, 0)), np.nan, dtype=np.float32)
            if k_eff <= 0 or n == 0:
                return ids_out, sc_out
            filt, allowed_set = _as_filter(filter_labels)
            available = n_live if allowed_set is None else len(allowed_set)
            k_req = min(k_eff + len(excl), available)
            if k_req <= 0:
                return ids_out, sc_out
            if allowed_set is not None and len(allowed_set) <= EXACT_FILTER_MAX:
                # a handful of allowed items: exact search is cheaper than graph search
                allowed = np.fromiter(allowed_set, dtype=np.int64, count=len(allowed_set))
                allowed = allowed[(allowed >= 0) & (allowed < len(s.deleted))]
                labels, dists = self._exact(x, k_req, allowed[~s.deleted[allowed]])
            elif s.full is None:
                labels, dists = self._knn(x, k_req, filt, ef or self.config.ef, threads)
            else:  # two-stage: oversampled candidates from the projected vectors, ranked exactly
                candidates = min(available, k_req * self.config.oversample)
                labels, dists = self._knn(x, candidates, filt, ef or self.config.ef, threads)
                labels, dists = rerank(s.full, x, labels, k_req)
            valid = labels >= 0
            if excl:
                valid &= ~np.isin(labels, np.fromiter(excl, dtype=np.int64))
            # push invalid entries to the end of each row, keeping the order of valid ones
            width = min(k_eff, labels.shape[1])
            order = np.argsort(~valid, axis=1, kind="stable")[:, :width]
            labels = np.take_along_axis(labels, order, axis=1)
            valid = np.take_along_axis(valid, order, axis=1)
            scores = 1.0 - np.take_along_axis(dists, order, axis=1).astype(np.float32)
            ids_part, sc_part = ids_out[:, :width], sc_out[:, :width]  # views
            ids_part[valid] = s.label_ids[labels[valid]]
            sc_part[valid] = scores[valid]
            return ids_out, sc_out

    def _knn(
        self,
        x: np.ndarray,
        k: int,
        filt: Callable[[int], bool] | None,
        ef: int,
        threads: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """hnswlib knn_query of the unit rows ``x`` (projected first in a two-stage index); rows
        hnswlib cannot fill get one retry at 4x ef, then exact search.

        hnswlib (0.8) raises when any row has fewer than k results. Its search keeps exploring
        until it holds ``ef`` allowed (filter-passing, not deleted) items, so a short row
        nearly always means fewer than k allowed items are reachable: the retry at a larger
        ``ef`` is cheap insurance, the exact search over the allowed items is what settles it.
        Returns labels (-1 = none) and distances (inf = none), shape (n, k). Caller holds the lock.
        """
        index = self._s.index
        searched = self._s.searched(x)
        base_ef = max(ef, k)
        try:
            index.set_ef(base_ef)
            try:
                lab, dist = index.knn_query(searched, k=k, num_threads=threads, filter=filt)
                return lab.astype(np.int64), dist
            except RuntimeError:
                pass  # some row came back short: redo row by row
            lab = np.full((x.shape[0], k), -1, dtype=np.int64)
            dist = np.full((x.shape[0], k), np.inf, dtype=np.float32)
            allowed: np.ndarray | None = None
            retry_ef = min(max(int(index.element_count), k), base_ef * 4)
            for row in range(x.shape[0]):
                for cur in (base_ef, retry_ef):
                    index.set_ef(cur)
                    try:
                        l_r, d_r = index.knn_query(searched[row], k=k, num_threads=1, filter=filt)
                        lab[row], dist[row] = l_r[0], d_r[0]
                        break
                    except RuntimeError:
                        continue
                else:
                    if allowed is None:
                        allowed = self._allowed_labels(filt)
                    l_r, d_r = self._exact(x[row : row + 1], k, allowed)
                    lab[row], dist[row] = l_r[0], d_r[0]
            return lab, dist
        finally:
            index.set_ef(self.config.ef)

    def _allowed_labels(self, filt: Callable[[int], bool] | None) -> np.ndarray:
        """Live labels passing the filter (calls a Python filter once per live item)."""
        labels = np.fromiter(self._s.live.values(), dtype=np.int64, count=len(self._s.live))
        if filt is not None:
            keep = np.fromiter((bool(filt(int(v))) for v in labels), dtype=bool, count=len(labels))
            labels = labels[keep]
        return labels

    def _exact(self, x: np.ndarray, k: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact search of the rows of ``x`` among ``labels`` (live ones): padded labels/dists."""
        lab = np.full((x.shape[0], k), -1, dtype=np.int64)
        dist = np.full((x.shape[0], k), np.inf, dtype=np.float32)
        if labels.size == 0:
            return lab, dist
        idx, sc = brute_force_topk(self._stored_vectors(labels), x, k)
        lab[:, : idx.shape[1]] = labels[idx]
        dist[:, : idx.shape[1]] = 1.0 - sc
        return lab, dist

    # -- update --------------------------------------------------------------------------------

    @contextmanager
    def parts(self) -> Iterator[tuple[hnswlib.Index, pl.DataFrame, dict[str, Any], dict[str, np.ndarray]]]:
        """(the hnswlib index, the id map, a copy of the build info, the arrays of a two-stage
        index: ``projection`` and ``full`` (float16 rows by label), empty otherwise), held still
        while the block runs: no update swaps or changes them meanwhile."""
        with self._lock:
            s = self._s
            arrays = {} if s.full is None else {"projection": s.projection, "full": s.full}
            yield s.index, self.id_map(), dict(self.build_info), arrays

    @staticmethod
    def stored_config(info: dict[str, Any], config: AnnConfig | None = None) -> AnnConfig:
        """The configuration of a stored index: build parameters from its build info, query-time
        settings (ef, num_threads, oversample) from ``config`` when given."""
        # an index stored before two-stage indexes existed has no search_dim: hnswlib holds its vectors
        saved = AnnConfig.from_dict({"search_dim": 0, **info.get("config", {})})
        if config is not None:
            saved = AnnConfig(**{**asdict(saved), "ef": config.ef, "num_threads": config.num_threads,
                                 "oversample": config.oversample})
        return saved

    @classmethod
    def from_parts(cls, index: hnswlib.Index, id_map: pl.DataFrame, info: dict[str, Any],
                   config: AnnConfig | None = None, arrays: dict[str, np.ndarray] | None = None) -> AnnIndex:
        """The index again from its parts: a loaded hnswlib index, its id map and build info
        (``config``: see :meth:`stored_config`), and a two-stage index's ``arrays`` (see
        :meth:`parts`; ``full`` may be rows read from a file as queries need them, copied into
        memory only when an update writes: `IndexState.full`)."""
        saved = cls.stored_config(info, config)
        projection, full = (arrays or {}).get("projection"), (arrays or {}).get("full")
        idmap = id_map.sort("label")
        labels = idmap["label"].to_numpy()
        if len(labels) and not np.array_equal(labels, np.arange(len(labels))):
            raise ValueError("id map: labels are not 0..n-1")
        index.set_ef(saved.ef)
        if saved.threads > 0:
            index.set_num_threads(saved.threads)
        label_ids = np.empty(len(idmap), dtype=object)
        label_ids[:] = idmap["artwork_id"].to_list()
        deleted = idmap["deleted"].to_numpy().astype(bool, copy=True)
        live = {label_ids[i]: int(i) for i in np.flatnonzero(~deleted)}
        if len(live) != int(info.get("count", len(live))):
            raise ValueError(f"id map has {len(live)} live ids, build info says {info['count']}")
        dim = int(info["dim"])
        _check_arrays(int(info.get("search_dim", dim)), dim, len(label_ids), projection, full)
        return cls(IndexState(index, dim, label_ids, deleted, live, projection, full), saved, info)


def _check_arrays(search_dim: int, dim: int, labels: int, projection: np.ndarray | None, full: np.ndarray | None) -> None:
    """A two-stage index's arrays match its build info (and a one-stage index has none)."""
    if search_dim == dim:
        if projection is not None or full is not None:
            raise ValueError("build info says hnswlib holds the full vectors, but a projection was given")
        return
    if projection is None or full is None:
        raise ValueError(f"build info says hnswlib holds {search_dim} of {dim} dimensions: the projection or the full vectors are missing")
    if projection.shape != (search_dim, dim):
        raise ValueError(f"projection has shape {projection.shape}, expected {(search_dim, dim)}")
    if full.shape != (labels, dim) or full.dtype != np.float16:
        raise ValueError(f"full vectors are {full.dtype} {full.shape}, expected float16 {(labels, dim)}")


def _as_filter(
    filter_labels: LabelFilter | None,
) -> tuple[Callable[[int], bool] | None, frozenset[int] | None]:
    """(hnswlib filter callable, the allowed labels when given as a collection)."""
    if filter_labels is None:
        return None, None
    if callable(filter_labels):
        return filter_labels, None
    allowed = (
        filter_labels
        if isinstance(filter_labels, frozenset)
        else frozenset(int(v) for v in filter_labels)
    )
    return allowed.__contains__, allowed


def build_index(
    ids: Sequence[str],
    vectors: Any,
    config: AnnConfig | None = None,
    model_run_id: str | None = None,
    model_version: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AnnIndex:
    """Build a fresh index over ``vectors`` (rows L2-normalised here) labelled 0..n-1 in order."""
    config = config or AnnConfig()
    x = normalize(vectors)
    ids = check_ids(ids, x.shape[0])
    if x.shape[0] == 0:
        raise ValueError("cannot build an index over zero vectors")
    state, seconds = create_state(ids, x, config, progress=progress)
    return AnnIndex(state, config, base_info(config, state, seconds, model_run_id, model_version))
