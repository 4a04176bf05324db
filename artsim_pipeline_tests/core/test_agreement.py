"""Metadata agreement of neighbours and the serving gate (core.ml.agreement)."""

import math

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core.ml.agreement import (
    agreement_scores,
    agreement_table,
    attribute_labels,
    evaluation_rows,
    gate_decision,
    gate_from_rows,
    nearest_neighbours,
    normalise_label,
)


def test_normalise_label_compares_case_and_space_insensitively():
    assert normalise_label("  Greek and  Roman Art ") == "greek and roman art"
    assert normalise_label("") is None and normalise_label(None) is None and normalise_label(float("nan")) is None


def test_nearest_neighbours_excludes_the_query_and_orders_by_cosine():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.5, 0.5]], dtype=np.float32)
    got = nearest_neighbours(vectors, np.array([0, 2]), k=2)
    assert got.tolist() == [[1, 3], [3, 1]]


def test_agreement_counts_neighbours_sharing_the_value_and_skips_queries_without_one():
    # two tight clusters; labels agree inside cluster A, one neighbour in B has no value
    vectors = np.array([[1, 0], [1, 0.01], [1, 0.02], [0, 1], [0.01, 1], [0.02, 1]], dtype=np.float32)
    labels = ["x", "x", "x", "y", None, "y"]
    queries, scores = agreement_scores(vectors, labels, k=2)
    assert queries.tolist() == [0, 1, 2, 3, 5]  # row 4 has no value: not a query
    assert scores.tolist() == [1.0, 1.0, 1.0, 0.5, 0.5]  # row 4 counts as a disagreeing neighbour
    # one neighbour search shared across attributes and groups gives the same figures
    shared = nearest_neighbours(vectors, np.arange(len(vectors)), k=2)
    again_queries, again = agreement_scores(vectors, labels, np.arange(6) < 3, k=2, neighbours=shared)
    assert again_queries.tolist() == [0, 1, 2] and again.tolist() == [1.0, 1.0, 1.0]


def _clustered(rng, departments, spread):
    centres = {d: rng.standard_normal(16) for d in sorted(set(departments))}
    return np.stack([centres[d] + spread * rng.standard_normal(16) for d in departments]).astype(np.float32)


def test_agreement_table_reports_queries_means_and_paired_differences():
    rng = np.random.default_rng(0)
    departments = [f"d{i % 4}" for i in range(80)]
    good = _clustered(rng, departments, 0.3)
    noisy = good + 3.0 * rng.standard_normal(good.shape).astype(np.float32)
    rows = agreement_table({"backbone": good, "trained": noisy}, {"department": departments},
                           {"all": np.ones(80, bool), "first half": np.arange(80) < 40})
    by = {(c.group, c.vectors): c for c in rows}
    assert by[("all", "backbone")].n_queries == 80 and by[("first half", "trained")].n_queries == 40
    assert by[("all", "backbone")].precision > 0.9
    trained = by[("all", "trained")]
    assert trained.diff_vs_reference == pytest.approx(trained.precision - by[("all", "backbone")].precision)
    assert trained.diff_vs_reference < -3 * trained.diff_stderr  # clearly worse, and the error says so
    assert math.isnan(by[("all", "backbone")].diff_vs_reference)


def _toy_collection(rng, n=120, cross_department=True):
    """Works in 4 departments; weak pairs link the two works of a 'maker', which cuts across
    departments (or stays inside one with ``cross_department=False``)."""
    ids = [f"t:{i}" for i in range(n)]
    departments = [f"d{i % 4}" if cross_department else f"d{(i // 2) % 4}" for i in range(n)]
    makers = [i // 2 for i in range(n)]  # pairs (0,1), (2,3), ...
    rows = []
    for i in range(0, n, 2):
        rows.append({"artwork_id_a": ids[i], "artwork_id_b": ids[i + 1], "label": 1, "split": "test"})
        rows.append({"artwork_id_a": ids[i], "artwork_id_b": ids[(i + 7) % n], "label": 0, "split": "test"})
    pairs = pl.DataFrame(rows)
    artworks = pl.DataFrame({
        "artwork_id": ids, "department": departments, "classification": ["Vase"] * n, "culture": [None] * n,
        "date_begin": [1500] * n, "date_end": [1510] * n,
    }, schema_overrides={"culture": pl.String})
    backbone = _clustered(rng, departments, 0.4)
    maker_centres = rng.standard_normal((n // 2, 16)).astype(np.float32)
    # the "trained" head: pulls each maker's pair together (weak pairs win) and forgets departments
    helps_pairs_hurts_departments = np.stack([maker_centres[makers[i]] + 0.05 * rng.standard_normal(16) for i in range(n)]).astype(np.float32)
    return ids, artworks, pairs, backbone, helps_pairs_hurts_departments


def test_the_gate_refuses_a_head_that_helps_weak_pairs_and_hurts_department_agreement():
    rng = np.random.default_rng(1)
    ids, artworks, pairs, backbone, trained = _toy_collection(rng)
    labels = attribute_labels(artworks, ids)
    rows = evaluation_rows(ids, {"trained": trained, "backbone": backbone}, pairs, labels,
                           {"stand-in": set(ids[:60]), "real photo": set(ids[60:])})
    table = pl.DataFrame(rows)
    recall = {r["model"]: r["value"] for r in rows if r["group"] == "all" and r["criterion"] == "weak_pair_recall_at_10"}
    assert recall["trained"] > recall["backbone"]  # it wins its own training signal...
    decision = gate_from_rows(rows)
    assert not decision.serve_trained  # ...and is refused
    assert any("department agreement on real photo works" in reason for reason in decision.failed)
    assert any("department agreement on stand-in works" in reason for reason in decision.failed)
    assert not any(reason.startswith("weak-pair") for reason in decision.failed)
    # every figure carries its number of queries; groups are reported separately
    assert set(table["group"]) == {"all", "stand-in", "real photo"}
    assert (table["n_queries"] > 0).all()
    weak = table.filter((pl.col("model") == "trained") & (pl.col("criterion") == "weak_pair_recall_at_10") & (pl.col("group") == "all"))
    assert weak["diff_vs_backbone"][0] == pytest.approx(recall["trained"] - recall["backbone"])
    assert math.isfinite(weak["diff_stderr"][0]) and math.isfinite(weak["stderr"][0])  # paired standard errors for weak pairs too
    assert table.filter((pl.col("group") == "real photo") & (pl.col("criterion") == "agreement_department"))["n_queries"].to_list() == [60, 60]


def test_the_gate_serves_a_head_that_helps_weak_pairs_and_keeps_agreement():
    rng = np.random.default_rng(2)
    ids, artworks, pairs, backbone, maker_vectors = _toy_collection(rng, cross_department=False)
    # backbone geometry plus a little of the maker signal: pairs improve, departments stay
    trained = backbone / np.linalg.norm(backbone, axis=1, keepdims=True) + 0.25 * maker_vectors / np.linalg.norm(maker_vectors, axis=1, keepdims=True)
    rows = evaluation_rows(ids, {"trained": trained, "backbone": backbone}, pairs, attribute_labels(artworks, ids), {})
    decision = gate_from_rows(rows)
    assert decision.serve_trained, decision.reason
    assert decision.checked >= 1


def test_the_gate_refuses_a_head_that_does_not_beat_the_backbone_on_weak_pairs():
    decision = gate_decision(0.5, 0.5, [])
    assert not decision.serve_trained and "does not beat" in decision.reason


def test_a_loss_within_the_standard_error_does_not_block():
    from artsim_pipeline.core.ml.agreement import Criterion

    within = Criterion("all", "period", "trained", 50, 0.40, 0.05, -0.01, 0.02)
    beyond = Criterion("all", "culture", "trained", 50, 0.40, 0.05, -0.03, 0.02)
    assert gate_decision(0.8, 0.7, [within]).serve_trained
    refused = gate_decision(0.8, 0.7, [within, beyond])
    assert not refused.serve_trained and refused.failed == [
        "culture agreement on all works: trained 0.400 is 0.030 below the backbone (standard error 0.020, 50 queries)"]
