"""``artsim_pipeline.core.normalise`` on real SMK records (2019 and 2026 API shapes, envelopes,
Danish titles, creators, images), used as is or with one quirk injected."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from artsim_pipeline.core.normalise import normalise_smk
from artsim_pipeline_tests.core.normalise_records import (
    SHARED_DATA,
    assert_invariant,
    needs_shared_records,
    one,
    raw_frame,
    smk_file,
    smk_item,
    smk_one,
)

pytestmark = needs_shared_records


def test_smk_2019_shape():
    row = smk_one(smk_item("KMS1", "object_KMS1_2019.json"))
    assert row["artwork_id"] == "smk:KMS1"
    assert row["title"] == "The Fall of the Titans"  # en-US translation preferred
    assert row["artists"] == ["Cornelis Cornelisz. van Haarlem"]  # "Surname, Forename"
    assert row["culture"] == "Dutch"  # "hollandsk"
    assert row["techniques"] == ["Olie på lærred"]  # [{"technique": ...}]
    assert row["medium"] == "lærred, olie"  # [{"material": ...}]
    assert (row["date_begin"], row["date_end"], row["date_text"]) == (1588, 1590, "1588-1590")
    assert row["department"] == "Samling og Forskning (KMS)"
    assert row["classification"] == row["object_type"] == "maleri"
    assert row["image_url"].startswith("https://iip.smk.dk/iiif/jp2/KMS1")
    assert row["landing_url"] == "https://open.smk.dk/artwork/image/KMS1"
    assert row["metadata_modified"] == datetime(2019, 8, 12, 9, 34, 37, tzinfo=UTC)


def test_smk_2026_shape():
    row = smk_one(smk_item("KMS1", "object_KMS1_fall_of_the_titans.json"))
    assert row["title"] == "The Fall of the Titans"  # language "engelsk"
    assert row["artists"] == ["Cornelis Cornelisz. van Haarlem"]  # forename + surname
    assert row["techniques"] == ["Oil on canvas"]  # plain strings
    assert row["medium"] == "canvas"
    assert row["classification"] == "Painting"
    assert row["is_public_domain"] is True
    assert row["image_url"] == (
        "https://iip-thumb.smk.dk/iiif/jp2/9g54xm869_KMS1-cropped.tif.jp2/full/!1024,/0/default.jpg"
    )
    assert row["landing_url"] == "https://open.smk.dk/artwork/image/KMS1"  # frontend_url


def test_smk_single_object_envelope_is_unwrapped_and_latest_version_wins():
    old = smk_file("object_KMS1_2019.json")  # full 2019 search envelope
    new_text = (SHARED_DATA / "smk/responses/object_KMS1_fall_of_the_titans.json").read_text()
    raw = raw_frame([old, new_text], ["KMS1", "KMS1"])
    artworks, quarantine = normalise_smk(raw)
    assert_invariant(raw, artworks, quarantine)
    row = one(artworks)
    assert row["techniques"] == ["Oil on canvas"]  # 2026 modified > 2019 modified
    assert one(quarantine)["rule"] == "duplicate_id"


def test_smk_envelope_with_several_items_picks_the_matching_one_or_quarantines():
    envelope = smk_file("search_title_interior.json")
    row = smk_one(envelope, "KMS7121")
    assert row["artwork_id"] == "smk:KMS7121" and row["artists"] == ["Willy Ørskov"]
    artworks, quarantine = normalise_smk(raw_frame([envelope], ["NOPE"]))
    assert artworks.height == 0 and one(quarantine)["rule"] == "ambiguous_envelope"


def test_smk_danish_title_unknown_creator_no_image_and_escaped_landing_url():
    row = smk_one(smk_item("KMSst28Ø"))
    assert row["artists"] == []  # "Ubekendt" / artist "Unknown"
    assert row["image_url"] is None  # has_image false
    assert row["landing_url"] == "https://open.smk.dk/artwork/image/KMSst28%C3%98"
    assert row["title"].startswith("Anna, Duchess of Brunswick")
    row = smk_one(smk_item("KMS1571"))
    assert row["title"] == "Interiør"  # only a Danish title ("dansk")
    assert row["artists"] == ["P.S. Krøyer"]


def test_smk_creators_roles_nationalities_and_periods():
    row = smk_one(smk_item("KKS10064"))
    assert row["artists"] == ["Louis Sørensen", "Hans Tegner"]
    assert row["artist_roles"] == [None, "after"]
    row = smk_one(smk_item("KKS9610"))  # "Dahl, Balzer " with a trailing space
    assert row["artists"] == ["Balzer Dahl", "Niels Bredal"]
    assert row["artist_roles"] == [None, "efter forlæg af"]
    row = smk_one(smk_item("KKS1982-247"))
    assert row["culture"] == "Danish"  # "Danish, Danish"
    assert row["nationalities"] == ["Danish"]
    row = smk_one(smk_item("KKS8631"))
    assert row["date_text"] == "Udateret"
    assert (row["date_begin"], row["date_end"]) == (1810, 1848)
    assert row["tags"] == ["Købke, Cecilia Margrete"]  # content_person
    assert smk_one(smk_item("KKSgb4085"))["date_text"] == "Ca. 1800"


def test_smk_images_thumbnail_or_iiif_and_escaped_object_numbers():
    row = smk_one(smk_item("KMS7121"))  # thumbnail only, no IIIF id
    assert row["image_url"] == "https://api.smk.dk/api/v1/thumbnail/25f86678-d676-45cc-87e2-56b53f78e7a7.jpg"
    item = smk_item("KMS2094")
    del item["image_thumbnail"]
    assert smk_one(item)["image_url"] == (
        "https://iip.smk.dk/iiif/jp2/9p290f80r_kms2094.tif.jp2/full/!1024,/0/default.jpg"
    )
    row = smk_one(smk_item("KKSgb6775/3"))  # 2019: no frontend_url
    assert row["landing_url"] == "https://open.smk.dk/artwork/image/KKSgb6775%2F3"
    assert row["artwork_id"] == "smk:KKSgb6775/3"


def test_smk_all_real_items_and_robustness():
    items = [it for name in ("search_public_domain_has_image_2019.json",
                             "search_title_interior.json") for it in smk_file(name)["items"]]  # fmt: skip
    broken = smk_item("KMS1571")
    broken["production"] = "Krøyer, P.S."
    nulls = smk_item("KMS2094")
    nulls.update(object_number="KMS2094-copy", titles=None, techniques=None, materials=None,
                 production_date=None, frontend_url="")  # fmt: skip
    raw = raw_frame([*items, broken, nulls, "{", {"titles": []}], [
        *(i["object_number"] for i in items), "KMS1571", "KMS2094-copy", "X", "Y",
    ])  # fmt: skip
    artworks, quarantine = normalise_smk(raw)
    assert_invariant(raw, artworks, quarantine)
    rules = dict(zip(quarantine.get_column("source_id"), quarantine.get_column("rule"), strict=True))
    assert rules == {"KMS1571": "wrong_type", "X": "invalid_json", "Y": "missing_id"}
    assert artworks.height == len(items) + 1
    row = artworks.filter(pl.col("source_id") == "KMS2094-copy").row(0, named=True)
    assert row["title"] is None and row["artists"] == ["Arne Kavli"]
    assert row["techniques"] == [] and row["medium"] is None and row["date_begin"] is None
    assert row["landing_url"] == "https://open.smk.dk/artwork/image/KMS2094-copy"
