"""Weak-label pair mining: name normalisation, rules, caps, determinism, splits, validation."""

from __future__ import annotations

import math
from dataclasses import replace

import polars as pl
import pytest

from artsim_pipeline.core.names import normalise_artist
from artsim_pipeline.core.pairs import (
    NEGATIVE_RULES,
    PAIRS_SCHEMA,
    POSITIVE_RULES,
    PairRules,
    artwork_makers,
    mine_pairs,
    pair_stats,
    preview_pairs,
    validate_pairs,
)

SCHEMA = {
    "artwork_id": pl.String,
    "source": pl.String,
    "source_id": pl.String,
    "title": pl.String,
    "artists": pl.List(pl.String),
    "date_begin": pl.Int32,
    "date_end": pl.Int32,
    "department": pl.String,
    "classification": pl.String,
    "culture": pl.String,
    "tags": pl.List(pl.String),
}


def works(rows: list[dict]) -> pl.DataFrame:
    """An artworks frame from partial rows (missing fields null / empty)."""
    full = []
    for row in rows:
        r = {name: None for name in SCHEMA}
        r.update(artists=[], tags=[])
        r.update(row)
        r["source"] = r["source"] or r["artwork_id"].split(":")[0]
        r["source_id"] = r["source_id"] or r["artwork_id"].split(":", 1)[1]
        r["title"] = r["title"] or f"Title of {r['artwork_id']}"
        full.append(r)
    return pl.DataFrame(full, schema=SCHEMA)


def met_frame(records: list[dict]) -> pl.DataFrame:
    """A simple local converter: Met /objects records -> the artworks columns used here."""
    rows = []
    for r in records:
        names = [c["name"] for c in (r.get("constituents") or []) if c.get("name")]
        rows.append(
            {
                "artwork_id": f"met:{r['objectID']}",
                "title": r.get("title") or None,
                "artists": names
                or ([r["artistDisplayName"]] if r.get("artistDisplayName") else []),
                "date_begin": r.get("objectBeginDate"),
                "date_end": r.get("objectEndDate"),
                "department": r.get("department") or None,
                "classification": r.get("classification") or r.get("objectName") or None,
                "culture": r.get("culture") or None,
                "tags": [t["term"] for t in (r.get("tags") or []) if t.get("term")],
            }
        )
    return works(rows)


def smk_frame(items: list[dict]) -> pl.DataFrame:
    """A simple local converter: SMK items -> the artworks columns used here."""
    rows = []
    for it in items:
        production = it.get("production") or []
        dates = (it.get("production_date") or [{}])[0]
        nationality = next(
            (p.get("creator_nationality") for p in production if p.get("creator_nationality")), None
        )
        rows.append(
            {
                "artwork_id": f"smk:{it['object_number']}",
                "artists": [p["creator"] for p in production if p.get("creator")],
                "date_begin": int(dates["start"][:4]) if dates.get("start") else None,
                "date_end": int(dates["end"][:4]) if dates.get("end") else None,
                "department": it.get("responsible_department") or "SMK",
                "classification": ((it.get("object_names") or [{}])[0]).get("name"),
                "culture": nationality,
            }
        )
    return works(rows)


@pytest.fixture(scope="module")
def real_artworks(shared_met_records, shared_smk_records) -> pl.DataFrame:
    return pl.concat([met_frame(shared_met_records), smk_frame(shared_smk_records)])


@pytest.fixture(scope="module")
def real_pairs(real_artworks) -> pl.DataFrame:
    return mine_pairs(real_artworks)


def pair_set(pairs: pl.DataFrame, rule: str | None = None) -> set[tuple[str, str]]:
    if rule is not None:
        pairs = pairs.filter(pl.col("rule") == rule)
    return set(pairs.select("artwork_id_a", "artwork_id_b").iter_rows())


# --------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# output contract
# --------------------------------------------------------------------------------------


def test_output_contract(real_pairs, real_artworks):
    assert dict(real_pairs.schema) == PAIRS_SCHEMA
    assert real_pairs.height > 1000
    assert real_pairs.filter(pl.col("artwork_id_a") >= pl.col("artwork_id_b")).is_empty()
    assert (
        real_pairs.select(pl.struct("artwork_id_a", "artwork_id_b").is_duplicated().any()).item()
        is False
    )
    assert set(real_pairs.get_column("rule").unique()) == set(POSITIVE_RULES) | set(NEGATIVE_RULES)
    assert set(real_pairs.get_column("split").unique()) == {"train", "val", "test"}
    pos_rules = real_pairs.filter(pl.col("label") == 1).get_column("rule").unique().to_list()
    assert set(pos_rules) <= set(POSITIVE_RULES)
    assert real_pairs.get_column("weight").min() > 0
    assert real_pairs.get_column("weight").max() <= 1.0
    checks = validate_pairs(real_pairs, real_artworks, PairRules())
    assert [c for c in checks if not c[1]] == []
    assert {c[0] for c in checks} >= {
        "no_self_pairs",
        "no_duplicate_pairs",
        "ends_exist",
        "split_disjoint_artworks",
        "split_disjoint_makers",
        "ratio_within_bounds",
    }


def test_empty_and_tiny_inputs():
    empty = mine_pairs(works([]))
    assert empty.is_empty() and dict(empty.schema) == PAIRS_SCHEMA
    single = mine_pairs(works([{"artwork_id": "met:1", "artists": ["Claude Monet"]}]))
    assert single.is_empty() and dict(single.schema) == PAIRS_SCHEMA


def test_duplicate_ids_are_rejected():
    frame = works([{"artwork_id": "met:1"}, {"artwork_id": "met:1"}])
    with pytest.raises(ValueError, match="duplicate"):
        mine_pairs(frame)


def test_rules_config_is_validated():
    with pytest.raises(ValueError):
        PairRules(train_fraction=0.8, val_fraction=0.15, test_fraction=0.15)
    with pytest.raises(ValueError):
        PairRules(hard_fraction=1.5)
    assert PairRules().weight("same_artist") == 1.0
    assert set(PairRules().rule_weights()) == set(POSITIVE_RULES) | set(NEGATIVE_RULES)


# --------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------

ONLY_SPLIT = dict(train_fraction=1.0, val_fraction=0.0, test_fraction=0.0)


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


def test_strongest_rule_wins_and_no_pair_is_both():
    frame = works(
        [
            {
                "artwork_id": "met:1",
                "artists": ["Claude Monet"],
                "culture": "French",
                "classification": "Paintings",
                "date_begin": 1880,
                "date_end": 1881,
            },
            {
                "artwork_id": "met:2",
                "artists": ["Monet, Claude"],
                "culture": "French",
                "classification": "Paintings",
                "date_begin": 1880,
                "date_end": 1881,
            },
        ]
    )
    pairs = mine_pairs(frame, PairRules(**ONLY_SPLIT))
    assert pairs.select("artwork_id_a", "artwork_id_b", "rule", "label").rows() == [
        ("met:1", "met:2", "same_artist", 1)
    ]
    weaker_artist = mine_pairs(frame, PairRules(same_artist_weight=0.3, **ONLY_SPLIT))
    assert weaker_artist.get_column("rule").to_list() == ["same_culture_classification"]


def test_negative_definitions(real_pairs, real_artworks):
    info = real_artworks.select(
        "artwork_id", "department", "classification", "culture", "date_begin", "date_end"
    )
    makers = artwork_makers(real_artworks).group_by("artwork_id").agg(pl.col("maker"))
    info = info.join(makers, on="artwork_id", how="left")
    neg = (
        real_pairs.filter(pl.col("label") == 0)
        .join(info, left_on="artwork_id_a", right_on="artwork_id")
        .join(info, left_on="artwork_id_b", right_on="artwork_id", suffix="_b")
    )
    assert neg.height > 0
    shared_maker = neg.select(
        pl.col("maker")
        .fill_null([])
        .list.set_intersection(pl.col("maker_b").fill_null([]))
        .list.len()
        > 0
    ).to_series()
    assert not shared_maker.any()
    easy = neg.filter(pl.col("rule") == "easy_negative")
    hard = neg.filter(pl.col("rule") == "hard_negative")
    assert easy.height and hard.height
    assert (easy.get_column("department") != easy.get_column("department_b")).all()
    gap = PairRules().easy_negative_min_year_gap
    far = (pl.col("date_begin") - pl.col("date_end_b") >= gap) | (
        pl.col("date_begin_b") - pl.col("date_end") >= gap
    )
    assert easy.select(far.all()).item()
    same_group = (pl.col("department") == pl.col("department_b")) | (
        pl.col("classification").str.to_lowercase() == pl.col("classification_b").str.to_lowercase()
    )
    assert hard.select(same_group.all()).item()
    same_culture = (
        pl.col("culture").str.to_lowercase() == pl.col("culture_b").str.to_lowercase()
    ).fill_null(False)
    assert not hard.select(same_culture.any()).item()


# --------------------------------------------------------------------------------------
# scale: caps
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------


def test_deterministic_and_row_order_independent(real_artworks, real_pairs):
    shuffled = real_artworks.sample(fraction=1.0, shuffle=True, seed=123)
    assert mine_pairs(shuffled).equals(real_pairs)
    assert mine_pairs(real_artworks.reverse()).equals(real_pairs)


def test_seed_changes_sampling_not_splits(real_artworks, real_pairs):
    other = mine_pairs(real_artworks, seed=7)
    assert not other.equals(real_pairs)
    split_of = lambda p: dict(  # noqa: E731
        pl.concat(
            [
                p.select(pl.col("artwork_id_a").alias("id"), "split"),
                p.select(pl.col("artwork_id_b").alias("id"), "split"),
            ]
        )
        .unique()
        .iter_rows()
    )
    first, second = split_of(real_pairs), split_of(other)
    common = first.keys() & second.keys()
    assert len(common) > 1000
    assert all(first[k] == second[k] for k in common)


# --------------------------------------------------------------------------------------
# splits and ratio
# --------------------------------------------------------------------------------------


def test_splits_are_disjoint_by_maker_and_near_the_fractions(real_pairs, real_artworks):
    stats = pair_stats(real_pairs)
    for split, target in PairRules().split_fractions.items():
        assert abs(stats["artwork_split_fractions"][split] - target) < 0.06
    placed = pl.concat(
        [
            real_pairs.select(pl.col("artwork_id_a").alias("artwork_id"), "split"),
            real_pairs.select(pl.col("artwork_id_b").alias("artwork_id"), "split"),
        ]
    ).unique()
    by_maker = (
        placed.join(artwork_makers(real_artworks), on="artwork_id")
        .group_by("maker")
        .agg(pl.col("split").n_unique())
    )
    assert by_maker.get_column("split").max() == 1
    # test pairs are never train pairs, and no test artwork appears in train
    test_ids = set(placed.filter(pl.col("split") == "test").get_column("artwork_id"))
    train_ids = set(placed.filter(pl.col("split") == "train").get_column("artwork_id"))
    assert not test_ids & train_ids


def test_co_makers_share_a_split():
    # A and B share a work; B and C share a work: all of A, B, C's works are one component
    rows = [
        {"artwork_id": "met:1", "artists": ["Maker A"]},
        {"artwork_id": "met:2", "artists": ["Maker A", "Maker B"]},
        {"artwork_id": "met:3", "artists": ["Maker B", "Maker C"]},
        {"artwork_id": "met:4", "artists": ["Maker C"]},
    ] + [
        {"artwork_id": f"met:{i}", "artists": [f"Maker {i}"], "tags": ["T"]} for i in range(10, 200)
    ]
    for seed in range(5):
        pairs = mine_pairs(works(rows), PairRules(split_seed=seed, max_tag_df_fraction=1.0))
        chain = (
            pairs.filter(pl.col("artwork_id_a").is_in(["met:1", "met:2", "met:3", "met:4"]))
            .get_column("split")
            .unique()
        )
        assert chain.len() == 1


@pytest.mark.parametrize("ratio, hard", [(1.0, 0.5), (0.5, 0.25), (2.0, 0.8)])
def test_negative_ratio(real_artworks, ratio, hard):
    rules = PairRules(negatives_per_positive=ratio, hard_fraction=hard)
    pairs = mine_pairs(real_artworks, rules)
    stats = pair_stats(pairs)
    assert stats["negatives_per_positive"] == pytest.approx(ratio, rel=0.02)
    for split in ("train", "val", "test"):
        assert stats["splits"][split]["negatives_per_positive"] == pytest.approx(ratio, rel=0.05)
    hard_share = stats["by_rule"]["hard_negative"] / stats["negatives"]
    assert hard_share == pytest.approx(hard, abs=0.05)
    assert dict((c[0], c[1]) for c in validate_pairs(pairs, real_artworks, rules))[
        "ratio_within_bounds"
    ]


# --------------------------------------------------------------------------------------
# stats, preview, validation
# --------------------------------------------------------------------------------------


def test_pair_stats_and_preview(real_pairs, real_artworks):
    stats = pair_stats(real_pairs)
    assert stats["pairs"] == real_pairs.height
    assert sum(stats["by_rule"].values()) == real_pairs.height
    assert sum(stats["by_split"].values()) == real_pairs.height
    assert stats["by_label"]["1"] == stats["positives"]
    assert sum(stats["split_fractions"].values()) == pytest.approx(1.0)
    ppa = stats["positives_per_artwork"]
    assert 1 <= ppa["min"] <= ppa["median"] <= ppa["max"]
    preview = preview_pairs(real_pairs, real_artworks, n=10)
    assert preview.height == 10
    assert set(preview.get_column("rule")) == set(POSITIVE_RULES) | set(NEGATIVE_RULES)
    assert preview.get_column("title_a").null_count() == 0
    assert {"artwork_id_a", "title_a", "artists_a", "artwork_id_b", "title_b", "rule"} <= set(
        preview.columns
    )
    assert preview.equals(preview_pairs(real_pairs, real_artworks, n=10))


def test_validation_catches_a_broken_pair_table(real_pairs, real_artworks):
    good = real_pairs.filter(pl.col("split") == "train").head(200)
    train_id = good.row(0, named=True)["artwork_id_a"]
    test_row = real_pairs.filter(pl.col("split") == "test").row(0, named=True)
    makers = artwork_makers(real_artworks)
    van_gogh = makers.filter(pl.col("maker") == "vincent van gogh").get_column("artwork_id").sort()
    assert van_gogh.len() >= 2
    broken = pl.concat(
        [
            good,
            pl.DataFrame(
                [
                    ("met:436535", "met:436535", 1, "same_artist", 1.0, "train"),  # self-pair
                    (
                        good.row(1)[1],
                        good.row(1)[0],
                        0,
                        "easy_negative",
                        1.0,
                        "train",
                    ),  # duplicate, reversed
                    ("met:999999999", train_id, 1, "same_artist", 1.0, "train"),  # unknown id
                    (
                        train_id,
                        test_row["artwork_id_b"],
                        1,
                        "shared_tags",
                        0.2,
                        "test",
                    ),  # artwork in two splits
                    ("met:1", "met:2", 3, "no_such_rule", -1.0, "holdout"),  # bad values
                    # one maker in two splits
                    (van_gogh[0], "met:999999990", 0, "easy_negative", 1.0, "val"),
                    (van_gogh[1], "met:999999991", 0, "easy_negative", 1.0, "test"),
                ],
                schema=PAIRS_SCHEMA,
                orient="row",
            ),
        ]
    )
    results = {
        name: (ok, details)
        for name, ok, details in validate_pairs(broken, real_artworks, PairRules())
    }
    for name in (
        "no_self_pairs",
        "canonical_order",
        "no_duplicate_pairs",
        "valid_values",
        "ends_exist",
        "split_disjoint_artworks",
        "split_disjoint_makers",
        "ratio_within_bounds",
    ):
        assert results[name][0] is False, name
    assert "both positive and negative" in results["no_duplicate_pairs"][1]
    # the mined table itself passes everything
    clean = {name: ok for name, ok, _ in validate_pairs(real_pairs, real_artworks, PairRules())}
    assert all(clean.values())


def test_validation_flags_a_maker_in_two_splits():
    frame = works(
        [
            {"artwork_id": "met:1", "artists": ["Claude Monet"]},
            {"artwork_id": "met:2", "artists": ["Monet, Claude"]},
            {"artwork_id": "met:3", "artists": ["Edgar Degas"]},
            {"artwork_id": "met:4", "artists": ["Edgar Degas"]},
        ]
    )
    pairs = pl.DataFrame(
        [
            ("met:1", "met:3", 0, "hard_negative", 0.7, "train"),
            ("met:2", "met:4", 0, "hard_negative", 0.7, "test"),
        ],
        schema=PAIRS_SCHEMA,
        orient="row",
    )
    results = {name: ok for name, ok, _ in validate_pairs(pairs, frame, PairRules())}
    assert results["split_disjoint_artworks"] is True
    assert results["split_disjoint_makers"] is False
