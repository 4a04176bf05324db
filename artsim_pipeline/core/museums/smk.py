"""SMK, Statens Museum for Kunst, Open API items -> ``artworks`` (pure).

One raw record is one item, in the 2019 or the 2026 shape, bare or inside the single-object
call's search envelope ``{"items": [...]}``. Items are decoded by the shared polars fast path
(:mod:`artsim_pipeline.core.normalise.decode`) against :data:`SMK_ITEM_SCHEMA` and mapped by
polars expressions:

* ``artwork_id`` ``smk:<object_number>``; an envelope with several items keeps the one whose
  ``object_number`` is the raw id, else it is quarantined (``ambiguous_envelope``);
* title: the English one, else the Danish one, else the first; makers from ``production``
  ("Surname, Forename" flipped), else ``artist``; unknown makers ("Ubekendt") go to
  ``attribution_note`` (the shared finishing);
  nationalities (Danish adjectives in 2019) in English, joined as the culture;
* years from the first ``production_date`` (ISO dates), ``date_text`` the distinct periods;
  department ``responsible_department``, else the first ``collection``; classification and
  object type the first ``object_names``; medium the materials, else the techniques; tags
  ``content_subject`` and ``content_person``;
* image ``image_thumbnail``, else the IIIF id at 1024 px; landing page ``frontend_url``
  (percent-encoded), else ``https://open.smk.dk/artwork/image/<object_number>``;
  ``metadata_modified`` ``modified``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import polars as pl

from artsim_pipeline.core.normalise.assemble import normalise_records
from artsim_pipeline.core.normalise.fields import clean_text, json_text_field, nonempty, year_from_iso
from artsim_pipeline.core.normalise.layout import MAKERS_DTYPE, RecordSource
from artsim_pipeline.core.schema import MAX_TEXT_CHARS

__all__ = ["normalise", "SMK_RECORDS", "SMK_ITEM_SCHEMA", "SMK_NATIONALITY_EN", "SMK_LANDING_URL"]

SMK_LANDING_URL = "https://open.smk.dk/artwork/image/"
SMK_IIIF_SUFFIX = "/full/!1024,/0/default.jpg"

_S = pl.String()

SMK_ITEM_SCHEMA: dict[str, pl.DataType] = {
    "object_number": _S,
    "titles": pl.List(pl.Struct({"title": _S, "translation": _S, "language": _S})),
    "production": pl.List(
        pl.Struct(
            {
                "creator": _S,
                "creator_forename": _S,
                "creator_surname": _S,
                "creator_nationality": _S,
                "creator_role": _S,
                "creator_qualifier": _S,
            }
        )
    ),
    "artist": pl.List(_S),
    "production_date": pl.List(pl.Struct({"start": _S, "end": _S, "period": _S})),
    "responsible_department": _S,
    "collection": pl.List(_S),
    "object_names": pl.List(pl.Struct({"name": _S})),
    # 2019: [{"material": ...}] / [{"technique": ...}]; 2026: plain strings.  Elements of
    # list-of-string fields are decoded leniently: objects arrive as their JSON text.
    "materials": pl.List(_S),
    "techniques": pl.List(_S),
    "content_subject": pl.List(_S),
    "content_person": pl.List(_S),
    "image_thumbnail": _S,
    "image_iiif_id": _S,
    "has_image": pl.Boolean(),
    "public_domain": pl.Boolean(),
    "frontend_url": _S,
    "modified": _S,
}

#: SMK's single-object call answers with a search envelope ``{"items": [...]}``.
SMK_DECODE_SCHEMA: dict[str, pl.DataType] = {
    **SMK_ITEM_SCHEMA,
    "items": pl.List(pl.Struct(SMK_ITEM_SCHEMA)),
}

_ENGLISH = ["en", "en-us", "en-gb", "eng", "english", "engelsk"]
_DANISH = ["da", "da-dk", "dan", "danish", "dansk"]

#: SMK's 2019 records give nationalities as Danish adjectives; the 2026 ones in English.
SMK_NATIONALITY_EN: dict[str, str] = {
    "dansk": "Danish",
    "hollandsk": "Dutch",
    "nederlandsk": "Dutch",
    "flamsk": "Flemish",
    "belgisk": "Belgian",
    "tysk": "German",
    "østrigsk": "Austrian",
    "schweizisk": "Swiss",
    "fransk": "French",
    "italiensk": "Italian",
    "spansk": "Spanish",
    "portugisisk": "Portuguese",
    "engelsk": "English",
    "britisk": "British",
    "skotsk": "Scottish",
    "irsk": "Irish",
    "amerikansk": "American",
    "svensk": "Swedish",
    "norsk": "Norwegian",
    "finsk": "Finnish",
    "islandsk": "Icelandic",
    "polsk": "Polish",
    "russisk": "Russian",
    "tjekkisk": "Czech",
    "ungarsk": "Hungarian",
    "græsk": "Greek",
    "japansk": "Japanese",
    "kinesisk": "Chinese",
}


def _unwrap_envelopes(fast: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replace ``{"items": [item]}`` rows by their single item; others go to the slow path."""
    envelope = pl.col("object_number").is_null() & pl.col("items").is_not_null()
    single = envelope & (pl.col("items").list.len() == 1)
    item = pl.col("items").list.first()
    unwrapped = fast.with_columns(
        pl.when(single).then(item.struct.field(name)).otherwise(pl.col(name)).alias(name)
        for name in SMK_ITEM_SCHEMA
    )
    multi = envelope & ~single
    return unwrapped.filter(~multi), unwrapped.filter(multi).select("_row")


def _maker_name() -> pl.Expr:
    """``Surname, Forename`` -> ``Forename Surname`` ("Ubekendt" stays: the shared finishing moves
    placeholders to ``attribution_note``)."""
    el = pl.element()
    fore = nonempty(el.struct.field("creator_forename")).str.strip_chars()
    sur = nonempty(el.struct.field("creator_surname")).str.strip_chars()
    creator = nonempty(el.struct.field("creator")).str.strip_chars()
    parts = creator.str.splitn(",", 2)
    before, after = parts.struct.field("field_0"), parts.struct.field("field_1")
    name = (
        pl.when(fore.is_not_null() & sur.is_not_null())
        .then(pl.concat_str(fore, pl.lit(" "), sur))
        .when(nonempty(after).is_not_null())
        .then(pl.concat_str(after.str.strip_chars(), pl.lit(" "), before.str.strip_chars()))
        .otherwise(pl.coalesce(creator, sur, fore))
    )
    return name


def _staging(d: pl.DataFrame) -> pl.DataFrame:
    """Decoded SMK items -> the staging layout (:data:`~artsim_pipeline.core.normalise.STAGE_SCHEMA`)."""
    c = pl.col
    el = pl.element()
    empty_list = pl.lit([], dtype=pl.List(_S))

    lang = el.struct.field("language").str.strip_chars().str.to_lowercase()
    title_text = pl.coalesce(
        nonempty(el.struct.field("title")), nonempty(el.struct.field("translation"))
    )
    priority = (
        pl.when(title_text.is_null())
        .then(9)
        .when(lang.is_in(_ENGLISH))
        .then(0)
        .when(lang.is_in(_DANISH))
        .then(1)
        .otherwise(2)
    )
    title = c("titles").list.eval(title_text.sort_by(priority, maintain_order=True)).list.first()

    role = pl.coalesce(
        nonempty(el.struct.field("creator_role")), nonempty(el.struct.field("creator_qualifier"))
    )
    produced = c("production").list.eval(
        pl.struct(name=_maker_name(), role=role).filter(_maker_name().is_not_null())
    )
    from_artist = c("artist").list.eval(pl.struct(name=el, role=pl.lit(None, dtype=_S)).filter(el.is_not_null()))
    makers = (
        pl.when(produced.list.len().fill_null(0) > 0)
        .then(produced)
        .when(from_artist.list.len().fill_null(0) > 0)
        .then(from_artist)
        .otherwise(pl.lit([], dtype=MAKERS_DTYPE))
    )
    nationalities = (
        c("production")
        .list.eval(el.struct.field("creator_nationality"))
        .list.join(",", ignore_nulls=True)
        .str.split(",")
    )
    first_date = c("production_date").list.first()
    periods = c("production_date").list.eval(el.struct.field("period"))
    techniques = c("techniques").list.eval(json_text_field(el, "technique", "name"))
    materials = c("materials").list.eval(json_text_field(el, "material", "name"))
    medium = nonempty(materials.list.join(", ", ignore_nulls=True))  # techniques: _english_fields
    subjects = c("content_subject").list.eval(
        json_text_field(el, "name", "subject", "term", "title", "full_name")
    )
    persons = c("content_person").list.eval(json_text_field(el, "full_name", "name"))
    iiif = nonempty(c("image_iiif_id")).str.strip_chars().str.strip_chars_end("/")
    return d.select(
        "_row",
        c("object_number").str.strip_chars().alias("rec_id"),
        pl.lit(None, dtype=_S).alias("message"),
        title.alias("title"),
        makers.alias("makers"),
        nationalities.alias("nationalities"),
        year_from_iso(first_date.struct.field("start")).alias("begin"),
        year_from_iso(first_date.struct.field("end")).alias("end"),
        periods.alias("_periods"),
        pl.coalesce(
            nonempty(c("responsible_department")),
            c("collection").list.eval(nonempty(el)).list.drop_nulls().list.first(),
        ).alias("department"),
        c("object_names").list.first().struct.field("name").alias("classification"),
        c("object_names").list.first().struct.field("name").alias("object_type"),
        medium.alias("medium"),
        techniques.alias("techniques"),
        pl.lit(None, dtype=_S).alias("culture"),
        pl.concat_list(subjects.fill_null(empty_list), persons.fill_null(empty_list)).alias(
            "tags"
        ),
        pl.coalesce(
            nonempty(c("image_thumbnail")), pl.concat_str(iiif, pl.lit(SMK_IIIF_SUFFIX))
        ).alias("image_url"),
        c("public_domain").alias("is_public_domain"),
        c("frontend_url").alias("landing_url"),
        c("modified"),
    ).with_columns(
        # date_text: the distinct periods, in order ("Ca. 1800", "Udateret", ...)
        pl.col("_periods").list.eval(clean_text(el)).list.drop_nulls().list.unique(
            maintain_order=True
        ).list.join("; ").alias("date_text"),
    ).drop("_periods")


def _english_fields(stage: pl.DataFrame) -> pl.DataFrame:
    """English nationalities and culture; medium falls back to techniques; escaped URLs."""
    el = pl.element()
    nationality = el.str.to_lowercase().replace_strict(
        SMK_NATIONALITY_EN, default=el, return_dtype=pl.String
    )
    stage = stage.with_columns(
        pl.col("nationalities").list.eval(nationality).list.unique(maintain_order=True)
    ).with_columns(
        pl.when(pl.col("nationalities").list.len() > 0)
        .then(pl.col("nationalities").list.join(", "))
        .alias("culture"),
        pl.coalesce(
            "medium",
            pl.when(pl.col("techniques").list.len() > 0).then(
                pl.col("techniques").list.join(", ").str.slice(0, MAX_TEXT_CHARS)
            ),
        ).alias("medium"),
    )
    return stage.with_columns(_landing_urls(stage))


def _landing_urls(stage: pl.DataFrame) -> pl.Series:
    """``frontend_url`` (percent-encoded where needed) else the constructed page URL."""
    frontend = stage.get_column("landing_url")
    needs_quote = frontend.str.contains(r"[^\x21-\x7E]").fill_null(False)
    if needs_quote.any():
        idx = needs_quote.arg_true()
        fixed = [quote(u, safe=":/?#[]@!$&'()*+,;=%~") for u in frontend.gather(idx).to_list()]
        frontend = frontend.scatter(idx, pl.Series(fixed, dtype=pl.String))
    ids = stage.get_column("rec_id")
    plain = ids.str.contains(r"^[A-Za-z0-9._~-]+$").fill_null(False)
    constructed = stage.select(pl.concat_str(pl.lit(SMK_LANDING_URL), pl.col("rec_id"))).to_series()
    if (~plain).any():
        idx = (~plain).arg_true()
        fixed = [
            SMK_LANDING_URL + quote(i or "", safe="") for i in ids.gather(idx).to_list()
        ]
        constructed = constructed.scatter(idx, pl.Series(fixed, dtype=pl.String))
    return pl.select(pl.coalesce(frontend, constructed)).to_series().alias("landing_url")


def _unwrap_envelope_record(obj: Any, source_id: str | None) -> tuple[Any, str, str]:
    """The item of a decoded ``{"items": [...]}`` envelope: the one whose ``object_number`` is
    the raw id, else the only one; ``(None, "ambiguous_envelope", reason)`` otherwise."""
    if isinstance(obj, dict) and "object_number" not in obj:
        items = obj.get("items")
        if isinstance(items, list):
            matching = [
                it
                for it in items
                if isinstance(it, dict) and source_id is not None
                and str(it.get("object_number", "")).strip() == source_id.strip()
            ]
            if len(matching) == 1:
                obj = matching[0]
            elif len(items) == 1:
                obj = items[0]
            else:
                return None, "ambiguous_envelope", (
                    f"SMK envelope holds {len(items)} items, "
                    f"{len(matching)} with object_number {source_id!r}"
                )
    return obj, "", ""


SMK_RECORDS = RecordSource(
    "smk", SMK_DECODE_SCHEMA, SMK_ITEM_SCHEMA, "object_number",
    stage=_staging, post=_english_fields,
    unwrap_decoded=_unwrap_envelopes, unwrap_record=_unwrap_envelope_record, envelope_field="items",
)  # fmt: skip


def normalise(raw_objects: pl.DataFrame, raw_images: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Normalise SMK Open API items, 2019 and 2026 shapes, bare or in ``{"items": [...]}``."""
    return normalise_records(SMK_RECORDS, raw_objects, raw_images)
