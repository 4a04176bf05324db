"""Maker lists as the Met MediaLab export writes them (broken quoting included)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from artsim_pipeline.core.exports.makers import parse_makers
from artsim_pipeline.core.exports.text import read_export, repair_text


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ('["Meissen Manufactory", Johann Joachim Kändler]', ("Meissen Manufactory", "Johann Joachim Kändler")),
        ('["Sèvres Manufactory" Jean Michel Moreau the Younger, Charles-Nicholas Dodin, Henry-Martin Prévost]',
         ("Sèvres Manufactory", "Jean Michel Moreau the Younger", "Charles-Nicholas Dodin", "Henry-Martin Prévost")),
        ('["Tiffany & Co."Jean Antoine Houdon, Ferdinand Barbedienne]', ("Tiffany & Co.", "Jean Antoine Houdon", "Ferdinand Barbedienne")),
        ('["Albert Sands Southworth", Southworth  Hawes, Josiah Johnson Hawes]',
         ("Albert Sands Southworth", "Southworth Hawes", "Josiah Johnson Hawes")),
        ('["Jean-Baptiste Lemoyne the Younger", Mme de Pompadour]', ("Jean-Baptiste Lemoyne the Younger", "Mme de Pompadour")),
        ("Henri, Baron de Triqueti", ("Henri, Baron de Triqueti",)),  # one name with a comma
        ("The Kremlin Armory Workshops, Moscow", ("The Kremlin Armory Workshops, Moscow",)),
        ("Thomas Sully", ("Thomas Sully",)),
        ('"Thomas Sully"', ("Thomas Sully",)),
        ("[]", ()),
        ("", ()),
        (None, ()),
        ('["A", "A", B]', ("A", "B")),
    ],
)
def test_names_in_order(value, names):
    parsed = parse_makers(value)
    assert parsed.problem is None and parsed.names == names


def test_unknown_makers_name_nobody_but_keep_their_culture():
    parsed = parse_makers("Unknown, American")
    assert parsed.names == () and parsed.anonymous_qualifiers == ("American",) and parsed.problem is None
    assert parse_makers("Unknown").names == () and parse_makers("Unknown").anonymous_qualifiers == ()
    mixed = parse_makers('["Unknown artist, French", Jean Dupont]')
    assert mixed.names == ("Jean Dupont",)
    assert parse_makers("Berlin Painter").names == ("Berlin Painter",)  # a conventional name is a maker


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('["Meissen Manufactory, Johann Joachim Kändler]', "is never closed"),
        ('["Meissen Manufactory", Johann "Joachim Kändler]', "unbalanced quote in 'Johann \"Joachim Kändler'"),
        ('["Meissen Manufactory", Johann Joachim Kändler', "does not close with ']'"),
        ('"Meissen Manufactory', "unbalanced quote"),
    ],
)
def test_what_cannot_be_read_unambiguously_gets_a_reason(value, reason):
    parsed = parse_makers(value)
    assert parsed.names == () and parsed.problem is not None and reason in parsed.problem
    assert "Meissen" in parsed.problem  # the reason shows the value


def test_every_maker_value_of_the_real_export_parses(medialab_bytes, medialab_mapping):
    values = [repair_text(json.loads(row.raw_json)["who"], medialab_mapping.text)[0]
              for row in read_export(medialab_bytes, medialab_mapping).rows]
    parsed = [parse_makers(v) for v in values]
    assert [p.problem for p in parsed if p.problem] == []
    lists = [v for v in values if v.startswith("[")]
    assert len(lists) == 28
    assert all(len(p.names) >= 2 for v, p in zip(values, parsed) if v.startswith("["))
    assert sum(1 for p in parsed if p.anonymous_qualifiers == ("American",)) == 3
    assert not any(name.lower().startswith("unknown") or '"' in name for p in parsed for name in p.names)


def test_placeholders_are_listed_apart_in_the_value_order():
    parsed = parse_makers('["Unknown artist, French", Jean Dupont, "Edo artist"]')
    assert parsed.names == ("Jean Dupont",) and parsed.anonymous_qualifiers == ("French",)
    assert parsed.placeholders == ("Unknown artist, French", "Edo artist")
    assert parsed.listed == ("Unknown artist, French", "Jean Dupont", "Edo artist")
    assert parse_makers("Berlin Painter").placeholders == ()


def test_real_export_placeholders_become_the_attribution_note(medialab_bytes, medialab_mapping):
    """Placeholders of the real MediaLab export leave `artists` for `attribution_note` (one rule for
    every source: the shared finishing), and the named makers stay."""
    from artsim_pipeline.core.normalise import normalise
    from artsim_pipeline.core.raw_store import merge_results
    from artsim_pipeline.resources.clients.base import FetchResult

    rows = read_export(medialab_bytes, medialab_mapping).rows
    raw, _ = merge_results(None, [FetchResult(row.source_id, "ok", raw_json=row.raw_json) for row in rows])
    artworks, quarantine = normalise("met_medialab", raw, None, export=medialab_mapping)
    assert quarantine.height == 0
    by_id = {row["source_id"]: row for row in artworks.iter_rows(named=True)}
    daguerreotype = by_id["269146"]  # who: "Unknown, American"
    assert daguerreotype["artists"] == [] and daguerreotype["attribution_note"] == "Unknown, American"
    assert daguerreotype["culture"] == "American"
    assert by_id["264572"]["attribution_note"] == "Unknown"
    assert by_id["263070"]["artists"] == ["W. Penny", "William L. German"]  # a surname that is a nationality
    assert by_id["263070"]["attribution_note"] is None
    notes = artworks.filter(pl.col("attribution_note").is_not_null())
    assert sorted(notes["source_id"]) == ["264572", "266884", "269146", "270334", "271960"]
    assert not any(name.lower().startswith("unknown") for names in artworks["artists"] for name in names)
