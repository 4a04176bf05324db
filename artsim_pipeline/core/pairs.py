"""Weak-label pair mining from shared metadata (pure polars, no Dagster).

:func:`mine_pairs` turns the unified ``artworks`` table into the ``weak_pairs`` table
(``artwork_id_a < artwork_id_b``, ``label`` 1 similar / 0 dissimilar, ``rule``, ``weight``,
``split``).  Positive rules:

``same_artist``
    both works share a maker after :func:`~artsim_pipeline.core.names.normalise_artist`
    (anonymous / unknown makers never match).
``cross_museum_artist``
    the same, but the two works come from different sources (Met and SMK); sampled
    separately so that a maker with 10,000 Met works and 3 SMK works still yields
    cross-museum pairs.
``same_culture_classification``
    same culture and classification and overlapping date ranges.
``shared_tags``
    a shared subject tag; the weight grows with the rarity of the shared tags
    (``sum(ln(N/df)) / ln(N)``, capped at 1), and tags held by more than
    ``max_tag_df_fraction`` of the works are ignored.

Negative rules: ``easy_negative`` (different department and classification, no shared maker,
dates at least ``easy_negative_min_year_gap`` years apart) and ``hard_negative`` (same
department or classification, no shared maker, not the same culture, and some evidence of a
difference: both makers known, or both cultures known).  They are drawn for the anchors of
the positives, ``negatives_per_positive`` per positive in every split, ``hard_fraction`` of
them hard; a shortfall of hard negatives (small splits, makerless departments) is made up
with easy ones so that the ratio holds.

How it scales (no all-pairs join anywhere): every rule is a set of groups (a maker, a
culture+classification, a tag, a department...).  Inside a group, members are put in a
seeded pseudo-random order (a hash of ``artwork_id``; for culture+classification, date
order, so that neighbours overlap) and each member is paired with the next ``K`` members,
``K = min(max_pairs_per_anchor // 2, max_pairs_per_group // size)``; when even ``K = 1``
would exceed the group cap, only ``max_pairs_per_group`` randomly chosen members anchor a
pair.  A group of ``s`` works thus yields at most ``min(s * K, max_pairs_per_group)`` pairs,
so the work is linear in the number of (work, group) memberships.  Partners are found by
position arithmetic and ``gather``, not by joins on the group keys.  Negatives are drawn the
same way: for each negative "slot" (an end of a positive pair), a seeded offset inside the
anchor's department or classification group (hard), or into the far half of its split in
date order (easy), retried up to ``negative_candidates`` times and filtered.

Determinism: the table is sorted by ``artwork_id`` first and every random choice is a seeded
hash of ``artwork_id`` (polars' hash, stable within a polars version), so the same input and
seed give the same output whatever the input row order.

Leakage-free splits: works are grouped into connected components of the work-maker graph
(two works sharing any maker are in one component), each component is keyed by its smallest
maker key, works without a maker by ``culture|classification`` (or their own id), and the key
is hashed with ``split_seed`` into train / val / test by the configured fractions.  Every
rule samples inside one split, so no pair crosses splits and no maker appears in two splits.
The split does not depend on the sampling ``seed``: re-mining with another seed never moves a
maker from test to train.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from artsim_pipeline.core.names import artist_keys

__all__ = [
    "PairRules",
    "POSITIVE_RULES",
    "NEGATIVE_RULES",
    "RULES",
    "SPLITS",
    "PAIRS_SCHEMA",
    "mine_pairs",
    "pair_stats",
    "preview_pairs",
    "validate_pairs",
    "artwork_makers",
    "empty_pairs",
]

POSITIVE_RULES: tuple[str, ...] = (
    "cross_museum_artist",
    "same_artist",
    "same_culture_classification",
    "shared_tags",
)
NEGATIVE_RULES: tuple[str, ...] = ("hard_negative", "easy_negative")
#: All rules, in priority order (used to break weight ties when two rules give one pair).
RULES: tuple[str, ...] = POSITIVE_RULES + NEGATIVE_RULES
SPLITS: tuple[str, ...] = ("train", "val", "test")

PAIRS_SCHEMA: dict[str, pl.DataType] = {
    "artwork_id_a": pl.String(),
    "artwork_id_b": pl.String(),
    "label": pl.Int8(),
    "rule": pl.String(),
    "weight": pl.Float32(),
    "split": pl.String(),
}

_IDX = pl.UInt32
#: rule -> code; the code is also the priority (lower wins ties), positives first.
_RULE_CODE: dict[str, int] = {rule: code for code, rule in enumerate(RULES)}
_TWO32 = float(1 << 32)


@dataclass(frozen=True)
class PairRules:
    """Rule weights, caps, negative ratio and split fractions for :func:`mine_pairs`.

    A rule whose weight is 0 is disabled.  Weights are the label confidence that a pair
    carries into training; when two rules produce the same pair the higher weight wins
    (ties by the order of :data:`RULES`), and a pair that is positive by any rule is never
    kept as a negative.
    """

    # positive rules
    same_artist_weight: float = 1.0
    cross_museum_artist_weight: float = 1.0
    same_culture_classification_weight: float = 0.6
    shared_tags_weight: float = 0.5
    # negative rules
    easy_negative_weight: float = 1.0
    hard_negative_weight: float = 0.7

    #: Each work anchors at most ``max_pairs_per_anchor // 2`` pairs per rule group (and is
    #: the partner of about as many), so it takes part in at most ``max_pairs_per_anchor``
    #: pairs per group.
    max_pairs_per_anchor: int = 6
    #: No rule group (a maker, a culture+classification, a tag) yields more pairs than this.
    max_pairs_per_group: int = 50_000
    #: Date ranges may miss each other by this many years and still "overlap".
    date_overlap_tolerance_years: int = 0
    #: Tags held by more than this fraction of the works are ignored (the cap is never
    #: below 2 works, so that tiny collections still pair).
    max_tag_df_fraction: float = 0.05
    #: Each work joins the groups of at most this many of its rarest eligible tags.
    max_tags_per_work: int = 3

    #: Negatives drawn per positive pair (per split), and the hard share of them.
    negatives_per_positive: float = 1.0
    hard_fraction: float = 0.5
    #: Easy negatives: the date ranges are at least this many years apart.
    easy_negative_min_year_gap: int = 200
    #: Easy negatives also need different classifications (not only departments).
    easy_negative_requires_different_classification: bool = True
    #: Candidate partners tried per negative slot before giving up on it.
    negative_candidates: int = 6
    #: ``validate_pairs`` accepts a negative:positive ratio within this relative tolerance.
    ratio_tolerance: float = 0.2

    train_fraction: float = 0.7
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    #: Seed of the split assignment (independent of the sampling seed of ``mine_pairs``).
    split_seed: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name.endswith("_weight") and (value < 0 or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite weight >= 0, got {value}")
        fractions = (self.train_fraction, self.val_fraction, self.test_fraction)
        if min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
        if self.max_pairs_per_anchor < 1 or self.max_pairs_per_group < 1:
            raise ValueError("max_pairs_per_anchor and max_pairs_per_group must be >= 1")
        if not 0.0 <= self.hard_fraction <= 1.0:
            raise ValueError(f"hard_fraction must be in [0, 1], got {self.hard_fraction}")
        if self.negatives_per_positive < 0:
            raise ValueError("negatives_per_positive must be >= 0")
        if not 0.0 < self.max_tag_df_fraction <= 1.0:
            raise ValueError("max_tag_df_fraction must be in (0, 1]")
        if self.negative_candidates < 1 or self.max_tags_per_work < 1:
            raise ValueError("negative_candidates and max_tags_per_work must be >= 1")

    def weight(self, rule: str) -> float:
        """The configured weight of ``rule``."""
        if rule not in RULES:
            raise KeyError(rule)
        return float(getattr(self, f"{rule}_weight"))

    def rule_weights(self) -> dict[str, float]:
        return {rule: self.weight(rule) for rule in RULES}

    @property
    def split_fractions(self) -> dict[str, float]:
        return dict(
            zip(SPLITS, (self.train_fraction, self.val_fraction, self.test_fraction), strict=True)
        )


def empty_pairs() -> pl.DataFrame:
    return pl.DataFrame(schema=PAIRS_SCHEMA)


# --------------------------------------------------------------------------------------
# preparation
# --------------------------------------------------------------------------------------

_EMPTY_PAIRS_SCHEMA = {"a": _IDX, "b": _IDX, "rule": pl.UInt8, "weight": pl.Float32}


def _seed(seed: int, salt: int) -> int:
    """A per-purpose hash seed derived from the user seed."""
    return ((int(seed) & 0xFFFFFFFF) * 1_000_003 + salt * 7919 + 17) & 0x7FFFFFFFFFFFFFFF


def _uniform(hash_expr: pl.Expr) -> pl.Expr:
    """A UInt64 hash -> float in [0, 1)."""
    return (hash_expr % pl.lit(1 << 32, dtype=pl.UInt64)).cast(pl.Float64) / _TWO32


def _clean_text(expr: pl.Expr) -> pl.Expr:
    cleaned = expr.cast(pl.String).str.strip_chars().str.to_lowercase()
    return pl.when(cleaned.str.len_bytes() > 0).then(cleaned)


def _col_or(frame: pl.DataFrame, name: str, default: pl.Expr) -> pl.Expr:
    return pl.col(name) if name in frame.columns else default


def _maker_long(works: pl.DataFrame) -> pl.DataFrame:
    """``(idx, mid, key)``: the normalised makers of each work, unique per work, in list
    order; ``mid`` is a dense id of ``key`` (in key order).

    Only the distinct name strings go through :func:`artist_keys` (a name may have two keys:
    "Rembrandt (Rembrandt van Rijn)" is "rembrandt" and "rembrandt van rijn")."""
    long = (
        works.select("idx", "artists")
        .explode("artists")
        .drop_nulls("artists")
        .with_row_index("pos")
    )
    names = long.get_column("artists").unique()
    lookup = pl.DataFrame(
        {"artists": names, "key": [list(artist_keys(n)) for n in names.to_list()]},
        schema={"artists": pl.String, "key": pl.List(pl.String)},
    ).explode("key").drop_nulls("key")
    lookup = lookup.with_columns((pl.col("key").rank("dense") - 1).cast(_IDX).alias("mid"))
    keys = lookup.select("mid", "key").unique("mid").sort("mid").get_column("key")
    long = (
        long.join(lookup.select("artists", "mid"), on="artists", how="inner")
        .select("pos", "idx", "mid")
        .sort("pos")
        .unique(subset=["idx", "mid"], keep="first", maintain_order=True)
    )
    return long.select("idx", "mid", keys.gather(long.get_column("mid")).alias("key"))


def artwork_makers(artworks: pl.DataFrame) -> pl.DataFrame:
    """``(artwork_id, maker)`` for every identifiable (normalised) maker of every work."""
    works = artworks.select(
        pl.col("artwork_id").cast(pl.String),
        pl.col("artists").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    ).with_row_index("idx")
    long = _maker_long(works)
    return long.join(works.select("idx", "artwork_id"), on="idx").select(
        "artwork_id", pl.col("key").alias("maker")
    )


def _prepare(artworks: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Works sorted by ``artwork_id`` with a dense ``idx``, cleaned fields, a seeded hash
    ``h``; and the ``(idx, mid, key)`` maker table (``mid``: dense maker id)."""
    if "artwork_id" not in artworks.columns:
        raise ValueError("artworks has no artwork_id column")
    empty_list = pl.lit([], dtype=pl.List(pl.String))
    null_str = pl.lit(None, dtype=pl.String)
    null_int = pl.lit(None, dtype=pl.Int32)
    f = artworks
    works = f.select(
        pl.col("artwork_id").cast(pl.String),
        _col_or(f, "source", null_str).cast(pl.String).alias("source"),
        _col_or(f, "artists", empty_list).fill_null(empty_list).alias("artists"),
        _col_or(f, "date_begin", null_int).cast(pl.Int32).alias("_b"),
        _col_or(f, "date_end", null_int).cast(pl.Int32).alias("_e"),
        _clean_text(_col_or(f, "department", null_str)).alias("department"),
        _clean_text(_col_or(f, "classification", null_str)).alias("classification"),
        _clean_text(_col_or(f, "culture", null_str)).alias("culture"),
        _col_or(f, "tags", empty_list).fill_null(empty_list).alias("tags"),
    )
    if works.get_column("artwork_id").null_count():
        raise ValueError("artworks has null artwork_id values")
    works = works.sort("artwork_id")
    if works.get_column("artwork_id").is_duplicated().any():
        dupes = works.filter(pl.col("artwork_id").is_duplicated()).get_column("artwork_id")
        raise ValueError(f"duplicate artwork_id values, e.g. {dupes.head(3).to_list()}")
    b = pl.coalesce("_b", "_e")
    e = pl.coalesce("_e", "_b")
    works = (
        works.with_row_index("idx")
        .with_columns(
            _clean_text(pl.col("source"))
            .fill_null(pl.col("artwork_id").str.split(":").list.first())
            .alias("source"),
            pl.min_horizontal(b, e).alias("begin"),
            pl.max_horizontal(b, e).alias("end"),
            pl.col("artwork_id").hash(_seed(seed, 1)).alias("h"),
        )
        .drop("_b", "_e")
    )

    makers = _maker_long(works)
    per_work = makers.group_by("idx").agg(pl.col("mid").sort().alias("makers"))
    works = (
        works.drop("artists")
        .join(per_work, on="idx", how="left")
        .sort("idx")
        .with_columns(pl.col("makers").fill_null(pl.lit([], dtype=pl.List(_IDX))))
    )
    return works, makers


def _components(n_works: int, makers: pl.DataFrame) -> np.ndarray:
    """Root (smallest work idx) of each work's connected component in the work-maker graph.

    Vectorised union-find: hook the larger root of every edge onto the smaller one, then
    compress paths by pointer jumping; a few rounds suffice."""
    u = makers.get_column("idx").to_numpy().astype(np.int64)
    v = makers.get_column("mid").to_numpy().astype(np.int64) + n_works
    n_makers = int(v.max()) - n_works + 1 if v.size else 0
    parent = np.arange(n_works + n_makers, dtype=np.int64)
    while u.size:
        pu, pv = parent[u], parent[v]
        if np.array_equal(pu, pv):
            break
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return parent[:n_works]


def _assign_splits(works: pl.DataFrame, makers: pl.DataFrame, rules: PairRules) -> pl.DataFrame:
    """Adds ``comp`` (component root, null without a maker), ``split`` and ``sc`` (0/1/2)."""
    root = pl.Series("comp", _components(works.height, makers), dtype=pl.Int64).cast(_IDX)
    has_maker = works.get_column("makers").list.len() > 0
    works = works.with_columns(pl.when(has_maker).then(root).alias("comp"))
    comp_key = (
        makers.with_columns(works.get_column("comp").gather(makers.get_column("idx")).alias("comp"))
        .group_by("comp")
        .agg(pl.col("key").min().alias("comp_key"))
    )
    fallback = (
        pl.when(pl.col("culture").is_not_null() & pl.col("classification").is_not_null())
        .then(pl.concat_str(pl.lit("cc:"), "culture", pl.lit("|"), "classification"))
        .otherwise(pl.concat_str(pl.lit("id:"), "artwork_id"))
    )
    works = (
        works.join(comp_key, on="comp", how="left")
        .sort("idx")
        .with_columns(
            pl.concat_str(pl.lit("maker:"), "comp_key").fill_null(fallback).alias("split_key")
        )
        .drop("comp_key")
    )
    u = _uniform(pl.col("split_key").hash(_seed(rules.split_seed, 2)))
    t, v = rules.train_fraction, rules.train_fraction + rules.val_fraction
    return works.with_columns(
        pl.when(u < t).then(0).when(u < v).then(1).otherwise(2).cast(pl.UInt8).alias("sc")
    ).with_columns(
        pl.col("sc")
        .replace_strict({0: "train", 1: "val", 2: "test"}, return_dtype=pl.String)
        .alias("split")
    )


def _encode(works: pl.DataFrame) -> pl.DataFrame:
    """Dense integer codes for the text fields the rules compare (``dep``, ``cls``, ``cul``,
    ``src``); equal text <=> equal code, null stays null."""
    return works.with_columns(
        pl.col("department").rank("dense").cast(_IDX).alias("dep"),
        pl.col("classification").rank("dense").cast(_IDX).alias("cls"),
        pl.col("culture").rank("dense").cast(_IDX).alias("cul"),
        pl.col("source").rank("dense").cast(_IDX).alias("src"),
    ).drop("department", "classification", "culture", "source", "split_key")


# --------------------------------------------------------------------------------------
# group sampling
# --------------------------------------------------------------------------------------


def _layout(members: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    """Members (``g`` group key, ``idx``, order columns) sorted by group then ``order``, with
    ``r`` (rank in the group), ``s`` (group size) and ``start`` (row of the group's first
    member), computed from run lengths (no hashing)."""
    m = members.sort(["g", *order, "idx"])
    if m.is_empty():
        return m.with_columns(
            pl.lit(0, dtype=pl.Int64).alias("r"),
            pl.lit(0, dtype=pl.Int64).alias("s"),
            pl.lit(0, dtype=pl.Int64).alias("start"),
        )
    g = m.get_column("g")
    run = g.rle_id()
    lens = g.rle().struct.field("len").cast(pl.Int64)
    starts = lens.cum_sum() - lens
    start = starts.gather(run)
    return m.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) - start).alias("r"),
        lens.gather(run).alias("s"),
        start.alias("start"),
    )


def _circular_pairs(
    m: pl.DataFrame, rules: PairRules, *, wrap: bool = True, anchor_rank: str = "r"
) -> pl.DataFrame:
    """Capped pairs ``(a, b)`` inside the groups of a :func:`_layout`: the member of rank
    ``r`` is paired with ranks ``r+1 .. r+K`` (mod size if ``wrap``), ``K = min(anchor cap
    // 2, group cap // size)``; only members with ``anchor_rank < group cap // K`` anchor
    pairs, so no group yields more than ``max_pairs_per_group``.  Singleton groups yield
    only self-pairs, which the caller drops."""
    if m.is_empty():
        return pl.DataFrame(schema={"a": _IDX, "b": _IDX})
    k_max = max(1, rules.max_pairs_per_anchor // 2)
    cap = pl.lit(rules.max_pairs_per_group, dtype=pl.Int64)
    reach = (pl.col("s") // 2) if wrap else (pl.col("s") - 1)
    k = pl.min_horizontal(pl.lit(k_max, dtype=pl.Int64), reach, cap // pl.col("s")).clip(
        lower_bound=1
    )
    anchors = (
        m.select(*dict.fromkeys(["idx", "r", "s", "start", anchor_rank]), k.alias("K"))
        .filter((pl.col("s") >= 2) & (pl.col(anchor_rank) < cap // pl.col("K")))
        .select(
            "idx", "r", "s", "start", pl.int_ranges(1, pl.col("K") + 1, dtype=pl.Int64).alias("k")
        )
        .explode("k")
    )
    partner = ((pl.col("r") + pl.col("k")) % pl.col("s")) if wrap else (pl.col("r") + pl.col("k"))
    anchors = anchors.with_columns(partner.alias("pr")).filter(pl.col("pr") < pl.col("s"))
    rows = (anchors.get_column("start") + anchors.get_column("pr")).cast(_IDX)
    return pl.DataFrame({"a": anchors.get_column("idx"), "b": m.get_column("idx").gather(rows)})


def _rule_frame(pairs: pl.DataFrame, rule: str, weight: float | pl.Expr) -> pl.DataFrame:
    """Canonical ``(a < b, rule code, weight)`` rows, self-pairs dropped."""
    w = weight if isinstance(weight, pl.Expr) else pl.lit(weight)
    return pairs.filter(pl.col("a") != pl.col("b")).select(
        pl.min_horizontal("a", "b").alias("a"),
        pl.max_horizontal("a", "b").alias("b"),
        pl.lit(_RULE_CODE[rule], dtype=pl.UInt8).alias("rule"),
        w.cast(pl.Float32).alias("weight"),
    )


def _pair_key(a: str = "a", b: str = "b") -> pl.Expr:
    return (
        pl.col(a).cast(pl.UInt64) * pl.lit(1 << 32, dtype=pl.UInt64) + pl.col(b).cast(pl.UInt64)
    ).alias("k")


def _strongest(pairs: pl.DataFrame) -> pl.DataFrame:
    """One row per (a, b), sorted by ``k``: the highest weight, ties by rule priority."""
    ranked = pairs.with_columns(_pair_key()).sort(
        ["k", "weight", "rule"], descending=[False, True, False]
    )
    return ranked.filter(pl.col("k").ne_missing(pl.col("k").shift(1)))


# --------------------------------------------------------------------------------------
# positive rules
# --------------------------------------------------------------------------------------


def _empty_rule_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=_EMPTY_PAIRS_SCHEMA)


def _same_artist(
    works: pl.DataFrame, makers: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame:
    h = works.get_column("h").gather(makers.get_column("idx"))
    members = makers.select(pl.col("mid").cast(pl.UInt64).alias("g"), "idx").with_columns(
        h.hash(_seed(seed, 10)).alias("o")
    )
    pairs = _circular_pairs(_layout(members, ["o"]), rules)
    return _rule_frame(pairs, "same_artist", rules.same_artist_weight)


def _cross_museum_artist(
    works: pl.DataFrame, makers: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame:
    ids = makers.get_column("idx")
    members = (
        makers.select("mid", "idx")
        .with_columns(
            works.get_column("src").gather(ids).alias("src"),
            works.get_column("h").gather(ids).hash(_seed(seed, 11)).alias("o"),
        )
        .drop_nulls("src")
        .filter(pl.col("src").n_unique().over("mid") >= 2)
    )
    if members.is_empty():
        return _empty_rule_frame()
    n_src = int(works.get_column("src").max() or 0) + 1
    m = _layout(
        members.with_columns((pl.col("mid").cast(pl.UInt64) * n_src + pl.col("src")).alias("g")),
        ["o"],
    )
    sides = m.group_by("mid", "src").agg(
        pl.len().cast(pl.Int64).alias("n"), pl.col("start").first()
    )
    sp = sides.join(sides, on="mid", suffix="_o").filter(pl.col("src") < pl.col("src_o"))
    x_first = pl.col("n") <= pl.col("n_o")
    sp = sp.select(
        "mid",
        pl.when(x_first).then("src").otherwise("src_o").alias("src"),
        pl.when(x_first).then("n").otherwise("n_o").alias("n_anchor"),
        pl.when(x_first).then("n_o").otherwise("n").alias("n_other"),
        pl.when(x_first).then("start_o").otherwise("start").alias("start_other"),
    )
    k_max = max(1, rules.max_pairs_per_anchor // 2)
    cap = pl.lit(rules.max_pairs_per_group, dtype=pl.Int64)
    sp = sp.with_columns(
        pl.min_horizontal(
            pl.lit(k_max, dtype=pl.Int64), pl.col("n_other"), cap // pl.col("n_anchor")
        )
        .clip(lower_bound=1)
        .alias("K")
    )
    anchors = (
        m.join(sp, on=["mid", "src"])
        .filter(pl.col("r") < cap // pl.col("K"))
        .select(
            "idx",
            "r",
            "K",
            "n_other",
            "start_other",
            pl.int_ranges(0, pl.col("K"), dtype=pl.Int64).alias("k"),
        )
        .explode("k")
    )
    rows = (
        anchors.get_column("start_other")
        + (anchors.get_column("r") * anchors.get_column("K") + anchors.get_column("k"))
        % anchors.get_column("n_other")
    ).cast(_IDX)
    pairs = pl.DataFrame({"a": anchors.get_column("idx"), "b": m.get_column("idx").gather(rows)})
    return _rule_frame(pairs, "cross_museum_artist", rules.cross_museum_artist_weight)


def _same_culture_classification(works: pl.DataFrame, rules: PairRules, seed: int) -> pl.DataFrame:
    n_cls = int(works.get_column("cls").max() or 0) + 1
    members = works.filter(
        pl.col("cul").is_not_null() & pl.col("cls").is_not_null() & pl.col("begin").is_not_null()
    ).select(
        ((pl.col("cul").cast(pl.UInt64) * n_cls + pl.col("cls")) * 3 + pl.col("sc")).alias("g"),
        "idx",
        "begin",
        "end",
        pl.col("h").hash(_seed(seed, 12)).alias("o"),
    )
    # partners: the next works in date order (they overlap most often); anchors: random
    m = _layout(members, ["begin", "end", "o"])
    m = (
        m.with_row_index("row")
        .sort("g", "o", "idx")
        .with_columns((pl.int_range(pl.len(), dtype=pl.Int64) - pl.col("start")).alias("ar"))
        .sort("row")
    )
    pairs = _circular_pairs(m, rules, wrap=False, anchor_rank="ar")
    tol = rules.date_overlap_tolerance_years
    b, e = works.get_column("begin"), works.get_column("end")
    ia, ib = pairs.get_column("a"), pairs.get_column("b")
    overlap = (b.gather(ib) <= e.gather(ia) + tol) & (b.gather(ia) <= e.gather(ib) + tol)
    return _rule_frame(
        pairs.filter(overlap),
        "same_culture_classification",
        rules.same_culture_classification_weight,
    )


def _shared_tags(works: pl.DataFrame, rules: PairRules, seed: int) -> pl.DataFrame:
    n = works.height
    long = (
        works.select("idx", "tags")
        .explode("tags")
        .select("idx", _clean_text(pl.col("tags")).alias("tag"))
        .drop_nulls("tag")
    )
    if n < 3 or long.is_empty():
        return _empty_rule_frame()
    # tag codes in tag order, then one row per (work, tag)
    vocabulary = long.select(pl.col("tag").unique().sort()).with_row_index("t")
    n_tags = vocabulary.height
    long = long.join(vocabulary, on="tag").select("idx", "t").unique()
    df_cap = max(2, int(rules.max_tag_df_fraction * n))
    counts = long.group_by("t").agg(pl.len().alias("df"))
    document_frequency = np.zeros(n_tags, dtype=np.int64)
    document_frequency[counts.get_column("t").to_numpy()] = counts.get_column("df").to_numpy()
    df_all = pl.Series("df", document_frequency)
    long = long.with_columns(df_all.gather(long.get_column("t")).alias("df")).filter(
        (pl.col("df") >= 2) & (pl.col("df") <= df_cap)
    )
    if long.is_empty():
        return _empty_rule_frame()
    idf = (float(n) / df_all.cast(pl.Float64)).log()
    long = long.sort("idx", "df", "t")
    # each work joins the groups of its max_tags_per_work rarest tags
    run = long.get_column("idx").rle_id()
    lens = long.get_column("idx").rle().struct.field("len")
    first = (lens.cum_sum() - lens).gather(run)
    top = long.filter((pl.int_range(pl.len(), dtype=pl.Int64) - first) < rules.max_tags_per_work)
    ids = top.get_column("idx")
    members = top.select(
        (pl.col("t").cast(pl.UInt64) * 3 + works.get_column("sc").gather(ids)).alias("g"),
        "idx",
        works.get_column("h").gather(ids).hash(_seed(seed, 13)).alias("o"),
    )
    pairs = _rule_frame(_circular_pairs(_layout(members, ["o"]), rules), "shared_tags", 1.0)
    pairs = pairs.with_columns(_pair_key()).unique(subset=["k"], maintain_order=True)
    if pairs.is_empty():
        return _empty_rule_frame()
    # weight: the rarity of every eligible tag the two works share
    tags_of = (
        works.select("idx")
        .join(long.group_by("idx").agg(pl.col("t")), on="idx", how="left")
        .sort("idx")
        .get_column("t")
    )
    shared = (
        pl.DataFrame(
            {
                "p": pl.int_range(pairs.height, dtype=_IDX, eager=True),
                "ta": tags_of.gather(pairs.get_column("a")),
                "tb": tags_of.gather(pairs.get_column("b")),
            }
        )
        .select("p", pl.col("ta").list.set_intersection("tb").alias("t"))
        .explode("t")
        .drop_nulls("t")
    )
    shared = (
        shared.with_columns(idf.gather(shared.get_column("t")).alias("idf"))
        .group_by("p")
        .agg(pl.col("idf").sum())
    )
    total = pl.Series(np.zeros(pairs.height)).scatter(
        shared.get_column("p"), shared.get_column("idf")
    )
    weight = (rules.shared_tags_weight * (total / math.log(n)).clip(0.0, 1.0)).cast(pl.Float32)
    return pairs.with_columns(weight.alias("weight")).filter(pl.col("weight") > 0).drop("k")


# --------------------------------------------------------------------------------------
# negatives
# --------------------------------------------------------------------------------------


def _shares_maker(works: pl.DataFrame, a: pl.Series, b: pl.Series) -> pl.Series:
    """True where works ``a`` and ``b`` share a maker.  Only pairs in one component of the
    work-maker graph can; only those go through the list intersection."""
    comp = works.get_column("comp")
    maybe = (comp.gather(a) == comp.gather(b)).fill_null(False)
    out = pl.Series(np.zeros(a.len(), dtype=bool))
    rows = maybe.arg_true()
    if rows.len():
        makers = works.get_column("makers")
        ma = makers.gather(a.gather(rows))
        mb = makers.gather(b.gather(rows))
        hit = (
            pl.DataFrame({"ma": ma, "mb": mb})
            .select(pl.col("ma").list.set_intersection("mb").list.len() > 0)
            .to_series()
        )
        out = out.scatter(rows, hit)
    return out


def _group_positions(
    works: pl.DataFrame, group: pl.Expr, salt: int, seed: int, order: list[pl.Expr] | None = None
) -> tuple[pl.DataFrame, pl.Series]:
    """Per-work ``(r, s, start)`` (indexed by ``idx``; ``s = 0`` for works outside every
    group) in a seeded layout of ``group``, and the layout's ``idx`` column to gather
    partners from."""
    order = order or []
    cols = [e.meta.output_name() for e in order] + ["o"]
    members = works.select(
        group.alias("g"), "idx", *order, pl.col("h").hash(_seed(seed, salt)).alias("o")
    ).drop_nulls(["g", *cols])
    m = _layout(members, cols)
    at = m.get_column("idx").to_numpy()
    arrays = {}
    for name in ("r", "s", "start"):
        values = np.zeros(works.height, dtype=np.int64)
        values[at] = m.get_column(name).to_numpy()
        arrays[name] = values
    return pl.DataFrame(arrays), m.get_column("idx")


def _negatives(
    works: pl.DataFrame, positives: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame:
    ratio = rules.negatives_per_positive
    hard_w, easy_w = rules.hard_negative_weight, rules.easy_negative_weight
    if positives.is_empty() or ratio <= 0 or (hard_w <= 0 and easy_w <= 0):
        return _empty_rule_frame()
    hard_share = rules.hard_fraction if hard_w > 0 else 0.0
    if easy_w <= 0:
        hard_share = 1.0
    sc = works.get_column("sc")
    # positives arrive sorted by (a, b) from _strongest, which fixes the slot numbering
    pos = positives.select("a", "b").with_columns(sc.gather(positives.get_column("a")).alias("sc"))
    targets = (
        pos.group_by("sc")
        .agg(pl.len().cast(pl.Int64).alias("P"))
        .with_columns((pl.col("P") * ratio).round().cast(pl.Int64).alias("T"))
        .with_columns(
            (pl.col("T").cast(pl.Float64) * hard_share).round().cast(pl.Int64).alias("T_hard")
        )
        .with_columns((pl.col("T") - pl.col("T_hard")).alias("T_easy"))
    )
    # Slots: each positive offers j anchors (its ends, alternately), each with a seeded
    # uniform u.  Slots are handed out in u order, per split: first to the hard pass, then
    # to the easy pass (sized for the easy target plus the hard pass's shortfall).  A pass
    # that falls short takes further slots, sized by the yield it has seen, up to 3 rounds.
    j = max(2, math.ceil(ratio * 2))
    flip = (pl.col("key") // 7) % 2 == 1
    slots = (
        pos.with_row_index("pid")
        .with_columns(pl.int_ranges(0, j, dtype=pl.UInt64).alias("j"))
        .explode("j")
        .with_columns((pl.col("pid").cast(pl.UInt64) * j + pl.col("j")).alias("slot"))
        .with_columns(pl.col("slot").hash(_seed(seed, 20)).alias("key"))
        .select(
            "slot",
            "key",
            "sc",
            ((pl.col("key") // (1 << 11)).cast(pl.Float64) / float(1 << 53)).alias(
                "u"
            ),  # monotone in key
            pl.when(flip).then("b").otherwise("a").alias("x"),
            pl.when(flip).then("a").otherwise("b").alias("y"),
        )
    )
    # rounds take u ranges: slices of the u order (a stable sort, so deterministic)
    by_u = slots.select(pl.arg_sort_by("key", maintain_order=True)).to_series()
    slot_u = slots.get_column("u").gather(by_u)
    per_split = {row["sc"]: row for row in targets.iter_rows(named=True)}
    capacity = {c: float(row["P"] * j) for c, row in per_split.items()}
    next_u = {c: 0.0 for c in per_split}

    def per_sc(values: dict[int, float]) -> pl.Expr:
        array = np.zeros(3)
        for code, value in values.items():
            array[code] = value
        return pl.lit(pl.Series(array)).gather(pl.col("sc"))

    # every accepted negative is new: not a positive, not found before (small splits
    # revisit the same pairs), so the counts that drive further rounds are distinct pairs
    accepted = positives.select(_pair_key()).get_column("k")

    def run(kind, target: dict[int, int]) -> tuple[list[pl.DataFrame], dict[int, int]]:
        nonlocal accepted
        out: list[pl.DataFrame] = []
        got = {c: 0 for c in target}
        used = {c: 0 for c in target}
        for _ in range(4):
            short = {
                c: target[c] - got[c] for c in target if target[c] > got[c] and next_u[c] < 1.0
            }
            if not short:
                break
            lo = dict(next_u)
            for c, missing in short.items():
                rate = max(0.05, got[c] / used[c]) if used[c] else 1.0
                next_u[c] = min(1.0, next_u[c] + (missing / rate * 1.15 + 16) / capacity[c])
            first = int(slot_u.search_sorted(min(lo[c] for c in short), side="left"))
            last = int(slot_u.search_sorted(max(next_u[c] for c in short), side="left"))
            rows = by_u.slice(
                first, last - first
            )  # in u order: rounds list slots in a seeded order
            chosen = slots.select(pl.all().gather(rows)).filter(
                pl.col("sc").is_in(list(short))
                & (pl.col("u") >= per_sc(lo))
                & (pl.col("u") < per_sc(next_u))
            )
            if chosen.is_empty():
                break
            for c, n in chosen.group_by("sc").len().iter_rows():
                used[c] += n
            need = pl.DataFrame(
                {"sc": list(short), "T": list(short.values())},
                schema={"sc": pl.UInt8, "T": pl.Int64},
            )
            result = (
                kind(works, chosen, need, rules, seed)
                .select(
                    pl.min_horizontal("a", "b").alias("a"),
                    pl.max_horizontal("a", "b").alias("b"),
                    "key",
                    "sc",
                    "rule",
                )
                .with_columns(_pair_key())
                .filter(pl.col("k").is_first_distinct())  # rows come in a deterministic order
                .filter(~pl.col("k").is_in(accepted.implode()))
            )
            accepted = pl.concat([accepted, result.get_column("k")])
            out.append(result)
            for c, n in result.group_by("sc").len().iter_rows():
                got[c] += n
        return out, got

    found: list[pl.DataFrame] = []
    got_hard: dict[int, int] = {}
    if hard_share > 0:
        hard_found, got_hard = run(
            _hard_negatives, {c: row["T_hard"] for c, row in per_split.items()}
        )
        found += hard_found
    if easy_w > 0:
        easy_target = {
            c: row["T"] - min(got_hard.get(c, 0), row["T_hard"]) for c, row in per_split.items()
        }
        easy_found, _ = run(_easy_negatives, easy_target)
        found += easy_found
    found = [f for f in found if f.height]
    if not found:
        return _empty_rule_frame()
    hard_code = _RULE_CODE["hard_negative"]
    # candidates are listed round by round, each round in seeded (u) order: truncating by
    # position keeps a random subset and drops the spare of the last rounds first
    cand = pl.concat(found).with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).over("sc", "rule").alias("n")
    )
    # per split: T_hard hard and T_easy easy negatives; a shortfall of one kind is made up
    # with the other where it has spare candidates, so the ratio holds
    avail = cand.group_by("sc").agg(
        (pl.col("rule") == hard_code).sum().cast(pl.Int64).alias("avail_hard"),
        (pl.col("rule") != hard_code).sum().cast(pl.Int64).alias("avail_easy"),
    )
    quota = (
        targets.join(avail, on="sc")
        .with_columns(pl.min_horizontal("avail_hard", "T_hard").alias("n_hard"))
        .with_columns(
            pl.min_horizontal("avail_easy", pl.col("T") - pl.col("n_hard")).alias("n_easy")
        )
        .with_columns(
            pl.min_horizontal("avail_hard", pl.col("T") - pl.col("n_easy")).alias("n_hard")
        )
        .select("sc", "n_hard", "n_easy")
    )
    cand = cand.join(quota, on="sc").filter(
        pl.when(pl.col("rule") == hard_code)
        .then(pl.col("n") < pl.col("n_hard"))
        .otherwise(pl.col("n") < pl.col("n_easy"))
    )
    weight = (
        pl.when(pl.col("rule") == _RULE_CODE["hard_negative"])
        .then(pl.lit(hard_w))
        .otherwise(pl.lit(easy_w))
    )
    return cand.select("a", "b", "rule", weight.cast(pl.Float32).alias("weight"))


def _retry(
    slots: pl.DataFrame,
    targets: pl.DataFrame,
    attempts: int,
    propose,
    check,
) -> pl.DataFrame:
    """Up to ``attempts`` rounds: propose one partner ``b`` for every open slot, keep the
    valid ones, retry the rest; stop early for a split once it has 5 % spare."""
    pending = slots.select("slot", "key", "sc", "a")
    found: list[pl.DataFrame] = []
    need = targets.with_columns(
        (pl.col("T").cast(pl.Float64) * 1.05 + 8).ceil().cast(pl.Int64).alias("need")
    )
    have = pl.DataFrame({"sc": pl.Series([], dtype=pl.UInt8), "got": pl.Series([], dtype=pl.Int64)})
    for t in range(attempts):
        if pending.is_empty():
            break
        cand = propose(pending, t)
        if cand.height:
            ok = cand.filter(check(cand))
            found.append(ok)
            pending = pending.join(ok.select("slot"), on="slot", how="anti", maintain_order="left")
            have = pl.concat(found).group_by("sc").agg(pl.len().cast(pl.Int64).alias("got"))
        done = (
            need.join(have, on="sc", how="left")
            .filter(pl.col("got").fill_null(0) >= pl.col("need"))
            .get_column("sc")
        )
        if done.len():
            pending = pending.filter(~pl.col("sc").is_in(done.to_list()))
    if not found:
        return pl.DataFrame(
            schema={"slot": pl.UInt64, "key": pl.UInt64, "sc": pl.UInt8, "a": _IDX, "b": _IDX}
        )
    return pl.concat(found)


def _propose(
    pending: pl.DataFrame, pos: pl.DataFrame, order: pl.Series, offset: pl.Expr
) -> pl.DataFrame:
    """Partner ``b`` = the member at ``(r + offset) mod s`` of the anchor's group."""
    a = pending.get_column("a")
    c = pending.with_columns(
        pos.get_column("r").gather(a).alias("r"),
        pos.get_column("s").gather(a).alias("s"),
        pos.get_column("start").gather(a).alias("start"),
    ).filter(pl.col("s") >= 2)
    c = c.with_columns(
        ((pl.col("r") + offset) % pl.col("s") + pl.col("start")).cast(_IDX).alias("row")
    )
    return c.with_columns(order.gather(c.get_column("row")).alias("b")).select(
        "slot", "key", "sc", "a", "b"
    )


def _hard_negatives(
    works: pl.DataFrame, slots: pl.DataFrame, targets: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame:
    """Same department (even attempts) or classification (odd attempts) and split; no shared
    maker, not the same culture, and evidence of a difference: both makers known or both
    cultures known."""
    makers_n = works.get_column("makers").list.len()
    cul = works.get_column("cul")
    informative = (makers_n > 0) | cul.is_not_null()
    slots = slots.with_columns(
        pl.when(informative.gather(slots.get_column("x"))).then("x").otherwise("y").alias("a")
    )
    layouts = [
        _group_positions(works, pl.col(c).cast(pl.UInt64) * 3 + pl.col("sc"), 30 + i, seed)
        for i, c in enumerate(("dep", "cls"))
    ]
    attempts = rules.negative_candidates

    def propose(pending: pl.DataFrame, t: int) -> pl.DataFrame:
        pos, order = layouts[t % 2]
        rnd = (pl.col("slot") * attempts + t).hash(_seed(seed, 32))
        offset = 1 + (rnd % (pl.col("s") - 1).cast(pl.UInt64)).cast(pl.Int64)
        return _propose(pending, pos, order, offset)

    def check(c: pl.DataFrame) -> pl.Series:
        a, b = c.get_column("a"), c.get_column("b")
        ca, cb = cul.gather(a), cul.gather(b)
        both_makers = (makers_n.gather(a) > 0) & (makers_n.gather(b) > 0)
        both_cultures = ca.is_not_null() & cb.is_not_null()
        same_culture = (ca == cb).fill_null(False)
        return (
            (a != b) & ~same_culture & (both_makers | both_cultures) & ~_shares_maker(works, a, b)
        )

    return _retry(slots, targets, attempts, propose, check).with_columns(
        pl.lit(_RULE_CODE["hard_negative"], dtype=pl.UInt8).alias("rule")
    )


def _easy_negatives(
    works: pl.DataFrame, slots: pl.DataFrame, targets: pl.DataFrame, rules: PairRules, seed: int
) -> pl.DataFrame:
    """Different department (and classification), no shared maker, dates far apart: the
    partner comes from the far half of the anchor's split in date order."""
    begin, end = works.get_column("begin"), works.get_column("end")
    dep, cls = works.get_column("dep"), works.get_column("cls")
    slots = slots.with_columns(
        pl.when(begin.gather(slots.get_column("x")).is_not_null())
        .then("x")
        .otherwise("y")
        .alias("a")
    )
    pos, order = _group_positions(
        works,
        pl.col("sc").cast(pl.UInt64),
        40,
        seed,
        [((pl.col("begin") + pl.col("end")) / 2).alias("mid_year")],
    )
    attempts = rules.negative_candidates
    gap = rules.easy_negative_min_year_gap

    def propose(pending: pl.DataFrame, t: int) -> pl.DataFrame:
        rnd = (pl.col("slot") * attempts + t).hash(_seed(seed, 41))
        half = (pl.col("s") // 2).clip(lower_bound=1).cast(pl.UInt64)
        offset = pl.col("s") // 4 + (rnd % half).cast(pl.Int64)
        return _propose(pending, pos, order, offset)

    def check(c: pl.DataFrame) -> pl.Series:
        a, b = c.get_column("a"), c.get_column("b")
        far = ((begin.gather(a) - end.gather(b)) >= gap) | (
            (begin.gather(b) - end.gather(a)) >= gap
        )
        da, db = dep.gather(a), dep.gather(b)
        ok = far.fill_null(False) & (da != db).fill_null(False)
        if rules.easy_negative_requires_different_classification:
            ok = ok & ~(cls.gather(a) == cls.gather(b)).fill_null(False)
        return (a != b) & ok & ~_shares_maker(works, a, b)

    return _retry(slots, targets, attempts, propose, check).with_columns(
        pl.lit(_RULE_CODE["easy_negative"], dtype=pl.UInt8).alias("rule")
    )


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def mine_pairs(
    artworks: pl.DataFrame, rules: PairRules = PairRules(), seed: int = 0
) -> pl.DataFrame:
    """Mine weak-label pairs from ``artworks`` (the unified schema).

    Returns :data:`PAIRS_SCHEMA`: one row per unordered pair, ``artwork_id_a < artwork_id_b``,
    sorted by the two ids.  Deterministic in (content of ``artworks``, ``rules``, ``seed``),
    whatever the row order of ``artworks``.
    """
    if artworks.is_empty():
        return empty_pairs()
    works, makers = _prepare(artworks, seed)
    works = _encode(_assign_splits(works, makers, rules))

    found = []
    if rules.same_artist_weight > 0:
        found.append(_same_artist(works, makers, rules, seed))
    if rules.cross_museum_artist_weight > 0:
        found.append(_cross_museum_artist(works, makers, rules, seed))
    if rules.same_culture_classification_weight > 0:
        found.append(_same_culture_classification(works, rules, seed))
    if rules.shared_tags_weight > 0:
        found.append(_shared_tags(works, rules, seed))
    found = [f.select(*_EMPTY_PAIRS_SCHEMA) for f in found if f.height]
    if not found:
        return empty_pairs()
    positives = _strongest(pl.concat(found)).drop("k")
    del found
    negatives = _negatives(works, positives, rules, seed)
    pairs = pl.concat([positives, negatives]).with_columns(_pair_key()).sort("k")
    del positives, negatives

    a, b, rule = pairs.get_column("a"), pairs.get_column("b"), pairs.get_column("rule")
    names = pl.Series(RULES, dtype=pl.String)
    return pl.DataFrame(
        {
            "artwork_id_a": works.get_column("artwork_id").gather(a),
            "artwork_id_b": works.get_column("artwork_id").gather(b),
            "label": (rule < len(POSITIVE_RULES)).cast(pl.Int8),
            "rule": names.gather(rule),
            "weight": pairs.get_column("weight"),
            "split": works.get_column("split").gather(a),
        },
        schema=PAIRS_SCHEMA,
    )


def pair_stats(pairs: pl.DataFrame) -> dict:
    """Summary of a pair table (plain Python values, ready for asset metadata).

    Counts by rule, label, split and split x label; positives per artwork (either end)
    min / median / max; negatives per positive overall and per split; split fractions of the
    pairs and of the distinct artworks that appear in them.
    """
    n = pairs.height

    def counts(*cols: str) -> dict:
        if n == 0:
            return {}
        frame = pairs.group_by(*cols).len().sort(*cols)
        if len(cols) == 1:
            return {str(k): int(v) for k, v in frame.iter_rows()}
        return {"/".join(str(x) for x in row[:-1]): int(row[-1]) for row in frame.iter_rows()}

    pos = pairs.filter(pl.col("label") == 1)
    per_anchor = (
        pl.concat(
            [
                pos.select(pl.col("artwork_id_a").alias("id")),
                pos.select(pl.col("artwork_id_b").alias("id")),
            ]
        )
        .group_by("id")
        .len()
        .get_column("len")
    )
    by_label = pairs.group_by("label").len() if n else pl.DataFrame({"label": [], "len": []})
    n_pos = int(pos.height)
    n_neg = n - n_pos
    split_ids = pl.concat(
        [
            pairs.select(pl.col("artwork_id_a").alias("id"), "split"),
            pairs.select(pl.col("artwork_id_b").alias("id"), "split"),
        ]
    ).unique()
    n_ids = split_ids.get_column("id").n_unique() if n else 0
    by_split = {}
    for split in SPLITS:
        sp = pairs.filter(pl.col("split") == split)
        sp_pos = int((sp.get_column("label") == 1).sum()) if sp.height else 0
        by_split[split] = {
            "pairs": int(sp.height),
            "positives": sp_pos,
            "negatives": int(sp.height - sp_pos),
            "pair_fraction": float(sp.height / n) if n else 0.0,
            "artwork_fraction": float(split_ids.filter(pl.col("split") == split).height / n_ids)
            if n_ids
            else 0.0,
            "negatives_per_positive": float((sp.height - sp_pos) / sp_pos) if sp_pos else 0.0,
        }
    return {
        "pairs": int(n),
        "positives": n_pos,
        "negatives": int(n_neg),
        "negatives_per_positive": float(n_neg / n_pos) if n_pos else 0.0,
        "by_rule": counts("rule"),
        "by_label": {str(k): int(v) for k, v in by_label.sort("label").iter_rows()} if n else {},
        "by_split": counts("split"),
        "by_split_label": counts("split", "label"),
        "split_fractions": {s: by_split[s]["pair_fraction"] for s in SPLITS},
        "artwork_split_fractions": {s: by_split[s]["artwork_fraction"] for s in SPLITS},
        "splits": by_split,
        "artworks": int(n_ids),
        "positives_per_artwork": {
            "min": int(per_anchor.min()) if per_anchor.len() else 0,
            "median": float(per_anchor.median()) if per_anchor.len() else 0.0,
            "max": int(per_anchor.max()) if per_anchor.len() else 0,
        },
        "mean_weight_by_rule": (
            {
                str(k): round(float(v), 4)
                for k, v in pairs.group_by("rule")
                .agg(pl.col("weight").mean())
                .sort("rule")
                .iter_rows()
            }
            if n
            else {}
        ),
    }


def preview_pairs(pairs: pl.DataFrame, artworks: pl.DataFrame, n: int = 10) -> pl.DataFrame:
    """Up to ``n`` example pairs, spread over the rules (round robin, deterministic), with the
    titles and makers of both works: for the Dagster UI."""
    schema = {
        "rule": pl.String,
        "label": pl.Int8,
        "weight": pl.Float32,
        "split": pl.String,
        "artwork_id_a": pl.String,
        "title_a": pl.String,
        "artists_a": pl.String,
        "artwork_id_b": pl.String,
        "title_b": pl.String,
        "artists_b": pl.String,
    }
    if pairs.is_empty() or n <= 0:
        return pl.DataFrame(schema=schema)
    priority = {r: i for i, r in enumerate(RULES)}
    picked = (
        pairs.with_columns(
            pl.concat_str("artwork_id_a", pl.lit("|"), "artwork_id_b").hash(7).alias("_h"),
            pl.col("rule")
            .replace_strict(priority, default=len(RULES), return_dtype=pl.Int32)
            .alias("_p"),
        )
        .with_columns(pl.col("_h").rank("ordinal").over("rule").alias("_r"))
        .filter(pl.col("_r") <= n)
        .sort("_r", "_p")
        .head(n)
    )
    info = artworks.select(
        pl.col("artwork_id").cast(pl.String),
        pl.col("title").cast(pl.String)
        if "title" in artworks.columns
        else pl.lit(None, dtype=pl.String).alias("title"),
        (
            pl.col("artists").fill_null(pl.lit([], dtype=pl.List(pl.String))).list.join("; ")
            if "artists" in artworks.columns
            else pl.lit(None, dtype=pl.String)
        ).alias("artists"),
    )
    out = picked.join(
        info.rename({"artwork_id": "artwork_id_a", "title": "title_a", "artists": "artists_a"}),
        on="artwork_id_a",
        how="left",
        maintain_order="left",
    ).join(
        info.rename({"artwork_id": "artwork_id_b", "title": "title_b", "artists": "artists_b"}),
        on="artwork_id_b",
        how="left",
        maintain_order="left",
    )
    return out.select(list(schema)).cast(schema)


def validate_pairs(
    pairs: pl.DataFrame, artworks: pl.DataFrame, rules: PairRules = PairRules()
) -> list[tuple[str, bool, str]]:
    """Checks on a pair table: ``[(name, passed, details), ...]``.

    ``columns``; ``no_self_pairs``; ``canonical_order`` (``artwork_id_a < artwork_id_b``);
    ``no_duplicate_pairs`` (one row per unordered pair, whatever the label, so never the same
    pair as both positive and negative); ``valid_values`` (label 0/1 matching the rule, known
    rule and split names, finite weights > 0); ``ends_exist`` (both ends are artworks);
    ``split_disjoint_artworks`` and ``split_disjoint_makers`` (no artwork, and no normalised
    maker, in two splits); ``ratio_within_bounds`` (negatives per positive within
    ``ratio_tolerance`` of ``negatives_per_positive``, overall and in every split).
    """
    results: list[tuple[str, bool, str]] = []

    def report(name: str, failures: int, failed: str, passed: str) -> None:
        results.append((name, failures == 0, failed if failures else passed))

    missing = [c for c in PAIRS_SCHEMA if c not in pairs.columns]
    report("columns", len(missing), f"missing columns: {missing}", "all contract columns present")
    if missing:
        return results

    def sample(frame: pl.DataFrame, *columns: str) -> list:
        return frame.select(columns).head(3).rows() if columns else frame.head(3).rows()

    a, b = pl.col("artwork_id_a"), pl.col("artwork_id_b")
    self_pairs = pairs.filter(a == b)
    report(
        "no_self_pairs",
        self_pairs.height,
        f"{self_pairs.height} self-pairs, e.g. {sample(self_pairs, 'artwork_id_a')}",
        "none",
    )
    reversed_ = pairs.filter(a > b)
    report(
        "canonical_order",
        reversed_.height,
        f"{reversed_.height} pairs with artwork_id_a > artwork_id_b",
        "artwork_id_a < artwork_id_b everywhere",
    )
    dup = (
        pairs.select(
            pl.min_horizontal(a, b).alias("x"), pl.max_horizontal(a, b).alias("y"), "label"
        )
        .group_by("x", "y")
        .agg(pl.len().alias("n"), pl.col("label").n_unique().alias("labels"))
        .filter(pl.col("n") > 1)
    )
    both = int((dup.get_column("labels") > 1).sum()) if dup.height else 0
    report(
        "no_duplicate_pairs",
        dup.height,
        f"{dup.height} unordered pairs listed more than once ({both} both positive and "
        f"negative), e.g. {sample(dup.sort('x', 'y'), 'x', 'y')}",
        "one row per unordered pair",
    )

    weight = pl.col("weight").cast(pl.Float64)
    bad = pairs.filter(
        ~pl.col("label").is_in([0, 1]).fill_null(False)
        | ~pl.col("rule").is_in(list(RULES)).fill_null(False)
        | (pl.col("label") != pl.col("rule").is_in(list(POSITIVE_RULES)).cast(pl.Int8)).fill_null(
            True
        )
        | ~pl.col("split").is_in(list(SPLITS)).fill_null(False)
        | ~((weight > 0) & weight.is_finite()).fill_null(False)
    )
    report(
        "valid_values",
        bad.height,
        f"{bad.height} rows with a bad label, rule, split or weight, e.g. {sample(bad)}",
        "labels, rules, splits and weights valid",
    )

    ids = artworks.select(pl.col("artwork_id").cast(pl.String).alias("id")).unique()
    ends = pl.concat([pairs.select(a.alias("id")), pairs.select(b.alias("id"))]).unique()
    unknown = ends.join(ids, on="id", how="anti").sort("id")
    report(
        "ends_exist",
        unknown.height,
        f"{unknown.height} pair ends not in artworks, e.g. {unknown.head(3).to_series().to_list()}",
        "every pair end is an artwork",
    )

    placed = pl.concat(
        [
            pairs.select(a.alias("artwork_id"), "split"),
            pairs.select(b.alias("artwork_id"), "split"),
        ]
    ).unique()
    multi = (
        placed.group_by("artwork_id")
        .agg(pl.col("split").n_unique().alias("n"))
        .filter(pl.col("n") > 1)
        .sort("artwork_id")
    )
    report(
        "split_disjoint_artworks",
        multi.height,
        f"{multi.height} artworks in more than one split, "
        f"e.g. {multi.head(3).get_column('artwork_id').to_list()}",
        "no artwork in two splits",
    )
    if "artists" in artworks.columns:
        leaking = (
            placed.join(artwork_makers(artworks), on="artwork_id")
            .group_by("maker")
            .agg(pl.col("split").n_unique().alias("n"))
            .filter(pl.col("n") > 1)
            .sort("maker")
        )
        report(
            "split_disjoint_makers",
            leaking.height,
            f"{leaking.height} makers in more than one split, "
            f"e.g. {leaking.head(3).get_column('maker').to_list()}",
            "no maker in two splits",
        )
    else:
        report("split_disjoint_makers", 1, "artworks has no artists column", "")

    target, tol = rules.negatives_per_positive, rules.ratio_tolerance
    lo, hi = target * (1 - tol), target * (1 + tol)
    counts = (
        pairs.group_by("split")
        .agg((pl.col("label") == 1).sum().alias("pos"), (pl.col("label") == 0).sum().alias("neg"))
        .sort("split")
    )
    scopes = [("all", int(counts.get_column("pos").sum()), int(counts.get_column("neg").sum()))]
    scopes += [(s, int(p), int(q)) for s, p, q in counts.iter_rows()]
    problems, seen = [], []
    for scope, p, q in scopes:
        if p == 0:
            if q > 0:
                problems.append(f"{scope}: {q} negatives and no positives")
            continue
        ratio = q / p
        seen.append(f"{scope}={ratio:.3f}")
        if not lo - 1e-9 <= ratio <= hi + 1e-9:
            problems.append(f"{scope}: {ratio:.3f} negatives per positive")
    report(
        "ratio_within_bounds",
        len(problems),
        f"{'; '.join(problems)} (allowed [{lo:.3f}, {hi:.3f}])",
        f"negatives per positive {', '.join(seen) or 'n/a'} within [{lo:.3f}, {hi:.3f}]",
    )
    return results
