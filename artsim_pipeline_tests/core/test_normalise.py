"""Tests for ``artsim_pipeline.core.normalise`` and ``artsim_pipeline.core.schema``.

Every record here is a real Met or SMK record from ``../shared/data`` (override with
``ARTSIM_SHARED_DATA``), used as is or with one quirk injected.
"""

from __future__ import annotations

import copy
import html
import json
from datetime import UTC, datetime

import polars as pl
import pytest

from artsim_pipeline.core.normalise import normalise, normalise_met
from artsim_pipeline.core.schema import (
    ARTWORKS_CONTRACT_COLUMNS,
    ARTWORKS_SCHEMA,
    MAX_TEXT_CHARS,
    MET_CANONICAL_DEPARTMENTS,
    QUARANTINE_SCHEMA,
    canonical_met_department,
)
from artsim_pipeline_tests.core.normalise_records import (
    FETCHED,
    SHARED_DATA,
    _guess_id,
    assert_invariant,
    met_lines,
    met_one,
    met_record,
    needs_shared_records,
    one,
    raw_frame,
    smk_file,
    smk_item,
    smk_one,
)

pytestmark = needs_shared_records


# --------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------
def test_schema_contract_columns_in_order_and_dtypes():
    assert ARTWORKS_CONTRACT_COLUMNS == (
        "artwork_id", "source", "source_id", "title", "artists", "date_begin", "date_end",
        "date_text", "department", "classification", "object_type", "medium", "techniques",
        "culture", "tags", "image_url", "image_sha256", "is_public_domain", "landing_url",
        "metadata_modified",
    )  # fmt: skip
    assert list(ARTWORKS_SCHEMA)[:20] == list(ARTWORKS_CONTRACT_COLUMNS)
    assert ARTWORKS_SCHEMA["artists"] == pl.List(pl.String)
    assert ARTWORKS_SCHEMA["techniques"] == pl.List(pl.String)
    assert ARTWORKS_SCHEMA["tags"] == pl.List(pl.String)
    assert ARTWORKS_SCHEMA["date_begin"] == pl.Int32
    assert ARTWORKS_SCHEMA["date_end"] == pl.Int32
    assert ARTWORKS_SCHEMA["is_public_domain"] == pl.Boolean
    assert ARTWORKS_SCHEMA["metadata_modified"] == pl.Datetime("us", "UTC")
    for name in ("artwork_id", "source", "source_id", "title", "date_text", "department",
                 "classification", "object_type", "medium", "culture", "image_url",
                 "image_sha256", "landing_url"):  # fmt: skip
        assert ARTWORKS_SCHEMA[name] == pl.String, name
    assert list(QUARANTINE_SCHEMA) == [
        "source", "source_id", "rule", "reason", "raw_json", "quarantined_at",
    ]  # fmt: skip


@pytest.mark.parametrize("source", ["met", "smk"])
def test_empty_and_all_non_ok_inputs_give_empty_typed_frames(source):
    artworks, quarantine = normalise(source, raw_frame([]))
    assert artworks.height == quarantine.height == 0
    assert artworks.schema == pl.Schema(ARTWORKS_SCHEMA)
    assert quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    gone = raw_frame(['{"message": "ObjectID not found"}'], ["1"], status=["gone"])
    artworks, quarantine = normalise(source, gone)
    assert artworks.height == quarantine.height == 0


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="unknown source"):
        normalise("louvre", raw_frame([]))


def test_met_departments_map_onto_the_canonical_list():
    listed = json.loads((SHARED_DATA / "met/responses/departments.json").read_text())
    names = {d["displayName"] for d in listed["departments"]}
    assert set(MET_CANONICAL_DEPARTMENTS) == names
    seen = {json.loads(line)["department"] for line in met_lines()}
    assert {canonical_met_department(name) for name in seen} <= names
    assert canonical_met_department("Modern and Contemporary Art") == "Modern Art"
    assert canonical_met_department("Robert Lehman Collection") == "The Robert Lehman Collection"
    assert canonical_met_department(" the robert  lehman collection ") == (
        "The Robert Lehman Collection"
    )
    assert canonical_met_department("Something New") == "Something New"
    assert canonical_met_department("") is None


# --------------------------------------------------------------------------------------
# Met: real records
# --------------------------------------------------------------------------------------
def test_met_all_real_records_normalise_without_quarantine():
    raw = raw_frame(list(met_lines()))
    artworks, quarantine = normalise_met(raw)
    assert_invariant(raw, artworks, quarantine)
    assert quarantine.height == 0, quarantine.select("source_id", "rule", "reason").head()
    assert artworks.height == len(met_lines())
    # output keeps the input order
    assert artworks.get_column("source_id").to_list() == raw.get_column("source_id").to_list()
    assert set(artworks.get_column("department").drop_nulls()) <= set(MET_CANONICAL_DEPARTMENTS)
    assert artworks.get_column("metadata_modified").null_count() == 0
    assert (artworks.get_column("date_begin") <= artworks.get_column("date_end")).all()
    assert artworks.get_column("landing_url").str.starts_with(
        "https://www.metmuseum.org/art/collection/search/"
    ).all()


def test_met_exact_record_fields():
    artworks, quarantine = met_one(met_record(436535))
    assert quarantine.height == 0
    row = one(artworks)
    assert row["artwork_id"] == "met:436535"
    assert row["source"] == "met" and row["source_id"] == "436535"
    assert row["title"] == "Wheat Field with Cypresses"
    assert row["artists"] == ["Vincent van Gogh"]
    assert row["artist_roles"] == ["Artist"]
    assert (row["date_begin"], row["date_end"], row["date_text"]) == (1889, 1889, "1889")
    assert row["department"] == "European Paintings"
    assert row["classification"] == "Paintings"
    assert row["object_type"] == "Painting"
    assert row["medium"] == "Oil on canvas"
    assert row["culture"] is None  # "" -> null
    assert row["techniques"] == []
    assert "Cypresses" in row["tags"]
    assert row["image_url"] == "https://images.metmuseum.org/CRDImages/ep/web-large/DP-42549-001.jpg"
    assert row["is_public_domain"] is True
    assert row["landing_url"] == "https://www.metmuseum.org/art/collection/search/436535"
    assert row["metadata_modified"] == datetime(2026, 7, 29, 4, 54, 31, 183000, tzinfo=UTC)
    assert row["image_sha256"] is None
    assert row["dates_swapped"] is False


def test_met_in_copyright_record_without_image_and_null_tags():
    row = one(met_one(met_record(915129))[0])
    assert row["image_url"] is None  # primaryImage ""
    assert row["is_public_domain"] is False
    assert row["tags"] == []  # tags: null
    assert row["department"] == "Modern Art"  # "Modern and Contemporary Art"


def test_met_several_makers_keep_constituent_order_and_roles():
    rec = met_record(373769)
    row = one(met_one(rec)[0])
    assert row["artists"] == [html.unescape(c["name"]).strip() for c in rec["constituents"]]
    assert row["artists"][-1] == "Francis Hart & Co."  # "Francis Hart &amp; Co." in the record
    assert row["artist_roles"] == [c["role"] for c in rec["constituents"]]
    assert len(row["artists"]) == 18


def test_met_falls_back_to_artist_display_name_without_constituents():
    rec = met_record(436535)
    rec["constituents"] = None
    rec["artistDisplayName"] = "  Vincent van Gogh "
    assert one(met_one(rec)[0])["artists"] == ["Vincent van Gogh"]


def test_met_html_entities_whitespace_and_non_ascii():
    rec = next(r for r in map(json.loads, met_lines()) if "<i>" in r["title"] and "<i>" in r["medium"])
    row = one(met_one(rec)[0])
    assert "<" not in row["title"] and "<" not in row["medium"]
    assert "  " not in row["title"]

    rec = met_record(436535)
    rec["title"] = "Jousting Armor (<i>Rennzeug</i>) \r\nand   Matching &amp; Half-Shaffron&#39;s"
    rec["medium"] = "Mahogany,\r\n<b>gilt</b>\tgesso"
    rec["constituents"][0]["name"] = " Tiffany &amp; Co. "
    rec["culture"] = "紅葉蒔絵鞘脇指拵 — Ōsaka"
    row = one(met_one(rec)[0])
    assert row["title"] == "Jousting Armor (Rennzeug) and Matching & Half-Shaffron's"
    assert row["medium"] == "Mahogany, gilt gesso"
    assert row["artists"] == ["Tiffany & Co."]
    assert row["culture"] == "紅葉蒔絵鞘脇指拵 — Ōsaka"


def test_met_swapped_and_bc_dates():
    row = one(met_one(met_record(544119))[0])  # objectBeginDate -664 > objectEndDate -712
    assert (row["date_begin"], row["date_end"]) == (-712, -664)
    assert row["dates_swapped"] is True
    assert row["date_text"] == "664–380 B.C."


@pytest.mark.parametrize(
    ("begin", "end", "expected"),
    [
        ("1850", " 1870 ", (1850, 1870)),
        ("-450", 1850.0, (-450, 1850)),
        ("ca. 1850", "", (None, None)),
        (None, 1870, (None, 1870)),
    ],
)
def test_met_dates_arriving_as_strings_are_parsed(begin, end, expected):
    rec = met_record(436535)
    rec["objectBeginDate"], rec["objectEndDate"] = begin, end
    artworks, quarantine = met_one(rec)
    assert quarantine.height == 0
    row = one(artworks)
    assert (row["date_begin"], row["date_end"]) == expected


@pytest.mark.parametrize(
    ("stamp", "expected_us"),
    [
        ("2024-05-03T04:52:11Z", 0),
        ("2024-04-13T04:51:37.7Z", 700_000),
        ("2023-02-07T04:46:51.34Z", 340_000),
        ("2026-07-29T04:54:31.183Z", 183_000),
    ],
)
def test_met_metadata_date_with_0_to_3_fraction_digits(stamp, expected_us):
    rec = met_record(436535)
    rec["metadataDate"] = stamp
    modified = one(met_one(rec)[0])["metadata_modified"]
    assert modified.tzinfo is not None and modified.microsecond == expected_us


def test_met_empty_strings_become_null_and_classification_falls_back():
    rec = met_record(436535)
    rec.update(classification="", culture="  ", objectDate="", medium="", primaryImageSmall="")
    row = one(met_one(rec)[0])
    assert row["classification"] == "Painting"  # objectName
    assert row["culture"] is None and row["date_text"] is None and row["medium"] is None
    assert row["image_url"] == rec["primaryImage"]  # primaryImageSmall "" -> primaryImage


def test_met_missing_keys_still_normalise():
    artworks, quarantine = met_one({"objectID": 436535, "title": "Wheat Field with Cypresses"})
    row = one(artworks)
    assert quarantine.height == 0
    assert row["artists"] == [] and row["tags"] == [] and row["techniques"] == []
    assert row["date_begin"] is None and row["department"] is None
    assert row["metadata_modified"] is None and row["is_public_domain"] is None


def test_met_extremely_long_fields_are_truncated_not_quarantined():
    rec = met_record(436535)
    rec["title"] = "Wheat " * 5_000
    rec["tags"] = [{"term": "x" * 10_000}]
    row = one(met_one(rec)[0])
    assert len(row["title"]) == MAX_TEXT_CHARS
    assert len(row["tags"][0]) == MAX_TEXT_CHARS


# --------------------------------------------------------------------------------------
# Met: quarantine
# --------------------------------------------------------------------------------------
def _quarantined(record, source_id: str | None = "436535") -> dict:
    artworks, quarantine = met_one(record, source_id)
    assert artworks.height == 0, artworks
    return one(quarantine)


def test_invalid_json_is_quarantined_with_reason():
    text = json.dumps(met_record(436535))[:-40]  # truncated response
    q = _quarantined(text)
    assert q["rule"] == "invalid_json"
    assert "JSON does not parse" in q["reason"]
    assert q["raw_json"] == text
    assert q["source"] == "met" and q["source_id"] == "436535"
    assert q["quarantined_at"].tzinfo is not None


@pytest.mark.parametrize(
    ("text", "rule", "fragment"),
    [
        ("", "invalid_json", "empty"),
        ("   ", "invalid_json", "empty"),
        ("[1, 2]", "not_an_object", "an array"),
        ("null", "not_an_object", "null"),
        ('"436535"', "not_an_object", "a string"),
        ('{"message": "Not a valid object"}', "missing_id", "Not a valid object"),
        ("{}", "missing_id", "objectID"),
    ],
)
def test_documents_that_are_not_records_are_quarantined(text, rule, fragment):
    q = _quarantined(text)
    assert q["rule"] == rule
    assert fragment in q["reason"]


@pytest.mark.parametrize(
    ("field", "value", "rule", "fragment"),
    [
        ("constituents", "Vincent van Gogh", "wrong_type", "'constituents'"),
        ("constituents", {"name": "Vincent van Gogh"}, "wrong_type", "an array"),
        ("constituents", [1, 2], "wrong_type", "constituents[0]"),
        ("tags", "Cypresses", "wrong_type", "'tags'"),
        ("title", ["Wheat Field"], "wrong_type", "'title'"),
        ("objectBeginDate", [1889], "wrong_type", "objectBeginDate"),
        ("isPublicDomain", "maybe", "wrong_type", "isPublicDomain"),
        ("objectID", "abc", "invalid_id", "abc"),
        ("objectID", None, "missing_id", "objectID"),
        ("objectID", 999, "id_mismatch", "999"),
        ("objectBeginDate", -20_000, "date_out_of_range", "-20000"),
        ("objectEndDate", "99999", "date_out_of_range", "99999"),
    ],
)
def test_bad_fields_are_quarantined_with_rule_and_reason(field, value, rule, fragment):
    rec = met_record(436535)
    rec[field] = value
    q = _quarantined(rec)
    assert q["rule"] == rule, q["reason"]
    assert fragment in q["reason"]


def test_no_title_and_no_artist_is_quarantined():
    rec = met_record(436535)
    rec.update(title=" ", constituents=None, artistDisplayName="")
    assert _quarantined(rec)["rule"] == "no_title_and_no_artist"
    rec["title"] = "<i></i>"  # only markup: empty once cleaned
    assert _quarantined(rec)["rule"] == "no_title_and_no_artist"


def test_coercible_types_are_coerced_not_quarantined():
    rec = met_record(436535)
    rec.update(objectID="436535", isPublicDomain="true", title=1889, tags=None, constituents=None)
    row = one(met_one(rec)[0])
    assert row["artwork_id"] == "met:436535"
    assert row["is_public_domain"] is True
    assert row["title"] == "1889"
    assert row["artists"] == ["Vincent van Gogh"]  # artistDisplayName


def test_titles_that_look_like_json_are_kept():
    rec = met_record(436535)
    rec["title"] = "[Self-Portrait with Christine and Yvonne Lerolle]"
    assert one(met_one(rec)[0])["title"] == rec["title"]


def test_duplicate_ids_latest_metadata_modified_wins():
    old, new = met_record(436535), met_record(436535)
    old["metadataDate"], old["GalleryNumber"] = "2024-01-01T00:00:00Z", "825"
    new["metadataDate"], new["GalleryNumber"] = "2026-07-29T04:54:31.183Z", "826"
    new["title"] = "Wheat Field with Cypresses (new)"
    raw = raw_frame([new, old, met_record(437980)])
    artworks, quarantine = normalise_met(raw)
    assert_invariant(raw, artworks, quarantine)
    assert artworks.get_column("artwork_id").to_list() == ["met:436535", "met:437980"]
    assert artworks.row(0, named=True)["title"] == "Wheat Field with Cypresses (new)"
    q = one(quarantine)
    assert q["rule"] == "duplicate_id"
    assert "met:436535" in q["reason"] and "different content" in q["reason"]
    assert json.loads(q["raw_json"])["GalleryNumber"] == "825"


def test_identical_duplicates_keep_the_latest_fetch():
    rec = met_record(436535)
    raw = raw_frame(
        [rec, rec], fetched_at=[FETCHED, datetime(2026, 9, 1, tzinfo=UTC)]
    )
    artworks, quarantine = normalise_met(raw)
    assert artworks.height == 1 and one(quarantine)["rule"] == "duplicate_id"
    assert "same content" in one(quarantine)["reason"]


def test_only_ok_rows_are_normalised_and_each_ends_in_exactly_one_table():
    good = [met_record(i) for i in (53426, 436535, 437980, 915129)]
    bad_type = met_record(284)
    bad_type["constituents"] = "Dr. Charles W. Green"
    records = [*good, "{not json", bad_type, {"message": "ObjectID not found"}, good[1]]
    raw = raw_frame(
        records,
        status=["ok", "ok", "ok", "ok", "ok", "ok", "gone", "ok"],
    )
    artworks, quarantine = normalise_met(raw)
    assert_invariant(raw, artworks, quarantine)
    assert artworks.height == 4
    assert sorted(quarantine.get_column("rule").to_list()) == [
        "duplicate_id", "invalid_json", "wrong_type",
    ]  # fmt: skip


def test_bad_rows_do_not_change_how_good_rows_are_normalised():
    """A bad row forces the fast decoder to split its chunk: the good rows must not notice."""
    lines = list(met_lines())
    clean, _ = normalise_met(raw_frame(lines))
    bad = met_record(284)
    bad["constituents"] = "a string"
    mixed_lines = lines[:1000] + ["{broken", json.dumps(bad)] + lines[1000:]
    mixed_ids = [_guess_id(t) for t in mixed_lines]
    mixed_ids[1000] = "999999999"
    mixed, quarantine = normalise_met(raw_frame(mixed_lines, mixed_ids))
    assert sorted(quarantine.get_column("rule")) == ["invalid_json", "wrong_type"]
    assert mixed.equals(clean)


def test_image_sha256_comes_from_raw_images():
    recs = [met_record(436535), met_record(437980), met_record(53426)]
    images = pl.DataFrame(
        {
            "source_id": ["436535", "437980", "437980", "53426"],
            "url": [
                recs[0]["primaryImageSmall"],
                "https://images.metmuseum.org/old-url.jpg",  # URL changed since download
                recs[1]["primaryImageSmall"],
                recs[2]["primaryImageSmall"],
            ],
            "sha256": ["a" * 64, "b" * 64, "c" * 64, "d" * 64],
            "width": [1, 1, None, 1],
            "height": [1, 1, None, 1],
            "status": ["ok", "ok", "error", "ok"],
            "error": [None, None, "HTTP 404", None],
        }
    )
    artworks, _ = normalise("met", raw_frame(recs), images)
    assert artworks.get_column("image_sha256").to_list() == ["a" * 64, "b" * 64, "d" * 64]
    artworks, _ = normalise("met", raw_frame(recs), None)
    assert artworks.get_column("image_sha256").null_count() == 3


def test_fast_and_slow_decoders_agree_on_real_records():
    """The polars NDJSON path and the per-record Python path decode real records identically."""
    from artsim_pipeline.core.museums.met import MET_RECORDS
    from artsim_pipeline.core.museums.smk import SMK_RECORDS
    from artsim_pipeline.core.normalise.decode import decode_records, decode_slow

    def both(src, texts: list[str], ids: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
        raw = pl.DataFrame(
            {"_row": pl.Series(range(len(texts)), dtype=pl.UInt32), "source_id": ids,
             "raw_json": texts}  # fmt: skip
        )
        fast, fast_failed = decode_records(src, raw)
        slow, slow_failed = decode_slow(src, raw)
        assert fast_failed.height == slow_failed.height == 0
        return fast.sort("_row"), slow

    lines = list(met_lines())
    fast, slow = both(MET_RECORDS, lines, [_guess_id(t) for t in lines])
    assert fast.equals(slow)
    items = [json.dumps(it, ensure_ascii=False) for name in (
        "search_public_domain_has_image_2019.json", "search_title_interior.json",
        "object_KMS1_2019.json", "object_KMSst28_no_image.json") for it in smk_file(name)["items"]]  # fmt: skip
    fast, slow = both(SMK_RECORDS, items, [_guess_id(t) for t in items])
    assert fast.equals(slow)


# --------------------------------------------------------------------------------------
# poison records (issue 17): nothing a stored record holds makes normalisation raise
# --------------------------------------------------------------------------------------
def test_lone_surrogates_are_replaced_and_counted_not_raised():
    from artsim_pipeline.core.text import lone_surrogate_escapes

    good = met_record(436535)
    broken = {**met_record(436535), "objectID": 1, "title": "\udfff Wheat \ud800", "tags": [{"term": "\udc00"}]}
    text = json.dumps(broken)  # ASCII: the surrogates arrive as "\udfff" escapes, as from the API
    raw = raw_frame([good, text], ["436535", "1"])
    artworks, quarantine = normalise("met", raw)
    assert_invariant(raw, artworks, quarantine)
    assert quarantine.height == 0 and artworks.height == 2
    row = artworks.filter(pl.col("artwork_id") == "met:1").row(0, named=True)
    assert row["title"] == "\ufffd Wheat \ufffd" and row["tags"] == ["\ufffd"]
    assert lone_surrogate_escapes(text) == 3 and lone_surrogate_escapes(json.dumps(good)) == 0
    assert lone_surrogate_escapes('{"t": "\\ud83d\\ude00 a pair is fine"}') == 0
    artworks.write_parquet(__import__("io").BytesIO())  # storable


def test_deeply_nested_stored_records_are_quarantined_and_the_rest_normalise():
    deep = "[" * 5000 + "]" * 5000
    raw = raw_frame(
        [met_record(436535), '{"objectID": 2, "title": "x", "tags": ' + deep + "}", deep],
        ["436535", "2", "3"],
    )
    artworks, quarantine = normalise("met", raw)
    assert_invariant(raw, artworks, quarantine)
    assert artworks["artwork_id"].to_list() == ["met:436535"]
    reasons = dict(zip(quarantine["source_id"], quarantine["reason"], strict=True))
    assert set(reasons) == {"2", "3"} and all("nested too deeply" in r for r in reasons.values())
    assert set(quarantine["rule"]) == {"invalid_json"}


# --------------------------------------------------------------------------------------
# placeholder makers (issue #16 item 7): not in `artists`, kept in `attribution_note`
# --------------------------------------------------------------------------------------
def _normalised_one(source: str, record: dict | str, source_id: str) -> dict:
    raw = raw_frame([record], [source_id])
    artworks, quarantine = normalise(source, raw)
    assert quarantine.height == 0, quarantine.select("rule", "reason").to_dicts()
    row = one(artworks)
    assert artworks.schema == pl.Schema(ARTWORKS_SCHEMA)
    return row


def test_attribution_note_is_a_nullable_string_column():
    assert ARTWORKS_SCHEMA["attribution_note"] == pl.String
    assert "attribution_note" not in ARTWORKS_CONTRACT_COLUMNS  # an extra, after the contract


def test_met_placeholders_leave_artists_for_the_attribution_note():
    # real: a named master, a placeholder, a designer (with their roles)
    row = _normalised_one("met", met_record(365699), "365699")
    assert row["artists"] == ["Master of the Story of Cadmus", "Designed by Francesco Primaticcio"]
    assert len(row["artist_roles"]) == 2
    assert row["attribution_note"] == "Anonymous, French, School of Fontainebleau, 16th century"
    # real: the Met's culture attribution ("Edo artist"), with an "Unidentified artist" put before it
    record = met_record(312290)
    assert [c["name"] for c in record["constituents"]] == ["Edo artist"]
    record["constituents"].insert(0, {**record["constituents"][0], "name": "Unidentified artist"})
    row = _normalised_one("met", record, "312290")
    assert row["artists"] == [] and row["artist_roles"] == []
    assert row["attribution_note"] == "Unidentified artist; Edo artist"
    # the raw name stays in raw_objects; a real named maker has no note
    assert '"Edo artist"' in json.dumps(met_record(312290))
    row = _normalised_one("met", met_record(436535), "436535")
    assert row["artists"] == ["Vincent van Gogh"] and row["attribution_note"] is None


def test_met_conventional_names_stay_makers():
    row = _normalised_one("met", met_record(206321), "206321")  # real: a workshop and "Russian Painter"
    assert row["artists"] == ["The Kremlin Armory Workshops, Moscow"] and row["attribution_note"] == "Russian Painter"
    record = met_record(312290)
    record["constituents"][0]["name"] = "Attributed to the Amasis Painter"  # a conventional name of one hand
    row = _normalised_one("met", record, "312290")
    assert row["artists"] == ["Attributed to the Amasis Painter"] and row["attribution_note"] is None


def test_a_work_with_only_a_placeholder_and_no_title_is_kept():
    record = met_record(312290)
    record["title"] = ""
    row = _normalised_one("met", record, "312290")
    assert row["title"] is None and row["artists"] == [] and row["attribution_note"] == "Edo artist"


def test_smk_ubekendt_goes_to_the_attribution_note():
    row = smk_one(smk_item("KMSst28Ø"))  # real: creator "Ubekendt"
    assert row["artists"] == [] and row["attribution_note"] == "Ubekendt"
    row = smk_one(smk_item("KMS1571"))
    assert row["artists"] == ["P.S. Krøyer"] and row["attribution_note"] is None


def test_cleveland_placeholder_creator_goes_to_the_attribution_note():
    from artsim_pipeline_tests.replay.paged import load_shared_cma_records

    cole = next(r for r in load_shared_cma_records() if r["id"] == 93014)  # real: Thomas Cole
    assert _normalised_one("cma", cole, "93014")["attribution_note"] is None
    cole = copy.deepcopy(cole)
    cole["creators"].append({**cole["creators"][0], "description": "Unknown (American)"})
    row = _normalised_one("cma", cole, "93014")
    assert row["artists"] == ["Thomas Cole"] and row["attribution_note"] == "Unknown"
    assert row["artist_roles"] == ["artist"]


def test_aic_placeholder_artist_title_goes_to_the_attribution_note():
    from artsim_pipeline_tests.replay.paged import aic_info_config, load_shared_aic_records

    info, config = aic_info_config()
    mendieta = copy.deepcopy(load_shared_aic_records()[0])  # real: Ana Mendieta
    assert mendieta["artist_titles"] == ["Ana Mendieta"]
    row = _normalised_one("aic", {"data": mendieta, "info": info, "config": config}, str(mendieta["id"]))
    assert row["artists"] == ["Ana Mendieta"] and row["attribution_note"] is None
    mendieta["artist_titles"] = ["Unidentified artist", "Ana Mendieta"]
    row = _normalised_one("aic", {"data": mendieta, "info": info, "config": config}, str(mendieta["id"]))
    assert row["artists"] == ["Ana Mendieta"] and row["attribution_note"] == "Unidentified artist"


def test_row_rules_count_the_attribution_note_as_an_artist():
    from artsim_pipeline.core.expectations import row_rule_violations

    record = met_record(312290)  # real: "Edo artist" only
    record["title"] = ""
    artworks, _ = normalise("met", raw_frame([record], ["312290"]))
    assert row_rule_violations(artworks).height == 0
    without_note = row_rule_violations(artworks.drop("attribution_note"))  # a table stored before the column
    assert without_note["rule"].to_list() == ["no_title_and_no_artist"]
