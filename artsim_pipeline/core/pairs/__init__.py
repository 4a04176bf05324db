"""Weak-label pair mining from shared metadata (pure polars, no Dagster).

:func:`mine_pairs` turns the unified ``artworks`` table into the ``weak_pairs`` table
(``artwork_id_a < artwork_id_b``, ``label`` 1 similar / 0 dissimilar, ``rule``, ``weight``,
``split``).  One module per stage:

``rules``
    rule names, the output schema and :class:`PairRules` (weights, caps, ratio, fractions).
``works``
    preparation: the works table (sorted by ``artwork_id``, dense ``work_index``, cleaned
    fields, a seeded hash per work) and the normalised makers of each work.
``splits``
    maker-disjoint train / val / test splits (connected components of the work-maker graph).
``groups``
    capped sampling of pairs inside rule groups (no all-pairs join anywhere).
``positives``
    ``same_artist``, ``cross_museum_artist``, ``same_culture_classification``,
    ``shared_tags``.
``negatives`` and ``candidates``
    ``hard_negative`` and ``easy_negative``: slots per positive, a partner for each.
``mining``
    :func:`mine_pairs`, which runs the stages in that order.
``summary`` and ``validation``
    :func:`pair_stats`, :func:`preview_pairs` and :func:`validate_pairs` for the asset.

``frames`` holds what the stages share (work indices, seeded hashes, candidate pairs).

Determinism: the table is sorted by ``artwork_id`` first and every random choice is a seeded
hash of ``artwork_id`` (polars' hash, stable within a polars version), so the same input and
seed give the same output whatever the input row order.
"""

from artsim_pipeline.core.pairs.mining import mine_pairs
from artsim_pipeline.core.pairs.rules import (
    NEGATIVE_RULES,
    PAIRS_SCHEMA,
    POSITIVE_RULES,
    RULES,
    SPLITS,
    PairRules,
    empty_pairs,
)
from artsim_pipeline.core.pairs.summary import pair_stats, preview_pairs
from artsim_pipeline.core.pairs.validation import validate_pairs
from artsim_pipeline.core.pairs.works import artwork_makers

__all__ = [
    "PairRules",
    "POSITIVE_RULES",
    "NEGATIVE_RULES",
    "RULES",
    "SPLITS",
    "PAIRS_SCHEMA",
    "mine_pairs",
    "pair_stats",
    "preview_pairs",
    "validate_pairs",
    "artwork_makers",
    "empty_pairs",
]
