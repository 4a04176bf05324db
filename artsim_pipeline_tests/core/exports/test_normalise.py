"""The real Met MediaLab export through `normalise(..., export=mapping)`: the shared finishing,
every quirk of the export, and the quarantine rules of export rows."""

from __future__ import annotations

import json

import polars as pl
import pytest

from artsim_pipeline.core.exports.mapping import parse_mapping
from artsim_pipeline.core.exports.text import read_export
from artsim_pipeline.core.expectations import row_rule_violations
from artsim_pipeline.core.normalise import normalise
from artsim_pipeline.core.raw_store import merge_results
from artsim_pipeline.core.schema import ARTWORKS_SCHEMA, QUARANTINE_RULES
from artsim_pipeline.resources.clients.base import FetchResult


def raw_table(rows):
    table, _ = merge_results(None, [FetchResult(source_id, "ok", raw_json=text) for source_id, text in rows])
    return table


@pytest.fixture(scope="module")
def medialab_raw(medialab_bytes, medialab_mapping):
    return raw_table((row.source_id, row.raw_json) for row in read_export(medialab_bytes, medialab_mapping).rows)


@pytest.fixture(scope="module")
def medialab(medialab_raw, medialab_mapping):
    artworks, quarantine = normalise("met_medialab", medialab_raw, None, export=medialab_mapping)
    return artworks, quarantine, {r["source_id"]: r for r in artworks.iter_rows(named=True)}


def test_every_real_record_becomes_a_valid_artwork(medialab):
    artworks, quarantine, _ = medialab
    assert artworks.height + quarantine.height == 428
    assert quarantine.height == 0 and artworks.height == 428
    assert artworks.schema == pl.Schema(ARTWORKS_SCHEMA)
    assert artworks["artwork_id"].str.contains(r"^met_medialab:\d+$").all()
    assert (artworks["source"] == "met_medialab").all() and artworks["artwork_id"].n_unique() == 428
    assert row_rule_violations(artworks).height == 0
    assert artworks["landing_url"].str.starts_with("https://www.metmuseum.org/art/collection/search/").all()
    assert artworks["is_public_domain"].all() and artworks["image_url"].is_not_null().all()


def test_departments_come_from_the_image_url_path(medialab):
    artworks, _, by_id = medialab
    counts = dict(artworks["department"].value_counts().iter_rows())
    assert counts == {"Greek and Roman Art": 161, "European Sculpture and Decorative Arts": 110,
                      "American Paintings and Sculpture": 99, "Photographs": 40, "Costume Institute": 9,
                      "American Decorative Arts": 8, "Arms and Armor": 1}
    assert by_id["245497"]["department"] == "Greek and Roman Art"


def test_what_string_gives_classification_tags_medium_and_techniques(medialab):
    _, _, by_id = medialab
    bust = by_id["195533"]  # "Ceramics, Clay, Faience, Porcelain, Figures, Glazing, Hard paste porcelain, Busts, Biscuit"
    assert bust["classification"] == "Ceramics"
    assert bust["tags"] == ["Ceramics", "Clay", "Faience", "Porcelain", "Figures", "Glazing", "Hard paste porcelain", "Busts", "Biscuit"]
    assert bust["medium"] == "Clay, Faience, Porcelain, Hard paste porcelain"
    assert bust["techniques"] == ["Glazing"]
    limestone = by_id["245497"]  # '"""Limestone"""' in the file: stray quotes dropped
    assert (limestone["classification"], limestone["tags"], limestone["medium"]) == ("Limestone", ["Limestone"], "Limestone")
    conte = next(r for r in by_id.values() if "Conté crayons" in r["tags"])  # repaired before splitting
    assert "Conté crayons" in conte["medium"]


def test_makers_are_parsed_and_repaired(medialab):
    _, _, by_id = medialab
    assert by_id["195533"]["artists"] == ["Sèvres Manufactory", "Jean-Etienne Mascret"]
    assert by_id["205710"]["artists"] == ["Meissen Manufactory", "Johann Joachim K\ufffdndler"]  # the ä is lost for good
    assert by_id["270956"]["artists"] == ["Étienne Carjat", "Goupil et Cie"]
    assert by_id["263070"]["artists"] == ["W. Penny", "William L. German"]
    unknown = [r for r in by_id.values() if r["culture"] == "American"]
    assert len(unknown) == 3 and all(r["artists"] == [] and r["nationalities"] == ["American"] for r in unknown)
    assert by_id["262690"]["title"] == "Égypte Moyenne. Le Sphynx vu de face"


def test_dates_from_free_text_else_from_the_era_bucket(medialab):
    artworks, _, by_id = medialab
    assert (by_id["205710"]["date_text"], by_id["205710"]["date_begin"], by_id["205710"]["date_end"]) == ("ca. 1745", 1740, 1750)
    assert (by_id["242916"]["date_begin"], by_id["242916"]["date_end"]) == (-399, -200)  # "4th‒3rd century B.C." (repaired)
    # no free-text date: the era bucket column `when` gives the years and the text
    assert (by_id["245497"]["date_text"], by_id["245497"]["date_begin"], by_id["245497"]["date_end"]) == ("1000 B.C.-A.D. 1", -1000, 1)
    undated = artworks.filter(pl.col("date_begin").is_null())
    assert undated.height == 6 and undated["date_text"].is_null().all()  # neither date nor when


def test_two_records_sharing_one_photograph_both_keep_it(medialab_raw, medialab_mapping):
    url = "http://images.metmuseum.org/CRDImages/es/original/ES4199.jpg"
    images = pl.DataFrame({"source_id": ["203491", "203517"], "url": [url, url], "sha256": ["ab" * 32, "ab" * 32],
                           "status": ["ok", "ok"]})
    artworks, _ = normalise("met_medialab", medialab_raw, images, export=medialab_mapping)
    shared = artworks.filter(pl.col("image_url") == url)
    assert sorted(shared["source_id"]) == ["203491", "203517"] and set(shared["image_sha256"]) == {"ab" * 32}


def test_file_names_with_spaces_give_escaped_image_urls(medialab):
    artworks, _, _ = medialab
    urls = artworks.filter(pl.col("image_url").str.contains("%20"))["image_url"].to_list()
    assert sorted(urls) == ["http://images.metmuseum.org/CRDImages/ap/original/ap54.181%20verso.jpg",
                            "http://images.metmuseum.org/CRDImages/gr/original/9%20Cat.%20no.%20I.04R1_98Q.jpg"]


def edited(medialab_bytes, medialab_mapping, changes: dict[str, dict], extra_rows=()):
    rows = []
    for row in read_export(medialab_bytes, medialab_mapping).rows:
        record = json.loads(row.raw_json)
        record.update(changes.get(row.source_id, {}))
        rows.append((row.source_id, json.dumps(record, ensure_ascii=False)))
    return raw_table([*rows, *extra_rows])


def test_broken_rows_are_quarantined_with_rule_and_reason(medialab_bytes, medialab_mapping):
    raw = edited(medialab_bytes, medialab_mapping, {
        "205710": {"who": '["Meissen Manufactory, Johann Joachim K\u00c3_ndler]'},  # the quote never closes
        "206036": {"who": '["Nymphenburg Porcelain Manufactory", Franz Anton Bustelli'},  # cut short
        "207543": {"id": "207544"},
    }, extra_rows=[
        ("203491#2", json.dumps({"id": "203491", "title": "again", "who": "", "image": "", "date": "", "when": "", "whatString": ""})),
        ("line:999", json.dumps({"id": "", "title": "no id", "who": "", "image": "", "date": "", "when": "", "whatString": ""})),
        ("5", json.dumps({"id": "5", "title": "short"})),
        ("6", "not json"),
    ])
    artworks, quarantine = normalise("met_medialab", raw, None, export=medialab_mapping)
    assert artworks.height + quarantine.height == raw.height == 432
    reasons = {r["source_id"]: (r["rule"], r["reason"]) for r in quarantine.iter_rows(named=True)}
    assert reasons["205710"][0] == "unparseable_makers" and "who: maker list" in reasons["205710"][1]
    assert "is never closed" in reasons["205710"][1]
    assert reasons["206036"][0] == "unparseable_makers" and "does not close with ']'" in reasons["206036"][1]
    assert reasons["207543"][0] == "id_mismatch"  # the row's id differs from the key it was stored under
    assert reasons["203491#2"] == ("duplicate_id", "id 203491 appears more than once in the export; this is occurrence 2, "
                                                   "the first is kept")
    assert reasons["line:999"][0] == "missing_id"
    assert reasons["5"][0] == "ragged_row" and "lacks column(s)" in reasons["5"][1]
    assert reasons["6"][0] == "invalid_json"
    assert set(quarantine["rule"]) <= set(QUARANTINE_RULES)
    assert quarantine.filter(pl.col("source_id") == "205710")["raw_json"].item().startswith('{"id": "205710"')
    assert "met_medialab:203491" in artworks["artwork_id"].to_list()


def test_ids_that_do_not_match_the_pattern_are_invalid(medialab_bytes, medialab_mapping):
    raw = raw_table([("A-1", json.dumps({"id": "A-1", "title": "t", "who": "", "image": "", "date": "", "when": "", "whatString": ""}))])
    artworks, quarantine = normalise("met_medialab", raw, None, export=medialab_mapping)
    assert artworks.height == 0 and quarantine.row(0, named=True)["rule"] == "invalid_id"
    assert "does not match ^\\d+$" in quarantine.row(0, named=True)["reason"]


def test_a_json_lines_export_with_lists_and_columns():
    mapping = parse_mapping("""
        source = "museo"
        [file]
        path = "export.jsonl"
        format = "jsonl"
        [id]
        column = "inv"
        pattern = '^[A-Z]+-\\d+$'
        [fields.title]
        column = "name"
        [fields.makers]
        column = "artist"
        [fields.tags]
        column = "keywords"
        [fields.date]
        column = "dated"
        [fields.landing_url]
        template = "https://museo.example/obj/{inv}"
        [fields.is_public_domain]
        column = "open"
    """)
    lines = [
        ("P-1", '{"inv": "P-1", "name": "Still life", "artist": "Rachel Ruysch", "keywords": ["Flowers", "Insects"], '
                '"dated": "ca. 1700", "open": "yes"}'),
        ("P-2", '{"inv": "P-2", "name": "Untitled", "keywords": null, "dated": 1888, "open": false}'),
    ]
    artworks, quarantine = normalise("museo", raw_table(lines), None, export=mapping)
    assert quarantine.height == 0
    rows = {r["artwork_id"]: r for r in artworks.iter_rows(named=True)}
    first, second = rows["museo:P-1"], rows["museo:P-2"]
    assert first["artists"] == ["Rachel Ruysch"] and first["tags"] == ["Flowers", "Insects"] and first["is_public_domain"] is True
    assert (first["date_begin"], first["date_end"]) == (1695, 1705)
    assert first["landing_url"] == "https://museo.example/obj/P-1"
    assert (second["date_begin"], second["tags"], second["is_public_domain"]) == (1888, [], False)


def test_the_mapping_must_match_the_source(medialab_raw, medialab_mapping):
    with pytest.raises(ValueError, match="mapping is for source 'met_medialab'"):
        normalise("met", medialab_raw, None, export=medialab_mapping)
    with pytest.raises(ValueError, match="an export needs its mapping"):
        normalise("met_medialab", medialab_raw)


def test_the_readme_worked_example_gives_what_the_readme_says():
    import re
    from pathlib import Path

    from artsim_pipeline.core.exports.mapping import image_file_for_url

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Collection exports"):]
    csv_text = re.search(r"```csv\n(.*?)```", section, re.S).group(1)
    mapping = parse_mapping(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    rows = read_export(csv_text.encode("utf-8"), mapping).rows
    artworks, quarantine = normalise("museo", raw_table((r.source_id, r.raw_json) for r in rows), None, export=mapping)
    assert quarantine.height == 0
    got = {r["artwork_id"]: r for r in artworks.iter_rows(named=True)}
    assert got["museo:P-1"]["artists"] == ["Rachel Ruysch", "Jan van Huysum"]
    assert (got["museo:P-1"]["date_begin"], got["museo:P-1"]["date_end"]) == (1695, 1705)
    assert (got["museo:P-1"]["classification"], got["museo:P-1"]["medium"]) == ("Paintings", "Oil")
    assert got["museo:P-1"]["tags"] == ["Paintings", "Oil", "Flowers"]
    assert got["museo:P-1"]["image_url"] == "https://img.example.org/photos/P%201.jpg"
    assert image_file_for_url(got["museo:P-1"]["image_url"]) == "photos/P 1.jpg"
    assert (got["museo:P-2"]["artists"], got["museo:P-2"]["culture"]) == ([], "Dutch")
    assert (got["museo:P-2"]["date_begin"], got["museo:P-2"]["date_end"], got["museo:P-2"]["medium"]) == (1666, 1699, "Marble")
    for line in ("| `museo:P-1` | Rachel Ruysch, Jan van Huysum | 1695..1705 | Paintings | Oil |",
                 "| `museo:P-2` | (none: \"Unknown\" names nobody) | 1666..1699 | Sculpture | Marble |"):
        assert line in section
