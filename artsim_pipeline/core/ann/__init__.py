"""Approximate nearest-neighbour index over artwork vectors (hnswlib), with no Dagster import.

The package: `structure` (parameters, the label bookkeeping a build creates, the build info),
`exact` (vector helpers and exact search), `index` (`AnnIndex`: lookups, queries, its stored parts),
`update` (bringing a stored index to a new set of vectors in place, or rebuilding it).

`AnnIndex` wraps an ``hnswlib.Index`` over L2-normalised float32 vectors and keeps the map
between ``artwork_id`` strings and hnswlib's integer labels.

Labels
    Every artwork gets an integer label the first time it is indexed. Labels are stable (an
    artwork keeps its label across incremental updates *and* full rebuilds, for as long as it
    stays in the collection) and never reused: a label whose artwork disappeared stays in the
    id map with ``deleted=True``, and an artwork that comes back later gets a fresh label.

Deletes and updates
    Disappeared artworks are ``mark_deleted`` in hnswlib: they never come back from a query.
    The index is created with ``allow_replace_deleted=True`` and new items are added with
    ``replace_deleted=True``, so the memory slots of deleted items are recycled (with new
    labels) instead of growing the index forever. An artwork whose vector changed keeps its
    label: ``add_items`` on an existing label is hnswlib's in-place update, which also repairs
    the element's neighbour lists.

Filters
    ``query(..., filter_labels=...)`` takes a collection of allowed labels (for example
    :meth:`AnnIndex.labels_for_source`, "only the Met") or any ``label -> bool`` callable, and
    passes it to hnswlib's ``filter=``. A restrictive filter can make hnswlib find fewer than
    ``k`` results; the query then retries that row with 4x ``ef`` and, if still short, falls
    back to exact search over the allowed items (hnswlib 0.8 keeps searching until it holds
    ``ef`` allowed items, so a short row almost always means fewer than ``k`` allowed items
    exist: measured 0 short rows in 300 random filters of k..3k allowed items, and with 95 %
    of an index deleted). Rows that are still short are padded. A label collection of at most
    ``EXACT_FILTER_MAX`` items goes straight to exact search. The filter is a Python callable
    called under the GIL for every candidate hnswlib looks at: fine for interactive queries,
    slow for bulk work.

Stored as its parts (:meth:`AnnIndex.parts`, :meth:`AnnIndex.from_parts`): the hnswlib index,
the id map (``artwork_id``, ``label``, ``deleted``) and the build info (parameters, counts,
timings, model run id / version); the files they become are the storage layout's
(``resources/artefacts/``).
"""

from artsim_pipeline.core.ann.exact import brute_force_topk, normalize, recall_vs_exact, source_of, synthetic_clustered_vectors
from artsim_pipeline.core.ann.index import AnnIndex, build_index
from artsim_pipeline.core.ann.structure import EXACT_FILTER_MAX, FORMAT_VERSION, AnnConfig, LabelFilter, UpdateResult

__all__ = [
    "EXACT_FILTER_MAX", "FORMAT_VERSION", "AnnConfig", "AnnIndex", "LabelFilter", "UpdateResult", "brute_force_topk",
    "build_index", "normalize", "recall_vs_exact", "source_of", "synthetic_clustered_vectors",
]
