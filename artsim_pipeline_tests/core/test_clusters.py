"""Clusters of artwork vectors and their curator-facing summary."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core.clusters import (cluster_vectors, default_n_clusters, summarise_clusters, summary_inputs_key,
                                           with_current_titles)


def _blobs(seed: int = 0):
    """Three well separated groups of works: Hammershøi interiors (SMK, Danish), Hokusai prints
    (Met, Japanese), Greek vases (Met, Greek); plus their metadata."""
    rng = np.random.default_rng(seed)
    centres = np.eye(16, dtype=np.float32)[:3] * 5
    sizes = (14, 12, 11)
    vectors, rows = [], []
    for g, size in enumerate(sizes):
        for i in range(size):
            vectors.append(centres[g] + rng.normal(scale=0.3, size=16).astype(np.float32))
            if g == 0:
                rows.append(dict(artwork_id=f"smk:KMS{100 + i}", source="smk", title=f"Interior {i}",
                                 artists=["Vilhelm Hammershøi"] if i % 4 else ["Hammershøi, Vilhelm", "Ida Ilsted"],
                                 department="Danish art", culture="Danish", classification="painting",
                                 date_begin=1890 + i, date_end=1895 + i))
            elif g == 1:
                rows.append(dict(artwork_id=f"met:{5000 + i}", source="met", title=f"Wave <{i}>",
                                 artists=["Katsushika Hokusai"] if i < 6 else ["Anonymous"],
                                 department="Asian Art", culture="Japan", classification="Prints",
                                 date_begin=1830, date_end=1832))
            else:
                rows.append(dict(artwork_id=f"met:{9000 + i}", source="met", title=f"Amphora {i}",
                                 artists=[], department="Greek and Roman Art", culture="Greek, Attic",
                                 classification="Vases", date_begin=-530, date_end=-500 + (300 if i == 5 else 0)))
    artworks = pl.DataFrame(rows, schema_overrides={"date_begin": pl.Int32, "date_end": pl.Int32})
    return [r["artwork_id"] for r in rows], np.stack(vectors), artworks, sizes


def test_default_rule():
    assert default_n_clusters(0) == 0
    assert default_n_clusters(1) == 1
    assert default_n_clusters(3) == 2
    assert default_n_clusters(200) == 10
    assert default_n_clusters(1_000_000) == 50


def test_clusters_recover_groups_deterministically():
    ids, vectors, _, sizes = _blobs()
    labels = cluster_vectors(ids, vectors, n_clusters=3, seed=0)
    assert labels.columns == ["artwork_id", "cluster", "distance"]
    assert labels["artwork_id"].to_list() == ids
    # ordered by size: the 12 Hammershøi works are cluster 0, Hokusai 1, vases 2
    expected = [0] * sizes[0] + [1] * sizes[1] + [2] * sizes[2]
    assert labels["cluster"].to_list() == expected
    again = cluster_vectors(ids, vectors, n_clusters=3, seed=0)
    assert again.equals(labels)
    # a list-typed polars column works too, and n_clusters is capped by n
    as_series = pl.Series([v.tolist() for v in vectors[:2]])
    assert cluster_vectors(ids[:2], as_series, n_clusters=10)["cluster"].n_unique() == 2


def test_cluster_vectors_rejects_bad_input():
    with pytest.raises(ValueError):
        cluster_vectors(["a", "b"], np.ones((3, 4)))
    with pytest.raises(ValueError):
        cluster_vectors(["a", "a"], np.ones((2, 4)))
    assert cluster_vectors([], np.zeros((0, 4))).height == 0


def test_summary_content():
    ids, vectors, artworks, sizes = _blobs()
    labels = cluster_vectors(ids, vectors, n_clusters=3, seed=0)
    summary = summarise_clusters(labels, artworks, top=3)
    assert summary["cluster"].to_list() == [0, 1, 2]
    assert summary["size"].to_list() == list(sizes)
    danish, japanese, greek = summary.iter_rows(named=True)
    # maker spellings are merged; the more frequent spelling is shown; anonymous ignored
    assert danish["top_makers"] == ["Vilhelm Hammershøi", "Ida Ilsted"]
    assert danish["top_departments"] == ["Danish art"]
    assert danish["top_cultures"] == ["Danish"]
    assert danish["museums"] == ["smk"]
    assert (danish["date_begin"], danish["date_end"]) == (1891, 1907)
    assert japanese["top_makers"] == ["Katsushika Hokusai"]
    assert japanese["date_span"] == "1830–1832"
    assert greek["top_makers"] == []
    assert greek["top_classifications"] == ["Vases"]
    # the 90th percentile keeps one late outlier from stretching the span
    assert greek["date_span"] == "530 BC–500 BC"
    # representatives: the three works nearest the centroid, with their titles
    for row in summary.iter_rows(named=True):
        members = labels.filter(pl.col("cluster") == row["cluster"]).sort("distance")
        assert row["representative_ids"] == members["artwork_id"].head(3).to_list()
        titles = dict(zip(artworks["artwork_id"], artworks["title"], strict=True))
        assert row["representative_titles"] == [titles[a] for a in row["representative_ids"]]


def test_summary_tolerates_missing_columns_and_unknown_works():
    labels = pl.DataFrame({"artwork_id": ["met:1", "met:2"], "cluster": [0, 0]})
    artworks = pl.DataFrame({"artwork_id": ["met:1"], "title": ["Only one"]})
    summary = summarise_clusters(labels, artworks)
    row = summary.row(0, named=True)
    assert row["size"] == 2 and row["museums"] == ["met"]
    assert row["representative_titles"] == ["Only one", ""]
    assert row["date_span"] is None


# -- incremental updates ----------------------------------------------------------------------------


def _clustered(n_per: int, dim: int = 16, groups: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim, dtype=np.float32)[:groups] * 5
    x = np.vstack([c + rng.normal(scale=0.3, size=(n_per, dim)) for c in centres]).astype(np.float32)
    return [f"met:{i}" for i in range(len(x))], x, np.repeat(np.arange(groups), n_per)


def test_fit_clusters_returns_the_centroids_labels_were_assigned_to():
    from artsim_pipeline.core.clusters import assign_to_centroids, fit_clusters

    ids, x, _ = _clustered(30)
    labels, centroids = fit_clusters(ids, x, n_clusters=4, seed=0)
    assert centroids.shape == (4, 16) and centroids.dtype == np.float32
    assert labels.equals(cluster_vectors(ids, x, n_clusters=4, seed=0))
    again, dist = assign_to_centroids(x, centroids)
    assert again.tolist() == labels["cluster"].to_list()
    np.testing.assert_allclose(dist, labels["distance"].to_numpy(), atol=1e-4)


def test_new_works_join_the_nearest_centroid_and_the_others_keep_their_labels():
    from artsim_pipeline.core.clusters import update_clusters

    ids, x, groups = _clustered(50)
    keep = np.ones(len(ids), bool)
    keep[[7, 60, 130, 180]] = False  # held back: they arrive later
    first, plan = update_clusters([a for a, k in zip(ids, keep) if k], x[keep], None, n_clusters=4)
    assert plan.mode == "full" and plan.reason == "no stored layout"
    # next run: the four new works, one removed work (met:0), one changed vector (met:1)
    x2 = x.copy()
    x2[1] = x[55]  # met:1 now looks like group 1
    current = ids[1:]
    state, plan = update_clusters(current, x2[1:], first, n_clusters=4)
    assert plan.mode == "incremental" and plan.removed == 1
    assert sorted(current[i] for i in plan.fresh) == sorted(["met:1", "met:7", "met:60", "met:130", "met:180"])
    old = dict(zip(first.labels["artwork_id"], first.labels["cluster"], strict=True))
    new = dict(zip(state.labels["artwork_id"], state.labels["cluster"], strict=True))
    assert "met:0" not in new
    unchanged = [a for a in new if a in old and a not in ("met:1",)]
    assert all(new[a] == old[a] for a in unchanged)
    # each new work is in the cluster of its own group's works
    group_cluster = {g: old[ids[int(np.flatnonzero((groups == g) & keep)[1])]] for g in range(4)}
    for i in (7, 60, 130, 180):
        assert new[ids[i]] == group_cluster[groups[i]]
    assert new["met:1"] == group_cluster[1]
    assert state.labels.filter(pl.col("incremental"))["artwork_id"].sort().to_list() == sorted(
        ["met:1", "met:7", "met:60", "met:130", "met:180"])
    np.testing.assert_array_equal(state.centroids, first.centroids)


def test_clusters_are_fitted_again_when_forced_changed_or_drifted():
    from artsim_pipeline.core.clusters import update_clusters

    ids, x, _ = _clustered(50)
    first, _ = update_clusters(ids[:150], x[:150], None, n_clusters=4)
    _, plan = update_clusters(ids[:150], x[:150], first, n_clusters=4)
    assert plan.mode == "incremental" and plan.fresh == []
    _, plan = update_clusters(ids[:150], x[:150], first, n_clusters=4, force_full=True)
    assert plan.mode == "full" and "forced" in plan.reason
    _, plan = update_clusters(ids[:150], x[:150], first, n_clusters=5)
    assert plan.mode == "full" and "settings" in plan.reason
    # 50 new works of 200: 25% > the 20% limit
    state, plan = update_clusters(ids, x, first, n_clusters=4)
    assert plan.mode == "full" and plan.reason.startswith("drift") and not state.labels["incremental"].any()
    # within the limit, but far from every centroid: the distance check fits again
    rng = np.random.default_rng(3)
    far = rng.normal(size=(25, 16)).astype(np.float32)
    ids_far = ids[:150] + [f"smk:{i}" for i in range(25)]
    _, plan = update_clusters(ids_far, np.vstack([x[:150], far]), first, n_clusters=4, max_incremental_fraction=0.5)
    assert plan.mode == "full" and "farther from their centroid" in plan.reason


def test_a_retitle_keeps_the_summary_key_and_only_the_titles_are_read_again():
    ids, vectors, artworks, _ = _blobs()
    labels = cluster_vectors(ids, vectors, n_clusters=3, seed=0)
    summary = summarise_clusters(labels, artworks)
    key = summary_inputs_key(labels, artworks)
    # retitle every representative of every cluster (and one other work)
    reps = {a for ids_ in summary["representative_ids"].to_list() for a in ids_}
    retitled = artworks.with_columns(pl.when(pl.col("artwork_id").is_in(list(reps)) | (pl.col("artwork_id") == "met:9003"))
                                     .then(pl.col("title") + " (retitled)").otherwise(pl.col("title")).alias("title"))
    assert summary_inputs_key(labels, retitled) == key
    refreshed = with_current_titles(summary, retitled)
    assert refreshed.equals(summarise_clusters(labels, retitled))
    assert all(t.endswith("(retitled)") for titles in refreshed["representative_titles"].to_list() for t in titles)
    # a work without a title, or not in artworks at all, shows "" as in a full summary
    untitled = retitled.with_columns(pl.when(pl.col("artwork_id").is_in(list(reps)[:1])).then(None).otherwise(pl.col("title")).alias("title"))
    assert with_current_titles(summary, untitled).equals(summarise_clusters(labels, untitled))
    # anything else the summary counts, or other labels, changes the key
    assert summary_inputs_key(labels, artworks.with_columns(pl.lit("Paintings").alias("department"))) != key
    assert summary_inputs_key(labels, artworks.with_columns(pl.col("date_end") + 1)) != key
    assert summary_inputs_key(labels, artworks.with_columns(pl.lit(["Someone"]).alias("artists"))) != key
    moved = labels.with_columns(pl.when(pl.col("artwork_id") == ids[0]).then(pl.col("distance") + 1).otherwise(pl.col("distance")))
    assert summary_inputs_key(moved, artworks) != key
