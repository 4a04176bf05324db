"""The unified cross-museum ``artworks`` schema and its quarantine table.

Everything here is plain data (no Dagster, no I/O) so that assets, checks, tests and
benchmarks share one definition of the contract.

Column contract (``ARTWORKS_SCHEMA``, in contract order; ARCHITECTURE.md names them):

========================  =====================  ==============================================
column                    dtype                  meaning
========================  =====================  ==============================================
``artwork_id``            String                 ``"<source>:<source_id>"``, e.g. ``met:436535``
``source``                String                 a key of the source registry (``met``, ``smk``, ``cma``, ``aic``, ``met_medialab``)
``source_id``             String                 the museum's own id (Met objectID, SMK object_number)
``title``                 String                 preferred (English) title, HTML stripped
``artists``               List(String)           makers in the order the museum lists them
``date_begin``            Int32                  first year (negative = BC)
``date_end``              Int32                  last year; ``date_begin <= date_end``
``date_text``             String                 the museum's free-text date
``department``            String                 department (Met: canonical list below)
``classification``        String                 broad kind of object (Paintings, Drawing...)
``object_type``           String                 the object's own name (Screens, Painting...)
``medium``                String                 materials / medium text
``techniques``            List(String)           techniques (SMK; empty for the Met)
``culture``               String                 culture (Met) or creator nationality (SMK)
``tags``                  List(String)           subject keywords
``image_url``             String                 web-sized image URL or null
``image_sha256``          String                 content hash from ``raw_images`` or null
``is_public_domain``      Boolean                open-access flag from the museum
``landing_url``           String                 the museum's public web page for the work
``metadata_modified``     Datetime(us, UTC)      when the museum last changed the record
========================  =====================  ==============================================

Extra columns (allowed by the contract): ``artist_roles`` (parallel to ``artists``, a role
or null per artist), ``nationalities`` (list), ``dates_swapped`` (the museum's begin
and end years were reversed and have been swapped back) and ``attribution_note`` (the
placeholders the museum gave as makers, which name nobody and are not in ``artists``:
"Unidentified artist; Edo artist", "Unknown, American", "Ubekendt"; null when there were none;
:func:`artsim_pipeline.core.names.is_anonymous` decides).

List columns are never null: an absent list is an empty list.
"""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.sources import SOURCES as _REGISTRY_SOURCES

#: Timestamps in both tables are timezone-aware UTC microseconds.
UTC_DATETIME = pl.Datetime("us", "UTC")

#: The ``artworks`` asset's columns and dtypes; the first 20 are the contract, in order.
ARTWORKS_SCHEMA: dict[str, pl.DataType] = {
    "artwork_id": pl.String(),
    "source": pl.String(),
    "source_id": pl.String(),
    "title": pl.String(),
    "artists": pl.List(pl.String()),
    "date_begin": pl.Int32(),
    "date_end": pl.Int32(),
    "date_text": pl.String(),
    "department": pl.String(),
    "classification": pl.String(),
    "object_type": pl.String(),
    "medium": pl.String(),
    "techniques": pl.List(pl.String()),
    "culture": pl.String(),
    "tags": pl.List(pl.String()),
    "image_url": pl.String(),
    "image_sha256": pl.String(),
    "is_public_domain": pl.Boolean(),
    "landing_url": pl.String(),
    "metadata_modified": UTC_DATETIME,
    # extras
    "artist_roles": pl.List(pl.String()),
    "nationalities": pl.List(pl.String()),
    "dates_swapped": pl.Boolean(),
    "attribution_note": pl.String(),
}

#: The contract columns only (what every consumer may rely on).
ARTWORKS_CONTRACT_COLUMNS: tuple[str, ...] = tuple(list(ARTWORKS_SCHEMA)[:20])

#: Columns that hold lists (never null, possibly empty).
LIST_COLUMNS: tuple[str, ...] = tuple(
    name for name, dtype in ARTWORKS_SCHEMA.items() if isinstance(dtype, pl.List)
)

#: The ``artworks_quarantine`` table: one row per rejected ``ok`` raw record.
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "source_id": pl.String(),
    "rule": pl.String(),
    "reason": pl.String(),
    "raw_json": pl.String(),
    "quarantined_at": UTC_DATETIME,
}

#: Every source key, from the registry (core/sources.py).
SOURCES: tuple[str, ...] = _REGISTRY_SOURCES

#: Plausible year range for ``date_begin`` / ``date_end``; outside it a record is quarantined.
MIN_YEAR = -10_000
MAX_YEAR = 2_100

#: Free-text fields longer than this are truncated (never quarantined).
MAX_TEXT_CHARS = 2_000
#: Lists longer than this are cut (the largest real Met record has 18 constituents).
MAX_LIST_ITEMS = 200

#: Quarantine rule ids, in the order they are checked (first match wins for a record).
QUARANTINE_RULES: dict[str, str] = {
    "invalid_json": "raw_json is empty or does not parse as JSON",
    "not_an_object": "the JSON document is not an object (array, string, null...)",
    "ambiguous_envelope": "an SMK search envelope that does not hold exactly this object",
    "wrong_type": "a field has a JSON type that cannot be coerced to the expected one",
    "missing_id": "the record has no id (objectID / object_number)",
    "invalid_id": "the record's id is malformed",
    "id_mismatch": "the record's id differs from the raw row's source_id",
    "no_title_and_no_artist": "neither a title nor any artist",
    "date_out_of_range": f"date_begin or date_end outside {MIN_YEAR}..{MAX_YEAR}",
    "duplicate_id": "another record with the same artwork_id and a later metadata_modified won "
    "(collection exports: a later row repeating an id; the first row is kept)",
    "ragged_row": "a collection export row with more fields than the header, or without a column the mapping reads",
    "unparseable_makers": "a collection export's maker list that cannot be read unambiguously (unbalanced quote, unclosed list)",
    "unreadable": "a record the normaliser cannot read for a reason no rule above names (the reason says which)",
}

# --------------------------------------------------------------------------------------
# Met departments
# --------------------------------------------------------------------------------------

#: Canonical Met departments: the ``/departments`` endpoint (departmentId -> displayName).
MET_DEPARTMENTS: dict[int, str] = {
    1: "American Decorative Arts",
    3: "Ancient Near Eastern Art",
    4: "Arms and Armor",
    5: "Arts of Africa, Oceania, and the Americas",
    6: "Asian Art",
    7: "The Cloisters",
    8: "The Costume Institute",
    9: "Drawings and Prints",
    10: "Egyptian Art",
    11: "European Paintings",
    12: "European Sculpture and Decorative Arts",
    13: "Greek and Roman Art",
    14: "Islamic Art",
    15: "The Robert Lehman Collection",
    16: "The Libraries",
    17: "Medieval Art",
    18: "Musical Instruments",
    19: "Photographs",
    21: "Modern Art",
}

#: The canonical names, as a sorted tuple (used by the validation suite).
MET_CANONICAL_DEPARTMENTS: tuple[str, ...] = tuple(sorted(MET_DEPARTMENTS.values()))

#: Department names seen in object records that differ from ``/departments``.
#: Object records use the galleries' current names; ``/departments`` keeps the older
#: enumeration (same ids).  Keys are matched case-insensitively after whitespace collapse.
MET_DEPARTMENT_ALIASES: dict[str, str] = {
    "Modern and Contemporary Art": "Modern Art",
    "Robert Lehman Collection": "The Robert Lehman Collection",
    "The American Wing": "American Decorative Arts",
    "American Wing": "American Decorative Arts",
    "The Michael C. Rockefeller Wing": "Arts of Africa, Oceania, and the Americas",
    "Michael C. Rockefeller Wing": "Arts of Africa, Oceania, and the Americas",
    "Ancient West Asian Art": "Ancient Near Eastern Art",
    "Cloisters": "The Cloisters",
    "Costume Institute": "The Costume Institute",
    "Libraries": "The Libraries",
}


def _department_key(name: str) -> str:
    return " ".join(name.split()).casefold()


#: Lookup used by :func:`canonical_met_department` and the vectorised mapping in normalise:
#: normalised key -> canonical name (covers the canonical names themselves and the aliases).
MET_DEPARTMENT_LOOKUP: dict[str, str] = {
    **{_department_key(name): name for name in MET_DEPARTMENTS.values()},
    **{_department_key(alias): canonical for alias, canonical in MET_DEPARTMENT_ALIASES.items()},
}


def canonical_met_department(name: str | None) -> str | None:
    """Map a Met department name (record or ``/departments`` spelling) to the canonical one.

    Unknown names are returned cleaned but unchanged (the validation suite warns on them);
    empty names become ``None``.
    """
    if name is None:
        return None
    cleaned = " ".join(name.split())
    if not cleaned:
        return None
    return MET_DEPARTMENT_LOOKUP.get(cleaned.casefold(), cleaned)


def empty_artworks() -> pl.DataFrame:
    """An empty frame with :data:`ARTWORKS_SCHEMA`."""
    return pl.DataFrame(schema=ARTWORKS_SCHEMA)


def empty_quarantine() -> pl.DataFrame:
    """An empty frame with :data:`QUARANTINE_SCHEMA`."""
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)
