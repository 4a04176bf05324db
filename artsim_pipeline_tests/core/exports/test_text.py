"""Reading an export's bytes into verbatim rows, and repairing its mojibake: against the real
Met MediaLab records.csv (not valid UTF-8, names mangled by a Mac Roman round trip)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace

import pytest

from artsim_pipeline.core.exports.mapping import TextEncoding, parse_mapping
from artsim_pipeline.core.exports.text import ExportFormatError, read_export, repair_text, text_report
from artsim_pipeline_tests.replay.server import shared_data_dir


def rows_by_id(read):
    return {row.source_id: json.loads(row.raw_json) for row in read.rows}


def test_the_real_export_is_not_utf8_and_every_row_is_read(medialab_bytes, medialab_mapping):
    with pytest.raises(UnicodeDecodeError):
        medialab_bytes.decode("utf-8")
    read = read_export(medialab_bytes, medialab_mapping)
    assert len(read.rows) == 428 and read.duplicate_ids == [] and read.rows_without_id == 0 and read.blank_rows == 0
    assert read.columns == ("id", "accession number", "title", "who", "image", "when", "date", "numTags", "", "collPage",
                            "gallery-id", "whatString")
    assert len({row.source_id for row in read.rows}) == 428
    assert read.fallback_values == 6  # values whose bytes are not UTF-8: decoded as Mac Roman
    assert {c for row in read.rows for c in row.fallback_columns} == {"who", "date", "title"}


def test_raw_json_is_the_row_exactly_as_read(medialab_bytes, medialab_mapping):
    rows = rows_by_id(read_export(medialab_bytes, medialab_mapping))
    reference = list(csv.reader(io.StringIO(medialab_bytes.decode("latin-1"), newline="")))
    header = reference[0]
    for values in reference[1:]:
        row = rows[values[0]]
        assert list(row) == header  # every column, in the header's order, as strings
        for name, value in zip(header, values):
            raw = value.encode("latin-1")
            try:
                expected = raw.decode("utf-8")
            except UnicodeDecodeError:
                expected = raw.decode("mac_roman")  # the stated fallback
            assert row[name] == expected
    assert rows["245497"]["whatString"] == '"Limestone"'  # the stray quotes are data, kept as read
    assert rows["205710"]["who"] == '["Meissen Manufactory", Johann Joachim K\u00c3_ndler]'


def test_the_bundled_copy_is_the_shared_export_byte_for_byte(medialab_bytes):
    shared = shared_data_dir() / "real_photos" / "met_medialab" / "records.csv"
    if not shared.is_file():
        pytest.skip("shared data not available")
    assert shared.read_bytes() == medialab_bytes


@pytest.mark.parametrize(
    ("row_id", "column", "repaired"),
    [
        ("195533", "who", '["Sèvres Manufactory", Jean-Etienne Mascret]'),  # valid UTF-8, combining marks
        ("186836", "title", "Vase with cover (Vase des âges) (one of a pair)"),
        ("270956", "who", '["Étienne Carjat", Goupil et Cie]'),  # not UTF-8 at all: via the fallback
        ("262690", "title", "Égypte Moyenne. Le Sphynx vu de face"),
        ("242916", "date", "4th\u20123rd century B.C."),  # a dash, through the same round trip
    ],
)
def test_mojibake_is_repaired_through_the_declared_round_trip(medialab_bytes, medialab_mapping, row_id, column, repaired):
    row = rows_by_id(read_export(medialab_bytes, medialab_mapping))[row_id]
    assert repair_text(row[column], medialab_mapping.text) == (repaired, "repaired")


def test_francois_and_the_lost_umlauts(medialab_bytes, medialab_mapping):
    rows = rows_by_id(read_export(medialab_bytes, medialab_mapping))
    francois = next(r["who"] for r in rows.values() if "Duquesnoy" in r["who"])
    assert repair_text(francois, medialab_mapping.text) == ("François Duquesnoy", "repaired")
    # Mac Roman has no "¤", the second byte of UTF-8 "ä": the writer put "_" and the letter is gone
    assert repair_text(rows["205710"]["who"], medialab_mapping.text) == (
        '["Meissen Manufactory", Johann Joachim K\ufffdndler]', "undecodable")
    assert repair_text(rows["267535"]["who"], medialab_mapping.text) == ("Gertrude K\ufffdsebier", "undecodable")


def test_counts_over_the_real_export(medialab_bytes, medialab_mapping):
    read = read_export(medialab_bytes, medialab_mapping)
    report = text_report((json.loads(row.raw_json) for row in read.rows), medialab_mapping.text)
    assert (report["repaired"], report["undecodable"]) == (26, 2)
    assert report["values"] == 4159
    assert len(report["repair_examples"]) == 5 and len(report["undecodable_examples"]) == 2
    # every value that is not plain ASCII is either repaired or counted as undecodable
    non_ascii = [v for row in read.rows for v in json.loads(row.raw_json).values() if not v.isascii()]
    assert len(non_ascii) == report["repaired"] + report["undecodable"]


@pytest.mark.parametrize("clean", ["François Duquesnoy", "Vilhelm Hammershøi", "Interiør, Strandgade 30", "北斎", "Zoë — “quoted”",
                                   "plain ascii", "Ã‰ is what it says"])
def test_clean_text_is_left_alone_by_the_same_repair(medialab_mapping, clean):
    fixed, status = repair_text(clean, medialab_mapping.text)
    if clean.startswith("Ã‰"):  # itself Windows-1252 mojibake of "É": repairing it is right
        assert (fixed, status) == ("É is what it says", "repaired")
    else:
        assert (fixed, status) == (clean, "clean")


def test_without_a_declared_repair_nothing_changes_and_replacements_count_as_undecodable():
    plain = TextEncoding(encoding="utf-8")
    assert repair_text("S\u032cvres", plain) == ("S\u032cvres", "clean")
    assert repair_text("K\ufffdndler", plain) == ("K\ufffdndler", "undecodable")


def test_bytes_without_a_fallback_become_replacement_characters(medialab_bytes, medialab_mapping):
    strict = replace(medialab_mapping, text=TextEncoding(encoding="utf-8"))
    rows = rows_by_id(read_export(medialab_bytes, strict))
    assert "\ufffd" in rows["205710"]["who"]


CSV_MAPPING = """
source = "demo"
[file]
path = "objects.csv"
encoding = "utf-8"
fallback_encoding = "cp1252"
[id]
column = "id"
[fields.title]
column = "title"
[fields.landing_url]
template = "https://example.org/{id}"
"""


def test_bom_blank_rows_duplicates_missing_ids_and_ragged_rows():
    mapping = parse_mapping(CSV_MAPPING)
    data = ("\ufeffid,title\r\n1,One\r\n\r\n2,Two\r\n1,One again\r\n,No id\r\n3,\"multi\nline\"\r\n4,Four,extra\r\n5\r\n"
            .encode("utf-8")) + b"6,Caf\xe9\r\n"
    read = read_export(data, mapping)
    assert read.columns == ("id", "title") and read.blank_rows == 1
    assert [r.source_id for r in read.rows] == ["1", "2", "1#2", "line:6", "3", "4", "5", "6"]
    assert read.duplicate_ids == ["1"] and read.rows_without_id == 1
    rows = {r.source_id: json.loads(r.raw_json) for r in read.rows}
    assert rows["3"]["title"] == "multi\nline" and [r.line for r in read.rows if r.source_id == "3"] == [7]
    assert rows["4"] == {"id": "4", "title": "Four", "__extra_1": "extra"}
    assert rows["5"] == {"id": "5"}
    assert rows["6"]["title"] == "Café" and read.rows[-1].fallback_columns == ("title",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"id,title,title\r\n1,a,b\r\n", "more than once"),
        (b"ident,title\r\n1,a\r\n", "reads column\\(s\\) 'id'"),
        (b'id,title\r\n1,"unclosed\r\n', "line"),
    ],
)
def test_exports_that_do_not_fit_the_mapping_are_clear_errors(data, message):
    with pytest.raises(ExportFormatError, match=message):
        read_export(data, parse_mapping(CSV_MAPPING))


def test_json_lines_are_kept_line_by_line():
    mapping = parse_mapping(CSV_MAPPING.replace('path = "objects.csv"', 'path = "objects.jsonl"\nformat = "jsonl"'))
    data = b'{"id": 7, "title": "Seven"}\n\n{"id": "8", "title": "Caf\xe9"}\nnot json\n{"title": "no id"}\n'
    read = read_export(data, mapping)
    assert [r.source_id for r in read.rows] == ["7", "8", "line:4", "line:5"] and read.blank_rows == 1
    assert read.rows[0].raw_json == '{"id": 7, "title": "Seven"}'
    assert json.loads(read.rows[1].raw_json)["title"] == "Café" and read.rows[1].fallback_columns == ("*",)
