"""Retrieval metrics on hand-computed cases, the random baseline, histograms and figures."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core.ml.metrics import (
    evaluate_retrieval,
    map_at_k,
    plot_recall_curve,
    plot_similarity_histograms,
    random_vectors_baseline,
    recall_at_k,
    recall_curve,
    retrieval_task,
    similarity_histograms,
    task_metrics,
)

PAIR_COLUMNS = ["artwork_id_a", "artwork_id_b", "label", "rule", "weight", "split"]


def pairs_frame(rows):
    return pl.DataFrame(rows, schema=PAIR_COLUMNS, orient="row")


def test_recall_and_map_on_a_hand_computed_score_matrix():
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.5, 0.7], [0.3, 0.2, 0.1]])
    relevant = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)  # last row: not a query
    # query 0 ranks c0, c1*, c2 -> first hit at rank 2; query 1 ranks c2, c1, c0* -> rank 3
    assert recall_at_k(scores, relevant, 1) == 0.0
    assert recall_at_k(scores, relevant, 2) == 0.5
    assert recall_at_k(scores, relevant, 3) == 1.0
    # AP@10: query 0 = P@2 = 1/2; query 1 = P@3 = 1/3
    assert map_at_k(scores, relevant, 10) == pytest.approx((1 / 2 + 1 / 3) / 2)
    # AP@2 of query 1 is 0 (its positive is at rank 3)
    assert map_at_k(scores, relevant, 2) == pytest.approx((1 / 2 + 0) / 2)


def test_map_divides_by_min_k_and_positives_and_ignores_excluded_candidates():
    scores = np.array([[-np.inf, 0.9, 0.8, 0.7, 0.6]])
    relevant = np.array([[1, 1, 0, 1, 0]], dtype=bool)  # candidate 0 is excluded (-inf)
    # ranking c1*, c2, c3*, c4 (c0 last and never a hit): AP@10 = (1/1 + 2/3) / min(10, 3)
    assert map_at_k(scores, relevant, 10) == pytest.approx((1 + 2 / 3) / 3)
    assert map_at_k(scores, relevant, 1) == pytest.approx(1.0)  # min(k=1, 3) = 1
    with pytest.raises(ValueError):
        recall_at_k(scores, np.zeros_like(relevant), 5)


def tiny_case():
    # a=(1,0) b=(.8,.6) c=(0,1) d=(-1,0); test: a~c similar, b/d dissimilar; e has no test pair.
    ids = ["m:a", "m:b", "m:c", "m:d", "m:e", "m:f"]
    vectors = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0], [0.6, 0.8], [0, -1]], dtype=np.float32)
    pairs = pairs_frame(
        [
            ("m:a", "m:c", 1, "same_artist", 1.0, "test"),
            ("m:b", "m:d", 0, "far_dates", 0.5, "test"),
            ("m:e", "m:f", 1, "same_artist", 1.0, "train"),
            ("m:a", "gone:1", 1, "same_artist", 1.0, "test"),  # no vector: ignored
        ]
    )
    return ids, vectors, pairs


def test_evaluate_retrieval_on_a_hand_computed_split():
    ids, vectors, pairs = tiny_case()
    result = evaluate_retrieval(ids, vectors, pairs, split="test")
    # Candidates a, b, c, d. Query a: b (.8), c* (0), d (-1) -> rank 2.
    # Query c: b (.6), then a* and d tie at 0 -> candidate order puts a first -> rank 2.
    assert result == {
        "recall_at_1": 0.0,
        "recall_at_5": 1.0,
        "recall_at_10": 1.0,
        "map_at_10": pytest.approx(0.5),
        "n_queries": 2,
        "n_candidates": 4,
    }
    assert recall_curve(ids, vectors, pairs, ks=(1, 2)) == {1: 0.0, 2: 1.0}
    task = retrieval_task(ids, pairs, "test")
    assert task.candidate_ids == ["m:a", "m:b", "m:c", "m:d"]
    assert task.positives.sum() == 2 and not task.positives.diagonal().any()
    assert task.positives.nnz == 2  # sparse: memory grows with the pairs, not candidates squared


def test_evaluate_retrieval_raises_instead_of_inventing_numbers():
    ids, vectors, pairs = tiny_case()
    with pytest.raises(ValueError, match="no artwork with a positive"):
        evaluate_retrieval(ids, vectors, pairs, split="val")
    with pytest.raises(ValueError):
        evaluate_retrieval(ids, vectors[:3], pairs)
    broken = vectors.copy()
    broken[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_retrieval(ids, broken, pairs)


def test_partial_selection_matches_a_full_sort_on_a_larger_split():
    rng = np.random.default_rng(3)
    n = 400
    ids = [f"x:{i}" for i in range(n)]
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    group = rng.integers(0, 40, n)
    rows = [(ids[i], ids[j], 1, "g", 1.0, "test") for i in range(n) for j in range(i + 1, n) if group[i] == group[j]]
    pairs = pairs_frame(rows)
    result = evaluate_retrieval(ids, vectors, pairs)
    task = retrieval_task(ids, pairs, "test")
    v = vectors[task.index] / np.linalg.norm(vectors[task.index], axis=1, keepdims=True)
    scores = (v @ v.T).astype(np.float64)
    np.fill_diagonal(scores, -np.inf)
    for k in (1, 5, 10):
        assert result[f"recall_at_{k}"] == pytest.approx(recall_at_k(scores, task.positives.toarray(), k))
    assert result["map_at_10"] == pytest.approx(map_at_k(scores, task.positives.toarray(), 10))
    assert task_metrics(task, vectors[task.index], chunk=7) == {
        k: pytest.approx(v) for k, v in result.items() if k.startswith(("recall", "map"))
    }


def test_random_baseline_matches_the_analytic_hit_rate():
    # 60 candidates in 15 groups of 4: each query has 3 positives among 59 others.
    ids = [f"r:{i}" for i in range(60)]
    rows = [(ids[i], ids[j], 1, "g", 1.0, "test") for i in range(60) for j in range(i + 1, 60) if i // 4 == j // 4]
    baseline = random_vectors_baseline(ids, pairs_frame(rows), n_repeats=20, seed=0)
    expected = 1 - math.comb(56, 10) / math.comb(59, 10)
    assert baseline["recall_at_10"] == pytest.approx(expected, abs=0.06)
    assert baseline["n_queries"] == 60
    assert random_vectors_baseline(ids, pairs_frame(rows), seed=5) == random_vectors_baseline(ids, pairs_frame(rows), seed=5)


def test_similarity_histograms_and_figures():
    ids, vectors, pairs = tiny_case()
    h = similarity_histograms(ids, vectors, pairs, split="test", bins=4)
    assert list(h["edges"]) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert h["positive_cosines"].tolist() == [0.0]  # a.c
    assert h["negative_cosines"].tolist() == pytest.approx([-0.8])  # b.d
    assert h["positive"].tolist() == [0, 0, 1, 0] and h["negative"].tolist() == [1, 0, 0, 0]
    assert h["auc"] == 1.0 and h["n_positive"] == 1 and h["n_negative"] == 1

    curve_png = plot_recall_curve({"trained": {1: 0.4, 5: 0.8, 10: 0.9}, "random": {1: 0.05, 5: 0.2, 10: 0.4}})
    hist_png = plot_similarity_histograms({"raw": h, "trained": h})
    for png in (curve_png, hist_png):  # rendered in memory: no file is written
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    with pytest.raises(ValueError):
        similarity_histograms(ids, vectors, pairs, split="train")  # train has no negatives
