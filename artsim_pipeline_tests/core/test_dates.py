"""Free-text dates -> years: the forms of the Met MediaLab export, and agreement with the Met's
own begin/end years on the real Met records."""

from __future__ import annotations

import csv
import json

import pytest

from artsim_pipeline.core.dates import parse_date_text
from artsim_pipeline.sample import bundled_export_dir
from artsim_pipeline_tests.replay.server import shared_data_dir


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("1761", (1761, 1761)),
        ("ca. 1745", (1740, 1750)),
        ("1631-32", (1631, 1632)),
        ("ca. 1802-4", (1797, 1807)),
        ("1714?-?27", (1714, 1727)),
        ("1811-ca. 1813", (1808, 1818)),
        ("1840s-50s", (1840, 1859)),
        ("1890s-1910s", (1890, 1919)),
        ("15th century", (1400, 1499)),
        ("4th century B.C.", (-399, -300)),
        ("4th century B.C. (?)", (-399, -300)),
        ("1st century A.D.", (1, 99)),
        ("2nd-1st century B.C.", (-199, -1)),
        ("1st century B.C.-1st century A.D.", (-99, 99)),
        ("late 5th-early 4th century B.C.", (-433, -366)),
        ("early 16th century", (1500, 1533)),
        ("mid-18th century", (1733, 1766)),
        ("first half 17th century", (1600, 1650)),
        ("last quarter 15th century", (1475, 1499)),
        ("4th quarter of the 6th century B.C.", (-524, -500)),
        ("middle or 3rd quarter of the 6th century B.C.", (-566, -524)),
        ("end of 6th or early 5th century B.C.", (-524, -466)),
        ("early 7th entury B.C.", (-699, -666)),  # (sic) in the export
        ("1000 B.C.-A.D. 1", (-1000, 1)),
        ("2000-1000 B.C.", (-2000, -1000)),
        ("ca. 13 B.C.-A.D. 5", (-18, 5)),
        ("A.D. 160-180", (160, 180)),
        ("664-30 B.C.", (-664, -30)),
        ("modeled ca. 1892, cast in 1920", (1887, 1920)),
        ("probably modeled ca. 1890, this cast before 1912", (1885, 1912)),
        ("1779, after a portrait of 1777", (1779, 1779)),
        ("19th-early 20th century, cast after a model of 1788", (1800, 1933)),
        ("May 26, 1869", (1869, 1869)),
        ("March 1856", (1856, 1856)),
        ("before 1923", (1913, 1923)),
        ("4th\u20123rd century B.C.", (-399, -200)),  # the figure dash the repaired export holds
        ("200 B.C.\u2013A.D. 50", (-200, 50)),  # no "abbreviation" across eras
        ("dated 761 AH/1360 CE", (1360, 1360)),  # the Hijri year is not read
    ],
)
def test_forms_seen_in_museum_exports(text, years):
    assert parse_date_text(text) == years


@pytest.mark.parametrize("text", [None, "", "   ", "undated", "n.d.", "no. 4", "(?)"])
def test_text_without_a_year_gives_none(text):
    assert parse_date_text(text) is None


def test_every_date_and_era_of_the_real_export_that_names_a_year_is_read():
    with (bundled_export_dir("met_medialab") / "records.csv").open(encoding="latin-1", newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = {row[column] for row in rows for column in ("date", "when") if row[column].strip()}
    assert len(texts) > 250
    unread = sorted(t for t in texts if parse_date_text(t) is None)
    assert unread == []
    for text in texts:
        begin, end = parse_date_text(text)
        assert -3000 <= begin <= end <= 2000, text


def test_agrees_with_the_mets_own_years_on_real_met_records():
    """The Met's objectBeginDate/EndDate are curated and not always consistent, so this measures
    agreement within 25 years, not equality; a regression in any common form drops it below."""
    path = shared_data_dir() / "met" / "objects.jsonl"
    if not path.is_file():
        pytest.skip("shared Met records not available")
    records = [json.loads(line) for line in path.open(encoding="utf-8")]
    dated = [r for r in records if r["objectDate"].strip()]
    close = 0
    for record in dated:
        years = parse_date_text(record["objectDate"])
        if years and abs(years[0] - record["objectBeginDate"]) <= 25 and abs(years[1] - record["objectEndDate"]) <= 25:
            close += 1
    assert len(dated) > 4000
    assert close / len(dated) >= 0.90, close / len(dated)
