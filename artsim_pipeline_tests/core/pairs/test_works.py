"""Preparation: maker names to keys (the same person under every name form, placeholders
never), the makers of each work, and the checks on artwork ids."""

from __future__ import annotations

import polars as pl
import pytest

from artsim_pipeline.core.names import normalise_artist
from artsim_pipeline.core.pairs import mine_pairs
from artsim_pipeline.core.pairs.works import prepare_works
from artsim_pipeline_tests.core.pairs.builders import works


@pytest.mark.parametrize(
    "one, other",
    [
        ("Hammershøi, Vilhelm", "Vilhelm Hammershøi"),
        ("VILHELM  HAMMERSHOI ", "vilhelm hammershøi"),
        ("Købke, Christen", "Christen Købke"),
        ("Édouard Manet", "Edouard Manet"),
        ("Willard, Aaron, Jr.", "Aaron Willard Jr."),
        ("Velde, Willem I van de", "Willem van de Velde I"),
        ("Mander, Karel van III", "Karel van Mander III"),
        ("Haarlem, Cornelis Cornelisz. van", "Cornelis Cornelisz. van Haarlem"),
        ("Krøyer, P.S.", "P. S. Krøyer"),
        ("Georgia O&#39;Keeffe", "Georgia O'Keeffe"),
        ("Henri de Toulouse-Lautrec", "Henri de Toulouse Lautrec"),
        ("Rembrandt (Rembrandt van Rijn)", "Rembrandt"),
        ("Designed by George Washington Maher", "George Washington Maher"),
        ("After a model by Giambologna", "Giambologna"),
        ("Attributed to Jan Steen", "Steen, Jan"),
        ("Pieter Bruegel the Younger", "Pieter Bruegel Jr."),
    ],
)
def test_same_person_same_key(one, other):
    assert normalise_artist(one) is not None
    assert normalise_artist(one) == normalise_artist(other)


@pytest.mark.parametrize(
    "one, other",
    [
        ("Aaron Willard", "Aaron Willard Jr."),
        ("Pieter Bruegel the Elder", "Pieter Bruegel the Younger"),
        ("Vilhelm Hammershøi", "Svend Hammershøi"),
    ],
)
def test_different_people_different_keys(one, other):
    assert normalise_artist(one) != normalise_artist(other)


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "   ",
        "?",
        "Unknown",
        "unknown artist",
        "Ubekendt",
        "Ukendt",
        "Anonymous",
        "Anonym",
        "Unidentified artist",
        "Anonymous, French, 18th century",
        "Anonymous, Netherlandish, 16th century",
        "Painting by Unknown",
        "Unknown Designer",
        "Woven by Anonymous Flemish weavers",
        "Netherlandish Painter",
        "French, 18th century",
    ],
)
def test_anonymous_makers_have_no_key(name):
    assert normalise_artist(name) is None


def test_normalised_keys_are_plain_lowercase_ascii():
    key = normalise_artist("Hammershøi, Vilhelm")
    assert key == "vilhelm hammershoi"
    assert normalise_artist("Pablo Picasso, 1881-1973") == "pablo picasso"


def test_duplicate_ids_are_rejected():
    frame = works([{"artwork_id": "met:1"}, {"artwork_id": "met:1"}])
    with pytest.raises(ValueError, match="duplicate"):
        mine_pairs(frame)


def test_prepare_works_sorts_cleans_and_lists_makers():
    frame = works(
        [
            {
                "artwork_id": "met:2",
                "artists": ["Claude Monet", "Monet, Claude"],
                "department": "  Paintings ",
                "date_begin": 1880,
            },
            {
                "artwork_id": "met:1",
                "artists": ["Unknown", "Edgar Degas"],
                "date_begin": 1890,
                "date_end": 1880,
                "culture": "  ",
            },
        ]
    ).drop("source")
    prepared, makers = prepare_works(frame, seed=0)
    assert prepared.get_column("artwork_id").to_list() == ["met:1", "met:2"]
    assert prepared.get_column("work_index").to_list() == [0, 1]
    # the source from the id when the column is missing; dates ordered, one filled from the other
    assert prepared.get_column("source").to_list() == ["met", "met"]
    assert prepared.select("year_begin", "year_end").rows() == [(1880, 1890), (1880, 1880)]
    assert prepared.get_column("department").to_list() == [None, "paintings"]
    assert prepared.get_column("culture").to_list() == [None, None]
    # one maker key per person, placeholders dropped; maker ids dense in key order
    assert makers.select("work_index", "maker_id", "maker_key").rows() == [
        (0, 1, "edgar degas"),
        (1, 0, "claude monet"),
    ]
    assert prepared.get_column("maker_ids").to_list() == [[1], [0]]
    # the per-work hash follows the work, whatever the row order, and moves with the seed
    again, _ = prepare_works(frame.reverse(), seed=0)
    assert again.get_column("work_hash").equals(prepared.get_column("work_hash"))
    reseeded, _ = prepare_works(frame, seed=1)
    assert not reseeded.get_column("work_hash").equals(prepared.get_column("work_hash"))


def test_prepare_works_rejects_missing_and_null_ids():
    with pytest.raises(ValueError, match="no artwork_id"):
        prepare_works(pl.DataFrame({"title": ["x"]}), seed=0)
    with pytest.raises(ValueError, match="null artwork_id"):
        prepare_works(pl.DataFrame({"artwork_id": ["met:1", None]}), seed=0)
