"""The normalisers of the museums added through the source registry (core/museums/): every real
fixture record, the quirks of each API, and bad records quarantined with a rule and a reason."""

from __future__ import annotations

import json

import polars as pl
import pytest

from artsim_pipeline.core.museums import aic, cma, parse_maker
from artsim_pipeline.core.names import normalise_artist
from artsim_pipeline.core.normalise import normalise
from artsim_pipeline.core.schema import ARTWORKS_SCHEMA, QUARANTINE_RULES
from artsim_pipeline_tests.replay.paged import aic_info_config, load_shared_aic_records, load_shared_cma_records


def raw_frame(source_ids: list, texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"source_id": [str(s) for s in source_ids], "raw_json": texts, "status": ["ok"] * len(texts)},
                        schema={"source_id": pl.String, "raw_json": pl.String, "status": pl.String})


def aic_stored(record: dict) -> str:
    info, config = aic_info_config()
    return json.dumps({"data": record, "info": info, "config": config}, ensure_ascii=False)


@pytest.fixture(scope="module")
def cma_records():
    return load_shared_cma_records()


@pytest.fixture(scope="module")
def aic_records():
    return load_shared_aic_records()


def test_every_cleveland_record_becomes_an_artwork(cma_records):
    raw = raw_frame([r["id"] for r in cma_records], [json.dumps(r) for r in cma_records])
    artworks, quarantine = normalise("cma", raw)
    assert artworks.height + quarantine.height == raw.height == 76
    assert quarantine.height == 0 and artworks.schema == pl.Schema(ARTWORKS_SCHEMA)
    assert artworks["artwork_id"].str.contains(r"^cma:\d+$").all()
    assert artworks["is_public_domain"].all() and artworks["image_url"].str.ends_with("_web.jpg").all()
    by_id = {row["artwork_id"]: row for row in artworks.iter_rows(named=True)}
    cole = by_id["cma:93014"]
    assert cole["artists"] == ["Thomas Cole"] and cole["nationalities"] == ["American"] and cole["culture"] == "American"
    assert (cole["date_begin"], cole["date_end"], cole["classification"], cole["medium"]) == (1838, 1838, "Painting", "oil on canvas")
    assert cole["landing_url"] == "https://clevelandart.org/art/1335.1917" and cole["department"] == "American Painting and Sculpture"
    assert cole["metadata_modified"].isoformat().startswith("2019-11-18T09:03:30.462")
    # "Studio" (qualifier "and") is a role of Rembrandt, not a second maker
    assert (by_id["cma:124089"]["artists"], by_id["cma:124089"]["artist_roles"]) == (["Rembrandt van Rijn"], ["artist and studio"])
    assert by_id["cma:140492"]["artists"] == ["Master of the Brussels Initials"]
    assert by_id["cma:140492"]["artist_roles"] == ["artist and associates"]
    # B.C. is only in the text: the earliest / latest ints are negated
    assert (by_id["cma:124135"]["date_begin"], by_id["cma:124135"]["date_end"]) == (-400, -375)
    assert (by_id["cma:130133"]["date_begin"], by_id["cma:130133"]["date_end"]) == (-1391, -1353)
    assert not artworks["dates_swapped"].any()
    # no maker: the culture list names the culture, and every entry is a tag
    cista = by_id["cma:124135"]
    assert cista["artists"] == [] and cista["culture"] == "Italy, Etruscan, early 4th Century BC" and cista["tags"] == [cista["culture"]]


def test_every_aic_record_becomes_an_artwork(aic_records):
    raw = raw_frame([r["id"] for r in aic_records], [aic_stored(r) for r in aic_records])
    artworks, quarantine = normalise("aic", raw)
    assert artworks.height + quarantine.height == raw.height == 21 and quarantine.height == 0
    by_id = {row["artwork_id"]: row for row in artworks.iter_rows(named=True)}
    mendieta = by_id["aic:209980"]
    assert mendieta["artists"] == ["Ana Mendieta"] and mendieta["nationalities"] == ["American"]
    assert (mendieta["department"], mendieta["classification"], mendieta["object_type"]) == (
        "Contemporary Art", "time-based works", "Film, Video, New Media")
    assert mendieta["is_public_domain"] is False and mendieta["image_url"] is None  # in copyright: no image
    assert mendieta["landing_url"] == "https://www.artic.edu/artworks/209980"
    # the listing page did not ask for is_public_domain: unknown, never public domain, no image
    listed = artworks.filter(pl.col("artwork_id") != "aic:209980")
    assert listed["is_public_domain"].is_null().all() and listed["image_url"].is_null().all()
    # cultures named as artists are cultures
    assert (by_id["aic:99539"]["artists"], by_id["aic:99539"]["culture"]) == ([], "Kuba")
    assert (by_id["aic:217295"]["artists"], by_id["aic:217295"]["culture"]) == ([], "Ancient Roman")
    assert (by_id["aic:217295"]["date_begin"], by_id["aic:217295"]["date_end"]) == (-100, 100)  # "100 BCE-100 CE"
    assert (by_id["aic:156442"]["date_begin"], by_id["aic:156442"]["date_end"]) == (1700, 1720)  # "1700/20"
    assert by_id["aic:122449"]["artists"] == ["Pablo Picasso"] and by_id["aic:122449"]["department"] == "Prints and Drawings"
    assert by_id["aic:21502"]["artists"] == [] and by_id["aic:21502"]["culture"] == "Staffordshire"  # artist_title null


def test_aic_images_need_an_explicit_public_domain_flag_and_use_the_answers_iiif_root(aic_records):
    record = dict(aic_records[1])
    stored = {"data": record, "config": {"iiif_url": "https://iiif.example/2"}}
    assert aic.image_url(stored) is None  # no is_public_domain: unknown
    stored["data"] = {**record, "is_public_domain": True}
    assert aic.image_url(stored) == f"https://iiif.example/2/{record['image_id']}/full/843,/0/default.jpg"
    stored["data"] = {**record, "is_public_domain": True, "image_id": None}
    assert aic.image_url(stored) is None
    stored["data"] = {**record, "is_public_domain": "true"}
    assert aic.image_url(stored) is None  # only the boolean true counts


def test_the_aic_description_keeps_its_licence_in_the_stored_record(aic_records):
    text = aic_stored(aic_records[0])
    stored = json.loads(text)
    assert stored["data"]["description"].startswith("<p>Emerging")
    assert "`description` field" in stored["info"]["license_text"] and "CC-By" in stored["info"]["license_text"]
    # and a quarantined record keeps the whole stored text, licence included
    broken = {**aic_records[0], "id": "not-a-number"}
    _, quarantine = normalise("aic", raw_frame(["not-a-number"], [aic_stored(broken)]))
    assert quarantine["rule"].to_list() == ["invalid_id"] and "license_text" in quarantine["raw_json"].item()


@pytest.mark.parametrize(
    ("display", "role", "expected"),
    [
        ("Gustave Courbet (French, 1819-1877)", "artist", ("Gustave Courbet", "artist", "French")),
        ("after Peter Paul Rubens (Flemish, 1577-1640)", "artist", ("Peter Paul Rubens", "after", "Flemish")),
        ("Workshop of Rogier van der Weyden (Netherlandish, 1399/1400-1464)", None, ("Rogier van der Weyden", "workshop of", "Netherlandish")),
        ("Attributed to Frans Hals (Dutch, c. 1581-1666)", "artist", ("Frans Hals", "attributed to", "Dutch")),
        ("Jacopo Bassano (Italian, ca. 1510-1592)", "artist", ("Jacopo Bassano", "artist", "Italian")),
        ("Studio", "artist", (None, "studio", None)),
        ("", "artist", (None, "artist", None)),
    ],
)
def test_cleveland_maker_descriptions(display, role, expected):
    maker = parse_maker(display, role)
    assert (maker.name, maker.role, maker.nationality) == expected


def test_one_maker_across_museums():
    forms = ["Gustave Courbet (French, 1819-1877)", "Courbet, Gustave", "Gustave Courbet"]
    names = [parse_maker(forms[0]).name, *forms[1:]]
    assert len({normalise_artist(n) for n in names}) == 1
    record = {"id": 1, "title": "t", "creators": [{"description": forms[0], "role": "artist"}], "accession_number": "1962.2"}
    artworks, _ = normalise("cma", raw_frame([1], [json.dumps(record)]))
    assert normalise_artist(artworks["artists"].item()[0]) == normalise_artist("Courbet, Gustave")


BAD_CMA = [
    ("1", "{not json", "invalid_json"),
    ("2", "[1, 2]", "not_an_object"),
    ("3", json.dumps({"id": 3, "title": "x", "creators": "Thomas Cole"}), "wrong_type"),
    ("4", json.dumps({"id": 4, "title": "x", "images": ["a"]}), "wrong_type"),
    ("5", json.dumps({"title": "no id"}), "missing_id"),
    ("x6", json.dumps({"id": "x6", "title": "x"}), "invalid_id"),
    ("7", json.dumps({"id": 8, "title": "x"}), "id_mismatch"),
    ("9", json.dumps({"id": 9, "creators": []}), "no_title_and_no_artist"),
    ("10", json.dumps({"id": 10, "title": "x", "creation_date_earliest": 90000, "creation_date_latest": 90001}), "date_out_of_range"),
    ("11", json.dumps({"id": 11, "title": "x", "creators": [{"description": 5}, "Cole"]}), "wrong_type"),
]


def test_bad_cleveland_records_are_quarantined_with_a_rule_and_a_reason():
    good = {"id": 12, "title": "A Copyrighted work", "share_license_status": "Copyrighted",
            "images": {"web": {"url": "https://openaccess-cdn.clevelandart.org/x/x_web.jpg"}}, "url": "https://clevelandart.org/art/x"}
    raw = raw_frame([s for s, _, _ in BAD_CMA] + ["12"], [t for _, t, _ in BAD_CMA] + [json.dumps(good)])
    artworks, quarantine = normalise("cma", raw)
    assert artworks.height + quarantine.height == raw.height
    assert dict(zip(quarantine["source_id"], quarantine["rule"], strict=True)) == {s: rule for s, _, rule in BAD_CMA}
    assert quarantine["reason"].str.len_chars().min() > 10 and set(quarantine["rule"]) <= set(QUARANTINE_RULES)
    copyrighted = artworks.row(0, named=True)
    assert copyrighted["is_public_domain"] is False and copyrighted["image_url"] is None  # never an image of a non-CC0 work
    assert cma.image_url({**good, "share_license_status": "CC0"}) == good["images"]["web"]["url"]


def test_bad_aic_records_are_quarantined():
    texts = ["", json.dumps({"data": "Kuba"}), json.dumps({"data": {"title": "no id"}}),
             json.dumps({"data": {"id": 5, "title": "x", "date_start": 1900, "date_end": 1800}})]
    artworks, quarantine = normalise("aic", raw_frame(["1", "2", "3", "5"], texts))
    assert artworks.height == 1 and artworks["dates_swapped"].item()  # begin > end: swapped back and flagged
    assert quarantine["rule"].to_list() == ["invalid_json", "wrong_type", "missing_id"]


def test_a_repeated_record_keeps_the_latest_update(cma_records):
    old, new = dict(cma_records[0]), {**cma_records[0], "title": "Retitled", "updated_at": "2030-01-01 00:00:00.000000"}
    artworks, quarantine = normalise("cma", raw_frame([old["id"], new["id"]], [json.dumps(new), json.dumps(old)]))
    assert artworks["title"].to_list() == ["Retitled"] and quarantine["rule"].to_list() == ["duplicate_id"]


def test_cross_museum_artist_pairs_join_the_same_maker_in_every_museum(shared_met_records):
    from artsim_pipeline.core.names import artist_keys
    from artsim_pipeline.core.pairs import PairRules, mine_pairs

    assert artist_keys("Rembrandt (Rembrandt van Rijn)") == ("rembrandt", "rembrandt van rijn")
    assert artist_keys("Andrea di Cione (Orcagna)") == ("andrea di cione",)  # a one-word aside is no alias
    assert artist_keys("Sparton Corporation (Jackson, Michigan)") == ("sparton corporation",)
    cma_rows = {r["artwork_id"]: r for r in normalise("cma", raw_frame(
        [r["id"] for r in load_shared_cma_records()], [json.dumps(r) for r in load_shared_cma_records()]))[0].iter_rows(named=True)}
    met_rembrandt = next(r for r in shared_met_records if r.get("artistDisplayName") == "Rembrandt (Rembrandt van Rijn)")
    rows = [
        {"artwork_id": "met:1", "source": "met", "artists": ["Gustave Courbet"]},
        {"artwork_id": "smk:KMS1", "source": "smk", "artists": ["Courbet, Gustave"]},
        {"artwork_id": "cma:137259", "source": "cma", "artists": cma_rows["cma:137259"]["artists"]},
        {"artwork_id": "aic:1", "source": "aic", "artists": [parse_maker("Gustave Courbet (French, 1819-1877)").name]},
        {"artwork_id": f"met:{met_rembrandt['objectID']}", "source": "met", "artists": [met_rembrandt["artistDisplayName"]]},
        {"artwork_id": "cma:124089", "source": "cma", "artists": cma_rows["cma:124089"]["artists"]},
    ]
    frame = pl.DataFrame(rows, schema={"artwork_id": pl.String, "source": pl.String, "artists": pl.List(pl.String)})
    pairs = mine_pairs(frame, PairRules(negatives_per_positive=0))
    cross = {tuple(sorted(p)) for p in pairs.filter(pl.col("rule") == "cross_museum_artist")
             .select("artwork_id_a", "artwork_id_b").iter_rows()}
    courbet = ["aic:1", "cma:137259", "met:1", "smk:KMS1"]
    assert {(a, b) for i, a in enumerate(courbet) for b in courbet[i + 1:]} <= cross  # every museum with every other
    assert tuple(sorted(["cma:124089", f"met:{met_rembrandt['objectID']}"])) in cross
