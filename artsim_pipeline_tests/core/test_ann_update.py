"""`AnnIndex.update` reads the stored vectors it compares against in bulk (hnswlib's memory, a
two-stage index's float16 file in one read): the same update as reading them label by label."""

import numpy as np
import pytest

from artsim_pipeline.core.ann import AnnConfig, brute_force_topk, build_index, synthetic_clustered_vectors
from artsim_pipeline.core.ann import update as ann_update
from artsim_pipeline.core.ann.update import hnsw_vectors
from artsim_pipeline.resources.artefacts import read_ann_index, write_ann_index

DIM = 32


def _ids(n, start=0):
    return [f"met:{i}" for i in range(start, start + n)]


def test_hnswlib_vectors_read_from_its_memory_are_those_get_items_gives():
    """After deletions, recycled slots (replace_deleted) and a resize: every live label's vector,
    in any order."""
    x = synthetic_clustered_vectors(1200, DIM, n_clusters=20, seed=1)
    index = build_index(_ids(1000), x[:1000], AnnConfig(num_threads=1), model_run_id="m")
    keep = [i for i in range(1000) if i % 7]
    ids = [f"met:{i}" for i in keep] + _ids(200, 1000)
    index.update(ids, np.vstack([x[keep], x[1000:]]), "m")
    assert index.element_count > 1000 - 1000 // 7  # slots recycled and the index grown
    labels = np.random.default_rng(0).permutation([index.label_of(a) for a in ids])
    expected = np.asarray(index.hnsw.get_items(labels), dtype=np.float32)
    got = hnsw_vectors(index.hnsw, labels)
    assert got.dtype == np.float32 and got.shape == (len(labels), DIM)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(KeyError):
        hnsw_vectors(index.hnsw, np.asarray([labels[0], 10**6]))


def _label_by_label(monkeypatch):
    """What `update` read before: hnswlib's get_items, label by label."""
    monkeypatch.setattr(ann_update, "_level0_state", lambda index: None)


@pytest.mark.parametrize("search_dim", [0, 8])
def test_bulk_read_update_equals_the_label_by_label_one(tmp_path, monkeypatch, search_dim):
    """Random additions, deletions, moves above atol and below it: both paths find the same
    changes (counted exactly: a missed move fails), leave the same id map and the same vectors."""
    rng = np.random.default_rng(search_dim)
    n = 1500
    x = synthetic_clustered_vectors(n + 300, DIM, n_clusters=30, seed=2)
    built = build_index(_ids(n), x[:n], AnnConfig(num_threads=1, search_dim=search_dim), model_run_id="m")
    stored = write_ann_index(built, tmp_path / "ann")

    keep = np.sort(rng.choice(n, size=n - 120, replace=False))
    ids = [f"met:{i}" for i in keep] + _ids(300, n)
    y = np.vstack([x[keep], x[n:]]).copy()
    moved = rng.choice(len(keep), size=60, replace=False)
    y[moved[:40]] = synthetic_clustered_vectors(40, DIM, n_clusters=5, seed=9)  # real moves
    y[moved[40:], 0] += 1e-7  # below atol (1e-5 after normalising): unchanged
    y[moved[0]] *= -1.0  # negated: every component changes sign

    fast = read_ann_index(stored)
    result = fast.update(ids, y, "m")
    with monkeypatch.context() as patched:
        _label_by_label(patched)
        slow = read_ann_index(stored)
        expected = slow.update(ids, y, "m")

    assert (result.added, result.deleted, result.updated, result.rebuilt) == (300, 120, 40, False)
    assert (result.added, result.deleted, result.updated, result.unchanged) == (
        expected.added, expected.deleted, expected.updated, expected.unchanged)
    assert fast.id_map().equals(slow.id_map())
    labels = np.asarray([fast.label_of(a) for a in ids])
    np.testing.assert_array_equal(fast._stored_vectors(labels), slow._stored_vectors(labels))
    unit = y / np.linalg.norm(y, axis=1, keepdims=True)
    atol = 2e-3 if search_dim else 1e-6  # float16 rows in a two-stage index
    np.testing.assert_allclose(fast._stored_vectors(labels[moved[:40]]), unit[moved[:40]], atol=atol)
    # and the index answers from the moved vectors
    top, _ = fast.query(unit[moved[:40]], 1)
    assert (top[:, 0] == np.asarray([ids[i] for i in moved[:40]], dtype=object)).mean() >= 0.95


def test_exact_search_in_blocks_gives_the_same_neighbours():
    """Blocks of queries sized by the corpus (`_SIMS_BLOCK`) rank exactly as one batch does."""
    from artsim_pipeline.core.ann import exact

    x = synthetic_clustered_vectors(3000, DIM, n_clusters=40, seed=5)
    whole_idx, whole_sc = brute_force_topk(x, x[:500], 10, batch=500)
    original = exact._SIMS_BLOCK
    try:
        exact._SIMS_BLOCK = 3000 * 7  # 7 queries a block
        idx, sc = brute_force_topk(x, x[:500], 10)
    finally:
        exact._SIMS_BLOCK = original
    np.testing.assert_allclose(sc, whole_sc, atol=1e-6)
    assert (idx == whole_idx).mean() > 0.999  # ties among equal scores may swap
