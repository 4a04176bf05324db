"""Tests for ``artsim_pipeline.core.expectations`` (great-expectations suite + row rules).

The artworks frames come from normalising the real records in ``../shared/data``.  GX is
imported once (a few seconds); each validation run is well under a second.
"""

from __future__ import annotations

import json
import os
import sys

import polars as pl
import pytest

from artsim_pipeline.core.expectations import (
    CheckOutcome,
    row_rule_violations,
    validate_artworks,
)
from artsim_pipeline.core.normalise import normalise
from artsim_pipeline_tests.replay.server import shared_data_dir

SHARED_DATA = shared_data_dir()
pytestmark = pytest.mark.skipif(
    not (SHARED_DATA / "met" / "objects.jsonl").exists(),
    reason=f"real museum records not found under {SHARED_DATA} (set ARTSIM_SHARED_DATA)",
)


def _raw(texts: list[str], ids: list[str]) -> pl.DataFrame:
    n = len(texts)
    return pl.DataFrame(
        {
            "source_id": ids,
            "raw_json": texts,
            "fetched_at": [None] * n,
            "content_hash": [None] * n,
            "status": ["ok"] * n,
            "error": [None] * n,
        },
        schema_overrides={
            "fetched_at": pl.Datetime("us", "UTC"),
            "content_hash": pl.String,
            "error": pl.String,
        },
    )


@pytest.fixture(scope="module")
def met_artworks() -> pl.DataFrame:
    lines = (SHARED_DATA / "met" / "objects.jsonl").read_text(encoding="utf-8").splitlines()
    artworks, quarantine = normalise(
        "met", _raw(lines, [str(json.loads(line)["objectID"]) for line in lines])
    )
    assert quarantine.height == 0
    return artworks


@pytest.fixture(scope="module")
def smk_artworks() -> pl.DataFrame:
    items = [
        item
        for name in ("search_public_domain_has_image_2019.json", "search_title_interior.json")
        for item in json.loads((SHARED_DATA / "smk" / "responses" / name).read_text())["items"]
    ]
    artworks, quarantine = normalise(
        "smk",
        _raw([json.dumps(i, ensure_ascii=False) for i in items], [i["object_number"] for i in items]),
    )
    assert quarantine.height == 0
    return artworks


def by_name(outcomes: list[CheckOutcome]) -> dict[str, CheckOutcome]:
    return {o.name: o for o in outcomes}


def errors(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    return [o for o in outcomes if o.severity == "error" and not o.passed]


def test_clean_met_data_passes_every_error_check(met_artworks):
    outcomes = validate_artworks(met_artworks, "met")
    assert errors(outcomes) == []
    names = by_name(outcomes)
    for expected in (
        "columns_exist", "column_types", "artwork_id_not_null", "artwork_id_unique",
        "source_not_null", "source_id_not_null", "landing_url_not_null", "title_or_artists",
        "date_begin_le_date_end", "date_begin_in_range", "date_end_in_range",
        "landing_url_well_formed", "image_url_well_formed", "artwork_id_format", "source_value",
        "met_department_canonical", "public_domain_has_image",
    ):  # fmt: skip
        assert expected in names, expected
    assert names["met_department_canonical"].passed
    # a few public-domain Met objects really have no image: a warning, with its count
    warn = names["public_domain_has_image"]
    assert warn.severity == "warn"
    expected_missing = met_artworks.filter(
        pl.col("is_public_domain") & pl.col("image_url").is_null()
    ).height
    assert warn.failed_count == expected_missing
    assert warn.passed is (expected_missing == 0)
    assert all(isinstance(o.details, dict) for o in outcomes)
    # GX stays quiet and offline
    assert os.environ.get("GX_ANALYTICS_ENABLED") == "False"
    assert "great_expectations" in sys.modules


def test_clean_smk_data_passes(smk_artworks):
    outcomes = validate_artworks(smk_artworks, "smk")
    assert errors(outcomes) == []
    assert "met_department_canonical" not in by_name(outcomes)


def test_broken_data_fails_with_counts(met_artworks):
    broken = met_artworks.head(200)
    duplicated = broken.head(3)  # three ids appear twice
    reversed_dates = broken.slice(10, 1).with_columns(
        pl.col("artwork_id") + "0", pl.lit(2000, pl.Int32).alias("date_begin"),
        pl.lit(1000, pl.Int32).alias("date_end"),
    )  # fmt: skip
    bad_rows = broken.slice(20, 2).with_columns(
        (pl.col("artwork_id") + "x"),  # not ^met:\d+$
        pl.lit("ftp://example.org/x").alias("landing_url"),
        pl.lit(9999, pl.Int32).alias("date_end"),
        pl.lit("Modern and Contemporary Art").alias("department"),
        pl.lit(None, pl.String).alias("title"),
        pl.lit([], pl.List(pl.String)).alias("artists"),
    )
    frame = pl.concat([broken, duplicated, reversed_dates, bad_rows])
    outcomes = by_name(validate_artworks(frame, "met"))

    assert not outcomes["artwork_id_unique"].passed
    assert outcomes["artwork_id_unique"].failed_count == 6  # both copies of 3 ids
    assert outcomes["artwork_id_unique"].severity == "error"
    assert not outcomes["date_begin_le_date_end"].passed
    assert outcomes["date_begin_le_date_end"].failed_count == 1
    assert outcomes["date_end_in_range"].failed_count == 2
    assert outcomes["artwork_id_format"].failed_count == 2
    assert outcomes["landing_url_well_formed"].failed_count == 2
    assert outcomes["title_or_artists"].failed_count == 2
    dept = outcomes["met_department_canonical"]
    assert (dept.passed, dept.severity, dept.failed_count) == (False, "warn", 2)
    assert "Modern and Contemporary Art" in dept.details["partial_unexpected"]
    assert outcomes["columns_exist"].passed and outcomes["column_types"].passed


def test_missing_columns_and_wrong_dtypes_are_reported(smk_artworks):
    frame = smk_artworks.drop("landing_url", "tags").with_columns(
        pl.col("date_begin").cast(pl.Int64)
    )
    outcomes = by_name(validate_artworks(frame, "smk"))
    columns = outcomes["columns_exist"]
    assert not columns.passed and columns.failed_count == 2
    assert sorted(columns.details["missing"]) == ["landing_url", "tags"]
    types = outcomes["column_types"]
    assert not types.passed and types.failed_count == 1
    assert types.details["mismatched"]["date_begin"]["actual"] == "Int64"
    assert "landing_url_not_null" not in outcomes  # no check on an absent column


def test_row_rule_violations():
    frame = pl.DataFrame(
        {
            "artwork_id": ["met:1", None, "met:3", "met:4", "met:5", "met:6"],
            "source_id": ["1", "2", "3", "4", "5", "6"],
            "title": ["ok", "x", None, "x", "x", "x"],
            "artists": [["a"], [], [], [], [], []],
            "date_begin": [1850, 1, 1, -20000, 1900, 1],
            "date_end": [1860, 2, 2, 5, 1800, 2],
            "landing_url": ["https://a", "https://a", "https://a", "https://a", "https://a", "x"],
        }
    )
    violations = row_rule_violations(frame)
    assert violations.get_column("source_id").to_list() == ["2", "3", "4", "5", "6"]
    assert violations.get_column("rule").to_list() == [
        "missing_id", "no_title_and_no_artist", "date_out_of_range", "date_order", "invalid_url",
    ]  # fmt: skip
    assert "-20000" in violations.filter(pl.col("source_id") == "4").item(0, "reason")


def test_an_empty_partition_passes():
    from artsim_pipeline.core.schema import empty_artworks

    outcomes = validate_artworks(empty_artworks(), "met")
    assert outcomes and all(o.passed and o.failed_count == 0 for o in outcomes)
