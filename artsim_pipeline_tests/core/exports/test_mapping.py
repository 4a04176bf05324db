"""The declarative export mapping: the bundled one parses to what it says; anything else is a
clear MappingError naming the key."""

from __future__ import annotations

import textwrap

import pytest

from artsim_pipeline.core.exports.mapping import MappingError, escape_url, image_file_for_url, parse_mapping

MINIMAL = """
source = "demo"
[file]
path = "objects.csv"
[id]
column = "ObjectNumber"
[fields.title]
column = "Title"
[fields.landing_url]
template = "https://example.org/objects/{id}"
"""


def test_the_bundled_met_medialab_mapping(medialab_mapping):
    m = medialab_mapping
    assert (m.source, m.path, m.format, m.id_column, m.id_prefix) == ("met_medialab", "records.csv", "csv", "id", "met_medialab")
    assert m.text.encoding == "utf-8" and m.text.fallback == "mac-roman"
    assert (m.text.repair_read_as, m.text.repair_written_as, m.text.lost_character) == ("cp1252", "mac-roman", "_")
    assert m.images.column == "image" and m.images.folder == "images" and m.real_images
    assert m.fields["makers"].columns == ("who",)
    assert m.fields["date"].columns == ("date", "when")
    dept = m.fields["department"]
    assert dept.pattern == "CRDImages/([a-z]+)/" and dict(dept.codes) == {
        "gr": "Greek and Roman Art", "es": "European Sculpture and Decorative Arts", "ap": "American Paintings and Sculpture",
        "ph": "Photographs", "ad": "American Decorative Arts", "ci": "Costume Institute", "aa": "Arms and Armor"}
    assert m.fields["classification"].take == "first" and m.fields["classification"].split == ","
    assert m.fields["tags"].take == "all"
    assert "marble" in m.fields["medium"].vocabulary and "busts" not in m.fields["medium"].vocabulary
    assert m.fields["is_public_domain"].value is True
    assert m.columns() == {"id", "title", "who", "image", "date", "when", "whatString"}


def test_a_minimal_mapping_takes_the_defaults():
    m = parse_mapping(MINIMAL)
    assert m.id_prefix == "demo" and m.text.encoding == "utf-8" and m.text.fallback is None and not m.text.repairs
    assert m.images is None and not m.real_images and m.format == "csv" and m.delimiter == ","
    assert m.fields["landing_url"].template_columns() == set()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[id]", "[id]\nprefx = \"x\""), r"mapping\.id: unknown key\(s\) prefx"),
        (("[fields.title]", "[fields.titel]"), r"unknown field\(s\) titel"),
        (("column = \"Title\"", "column = \"Title\"\nsplitt = \",\""), r"fields\.title: unknown key\(s\) splitt"),
        (("[fields.landing_url]\ntemplate = \"https://example.org/objects/{id}\"", ""), r"fields\.landing_url is required"),
        (("column = \"ObjectNumber\"", ""), r"mapping\.id: column is required"),
        (("source = \"demo\"", "source = \"Demo Museum\""), r"source 'Demo Museum' must be lower-case"),
        (("path = \"objects.csv\"", "path = \"objects.csv\"\nencoding = \"utf-16\""), r"utf-16 is not ASCII-compatible"),
        (("path = \"objects.csv\"", "path = \"objects.csv\"\nencoding = \"klingon\""), r"unknown encoding 'klingon'"),
        (("path = \"objects.csv\"", "path = \"objects.csv\"\nformat = \"xlsx\""), r"'xlsx' is not csv or jsonl"),
        (("column = \"Title\"", "column = \"Title\"\npattern = \"([a-z\""), r"fields\.title\.pattern: not a valid regular expression"),
        (("column = \"Title\"", "column = \"Title\"\ncodes = { a = \"b\" }"), r"codes: needs a pattern"),
        (("column = \"Title\"", "template = \"https://x/{id}\""), r"only URL fields take a template"),
        (("column = \"Title\"", "column = \"Title\"\nvalue = 3"), r"exactly one of column\(s\), template, value"),
        (("[fields.title]\ncolumn = \"Title\"", "[fields.makers]\ncolumn = \"Who\"\nsplit = \";\""), r"makers is parsed by its own rules"),
        (("[id]", "[images]\ncolumn = \"img\"\nfolder = \"../photos\"\n[id]"), r"must be a folder inside the export folder"),
        (("[id]", "[images]\ncolumn = \"img\"\nreal = \"yes\"\n[id]"), r"images\.real: must be true or false"),
        (("source = \"demo\"", "source = \"demo\"\nsource = \"again\""), r"not valid TOML"),
    ],
)
def test_what_a_mapping_cannot_say_is_a_clear_error(change, message):
    old, new = change
    assert old in MINIMAL
    with pytest.raises(MappingError, match=message):
        parse_mapping(MINIMAL.replace(old, new, 1), where="mapping")


def test_a_repair_needs_both_codecs_and_one_lost_character():
    base = MINIMAL.replace("path = \"objects.csv\"", "path = \"objects.csv\"\n[file.repair]\nread_as = \"cp1252\"")
    with pytest.raises(MappingError, match=r"file\.repair: written_as is required"):
        parse_mapping(base)
    with pytest.raises(MappingError, match="lost_character: must be one character"):
        parse_mapping(base.replace('read_as = "cp1252"', 'read_as = "cp1252"\nwritten_as = "mac_roman"\nlost_character = "__"'))


def test_a_jsonl_mapping_with_templates_reading_columns():
    m = parse_mapping(textwrap.dedent("""
        source = "museo"
        [file]
        path = "export.jsonl"
        format = "jsonl"
        encoding = "cp1252"
        [id]
        column = "inv"
        pattern = '^[A-Z]+-\\d+$'
        prefix = "museo"
        [fields.makers]
        column = "artists"
        [fields.landing_url]
        template = "https://museo.example/{collection}/{id}"
    """))
    assert m.format == "jsonl" and m.text.encoding == "cp1252" and m.id_pattern == r"^[A-Z]+-\d+$"
    assert m.columns() == {"inv", "artists", "collection"}


def test_image_urls_are_escaped_and_map_to_files_inside_the_folder():
    url = "http://images.metmuseum.org/CRDImages/gr/original/9 Cat. no. I.04R1_98Q.jpg"
    escaped = escape_url(url)
    assert escaped == "http://images.metmuseum.org/CRDImages/gr/original/9%20Cat.%20no.%20I.04R1_98Q.jpg"
    assert escape_url(escaped) == escaped  # escapes are kept, not doubled
    assert image_file_for_url(escaped) == "CRDImages/gr/original/9 Cat. no. I.04R1_98Q.jpg"
    assert escape_url("ftp://x/y.jpg") is None and escape_url("images/a.jpg") is None and escape_url("") is None
    assert image_file_for_url("http://x/a/../../etc/passwd") is None
    assert image_file_for_url("http://x/%2e%2e/secret.jpg") is None
    assert image_file_for_url("http://x/") is None
