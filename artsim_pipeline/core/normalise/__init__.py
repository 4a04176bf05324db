"""Normalise verbatim museum records (``raw_objects``) into the unified ``artworks`` table.

Public API
----------
:func:`normalise` (dispatching on the source through the source registry), the per-source
normalisers it names (:func:`normalise_met`, :func:`normalise_smk`, ``core/museums/*.py``) and
:func:`normalise_staged` for sources that stage their records themselves. Each returns
``(artworks, quarantine)`` with :data:`~artsim_pipeline.core.schema.ARTWORKS_SCHEMA` and
:data:`~artsim_pipeline.core.schema.QUARANTINE_SCHEMA`.

Invariant: every raw row with ``status == "ok"`` ends up in exactly one of the two frames
(duplicate ids included: the losers are quarantined with rule ``duplicate_id``), so
``ok rows == len(artworks) + len(quarantine)``.  Nothing raises on bad data: a record that
cannot be normalised is quarantined with a rule id and a readable reason.

The package, by stage
---------------------
1. *Decode* (:mod:`.decode`): the ``raw_json`` texts through polars' NDJSON reader against a
   projected schema, with a Python slow path for what it cannot decode.
2. *Map*: each source's own mapping to one staging layout (:mod:`.layout`): the Met and SMK
   in ``core/museums/met.py`` and ``smk.py`` (polars expressions over the decoded fields), the
   other museums in ``core/museums/`` and the collection exports in ``core/exports/``.
3. *Finish* (:mod:`.assemble`, shared): id checks and duplicates (:mod:`.quarantine`),
   HTML/entity/whitespace cleaning, URLs, dates and timestamps (:mod:`.fields`), row-level rules
   (:func:`artsim_pipeline.core.expectations.row_rule_exprs`), image hashes from ``raw_images``,
   the final schema and the quarantine frame.

Only HTML entity unescaping and percent-encoding of a few URLs run in Python, and only on the
rows that need them.  ``benchmarks/bench_normalise.py`` times 500,000 Met records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from artsim_pipeline.core.normalise.layout import FAILURE_SCHEMA, STAGE_SCHEMA
from artsim_pipeline.core.normalise.assemble import normalise_staged

# The Met and SMK modules import the stages above, so they come last.
from artsim_pipeline.core.museums.met import MET_LANDING_URL
from artsim_pipeline.core.museums.met import normalise as normalise_met
from artsim_pipeline.core.museums.smk import SMK_LANDING_URL
from artsim_pipeline.core.museums.smk import normalise as normalise_smk

__all__ = [
    "normalise", "normalise_met", "normalise_smk", "normalise_staged", "STAGE_SCHEMA", "FAILURE_SCHEMA",
    "MET_LANDING_URL", "SMK_LANDING_URL",
]  # fmt: skip


def normalise(
    source: str, raw_objects: pl.DataFrame, raw_images: pl.DataFrame | None = None, *, export: Any = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalise one source's ``raw_objects`` into ``(artworks, quarantine)`` with the normaliser
    its registry entry names (``core/sources.py``: the museums' modules in ``core/museums/``).

    ``raw_images`` (optional) supplies ``image_sha256``: rows with ``status == "ok"`` joined on
    ``source_id`` and ``url`` (falling back to the object's last ok image when the URL has
    changed since the download). ``export`` is the
    :class:`~artsim_pipeline.core.exports.mapping.ExportMapping` of a collection export source.
    """
    if export is not None:
        from artsim_pipeline.core.exports.normalise import normalise_export

        if export.source != source:
            raise ValueError(f"the mapping is for source {export.source!r}, not {source!r}")
        return normalise_export(export, raw_objects, raw_images)
    from artsim_pipeline.core.sources import source_spec

    spec = source_spec(source)  # a clear ValueError for an unknown source
    if spec.normaliser is None:
        raise ValueError(f"source {source!r} has no normaliser in the registry (an export needs its mapping)")
    return _registered(spec.normaliser)(raw_objects, raw_images)


def _registered(target: str) -> Callable[..., tuple[pl.DataFrame, pl.DataFrame]]:
    """The function a registry entry names as ``"module:function"`` (imported on first use)."""
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


