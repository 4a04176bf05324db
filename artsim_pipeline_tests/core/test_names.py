"""Placeholder makers (issue #16 item 7): the one rule of ``core/names.py`` that says which maker
strings name nobody (``is_anonymous``), and the real people and conventional names it keeps."""

from __future__ import annotations

import pytest

from artsim_pipeline.core.names import is_anonymous, normalise_artist, placeholder_makers


@pytest.mark.parametrize(
    "name",
    [
        # every form the issue lists, as the museums write them (the Met, SMK, the MediaLab export)
        "Unidentified artist",
        "Edo artist",
        "Roman artist",
        "Yoruba artist",
        "Toba Batak artist",
        "Paracas artist(s)",
        "Attic black-figure artist",
        "Unknown, American",
        "Unknown artist, French",
        "Ubekendt",
        "Unknown",
        "Anonymous",
        "Anonymous, French, 18th century",
        "Anonymous, French, School of Fontainebleau, 16th century",
        "Unrecorded  Edgefield District potter",
        # a culture, place or period and a role
        "Netherlandish Painter",
        "North Netherlandish Painter",
        "Spanish (Aragonese) Painter",
        "South German (Bavarian?) Painter",
        "? German Painter",
        "Byzantine Painter",
        "Italian Master",
        "French School",
        "Kongo Artist",
        "Artist",
        "various French",
        "Unknown Designer",
        "Painting by Unknown",
    ],
)
def test_placeholders_name_nobody(name):
    assert is_anonymous(name) and normalise_artist(name) is None


@pytest.mark.parametrize(
    ("name", "key"),
    [
        # conventional names of one hand: a place or a potter's name with "Painter" is a maker
        ("Attributed to the Amasis Painter", "amasis painter"),
        ("Berlin Painter", "berlin painter"),
        ("Attributed to the Parrish Painter", "parrish painter"),  # -ish, but not a nationality
        ("Pan Painter", "pan painter"),
        ("Osservanza Master", "osservanza master"),
        ("Attributed to the Hirschfeld Workshop", "hirschfeld workshop"),
        ("possibly Haly workshop", "haly workshop"),
        # people whose surname is a craft
        ("Paulus Potter", "paulus potter"),
        ("Hans Maler", "hans maler"),
        ("Christian Potter", "christian potter"),  # a forename ending like a nationality
        ("Kristian Potter", "kristian potter"),  # its Danish and German forms
        ("Bastian Maler", "bastian maler"),
        ("Oliver Goldsmith", "oliver goldsmith"),
        # a name that merely contains "artist": capitalised after a forename, or inside a word
        ("John Artist", "john artist"),
        ("Artistide Bartist", "artistide bartist"),
        ("Attributed to an artist related to the C Painter", "an artist related to the c painter"),
        ("The Artist Formerly Known", "artist formerly known"),
        ("Unknowles, Jane", "jane unknowles"),  # starts like "Unknown", is a surname
    ],
)
def test_real_makers_are_kept(name, key):
    assert not is_anonymous(name) and normalise_artist(name) == key


def test_placeholder_makers_picks_the_distinct_placeholders():
    names = ["Unidentified artist", "Edo artist", "Thomas Cole", None, "Edo artist", "Berlin Painter"]
    assert placeholder_makers(names) == {"Unidentified artist", "Edo artist"}
    assert placeholder_makers([]) == set() and placeholder_makers(["Thomas Cole"]) == set()
