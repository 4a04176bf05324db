"""The source registry: every collection the pipeline ingests, named once.

Partitions, CLI choices, the web app, the summary, the sample and the validation suite all read
their list of sources from here, so a new collection is one entry below (plus, for an export,
its folder with a ``mapping.toml``; see :mod:`artsim_pipeline.core.exports.mapping`).

Two kinds of source:

* ``api``: a museum's open API (live clients, or the bundled snapshot in ``ARTSIM_ENV=sample``);
* ``export``: a collection export (CSV or JSON lines, with image files) read through a
  declarative mapping. Its bundled copy lives in ``artsim_pipeline/sample/exports/<key>/``.

An API source's entry says everything the pipeline needs to know about it besides its client
class (``resources/clients/registry.py`` binds each key to one; core stays free of I/O): its
key (the partition and the ``artwork_id`` prefix), its display label, its live API root (which
``ARTSIM_<KEY>_BASE_URL`` overrides, read in ``settings.py``), its normaliser (raw record ->
``artworks`` row), whether its API can list the records changed since a cursor (otherwise every
run lists it all and content hashes find the changes), its default rate limit and its licence.

Plain data only: no I/O, no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["SourceSpec", "REGISTRY", "SOURCES", "API_SOURCES", "EXPORT_SOURCES", "source_spec", "is_export", "source_label"]

SourceKind = Literal["api", "export"]


@dataclass(frozen=True)
class SourceSpec:
    """One collection: its key (the partition and the ``artwork_id`` prefix), kind and title, and
    for an API source what the pipeline needs to ingest and normalise it."""

    key: str
    kind: SourceKind
    title: str
    #: what every ``artwork_id`` of the source looks like (checked by the validation suite)
    artwork_id_pattern: str
    #: a short name for legends, filters and summaries
    label: str = ""
    #: API sources: the live API root (``ARTSIM_<KEY>_BASE_URL`` overrides it)
    api_root: str | None = None
    #: API sources: ``"module:function"`` turning ``raw_objects`` into ``(artworks, quarantine)``
    #: (collection exports are normalised through their mapping instead)
    normaliser: str | None = None
    #: the API can list the records changed since a cursor; otherwise every run lists the whole
    #: collection and content hashes tell what changed
    incremental: bool = False
    #: default token-bucket rate (requests a second) and burst of the live client
    requests_per_second: float = 10.0
    burst: int = 5
    #: the records' licence, as the museum states it
    licence: str = ""
    #: the record fields whose licence differs from ``licence`` (AIC's ``description``: CC BY 4.0)
    field_licences: tuple[tuple[str, str], ...] = ()

    @property
    def base_url_variable(self) -> str:
        """The environment variable that overrides ``api_root`` (read in ``settings.py``)."""
        return f"ARTSIM_{self.key.upper()}_BASE_URL"

    @property
    def display(self) -> str:
        return self.label or self.title


REGISTRY: tuple[SourceSpec, ...] = (
    SourceSpec(
        "met", "api", "The Metropolitan Museum of Art, Collection API", r"^met:\d+$", label="The Met",
        api_root="https://collectionapi.metmuseum.org/public/collection/v1",
        normaliser="artsim_pipeline.core.museums.met:normalise", incremental=True,
        licence="CC0 (Open Access records)",
    ),
    SourceSpec(
        "smk", "api", "SMK, Statens Museum for Kunst, Open API", r"^smk:\S.*$", label="SMK",
        api_root="https://api.smk.dk/api/v1", normaliser="artsim_pipeline.core.museums.smk:normalise",
        licence="CC0 (public-domain works)",
    ),
    SourceSpec(
        "cma", "api", "The Cleveland Museum of Art, Open Access API", r"^cma:\d+$", label="Cleveland",
        api_root="https://openaccess-api.clevelandart.org/api", normaliser="artsim_pipeline.core.museums.cma:normalise",
        licence="CC0 (only CC0 works are listed)",
    ),
    SourceSpec(
        "aic", "api", "The Art Institute of Chicago, API", r"^aic:\d+$", label="Art Institute of Chicago",
        api_root="https://api.artic.edu/api/v1", normaliser="artsim_pipeline.core.museums.aic:normalise",
        # the documented anonymous limit is 60 requests a minute: a bucket of 0.95/s with a burst of 1
        # lets at most 1 + 0.95 * 60 = 58 requests into any minute
        requests_per_second=0.95, burst=1,
        licence="CC0, except description",
        field_licences=(("description", "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/), The Art Institute of Chicago"),),
    ),
    SourceSpec(
        "met_medialab",
        "export",
        "The Met MediaLab objectcrowdsourcer export (2014), real photographs",
        r"^met_medialab:\d+$",
        label="Met MediaLab (export)",
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


def source_label(key: str) -> str:
    """The short display name of a source (its key when the registry does not know it)."""
    spec = _BY_KEY.get(key)
    return spec.display if spec is not None else key
