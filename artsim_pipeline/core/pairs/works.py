"""Preparation: the ``artworks`` table as the works table the rules read, and its makers.

The works table is sorted by ``artwork_id`` with a dense ``work_index``, cleaned text fields,
``year_begin <= year_end`` (either filled from the other), a seeded ``work_hash`` that every
random choice derives from, and ``maker_ids`` (the work's dense maker ids).  After
:func:`~artsim_pipeline.core.pairs.splits.assign_splits`, :func:`encode_fields` replaces the
text fields the rules compare by dense integer codes.
"""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.names import artist_keys
from artsim_pipeline.core.pairs.frames import WORK_INDEX, clean_text, hash_seed

_NO_NAMES = pl.lit([], dtype=pl.List(pl.String))


def _column_or(frame: pl.DataFrame, name: str, default: pl.Expr) -> pl.Expr:
    return pl.col(name) if name in frame.columns else default


def maker_table(works: pl.DataFrame) -> pl.DataFrame:
    """``(work_index, maker_id, maker_key)``: the normalised makers of each work, unique per
    work, in list order; ``maker_id`` is a dense id of ``maker_key`` (in key order).

    Only the distinct name strings go through :func:`artist_keys` (a name may have two keys:
    "Rembrandt (Rembrandt van Rijn)" is "rembrandt" and "rembrandt van rijn")."""
    named = (
        works.select("work_index", pl.col("artists").alias("maker_name"))
        .explode("maker_name")
        .drop_nulls("maker_name")
        .with_row_index("position")
    )
    names = named.get_column("maker_name").unique()
    lookup = (
        pl.DataFrame(
            {"maker_name": names, "maker_key": [list(artist_keys(n)) for n in names.to_list()]},
            schema={"maker_name": pl.String, "maker_key": pl.List(pl.String)},
        )
        .explode("maker_key")
        .drop_nulls("maker_key")
    )
    lookup = lookup.with_columns(
        (pl.col("maker_key").rank("dense") - 1).cast(WORK_INDEX).alias("maker_id")
    )
    key_of_id = (
        lookup.select("maker_id", "maker_key").unique("maker_id").sort("maker_id")
    ).get_column("maker_key")
    makers = (
        named.join(lookup.select("maker_name", "maker_id"), on="maker_name", how="inner")
        .select("position", "work_index", "maker_id")
        .sort("position")
        .unique(subset=["work_index", "maker_id"], keep="first", maintain_order=True)
    )
    return makers.select(
        "work_index", "maker_id", key_of_id.gather(makers.get_column("maker_id")).alias("maker_key")
    )


def artwork_makers(artworks: pl.DataFrame) -> pl.DataFrame:
    """``(artwork_id, maker)`` for every identifiable (normalised) maker of every work."""
    works = artworks.select(
        pl.col("artwork_id").cast(pl.String),
        pl.col("artists").fill_null(_NO_NAMES),
    ).with_row_index("work_index")
    makers = maker_table(works)
    return makers.join(works.select("work_index", "artwork_id"), on="work_index").select(
        "artwork_id", pl.col("maker_key").alias("maker")
    )


def _checked_fields(artworks: pl.DataFrame) -> pl.DataFrame:
    """The fields the rules read (absent columns as nulls), sorted by ``artwork_id``; a clear
    error for a missing, null or duplicated ``artwork_id``."""
    if "artwork_id" not in artworks.columns:
        raise ValueError("artworks has no artwork_id column")
    null_text = pl.lit(None, dtype=pl.String)
    null_year = pl.lit(None, dtype=pl.Int32)
    frame = artworks
    works = frame.select(
        pl.col("artwork_id").cast(pl.String),
        _column_or(frame, "source", null_text).cast(pl.String).alias("source"),
        _column_or(frame, "artists", _NO_NAMES).fill_null(_NO_NAMES).alias("artists"),
        _column_or(frame, "date_begin", null_year).cast(pl.Int32).alias("raw_begin"),
        _column_or(frame, "date_end", null_year).cast(pl.Int32).alias("raw_end"),
        clean_text(_column_or(frame, "department", null_text)).alias("department"),
        clean_text(_column_or(frame, "classification", null_text)).alias("classification"),
        clean_text(_column_or(frame, "culture", null_text)).alias("culture"),
        _column_or(frame, "tags", _NO_NAMES).fill_null(_NO_NAMES).alias("tags"),
    )
    if works.get_column("artwork_id").null_count():
        raise ValueError("artworks has null artwork_id values")
    works = works.sort("artwork_id")
    if works.get_column("artwork_id").is_duplicated().any():
        dupes = works.filter(pl.col("artwork_id").is_duplicated()).get_column("artwork_id")
        raise ValueError(f"duplicate artwork_id values, e.g. {dupes.head(3).to_list()}")
    return works


def prepare_works(artworks: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The works table (see the module docstring) and the :func:`maker_table`."""
    works = _checked_fields(artworks)
    begin = pl.coalesce("raw_begin", "raw_end")
    end = pl.coalesce("raw_end", "raw_begin")
    works = (
        works.with_row_index("work_index")
        .with_columns(
            clean_text(pl.col("source"))
            .fill_null(pl.col("artwork_id").str.split(":").list.first())
            .alias("source"),
            pl.min_horizontal(begin, end).alias("year_begin"),
            pl.max_horizontal(begin, end).alias("year_end"),
            pl.col("artwork_id").hash(hash_seed(seed, 1)).alias("work_hash"),
        )
        .drop("raw_begin", "raw_end")
    )

    makers = maker_table(works)
    per_work = makers.group_by("work_index").agg(pl.col("maker_id").sort().alias("maker_ids"))
    works = (
        works.drop("artists")
        .join(per_work, on="work_index", how="left")
        .sort("work_index")
        .with_columns(pl.col("maker_ids").fill_null(pl.lit([], dtype=pl.List(WORK_INDEX))))
    )
    return works, makers


def encode_fields(works: pl.DataFrame) -> pl.DataFrame:
    """Dense integer codes for the text fields the rules compare (``department_code``,
    ``classification_code``, ``culture_code``, ``source_code``): equal text <=> equal code,
    null stays null.  The text fields (and the split key) are dropped."""
    return works.with_columns(
        pl.col("department").rank("dense").cast(WORK_INDEX).alias("department_code"),
        pl.col("classification").rank("dense").cast(WORK_INDEX).alias("classification_code"),
        pl.col("culture").rank("dense").cast(WORK_INDEX).alias("culture_code"),
        pl.col("source").rank("dense").cast(WORK_INDEX).alias("source_code"),
    ).drop("department", "classification", "culture", "source", "split_key")
