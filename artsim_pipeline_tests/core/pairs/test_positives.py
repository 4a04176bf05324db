"""The positive rules, and the caps that keep big groups linear."""

from __future__ import annotations

import math
from dataclasses import replace

import polars as pl
import pytest

from artsim_pipeline.core.pairs import PairRules, artwork_makers, mine_pairs
from artsim_pipeline_tests.core.pairs.builders import (
    ONLY_SPLIT,
    met_frame,
    pair_set,
    smk_frame,
    works,
)


def test_same_artist_across_name_forms():
    frame = works(
        [
            {"artwork_id": "met:1", "artists": ["Vilhelm Hammershøi"]},
            {"artwork_id": "met:2", "artists": ["Designed by Vilhelm Hammershoi"]},
            {"artwork_id": "met:3", "artists": ["Claude Monet"]},
        ]
    )
    pairs = mine_pairs(frame, PairRules(negatives_per_positive=0))
    assert pair_set(pairs, "same_artist") == {("met:1", "met:2")}
    assert pairs.filter(pl.col("rule") == "same_artist").get_column("label").to_list() == [1]


def test_cross_museum_artist_from_real_records(shared_met_records, shared_smk_records):
    kobke_met = [
        r
        for r in shared_met_records
        if any((c.get("name") or "") == "Christen Købke" for c in (r.get("constituents") or []))
    ]
    kobke_smk = [
        it
        for it in shared_smk_records
        if any(p.get("creator") == "Købke, Christen" for p in (it.get("production") or []))
    ]
    assert kobke_met and kobke_smk
    frame = pl.concat([met_frame(kobke_met), smk_frame(kobke_smk)])
    pairs = mine_pairs(frame, PairRules(negatives_per_positive=0))
    expected = tuple(
        sorted([f"met:{kobke_met[0]['objectID']}", f"smk:{kobke_smk[0]['object_number']}"])
    )
    assert pair_set(pairs, "cross_museum_artist") == {expected}


def test_cross_museum_pairs_reach_the_small_side():
    # one maker with 300 Met works and 2 SMK works: every SMK work gets Met partners
    rows = [{"artwork_id": f"met:{i:04d}", "artists": ["Edgar Degas"]} for i in range(300)]
    rows += [{"artwork_id": f"smk:KMS{i}", "artists": ["Degas, Edgar"]} for i in range(2)]
    pairs = mine_pairs(works(rows), PairRules(negatives_per_positive=0, max_pairs_per_anchor=6))
    cross = pairs.filter(pl.col("rule") == "cross_museum_artist")
    assert cross.height == 2 * 3
    assert (cross.get_column("artwork_id_a").str.starts_with("met:")).all()
    assert (cross.get_column("artwork_id_b").str.starts_with("smk:")).all()


def test_anonymous_makers_never_pair():
    anonymous = [
        "Unknown",
        "Ubekendt",
        "Anonymous",
        "Unidentified artist",
        "Anonymous, French, 18th century",
        "Painting by Unknown",
    ]
    rows = [
        {
            "artwork_id": f"met:{i}",
            "artists": [anonymous[i % len(anonymous)]],
            "department": f"d{i}",
        }
        for i in range(60)
    ]
    pairs = mine_pairs(works(rows))
    assert pairs.is_empty()
    assert artwork_makers(works(rows)).is_empty()


def test_same_culture_classification_needs_overlapping_dates():
    frame = works(
        [
            {
                "artwork_id": "met:1",
                "culture": "Greek, Attic",
                "classification": "Vases",
                "date_begin": -530,
                "date_end": -520,
            },
            {
                "artwork_id": "met:2",
                "culture": "greek, attic ",
                "classification": "vases",
                "date_begin": -525,
                "date_end": -500,
            },
            {
                "artwork_id": "met:3",
                "culture": "Greek, Attic",
                "classification": "Vases",
                "date_begin": -300,
                "date_end": -280,
            },
            {
                "artwork_id": "met:4",
                "culture": "Roman",
                "classification": "Vases",
                "date_begin": -525,
                "date_end": -500,
            },
        ]
    )
    pairs = mine_pairs(frame, PairRules(negatives_per_positive=0, **ONLY_SPLIT))
    assert pair_set(pairs, "same_culture_classification") == {("met:1", "met:2")}
    tolerant = mine_pairs(
        frame, PairRules(negatives_per_positive=0, date_overlap_tolerance_years=250, **ONLY_SPLIT)
    )
    assert ("met:1", "met:3") in pair_set(tolerant, "same_culture_classification")
    assert ("met:1", "met:4") not in pair_set(tolerant)


def test_shared_tags_weighted_by_rarity():
    # 100 works: "Cats" on 40 of them (a collection of cats), "Lutes" on exactly two,
    # "Owls" on four; the fraction cap (0.5) lets "Cats" through, with a low weight
    rows = []
    for i in range(100):
        tags = []
        if i < 40:
            tags.append("Cats")
        if i in (50, 51):
            tags.append("Lutes")
        if i in (60, 61, 62, 63):
            tags.append("Owls")
        rows.append({"artwork_id": f"met:{i:03d}", "tags": tags})
    rules = PairRules(negatives_per_positive=0, max_tag_df_fraction=0.5, **ONLY_SPLIT)
    pairs = mine_pairs(works(rows), rules).filter(pl.col("rule") == "shared_tags")
    weight = {
        (a, b): w for a, b, w in pairs.select("artwork_id_a", "artwork_id_b", "weight").iter_rows()
    }
    lutes = weight[("met:050", "met:051")]
    owls = (
        weight[("met:060", "met:061")]
        if ("met:060", "met:061") in weight
        else max(w for (a, b), w in weight.items() if a.startswith("met:06"))
    )
    cats = max(w for (a, b), w in weight.items() if int(a[4:]) < 40 and int(b[4:]) < 40)
    assert lutes > owls > cats > 0
    assert lutes == pytest.approx(0.5 * math.log(100 / 2) / math.log(100), rel=1e-5)
    # above the document-frequency cap a tag is ignored altogether
    capped = mine_pairs(works(rows), replace(rules, max_tag_df_fraction=0.1))
    ids = {x for pair in pair_set(capped) for x in pair}
    assert not any(int(x[4:]) < 40 for x in ids)


def test_shared_tags_sum_over_all_shared_tags():
    rows = [
        {"artwork_id": "met:1", "tags": ["Lutes", "Owls"]},
        {"artwork_id": "met:2", "tags": ["Lutes", "Owls"]},
        {"artwork_id": "met:3", "tags": ["Lutes"]},
    ] + [{"artwork_id": f"met:{i}", "tags": ["Other"]} for i in range(10, 40)]
    pairs = mine_pairs(
        works(rows), PairRules(negatives_per_positive=0, max_tag_df_fraction=1.0, **ONLY_SPLIT)
    )
    weight = {
        (a, b): w for a, b, w in pairs.select("artwork_id_a", "artwork_id_b", "weight").iter_rows()
    }
    assert weight[("met:1", "met:2")] > weight[("met:1", "met:3")]


def test_a_20000_work_group_is_capped():
    n = 20_000
    frame = works(
        [{"artwork_id": f"met:{i:05d}", "artists": ["Katsushika Hokusai"]} for i in range(n)]
    )
    rules = PairRules(negatives_per_positive=0, max_pairs_per_group=5_000, max_pairs_per_anchor=6)
    pairs = mine_pairs(frame, rules)
    assert 0 < pairs.height <= 5_000
    per_work = pl.concat(
        [pairs.get_column("artwork_id_a"), pairs.get_column("artwork_id_b")]
    ).value_counts()
    assert per_work.get_column("count").max() <= rules.max_pairs_per_anchor
    # with room in the group cap, every work is paired, at most max_pairs_per_anchor times
    roomy = mine_pairs(frame, replace(rules, max_pairs_per_group=100_000))
    assert roomy.height <= 100_000
    per_work = pl.concat(
        [roomy.get_column("artwork_id_a"), roomy.get_column("artwork_id_b")]
    ).value_counts()
    assert per_work.height == n
    assert per_work.get_column("count").max() <= rules.max_pairs_per_anchor


def test_small_groups_get_all_their_pairs():
    frame = works([{"artwork_id": f"met:{i}", "artists": ["Claude Monet"]} for i in range(5)])
    pairs = mine_pairs(frame, PairRules(negatives_per_positive=0, max_pairs_per_anchor=4))
    assert pairs.height == 10  # all 5 * 4 / 2 pairs
