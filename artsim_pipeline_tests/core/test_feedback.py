"""Curator judgments: pairs, the mean-rank-of-pick metric and candidates (the durable journal:
`resources/test_judgments.py`)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core import feedback as fb
from artsim_pipeline.resources import artefacts as store

CANDS = [f"smk:KMS{i}" for i in range(8)]


def test_judgments_to_pairs():
    judgments = [
        {"anchor_id": "smk:KMS1", "candidate_ids": ["met:5", "met:6"], "chosen_id": "met:5"},
        {"anchor_id": "met:5", "candidate_ids": ["smk:KMS1", "met:7"], "chosen_id": "smk:KMS1"},
        {"anchor_id": "met:2", "candidate_ids": ["met:1", "met:7"], "chosen_id": "met:1"},
    ]
    pairs = fb.judgments_to_pairs(judgments, weight=3.0)
    assert pairs.columns == ["artwork_id_a", "artwork_id_b", "label", "rule", "weight", "split"]
    assert pairs.select("artwork_id_a", "artwork_id_b").rows() == [("met:5", "smk:KMS1"), ("met:1", "met:2")]
    assert pairs["label"].to_list() == [1, 1] and set(pairs["rule"]) == {"curator_pick"}
    assert pairs["weight"].to_list() == [3.0, 3.0] and pairs["split"].null_count() == 2
    from artsim_pipeline.core.pairs import PAIRS_SCHEMA

    assert pairs.schema == pl.Schema(PAIRS_SCHEMA)
    assert fb.judgments_to_pairs(store.load_judgments("/nonexistent")).height == 0


def _vectors():
    # anchor along x; candidate c_i at angle i * 10 degrees: c0 is the most similar
    vecs = {"met:a": np.array([1.0, 0.0])}
    for i in range(8):
        t = np.radians(10 * i)
        vecs[f"smk:c{i}"] = np.array([np.cos(t), np.sin(t)]) * (i + 1)  # norms must not matter
    return vecs


def test_mean_rank_of_pick():
    vecs = _vectors()
    cands = [f"smk:c{i}" for i in (3, 0, 7, 1, 6, 2, 5, 4)]
    judgments = [
        {"judgment_id": "1", "anchor_id": "met:a", "candidate_ids": cands, "chosen_id": "smk:c0"},  # rank 1
        {"judgment_id": "2", "anchor_id": "met:a", "candidate_ids": cands, "chosen_id": "smk:c3"},  # rank 4
        {"judgment_id": "3", "anchor_id": "met:a", "candidate_ids": cands, "chosen_id": "smk:c7"},  # rank 8
        {"judgment_id": "4", "anchor_id": "met:zz", "candidate_ids": cands, "chosen_id": "smk:c7"},  # no vector
    ]
    assert fb.mean_rank_of_pick(vecs, judgments) == pytest.approx((1 + 4 + 8) / 3)
    frame = pl.DataFrame({"artwork_id": list(vecs), "vector": [v.tolist() for v in vecs.values()]})
    ranks = fb.pick_ranks(frame, judgments)
    assert ranks["judgment_id"].to_list() == ["1", "2", "3"] and ranks["rank"].to_list() == [1.0, 4.0, 8.0]
    assert fb.mean_rank_of_pick(vecs.__getitem__, judgments[:1]) == 1.0
    # ties count as the expected rank under random tie-breaking
    tied = {"met:a": np.array([1.0, 0.0]), **{c: np.array([0.0, 1.0]) for c in cands}}
    assert fb.mean_rank_of_pick(tied, judgments[:1]) == pytest.approx(4.5)
    assert np.isnan(fb.mean_rank_of_pick(vecs, judgments[3:]))


def test_random_model_scores_about_chance():
    rng = np.random.default_rng(0)
    ids = [f"met:{i}" for i in range(200)]
    vecs = dict(zip(ids, rng.normal(size=(200, 16)), strict=True))
    judgments = []
    for j in range(400):
        pick = rng.choice(200, size=9, replace=False)
        cands = [ids[i] for i in pick[1:]]
        judgments.append({"anchor_id": ids[pick[0]], "candidate_ids": cands, "chosen_id": cands[j % 8]})
    assert fb.mean_rank_of_pick(vecs, judgments) == pytest.approx(4.5, abs=0.35)


def test_choose_candidates_is_deterministic_per_anchor():
    pool = [f"met:{i}" for i in range(100)]
    nearest = ["met:5", "met:1", "met:9", "met:2", "met:7", "met:8", "met:3"]
    a = fb.choose_candidates("met:0", nearest, pool)
    assert a == fb.choose_candidates("met:0", nearest, list(reversed(pool)))
    assert len(a) == 8 and len(set(a)) == 8 and "met:0" not in a
    assert set(nearest[:5]) <= set(a)
    assert a != fb.choose_candidates("met:50", nearest, pool)
    short = fb.choose_candidates("met:0", nearest, ["met:0", "met:5", "met:99"])
    assert sorted(short) == sorted(["met:5", "met:1", "met:9", "met:2", "met:7", "met:99", "met:8", "met:3"])
