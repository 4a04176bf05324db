"""The two-stage index (`AnnConfig.search_dim`): hnswlib over projected vectors, the full vectors
as float16 re-ranking its candidates exactly; built, queried, updated in place, stored and read
back (the full vectors read row by row from their file)."""

import numpy as np
import pytest

from artsim_pipeline.core.ann import AnnConfig, brute_force_topk, build_index, normalize, recall_vs_exact, synthetic_clustered_vectors
from artsim_pipeline.core.ann.reduction import rerank
from artsim_pipeline.resources.artefacts import read_ann_index, write_ann_index
from artsim_pipeline.resources.artefacts.indexes import ANN_FULL_VECTORS_FILE, ANN_PROJECTION_FILE
from artsim_pipeline.resources.artefacts.row_file import RowFile

DIM, SEARCH_DIM, N = 128, 32, 3000
CONFIG = AnnConfig(num_threads=2, search_dim=SEARCH_DIM)


def embedding_like(n: int, seed: int) -> np.ndarray:
    """Clustered unit vectors whose energy lies mostly in 24 of 128 directions (as the model's
    vectors keep 88% of theirs in 128 of 1,280), plus a little noise in every direction."""
    rng = np.random.default_rng(seed)
    low = synthetic_clustered_vectors(n, 24, n_clusters=40, seed=seed)
    basis, _ = np.linalg.qr(rng.standard_normal((DIM, 24)))
    x = low @ basis.T.astype(np.float32) + rng.standard_normal((n, DIM)).astype(np.float32) * (0.15 / np.sqrt(DIM))
    return normalize(x)


def make_ids(n, start=0):
    return [("met:" if i % 3 else "smk:") + str(i) for i in range(start, start + n)]


@pytest.fixture(scope="module")
def data():
    return make_ids(N), embedding_like(N, seed=5)


@pytest.fixture(scope="module")
def built(data):
    ids, x = data
    return build_index(ids, x, CONFIG, model_run_id="run-1")


def exact_top(x, queries, k):
    idx, scores = brute_force_topk(x, queries, k)
    return idx, scores


def test_hnswlib_holds_the_projected_vectors_and_the_full_ones_are_float16(built, data):
    ids, x = data
    assert built.two_stage and built.dim == DIM and built.search_dim == SEARCH_DIM
    assert built.hnsw.dim == SEARCH_DIM and built.build_info["search_dim"] == SEARCH_DIM
    assert built.build_info["config"]["search_dim"] == SEARCH_DIM
    # get_vector gives the full vector (float16 precision), not the projected one
    vector = built.get_vector(ids[7])
    assert vector.shape == (DIM,) and np.abs(vector - x[7]).max() < 2e-3
    # a one-stage index of the same vectors keeps them whole in hnswlib
    plain = build_index(ids[:100], x[:100], AnnConfig(num_threads=2))
    assert not plain.two_stage and plain.hnsw.dim == DIM and plain.search_dim == DIM


def test_queries_rank_candidates_by_exact_cosine(built, data):
    ids, x = data
    got, scores = built.query(x[:50], 10)
    exact, exact_scores = exact_top(x, x[:50], 10)
    # scores are the full vectors' cosines (to float16 precision), not the projected ones'
    for r in range(50):
        rows = [ids.index(a) for a in got[r]]
        np.testing.assert_allclose(scores[r], x[rows] @ x[r], atol=2e-3)
    np.testing.assert_allclose(scores, exact_scores, atol=2e-3)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert recall_vs_exact(built, ids, x, sample=500, k=10) >= 0.98


def test_recall_against_exact_comes_from_the_oversampled_candidates(data):
    """Projected to 16 dimensions, hnswlib's own top 10 miss neighbours (oversample 1: the
    re-ranking only reorders them); 8 x 10 candidates re-ranked with the full vectors find them."""
    ids, x = data
    index = build_index(ids, x, AnnConfig(num_threads=2, search_dim=16, oversample=1))
    without = recall_vs_exact(index, ids, x, sample=300)
    index.config = AnnConfig(num_threads=2, search_dim=16, oversample=8)
    with_candidates = recall_vs_exact(index, ids, x, sample=300)
    assert with_candidates >= 0.98 > without


def test_exact_filtered_search_reads_the_full_vectors(built, data):
    ids, x = data
    rows = list(range(0, N, 20))  # 150 allowed works: exact search over them
    allowed = frozenset(built.label_of(ids[i]) for i in rows)
    got, scores = built.query(x[1:6], 10, filter_labels=allowed)
    exact, exact_scores = exact_top(x[rows], x[1:6], 10)
    for r in range(5):
        assert list(got[r]) == [ids[rows[i]] for i in exact[r]]
    np.testing.assert_allclose(scores, exact_scores, atol=2e-3)
    # a callable filter goes through hnswlib with re-ranking: museum-restricted results
    smk = built.labels_for_source("smk")
    got, _ = built.query(x[1:21], 10, filter_labels=lambda label: label in smk)
    assert all(a.startswith("smk:") for a in got.ravel())


def test_update_in_place_keeps_the_projection(data):
    ids, x = data
    index = build_index(ids[:2000], x[:2000], CONFIG, model_run_id="run-1")
    projection = index._s.projection.copy()
    # the same vectors again: nothing moved (the float16 rows compare equal after rounding)
    same = index.update(ids[:2000], x[:2000], model_run_id="run-1")
    assert (same.updated, same.unchanged, same.rebuilt) == (0, 2000, False)

    moved = x[:2000].copy()
    moved[3] = x[2500]  # work 3 now looks like work 2500
    new_ids, new_x = ids[100:2000] + ids[2000:2600], np.vstack([moved[100:2000], x[2000:2600]])
    new_ids, new_x = [ids[3]] + new_ids, np.vstack([moved[3:4], new_x])
    result = index.update(new_ids, new_x, model_run_id="run-1")
    assert (result.added, result.deleted, result.updated, result.rebuilt) == (600, 99, 1, False)
    assert np.array_equal(index._s.projection, projection)
    assert index._s.full.shape == (2600, DIM)
    assert np.abs(index.get_vector(ids[3]) - x[2500]).max() < 2e-3 and index.label_of(ids[3]) == 3
    top, scores = index.query(x[2500], 2)
    assert set(top[0]) == {ids[3], ids[2500]} and scores[0, 1] > 0.99
    got, _ = index.query(x[:300], 10)
    assert not set(got.ravel()) & set(ids[:3] + ids[4:100])  # deleted works never come back
    assert recall_vs_exact(index, new_ids, new_x, sample=300) >= 0.98


def test_stored_and_read_back_with_rows_read_from_the_file(built, data, tmp_path):
    ids, x = data
    target = write_ann_index(built, tmp_path / "ann")
    stored = np.load(target / ANN_FULL_VECTORS_FILE)
    assert stored.dtype == np.float16 and stored.shape == (N, DIM)
    assert np.load(target / ANN_PROJECTION_FILE).shape == (SEARCH_DIM, DIM)
    loaded = read_ann_index(target, AnnConfig(ef=50, oversample=6))
    assert isinstance(loaded._s.full, RowFile)
    assert loaded.two_stage and loaded.config.search_dim == SEARCH_DIM and loaded.config.oversample == 6
    a_ids, a_scores = built.query(x[:20], 10)
    loaded.config = built.config
    b_ids, b_scores = loaded.query(x[:20], 10)
    assert a_ids.tolist() == b_ids.tolist()
    np.testing.assert_array_equal(a_scores, b_scores)
    # an update writes the copy in memory, never the file it was read from
    moved = x.copy()
    moved[0] = x[1]
    assert loaded.update(ids, moved, model_run_id="run-1").updated == 1
    np.testing.assert_array_equal(np.load(target / ANN_FULL_VECTORS_FILE), stored)
    reread = read_ann_index(write_ann_index(loaded, target))
    assert np.abs(reread.get_vector(ids[0]) - x[1]).max() < 2e-3


def test_a_changed_search_dim_rebuilds_keeping_labels(data, tmp_path):
    ids, x = data
    one_stage = build_index(ids[:1000], x[:1000], AnnConfig(num_threads=2), model_run_id="run-1")
    # an index stored before two-stage indexes (no search_dim in its info) reads as one-stage
    target = write_ann_index(one_stage, tmp_path / "ann")
    loaded = read_ann_index(target)
    del loaded.build_info["config"]["search_dim"]
    loaded = read_ann_index(write_ann_index(loaded, target), CONFIG)
    assert not loaded.two_stage and loaded.config.search_dim == 0
    result = loaded.update(ids[1:1000], x[1:1000], model_run_id="run-1", config=CONFIG)
    assert result.rebuilt and "build parameters" in result.reason
    assert loaded.two_stage and loaded.search_dim == SEARCH_DIM and loaded.label_of(ids[500]) == 500
    assert not (result := loaded.update(ids[1:1000], x[1:1000], model_run_id="run-1", config=CONFIG)).rebuilt
    assert result.unchanged == 999


def test_rerank_orders_candidates_and_pads():
    store = np.asarray(normalize(np.eye(4, dtype=np.float32) + 0.1), dtype=np.float16)
    query = normalize(np.array([[0.0, 1.0, 0.2, 0.0]]))
    labels, dists = rerank(store, query, np.array([[0, 2, -1, 1]]), 3)
    assert labels.tolist() == [[1, 2, 0]]
    assert np.isfinite(dists).all() and (np.diff(dists) >= 0).all()
    labels, dists = rerank(store, query, np.array([[3, -1, -1]]), 3)
    assert labels.tolist() == [[3, -1, -1]] and np.isinf(dists[0, 1:]).all()


def test_a_row_file_reads_the_rows_asked_for(tmp_path):
    stored = np.arange(5 * 7, dtype=np.float16).reshape(5, 7)
    np.save(tmp_path / "rows.npy", stored)
    rows = RowFile(tmp_path / "rows.npy")
    assert rows.shape == (5, 7) and rows.dtype == np.float16 and len(rows) == 5
    np.testing.assert_array_equal(rows[np.array([4, 0, 4])], stored[[4, 0, 4]])
    np.testing.assert_array_equal(rows[np.array([[1], [3]])], stored[[[1], [3]]])
    np.testing.assert_array_equal(np.asarray(rows), stored)
    with pytest.raises(IndexError):
        rows[np.array([5])]
    # a file written over it later (renamed into place) does not change what it reads
    np.save(tmp_path / "newer.npy", stored * 2)
    (tmp_path / "newer.npy").replace(tmp_path / "rows.npy")
    np.testing.assert_array_equal(rows[np.array([2])], stored[[2]])


def test_bulk_queries_read_the_row_file_once(built, data, tmp_path, monkeypatch):
    ids, x = data
    loaded = read_ann_index(write_ann_index(built, tmp_path / "ann"))
    reads = []
    real = RowFile.__array__
    monkeypatch.setattr(RowFile, "__array__", lambda self, *a, **kw: reads.append(1) or real(self, *a, **kw))
    few, _ = loaded.query(x[:3], 10)
    assert reads == []  # a few queries read their candidates' rows only
    many, _ = loaded.query(x[:400], 10)  # 400 x 80 candidates > 3,000 rows: read once, whole
    assert reads == [1] and many[:3].tolist() == few.tolist()
