"""The Metropolitan Museum of Art Collection API (``/objects/{id}``) -> ``artworks`` (pure).

One raw record is the API's answer for one object. Records are decoded by the shared polars
fast path (:mod:`artsim_pipeline.core.normalise.decode`) against :data:`MET_RECORD_SCHEMA`
(only the fields read here) and mapped by polars expressions:

* ``artwork_id`` ``met:<objectID>`` (a positive integer, else ``invalid_id``; a record without
  one is quarantined as ``missing_id`` with the API's ``message`` when it sent one);
* makers: ``constituents`` (name, role) in order, else ``artistDisplayName`` / ``artistRole``;
  the nationality ``artistNationality``;
* years ``objectBeginDate`` / ``objectEndDate`` (ints, sometimes sent as text), ``date_text``
  ``objectDate``; department mapped onto the canonical ``/departments`` names
  (:data:`~artsim_pipeline.core.schema.MET_DEPARTMENT_LOOKUP`); classification
  ``classification``, else ``objectName``, which is also the object type;
* tags ``tags[].term``; image ``primaryImageSmall``, else ``primaryImage``; landing page
  ``https://www.metmuseum.org/art/collection/search/<objectID>``; ``metadata_modified``
  ``metadataDate``.
"""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.normalise.assemble import normalise_records
from artsim_pipeline.core.normalise.fields import nonempty, year_from_number_text
from artsim_pipeline.core.normalise.layout import MAKERS_DTYPE, RecordSource
from artsim_pipeline.core.schema import MET_DEPARTMENT_LOOKUP

__all__ = ["normalise", "MET_RECORDS", "MET_RECORD_SCHEMA", "MET_LANDING_URL"]

MET_LANDING_URL = "https://www.metmuseum.org/art/collection/search/"

_S = pl.String()

MET_RECORD_SCHEMA: dict[str, pl.DataType] = {
    "objectID": _S,
    "title": _S,
    "constituents": pl.List(pl.Struct({"name": _S, "role": _S})),
    "artistDisplayName": _S,
    "artistRole": _S,
    "artistNationality": _S,
    "objectBeginDate": _S,  # ints that sometimes arrive as strings: parsed later
    "objectEndDate": _S,
    "objectDate": _S,
    "department": _S,
    "classification": _S,
    "objectName": _S,
    "medium": _S,
    "culture": _S,
    "tags": pl.List(pl.Struct({"term": _S})),
    "primaryImage": _S,
    "primaryImageSmall": _S,
    "isPublicDomain": pl.Boolean(),
    "metadataDate": _S,
    # The API's error body, {"message": "Not a valid object"}: read by the slow path only
    # (records without an objectID always take it), to explain a missing id.
    "message": _S,
}
#: What the NDJSON fast path reads for the Met (every field it projects costs time).
MET_DECODE_SCHEMA = {k: v for k, v in MET_RECORD_SCHEMA.items() if k != "message"}


def _staging(d: pl.DataFrame) -> pl.DataFrame:
    """Decoded Met records -> the staging layout (:data:`~artsim_pipeline.core.normalise.STAGE_SCHEMA`)."""
    c = pl.col
    el = pl.element()
    makers = c("constituents").list.eval(
        pl.struct(name=el.struct.field("name"), role=el.struct.field("role"))
    )
    has_makers = makers.list.eval(
        el.struct.field("name").str.strip_chars().str.len_bytes().fill_null(0) > 0
    ).list.any()
    display_maker = pl.concat_list(
        pl.struct(name=c("artistDisplayName"), role=nonempty(c("artistRole")))
    )
    nationality = nonempty(c("artistNationality"))
    rec_id = c("objectID").str.strip_chars()
    return d.select(
        "_row",
        rec_id.alias("rec_id"),
        c("message"),
        c("title"),
        pl.when(has_makers.fill_null(False))
        .then(makers)
        .when(nonempty(c("artistDisplayName")).is_not_null())
        .then(display_maker)
        .otherwise(pl.lit([], dtype=MAKERS_DTYPE))
        .alias("makers"),
        pl.when(nationality.is_not_null())
        .then(pl.concat_list(nationality))
        .otherwise(pl.lit([], dtype=pl.List(_S)))
        .alias("nationalities"),
        year_from_number_text(c("objectBeginDate")).alias("begin"),
        year_from_number_text(c("objectEndDate")).alias("end"),
        c("objectDate").alias("date_text"),
        c("department"),
        pl.coalesce(nonempty(c("classification")), c("objectName")).alias("classification"),
        c("objectName").alias("object_type"),
        c("medium"),
        pl.lit([], dtype=pl.List(_S)).alias("techniques"),
        c("culture"),
        c("tags").list.eval(el.struct.field("term")).alias("tags"),
        pl.coalesce(nonempty(c("primaryImageSmall")), nonempty(c("primaryImage"))).alias(
            "image_url"
        ),
        c("isPublicDomain").alias("is_public_domain"),
        pl.concat_str(pl.lit(MET_LANDING_URL), rec_id).alias("landing_url"),
        c("metadataDate").alias("modified"),
    )


def _canonical_departments(stage: pl.DataFrame) -> pl.DataFrame:
    """Map Met department spellings onto the canonical ``/departments`` names."""
    dept = pl.col("department")
    return stage.with_columns(
        dept.str.to_lowercase()
        .replace_strict(MET_DEPARTMENT_LOOKUP, default=dept, return_dtype=pl.String)
        .alias("department")
    )


def _malformed_id(rec_id: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    return ~rec_id.str.contains(r"^\d{1,12}$"), pl.format("objectID {} is not a positive integer", rec_id)


MET_RECORDS = RecordSource(
    "met", MET_DECODE_SCHEMA, MET_RECORD_SCHEMA, "objectID",
    stage=_staging, post=_canonical_departments, malformed_id=_malformed_id,
)  # fmt: skip


def normalise(raw_objects: pl.DataFrame, raw_images: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalise Met Collection API ``/objects/{id}`` records into ``(artworks, quarantine)``
    (see :func:`artsim_pipeline.core.normalise.normalise`)."""
    return normalise_records(MET_RECORDS, raw_objects, raw_images)
