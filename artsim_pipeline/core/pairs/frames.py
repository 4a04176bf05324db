"""What the stages of pair mining share: work indices, seeded hashes and candidate pairs.

Inside the miner a work is its ``work_index`` (UInt32), its row in the works table sorted by
``artwork_id``, so partners are found by ``gather`` instead of joins on strings.  A candidate
pair is a row ``(left_id, right_id, rule_code, weight)`` of two work indices with
``left_id < right_id``; ``pair_key`` packs both indices into one UInt64 for sorting and
de-duplication.
"""

from __future__ import annotations

import polars as pl

from artsim_pipeline.core.pairs.rules import RULE_CODE

#: dtype of work indices (``work_index``, ``left_id``, ``right_id``, ``anchor_id``, ...).
WORK_INDEX = pl.UInt32
CANDIDATE_SCHEMA: dict[str, pl.DataType] = {
    "left_id": WORK_INDEX,
    "right_id": WORK_INDEX,
    "rule_code": pl.UInt8,
    "weight": pl.Float32,
}
_TWO32 = float(1 << 32)


def hash_seed(seed: int, salt: int) -> int:
    """A per-purpose hash seed derived from the user seed (``salt`` names the purpose)."""
    return ((int(seed) & 0xFFFFFFFF) * 1_000_003 + salt * 7919 + 17) & 0x7FFFFFFFFFFFFFFF


def uniform(hash_expr: pl.Expr) -> pl.Expr:
    """A UInt64 hash -> float in [0, 1)."""
    return (hash_expr % pl.lit(1 << 32, dtype=pl.UInt64)).cast(pl.Float64) / _TWO32


def clean_text(expr: pl.Expr) -> pl.Expr:
    """Stripped, lower-case text; null when nothing is left."""
    cleaned = expr.cast(pl.String).str.strip_chars().str.to_lowercase()
    return pl.when(cleaned.str.len_bytes() > 0).then(cleaned)


def empty_candidates() -> pl.DataFrame:
    return pl.DataFrame(schema=CANDIDATE_SCHEMA)


def canonical_pairs(pairs: pl.DataFrame, rule: str, weight: float | pl.Expr) -> pl.DataFrame:
    """``(anchor_id, partner_id)`` rows as candidate pairs of ``rule``: ordered
    ``left_id < right_id``, self-pairs dropped."""
    weight_expr = weight if isinstance(weight, pl.Expr) else pl.lit(weight)
    return pairs.filter(pl.col("anchor_id") != pl.col("partner_id")).select(
        pl.min_horizontal("anchor_id", "partner_id").alias("left_id"),
        pl.max_horizontal("anchor_id", "partner_id").alias("right_id"),
        pl.lit(RULE_CODE[rule], dtype=pl.UInt8).alias("rule_code"),
        weight_expr.cast(pl.Float32).alias("weight"),
    )


def pair_key(left: str = "left_id", right: str = "right_id") -> pl.Expr:
    """One UInt64 per pair of work indices, ordered like ``(left, right)``."""
    return (
        pl.col(left).cast(pl.UInt64) * pl.lit(1 << 32, dtype=pl.UInt64)
        + pl.col(right).cast(pl.UInt64)
    ).alias("pair_key")


def strongest(pairs: pl.DataFrame) -> pl.DataFrame:
    """One row per pair, sorted by ``pair_key``: the highest weight, ties by rule priority."""
    ranked = pairs.with_columns(pair_key()).sort(
        ["pair_key", "weight", "rule_code"], descending=[False, True, False]
    )
    return ranked.filter(pl.col("pair_key").ne_missing(pl.col("pair_key").shift(1)))
