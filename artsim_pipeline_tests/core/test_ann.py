import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core.ann import (
    AnnConfig,
    AnnIndex,
    brute_force_topk,
    build_index,
    recall_vs_exact,
    synthetic_clustered_vectors,
)
from artsim_pipeline.resources.artefacts import read_ann_index, write_ann_index

DIM = 48
CONFIG = AnnConfig(num_threads=2)


def make_ids(n, start=0):
    return [("met:" if i % 3 else "smk:") + str(i) for i in range(start, start + n)]


@pytest.fixture(scope="module")
def data():
    x = synthetic_clustered_vectors(3000, DIM, n_clusters=60, seed=3)
    return make_ids(3000), x


@pytest.fixture(scope="module")
def built(data):
    ids, x = data
    return build_index(ids, x, CONFIG, model_run_id="run-1", model_version="v1")


def test_build_info_and_id_map(built, data):
    ids, x = data
    info = built.build_info
    assert info["count"] == len(built) == 3000
    assert info["dim"] == DIM and info["M"] == 16 and info["ef_construction"] == 200
    assert info["model_run_id"] == "run-1" and info["model_version"] == "v1"
    assert info["build_seconds"] >= 0
    idmap = built.id_map()
    assert idmap.columns == ["artwork_id", "label", "deleted"]
    assert idmap["label"].to_list() == list(range(3000))
    assert built.label_of(ids[5]) == 5 and built.id_of(5) == ids[5]
    # stored vectors are unit-normalised
    assert np.linalg.norm(built.get_vector(ids[0])) == pytest.approx(1.0, abs=1e-5)


def test_recall_at_10_on_clustered_data(built, data):
    ids, x = data
    assert recall_vs_exact(built, ids, x, sample=500, k=10) >= 0.98


def test_query_scores_are_cosine_similarities_best_first(built, data):
    ids, x = data
    got_ids, scores = built.query(x[:20], 10)
    assert got_ids.shape == scores.shape == (20, 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert got_ids[0, 0] == ids[0] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    row = [ids.index(a) for a in got_ids[3]]
    assert np.allclose(scores[3], x[row] @ x[3] / np.linalg.norm(x[3]), atol=1e-5)
    # exclusion still returns k
    got_ids, _ = built.query(x[:5], 10, exclude_ids=ids[:5])
    assert got_ids.shape == (5, 10)
    assert not set(got_ids.ravel()) & set(ids[:5])


def test_incremental_add_resize_delete_and_update_without_rebuild(data, tmp_path):
    ids, x = data
    idx = build_index(ids[:2000], x[:2000], CONFIG, model_run_id="run-1")
    assert idx.max_elements == 2000 and idx.element_count == 2000

    # 2000 -> drop 100, add 1000 new: resize needed (2000 slots full)
    gone = ids[:100]
    new_ids = ids[100:3000]
    res = idx.update(new_ids, x[100:3000], model_run_id="run-1")
    assert not res.rebuilt
    assert (res.added, res.deleted, res.updated) == (1000, 100, 0)
    assert len(idx) == 2900
    # the 100 deleted slots were recycled by the new items, the rest needed a resize
    assert idx.element_count == 2000 + 1000 - 100
    assert idx.max_elements >= idx.element_count
    got, _ = idx.query(x[:300], 10)
    assert not set(got.ravel()) & set(gone)
    assert idx.label_of(ids[2500]) == 2500  # new ids got fresh labels after the old ones
    assert recall_vs_exact(idx, new_ids, x[100:3000], sample=300) >= 0.98

    # a deleted artwork that comes back gets a new label; labels are never reused
    res = idx.update([ids[0], *new_ids], np.vstack([x[:1], x[100:3000]]), model_run_id="run-1")
    assert (res.added, res.deleted, res.rebuilt) == (1, 0, False)
    assert idx.label_of(ids[0]) == 3000
    idmap = idx.id_map()
    assert idmap.height == 3001 and idmap["label"].n_unique() == 3001
    assert idmap.filter(pl.col("artwork_id") == ids[0])["deleted"].to_list() == [True, False]

    # changed vector: updated in place, label kept
    y = x[100:3000].copy()
    y[0] = x[2999]
    res = idx.update(new_ids, y, model_run_id="run-1")
    assert (res.added, res.deleted, res.updated, res.rebuilt) == (0, 1, 1, False)
    assert idx.label_of(ids[100]) == 100
    top, _ = idx.query(x[2999], 2)
    assert set(top[0]) == {ids[100], ids[2999]}

    # still round-trips after updates, deleted ids still never returned
    loaded = read_ann_index(write_ann_index(idx, tmp_path / "ann"))
    assert len(loaded) == len(idx)
    got, _ = loaded.query(x[:100], 10)
    assert not set(got.ravel()) & set(gone[1:] + [ids[0]])


def test_new_model_run_or_dim_triggers_rebuild_keeping_labels(data):
    ids, x = data
    idx = build_index(ids[:1000], x[:1000], CONFIG, model_run_id="run-1")
    res = idx.update(ids[1:1100], x[1:1100], model_run_id="run-2", model_version="v2")
    assert res.rebuilt and "model run" in res.reason
    assert idx.build_info["model_run_id"] == "run-2" and idx.build_info["model_version"] == "v2"
    assert len(idx) == 1099 and idx.element_count == 1099  # fresh index, no deleted slots
    assert idx.label_of(ids[500]) == 500 and idx.label_of(ids[1050]) == 1050
    got, _ = idx.query(x[:50], 5)
    assert ids[0] not in set(got.ravel())

    z = synthetic_clustered_vectors(1100, 16, n_clusters=10, seed=9)
    res = idx.update(ids[:1100], z, model_run_id="run-2")
    assert res.rebuilt and "dimension" in res.reason and idx.dim == 16


def test_filter_returns_k_results_when_enough_exist(built, data):
    ids, x = data
    smk = built.labels_for_source("smk")
    assert len(smk) == 1000
    # query from met works: restricted to smk, still exactly k smk results
    got, sc = built.query(x[1:41], 25, filter_labels=smk)
    assert got.shape == (40, 25) and not np.isnan(sc).any()
    assert all(a.startswith("smk:") for a in got.ravel())
    # filtered search keeps its recall against exact search within the museum
    smk_rows = [i for i, a in enumerate(ids) if a.startswith("smk:")]
    exact, _ = brute_force_topk(x[smk_rows], x[1:41], 25)
    hits = sum(len(set(got[r]) & {ids[smk_rows[i]] for i in exact[r]}) for r in range(40))
    assert hits / (40 * 25) >= 0.98


def test_restrictive_filters_stay_exact_or_pad(built, data, monkeypatch):
    ids, x = data
    calls = []
    real = AnnIndex._knn

    def spy(self, *args, **kwargs):
        calls.append(args[1])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AnnIndex, "_knn", spy)
    # 40 allowed items scattered over the index, k=30 at ef=30
    rows = list(range(0, 3000, 75))
    allowed = {built.label_of(ids[i]) for i in rows}
    exact, _ = brute_force_topk(x[rows], x[1:4], 30)
    got, sc = built.query(x[1:4], 30, filter_labels=lambda lab: lab in allowed, ef=30)
    assert calls, "a callable filter goes through hnswlib"
    assert got.shape == (3, 30) and not np.isnan(sc).any()
    for r in range(3):
        assert set(got[r]) == {ids[rows[i]] for i in exact[r]}
    # the same allowed set as a collection is small enough for exact search directly
    calls.clear()
    got2, sc2 = built.query(x[1:4], 30, filter_labels=allowed)
    assert not calls and (got2 == got).all()
    np.testing.assert_allclose(sc2, sc, atol=1e-5)

    # fewer allowed items than k (callable filter: count unknown): pad with None / NaN
    few = {built.label_of(ids[i]) for i in (7, 1500, 2999)}
    got, sc = built.query(x[:2], 5, filter_labels=lambda lab: lab in few, ef=10)
    assert got.shape == (2, 5)
    assert set(got[0, :3]) == {ids[7], ids[1500], ids[2999]}
    assert got[0, 3] is None and np.isnan(sc[0, 3:]).all()
    assert (np.diff(sc[:, :3], axis=1) <= 1e-6).all()
    assert built.query(x[:2], 5, filter_labels=few)[0].tolist() == got.tolist()


def test_rejects_bad_input(data):
    ids, x = data
    with pytest.raises(ValueError, match="unique"):
        build_index([ids[0], ids[0]], x[:2], CONFIG)
    with pytest.raises(ValueError, match="zero norm"):
        build_index(ids[:2], np.zeros((2, DIM)), CONFIG)
    with pytest.raises(ValueError, match="space"):
        AnnConfig(space="l2")


def test_recall_against_exact_search_counts_ties_as_found():
    """Replicated records share one vector: exact search lists some of the identical works, the
    index others, and both are right. A collection of 40 distinct works, each 30 times."""
    rng = np.random.default_rng(3)
    distinct = rng.standard_normal((40, 16)).astype(np.float32)
    x = np.repeat(distinct, 30, axis=0)
    ids = [f"w{i}" for i in range(len(x))]
    index = build_index(ids, x, CONFIG, model_run_id="run-1")
    assert recall_vs_exact(index, ids, x, sample=200, k=10) == 1.0
    # and it still sees a miss: an index that answers with the wrong group scores low
    shuffled = build_index(ids, np.roll(x, 30, axis=0), CONFIG, model_run_id="run-1")
    assert recall_vs_exact(shuffled, ids, x, sample=200, k=10) < 0.2
