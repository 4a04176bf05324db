"""The source registry: every collection the pipeline ingests, named once.

Partitions, CLI choices, the web app, the summary, the sample and the validation suite all read
their list of sources from here, so a new collection is one entry below (plus, for an export,
its folder with a ``mapping.toml``; see :mod:`artsim_pipeline.core.exports.mapping`).

Two kinds of source:

* ``api``: a museum's open API (live clients, or the bundled snapshot in ``ARTSIM_ENV=sample``);
* ``export``: a collection export (CSV or JSON lines, with image files) read through a
  declarative mapping. Its bundled copy lives in ``artsim_pipeline/sample/exports/<key>/``.

Plain data only: no I/O, no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["SourceSpec", "REGISTRY", "SOURCES", "API_SOURCES", "EXPORT_SOURCES", "source_spec", "is_export"]

SourceKind = Literal["api", "export"]


@dataclass(frozen=True)
class SourceSpec:
    """One collection: its key (the partition and the ``artwork_id`` prefix), kind and title."""

    key: str
    kind: SourceKind
    title: str
    #: what every ``artwork_id`` of the source looks like (checked by the validation suite)
    artwork_id_pattern: str


REGISTRY: tuple[SourceSpec, ...] = (
    SourceSpec("met", "api", "The Metropolitan Museum of Art, Collection API", r"^met:\d+$"),
    SourceSpec("smk", "api", "SMK, Statens Museum for Kunst, Open API", r"^smk:\S.*$"),
    SourceSpec(
        "met_medialab",
        "export",
        "The Met MediaLab objectcrowdsourcer export (2014), real photographs",
        r"^met_medialab:\d+$",
    ),
)

#: Every source key, in the order partitions and pages list them.
SOURCES: tuple[str, ...] = tuple(spec.key for spec in REGISTRY)
API_SOURCES: tuple[str, ...] = tuple(spec.key for spec in REGISTRY if spec.kind == "api")
EXPORT_SOURCES: tuple[str, ...] = tuple(spec.key for spec in REGISTRY if spec.kind == "export")

_BY_KEY = {spec.key: spec for spec in REGISTRY}


def source_spec(key: str) -> SourceSpec:
    """The registry entry of ``key``; a clear ``ValueError`` for an unknown source."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise ValueError(f"unknown source {key!r}; expected one of {', '.join(SOURCES)}") from None


def is_export(key: str) -> bool:
    """True when ``key`` is a collection export (read through a mapping), not an API."""
    return source_spec(key).kind == "export"
