"""pair_stats and preview_pairs."""

from __future__ import annotations

import pytest

from artsim_pipeline.core.pairs import (
    NEGATIVE_RULES,
    POSITIVE_RULES,
    pair_stats,
    preview_pairs,
)


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
