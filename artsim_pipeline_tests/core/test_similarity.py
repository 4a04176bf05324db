"""The similarity head on synthetic clustered data, and its MLflow logging."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from artsim_pipeline.core.ml.metrics import evaluate_retrieval, random_vectors_baseline
from artsim_pipeline.core.ml.similarity import (
    ProjectionHead,
    TrainConfig,
    apply_head,
    fuse_features,
    train_similarity,
)

PAIR_COLUMNS = ["artwork_id_a", "artwork_id_b", "label", "rule", "weight", "split"]


def make_clustered(
    n_clusters: int = 15,
    per_cluster: int = 20,
    dim: int = 64,
    sub_dim: int = 8,
    nuisance_dim: int = 8,
    signal: float = 1.0,
    nuisance: float = 3.0,
    noise: float = 0.5,
    negatives_per_item: int = 4,
    seed: int = 0,
):
    """Weakly clustered unit vectors and cluster-membership pairs.

    Each vector = cluster centre (in an 8-d subspace) + a large per-item "nuisance" component (in
    another 8-d subspace, e.g. lighting/medium in real embeddings) + isotropic noise, so raw cosine
    is dominated by the nuisance. Within each cluster items are split 60/20/20 into
    train/val/test (no item in two splits); positives: every same-cluster pair inside a split;
    negatives: `negatives_per_item` random other-cluster partners inside the split.
    """
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, sub_dim + nuisance_dim)))[0]
    signal_basis, nuisance_basis = basis[:, :sub_dim], basis[:, sub_dim:]
    centres = rng.standard_normal((n_clusters, sub_dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cluster = np.repeat(np.arange(n_clusters), per_cluster)
    n = len(cluster)
    X = (
        signal * centres[cluster] @ signal_basis.T
        + nuisance * (rng.standard_normal((n, nuisance_dim)) / np.sqrt(nuisance_dim)) @ nuisance_basis.T
        + noise * rng.standard_normal((n, dim)) / np.sqrt(dim)
    )
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"syn:{i}" for i in range(n)]
    split = np.empty(n, dtype=object)
    n_train, n_val = int(0.6 * per_cluster), int(0.2 * per_cluster)
    for c in range(n_clusters):
        members = rng.permutation(np.flatnonzero(cluster == c))
        split[members[:n_train]] = "train"
        split[members[n_train : n_train + n_val]] = "val"
        split[members[n_train + n_val :]] = "test"
    rows = []
    for name in ("train", "val", "test"):
        items = np.flatnonzero(split == name)
        for position, i in enumerate(items):
            for j in items[position + 1 :]:
                if cluster[i] == cluster[j]:
                    rows.append((ids[i], ids[j], 1, "same_cluster", float(rng.uniform(0.5, 1.0)), name))
            others = items[cluster[items] != cluster[i]]
            for j in rng.choice(others, size=negatives_per_item, replace=False):
                rows.append((ids[i], ids[j], 0, "other_cluster", float(rng.uniform(0.5, 1.0)), name))
    pairs = pl.DataFrame(rows, schema=PAIR_COLUMNS, orient="row")
    return ids, X, pairs, cluster


def small_config(**overrides) -> TrainConfig:
    values = dict(
        batch_size=64, neg_batch_size=64, hidden_dim=128, out_dim=64, max_epochs=15, patience=3,
        num_threads=1, seed=7,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def data():
    return make_clustered()


@pytest.fixture(scope="module")
def trained(data):
    ids, X, pairs, _ = data
    return train_similarity(ids, X, pairs, small_config())


def test_the_trained_head_beats_raw_and_random_vectors_on_test_recall(data, trained):
    ids, X, pairs, _ = data
    raw = evaluate_retrieval(ids, X, pairs, split="test")
    random = random_vectors_baseline(ids, pairs, split="test", seed=1)
    vectors = trained.embed(X)
    model = evaluate_retrieval(ids, vectors, pairs, split="test")
    assert model["n_queries"] == raw["n_queries"] == 60
    # Raw vectors are only weakly clustered; the head learns to ignore the nuisance subspace.
    assert raw["recall_at_10"] < 0.8
    assert model["recall_at_10"] >= raw["recall_at_10"] + 0.15
    assert model["recall_at_10"] > random["recall_at_10"] + 0.3
    assert model["map_at_10"] > raw["map_at_10"] + 0.3
    assert model["recall_at_1"] > raw["recall_at_1"] + 0.3
    # ...and it beats its own starting point (centred, whitened raw features) on val.
    assert trained.best_epoch >= 0
    assert trained.best_score > trained.initial_metrics["val_map_at_10"] + 0.3


def test_training_reports_history_best_epoch_and_timing(trained):
    assert 1 <= trained.epochs_run <= 15
    assert -1 <= trained.best_epoch < trained.epochs_run
    assert [row["epoch"] for row in trained.history] == list(range(trained.epochs_run))
    for row in trained.history:
        for key in ("train_loss", "val_loss", "val_recall_at_10", "val_map_at_10", "epoch_seconds"):
            assert np.isfinite(row[key]), key
    for key in ("val_loss", "val_recall_at_10", "val_map_at_10"):
        assert np.isfinite(trained.initial_metrics[key]), key
    scores = [trained.initial_metrics["val_map_at_10"]] + [row["val_map_at_10"] for row in trained.history]
    assert trained.best_score == max(scores)
    assert trained.history[-1]["train_loss"] < trained.history[0]["train_loss"]
    assert trained.seconds_per_epoch > 0 and trained.counts["train_pos"] == 15 * 66
    assert not trained.head.training


def test_same_inputs_and_seed_give_the_same_model_and_metrics(data, trained):
    ids, X, pairs, _ = data
    again = train_similarity(ids, X, pairs, small_config())
    strip = lambda h: [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in h]  # noqa: E731
    assert strip(again.history) == strip(trained.history)
    assert again.best_epoch == trained.best_epoch
    np.testing.assert_array_equal(again.embed(X), trained.embed(X))
    assert evaluate_retrieval(ids, again.embed(X), pairs) == evaluate_retrieval(ids, trained.embed(X), pairs)


def test_the_untrained_head_ranks_like_centred_raw_features(data):
    """fit_init: shift = train mean, skip = principal directions, MLP branch = 0."""
    ids, X, pairs, _ = data
    rng = np.random.default_rng(3)
    fit_rows = X[rng.choice(len(X), size=150, replace=False)]
    head = ProjectionHead(X.shape[1], 32, X.shape[1], 0.0).fit_init(fit_rows, whiten=0.0).eval()
    centred = X - fit_rows.mean(0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    z = apply_head(head, X)
    np.testing.assert_allclose(z @ z.T, centred @ centred.T, atol=1e-4)
    # Whitened, or fewer output dims: still deterministic, unit rows, MLP branch silent.
    small = ProjectionHead(X.shape[1], 32, 16, 0.0).fit_init(fit_rows, whiten=1.0)
    again = ProjectionHead(X.shape[1], 32, 16, 0.0).fit_init(fit_rows, whiten=1.0)
    np.testing.assert_array_equal(small.skip.weight.detach().numpy(), again.skip.weight.detach().numpy())
    assert float(small.mlp[-1].weight.detach().abs().sum()) == 0.0
    np.testing.assert_allclose(np.linalg.norm(apply_head(small, X), axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        head.fit_init(X[:1])


def test_a_state_dict_restores_the_whole_head(trained, data):
    """Centre and residual scale are buffers: load_head's construct-then-load gives the same model."""
    _, X, _, _ = data
    head = trained.head
    fresh = ProjectionHead(head.in_dim, head.hidden_dim, head.out_dim, 0.1)
    fresh.load_state_dict(head.state_dict())
    assert {"shift", "residual_scale"} <= set(head.state_dict())
    assert float(head.shift.detach().abs().sum()) > 0
    np.testing.assert_array_equal(apply_head(fresh.eval(), X), apply_head(head, X))


def test_the_initial_head_is_kept_when_no_epoch_beats_it(data):
    """With nothing learnt (lr 0) every epoch ties the start: the untrained head comes back."""
    ids, X, pairs, _ = data
    result = train_similarity(ids, X, pairs, small_config(lr=0.0, max_epochs=2, patience=5))
    assert result.best_epoch == -1 and result.epochs_run == 2
    assert result.best_score == result.initial_metrics["val_map_at_10"]
    start = ProjectionHead(X.shape[1], 128, 64, 0.1)
    start.load_state_dict(result.head.state_dict())
    assert float(start.mlp[-1].weight.detach().abs().sum()) == 0.0  # still the initial weights


def test_rule_weights_scale_or_drop_rules(data):
    ids, X, pairs, _ = data
    result = train_similarity(ids, X, pairs, small_config(max_epochs=1, rule_weights={"other_cluster": 0.0}))
    assert result.counts["train_neg"] == 0 and result.counts["dropped_train"] == 0
    with pytest.raises(ValueError, match="weight > 0"):
        train_similarity(ids, X, pairs, small_config(max_epochs=1, rule_weights={"same_cluster": 0.0}))
    with pytest.raises(ValueError):
        TrainConfig(rule_weights={"same_cluster": -1.0})


def test_apply_head_returns_unit_float32_rows_in_chunks(trained, data):
    _, X, _, _ = data
    whole = apply_head(trained.head, X, batch_size=4096)
    chunked = apply_head(trained.head, X, batch_size=7)
    assert whole.dtype == np.float32 and whole.shape == (len(X), 64)
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(whole, chunked, atol=1e-5)
    with pytest.raises(ValueError):
        apply_head(trained.head, np.full((2, X.shape[1]), np.nan, dtype=np.float32))


def test_fusion_of_image_and_text_embeddings():
    rng = np.random.default_rng(0)
    image, text = rng.standard_normal((5, 12)), rng.standard_normal((5, 4))
    fused = fuse_features(image, text, "concat")
    assert fused.shape == (5, 16) and fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-6)
    assert fuse_features(None, text, "text").shape == (5, 4)
    with pytest.raises(ValueError):
        fuse_features(image, None, "concat")
    with pytest.raises(ValueError):
        TrainConfig(fusion="sum")


def test_pairs_without_vectors_are_dropped_and_a_missing_val_split_raises(data):
    ids, X, pairs, _ = data
    extra = pl.DataFrame(
        [("syn:0", "unknown:1", 1, "x", 1.0, "train")], schema=PAIR_COLUMNS, orient="row"
    )
    result = train_similarity(ids, X, pl.concat([pairs, extra]), small_config(max_epochs=1))
    assert result.counts["dropped_train"] == 1 and result.epochs_run == 1
    with pytest.raises(ValueError, match="val"):
        train_similarity(ids, X, pairs.filter(pl.col("split") != "val"), small_config(max_epochs=1))
    with pytest.raises(ValueError, match="duplicates"):
        train_similarity(ids + ids[:1], np.vstack([X, X[:1]]), pairs, small_config(max_epochs=1))


def test_a_backbone_can_be_injected_in_front_of_the_head(data):
    """GPU fine-tuning shape: inputs come from a callable, a backbone maps them to features."""
    ids, X, pairs, _ = data
    raw = torch.from_numpy(X)
    backbone = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 32), torch.nn.ReLU())
    result = train_similarity(
        ids, None, pairs, small_config(max_epochs=2), backbone=backbone, inputs=lambda positions: raw[positions]
    )
    assert result.input_dim == 32 and result.epochs_run == 2
    assert isinstance(result.head, ProjectionHead)


def test_the_identity_head_starts_as_the_raw_backbone(data):
    from artsim_pipeline.core.ml.similarity import ResidualHead

    _, X, _, _ = data
    head = ResidualHead(X.shape[1], 32, dropout=0.0).fit_init(X[:50])
    assert head.out_dim == X.shape[1]
    np.testing.assert_allclose(apply_head(head, X), X, atol=1e-6)


def test_metadata_targets_use_train_items_only_and_neighbourhoods_are_kept(data):
    from artsim_pipeline.core.ml.similarity import _aux_targets

    ids, X, pairs, cluster = data
    train = set(pairs.filter(pl.col("split") == "train")["artwork_id_a"].to_list())
    labels = [f"c{c}" for c in cluster]
    positions = np.array([i for i, x in enumerate(ids) if x in train])
    codes = _aux_targets({"department": labels}, positions, len(ids), min_count=2)["department"]
    assert (codes[positions] >= 0).all()
    assert (np.delete(codes, positions) == -1).all()  # val and test labels never reach training
    # too rare a class is left out; a single class is not a target at all
    assert _aux_targets({"x": ["a"] * len(ids)}, positions, len(ids), min_count=2) == {}

    config = small_config(init="identity", aux_weight=1.0, preserve_weight=1.0, residual_scale=0.3, max_epochs=4)
    result = train_similarity(ids, X, pairs, config, aux_labels={"department": labels})
    assert result.head.out_dim == X.shape[1]
    assert result.counts["aux_classes_department"] == len(set(cluster))
    assert "train_aux_loss" in result.history[0] and "train_preserve_loss" in result.history[0]
    again = train_similarity(ids, X, pairs, config, aux_labels={"department": labels})
    np.testing.assert_array_equal(apply_head(result.head, X), apply_head(again.head, X))
    trained = evaluate_retrieval(ids, apply_head(result.head, X), pairs)
    raw = evaluate_retrieval(ids, X, pairs)
    assert trained["map_at_10"] >= raw["map_at_10"]


def test_training_leaves_torch_as_it_found_it(data):
    """Trainer(deterministic=True) and config.num_threads change process-wide torch state: both
    are restored after a fit and after a refused one."""
    ids, X, pairs, _ = data
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    train_similarity(ids, X, pairs, small_config(max_epochs=1, num_threads=max(1, threads - 1) if threads > 1 else 2))
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)
    with pytest.raises(ValueError, match="val split"):
        train_similarity(ids, X, pairs.filter(pl.col("split") != "val"), small_config(max_epochs=1, num_threads=1))
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)
