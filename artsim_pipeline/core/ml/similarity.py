"""The similarity model: a projection head trained on `weak_pairs` with PyTorch Lightning.

Pieces (no Dagster import; `lightning` namespace only):

* `ProjectionHead`: ``normalize(P (x - mean) + s * MLP(x - mean))``; with the default
  ``init="pca"`` it starts as the backbone's *centred* features in their top principal directions
  (shrunk-whitened by default) and the MLP branch starts at zero, so the untrained head is a
  sound retrieval metric and training learns a correction of it. The output is L2-normalised,
  so cosine = dot product.
* `SimilarityModule` (`similarity_module.py`): a `LightningModule` around an injected encoder (the head), optionally with
  an injected backbone in front of it (GPU fine-tuning: the backbone turns whatever `inputs`
  yields, e.g. image tensors, into features). Objective, per batch of positive pairs (a_i, b_i):

  - weighted symmetric InfoNCE: ``-log softmax(z_a_i . z_b_j / T)_i`` in both directions, each
    pair weighted by its `weight`; other pairs of the batch are the negatives, except known
    positives and the same artwork (masked out, so they are not pushed apart);
  - plus, for a batch of mined negatives (label 0 pairs, sampled with a seeded generator), a
    weighted hinge on cosine: ``w * relu(cos(z_a, z_b) - neg_margin)``, times `neg_weight`.

* `train_similarity`: fits the head on the train split with `L.Trainer` (deterministic, seeded,
  early stopping on a validation metric, the best epoch's weights restored, no checkpoint files);
  validation reports loss and retrieval metrics (`metrics.task_metrics`) on the val split. The
  untrained head is validated too and kept (``best_epoch == -1``) when no epoch beats it.
* `apply_head`: the fitted head on any feature matrix -> L2-normalised float32.

Why (measured on the bundled sample; splits are disjoint by maker): the former head (random
projection + MLP + LayerNorm) started as a random projection, and with ~1,400 train artworks and
1,280-d inputs it memorised the *train makers* from the first epoch on (train loss falls, val
loss rises from epoch 0): same_artist pairs teach "this palette is artist X", which does not
carry over to unseen makers. On image features the same_artist and culture+classification
relations are already near-saturated by raw cosine (recall@10 ~0.95), and the one relation that
could transfer, shared tags (motif glyphs), is barely present in pooled EfficientNet-Lite0
features (even a supervised tag probe on them does not improve tag retrieval), so on image
fusion the head can only match the (centred) raw features; it gains where the inputs carry the
tag relation (text, concat). Starting from the centred backbone geometry, up-weighting
shared_tags pairs and keeping the untrained head as a candidate makes training never worse
than the starting point on val.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import lightning as L

from artsim_pipeline.core.ml.heads import ProjectionHead, ResidualHead, build_head  # noqa: F401 - re-exported
from artsim_pipeline.core.ml.metrics import RetrievalTask, retrieval_task
from artsim_pipeline.core.ml.similarity_module import Inputs, SimilarityModule  # noqa: F401 - re-exported
from artsim_pipeline.core.ml.train_config import FUSIONS, HEAD_INITS, TrainConfig  # noqa: F401 - re-exported
from artsim_pipeline.core.vectors import l2_normalise

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Model: the heads live in core/ml/heads.py, the Lightning module in core/ml/similarity_module.py


# ----------------------------------------------------------------------------------------------
# Training entry point


@dataclass
class TrainResult:
    head: nn.Module  # fitted, on CPU, in eval mode, best epoch's weights
    config: TrainConfig
    history: list[dict[str, float]]  # one row per epoch (epoch, train_*, val_*, epoch_seconds)
    best_epoch: int  # -1: the untrained (initial) head scored best on val
    best_score: float
    monitor: str
    seconds_per_epoch: float
    fit_seconds: float
    epochs_run: int
    input_dim: int
    counts: dict[str, int] = field(default_factory=dict)  # pairs used / dropped per split & label
    initial_metrics: dict[str, float] = field(default_factory=dict)  # val_* of the untrained head

    def embed(self, X: np.ndarray | None, X_text: np.ndarray | None = None, batch_size: int = 2048) -> np.ndarray:
        """Fuse like training did, then apply the head."""
        return apply_head(self.head, fuse_features(X, X_text, self.config.fusion), batch_size)

    def history_columns(self) -> dict[str, list[float]]:
        keys = sorted({k for row in self.history for k in row})
        return {k: [row.get(k, math.nan) for row in self.history] for k in keys}


def fuse_features(image: np.ndarray | None, text: np.ndarray | None, fusion: str = "image") -> np.ndarray:
    """Model inputs from image and/or text embeddings (rows aligned).

    "image" / "text": that matrix alone; "concat": ``[image, text] / sqrt(2)`` (each part
    L2-normalised first), so the result is unit-norm and both modalities weigh the same.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")

    def unit(m: np.ndarray | None, name: str) -> np.ndarray:
        if m is None:
            raise ValueError(f"fusion={fusion!r} needs {name} embeddings")
        return l2_normalise(m, name=f"{name} embeddings")

    if fusion == "image":
        return unit(image, "image")
    if fusion == "text":
        return unit(text, "text")
    img, txt = unit(image, "image"), unit(text, "text")
    if img.shape[0] != txt.shape[0]:
        raise ValueError(f"image rows {img.shape[0]} != text rows {txt.shape[0]}")
    return np.concatenate([img, txt], axis=1) / np.float32(math.sqrt(2.0))


@torch.no_grad()
def _input_features(inputs: Inputs, backbone: nn.Module | None, positions: np.ndarray, batch_size: int) -> torch.Tensor:
    """Head inputs (backbone outputs when there is one) of `positions`, on CPU."""
    if isinstance(inputs, torch.Tensor) and backbone is None:
        return inputs[torch.as_tensor(positions, dtype=torch.long)].float()
    was_training = backbone.training if backbone is not None else False
    if backbone is not None:
        backbone.eval()
    out = []
    try:
        for start in range(0, len(positions), batch_size):
            chunk = torch.as_tensor(positions[start : start + batch_size], dtype=torch.long)
            x = inputs[chunk] if isinstance(inputs, torch.Tensor) else inputs(chunk)
            if backbone is not None:
                device = next(iter(backbone.parameters()), torch.empty(0)).device
                x = backbone(x.to(device))
            out.append(x.float().cpu())
    finally:
        if backbone is not None:
            backbone.train(was_training)
    return torch.cat(out)


def _pair_arrays(
    ids: Sequence[str], pairs, split: str, rule_weights: dict[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """(positives [p, 3], negatives [q, 3]) rows (pos_a, pos_b, weight) for `split`, and #dropped.

    `rule_weights` multiplies the weights of the named rules afterwards (rows weighted 0 by it
    are kept, so that they still count as known positives, and are not counted as dropped).
    """
    import polars as pl

    position = {x: i for i, x in enumerate(ids)}
    sub = pairs.filter(pl.col("split") == split)
    a = np.array([position.get(x, -1) for x in sub["artwork_id_a"].to_list()], dtype=np.int64)
    b = np.array([position.get(x, -1) for x in sub["artwork_id_b"].to_list()], dtype=np.int64)
    label = sub["label"].to_numpy().astype(np.int64)
    weight = sub["weight"].cast(pl.Float64).fill_null(1.0).to_numpy() if "weight" in sub.columns else np.ones(len(a))
    if np.any(weight < 0) or not np.isfinite(weight).all():
        raise ValueError(f"pair weights must be finite and >= 0 (split {split})")
    keep = (a >= 0) & (b >= 0) & (a != b) & (weight > 0)
    if rule_weights and "rule" in sub.columns:
        rules = sub["rule"].cast(pl.String).fill_null("").to_list()
        weight = weight * np.array([rule_weights.get(r, 1.0) for r in rules], dtype=np.float64)
    rows = np.stack([a, b, weight], axis=1)[keep]
    label = label[keep]
    return rows[label == 1], rows[label == 0], int((~keep).sum())


def train_similarity(
    ids: Sequence[str],
    X: np.ndarray | None,
    pairs,
    config: TrainConfig | None = None,
    logger: Any = None,
    callbacks: Sequence[Any] = (),
    *,
    X_text: np.ndarray | None = None,
    backbone: nn.Module | None = None,
    inputs: Inputs | None = None,
    aux_labels: dict[str, Sequence[Any]] | None = None,
    root_dir: str | None = None,
) -> TrainResult:
    """Fit a `ProjectionHead` on the train split of `pairs`; early-stop on the val split.

    `ids` [n] align with the rows of `X` (image embeddings) and `X_text`; they are fused by
    `config.fusion`. Pairs referencing artworks not in `ids` are dropped (counted in
    ``result.counts``). `logger` is any Lightning logger (e.g. `MLFlowLogger`) or None.
    With a `backbone`, pass `inputs` (a callable positions -> input batch); the head's input
    dimension is then taken from the backbone's output on one item. The backbone is trained in
    place (lr scaled by `backbone_lr_scale`); ``result.head`` is the head alone, so embed new
    items as ``apply_head(result.head, backbone(inputs))``.
    `aux_labels` (attribute -> one value per id, None when unknown): with ``config.aux_weight > 0``
    the train-split items' values are auxiliary classification targets (classes with fewer than
    ``config.aux_min_class_count`` train items are left out); the val-split items' values only
    help pick the epoch (``val_agreement_*`` and ``val_selection``); test labels are never read.
    `root_dir` is where Lightning may write (for a `logger` or `callbacks` that write files);
    without either, nothing is written (no logger, no checkpointing).

    The steps, in the order they draw random numbers: the head's inputs (:func:`_head_inputs`),
    the pairs per split (:func:`_training_pairs`), the head and its Lightning module
    (:func:`_build_module`), the fit (:func:`_fit`), the result (:func:`_train_result`).
    """
    config = config or TrainConfig()
    ids = list(ids)
    _check_ids_and_pairs(ids, pairs)
    with _seeded_deterministic_torch(config):
        module_inputs, in_dim = _head_inputs(ids, X, X_text, inputs, backbone, config)
        split = _training_pairs(ids, pairs, config)
        head, module = _build_module(split, module_inputs, in_dim, backbone, aux_labels, config)
        fit = _fit(module, split, config, logger, callbacks, root_dir)
        if fit.best.epoch < 0:
            log.info("no training epoch beat the initial head on %s (%.4f): keeping it", config.monitor, fit.best.score)
        head.load_state_dict(fit.best.state)
        head.cpu().eval()
        return _train_result(head, module, split, fit, in_dim, config)


# -- train_similarity's steps ----------------------------------------------------------------------
def _check_ids_and_pairs(ids: list[str], pairs) -> None:
    if len(set(ids)) != len(ids):
        raise ValueError("ids contain duplicates")
    missing = {"artwork_id_a", "artwork_id_b", "label", "split"} - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs lack columns {sorted(missing)}")


@contextlib.contextmanager
def _seeded_deterministic_torch(config: TrainConfig):
    """Seed everything with ``config.seed`` and use ``config.num_threads``; on the way out restore
    the thread count and torch's global deterministic mode, which Trainer(deterministic=True)
    switches on, so that later code in the same process (embedding, indexing) is unaffected."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        L.seed_everything(config.seed, workers=True, verbose=False)
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)


def _head_inputs(
    ids: list[str], X: np.ndarray | None, X_text: np.ndarray | None, inputs: Inputs | None,
    backbone: nn.Module | None, config: TrainConfig,
) -> tuple[Inputs, int]:
    """What the module reads per position (the fused feature matrix, or the `inputs` callable)
    and the head's input dimension (the backbone's output width when there is one)."""
    if inputs is None:
        features = torch.from_numpy(np.ascontiguousarray(fuse_features(X, X_text, config.fusion)))
        if features.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} ids but {features.shape[0]} feature rows")
        return features, int(features.shape[1])
    with torch.no_grad():
        probe = inputs(torch.zeros(1, dtype=torch.long))
        return inputs, int((backbone(probe) if backbone is not None else probe).shape[-1])


@dataclass
class _TrainingPairs:
    """The pairs of `train_similarity` as position rows (a, b, weight), per split and label."""

    n_items: int
    train_pos: np.ndarray  # weight > 0 only
    train_neg: np.ndarray
    val_pos: np.ndarray
    val_neg: np.ndarray
    dropped_train: int
    dropped_val: int
    val_task: RetrievalTask
    positive_keys: np.ndarray  # a * n + b both ways, rule-weighted-to-0 positives included
    train_items: np.ndarray  # positions in any train pair


def _training_pairs(ids: list[str], pairs, config: TrainConfig) -> _TrainingPairs:
    train_pos, train_neg, drop_train = _pair_arrays(ids, pairs, "train", config.rule_weights)
    val_pos, val_neg, drop_val = _pair_arrays(ids, pairs, "val")
    if len(train_pos) < 2:
        raise ValueError(f"need >= 2 positive train pairs with vectors, got {len(train_pos)}")
    if len(val_pos) == 0:
        raise ValueError("the val split has no positive pair with vectors: cannot early-stop")
    val_task = retrieval_task(ids, pairs, "val")
    n = len(ids)
    a, b = train_pos[:, 0].astype(np.int64), train_pos[:, 1].astype(np.int64)
    pos_keys = np.unique(np.concatenate([a * n + b, b * n + a]))  # incl. rule-weighted to 0
    train_items = np.unique(np.concatenate([train_pos[:, :2], train_neg[:, :2]]).astype(np.int64))
    train_pos, train_neg = train_pos[train_pos[:, 2] > 0], train_neg[train_neg[:, 2] > 0]
    if len(train_pos) < 2:
        raise ValueError(f"need >= 2 positive train pairs with weight > 0, got {len(train_pos)}")
    return _TrainingPairs(n, train_pos, train_neg, val_pos, val_neg, drop_train, drop_val, val_task, pos_keys, train_items)


def _build_module(
    split: _TrainingPairs, module_inputs: Inputs, in_dim: int, backbone: nn.Module | None,
    aux_labels: dict[str, Sequence[Any]] | None, config: TrainConfig,
) -> tuple[nn.Module, SimilarityModule]:
    """The head (initialised from the train items' features for "pca" / "identity") and the
    Lightning module that trains it."""
    head = build_head(config.init, in_dim, config.hidden_dim, config.out_dim, config.dropout)
    if config.init in ("pca", "identity"):
        # Train items only: val/test features never shape the head.
        head.fit_init(
            _input_features(module_inputs, backbone, split.train_items, config.eval_batch_size),
            whiten=config.whiten, residual_scale=config.residual_scale,
        )
    else:
        head.residual_scale.fill_(float(config.residual_scale))
    aux_targets = _aux_targets(aux_labels, split.train_items, split.n_items, config.aux_min_class_count) if config.aux_weight else None
    module = SimilarityModule(
        head,
        config,
        module_inputs,
        backbone=backbone,
        train_negatives=split.train_neg,
        train_positive_keys=split.positive_keys,
        n_items=split.n_items,
        val_task=split.val_task,
        val_negatives=split.val_neg,
        val_positives=split.val_pos,
        aux_targets=aux_targets,
        val_labels={name: [values[int(i)] for i in split.val_task.index] for name, values in (aux_labels or {}).items()},
    )
    return head, module


def _pair_loader(rows: np.ndarray, shuffle: bool, config: TrainConfig) -> torch.utils.data.DataLoader:
    """Batches of (a, b, w) pair rows; shuffled by a generator seeded with ``config.seed``."""
    dataset = torch.utils.data.TensorDataset(
        torch.as_tensor(rows[:, 0], dtype=torch.long),
        torch.as_tensor(rows[:, 1], dtype=torch.long),
        torch.as_tensor(rows[:, 2], dtype=torch.float32),
    )
    generator = torch.Generator().manual_seed(config.seed) if shuffle else None
    # drop_last on train avoids a final batch of 1 pair (no in-batch negatives).
    drop_last = shuffle and len(rows) > config.batch_size and len(rows) % config.batch_size == 1
    return torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=shuffle, generator=generator,
        num_workers=0, drop_last=drop_last,
    )


@dataclass
class _Fit:
    best: "_BestWeights"  # the best epoch's weights (epoch -1: the untrained head)
    initial: dict[str, float]  # val_* of the untrained head
    seconds: float


def _fit(
    module: SimilarityModule, split: _TrainingPairs, config: TrainConfig, logger: Any,
    callbacks: Sequence[Any], root_dir: str | None,
) -> _Fit:
    """Validate the untrained head, then fit with early stopping, keeping the best weights."""
    train_loader, val_loader = _pair_loader(split.train_pos, True, config), _pair_loader(split.val_pos, False, config)
    # The untrained head (= centred backbone features with init="pca") is a candidate too:
    # when no epoch beats it on val, it is what comes back (best_epoch -1).
    module.eval()
    initial = module.validation_metrics()
    module.train()
    best = _BestWeights(config.monitor, config.monitor_mode)
    best.offer(initial.get(config.monitor), -1, module.head)
    early = L.pytorch.callbacks.EarlyStopping(
        monitor=config.monitor, mode=config.monitor_mode, patience=config.patience,
        min_delta=config.min_delta, strict=True,
    )
    with _quiet(config.quiet):
        trainer = L.Trainer(
            accelerator=config.accelerator,
            devices=config.devices,
            max_epochs=config.max_epochs,
            min_epochs=config.min_epochs,
            deterministic=True,
            logger=logger if logger is not None else False,
            callbacks=[early, best, *callbacks],
            enable_checkpointing=False,
            enable_progress_bar=config.progress_bar,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            gradient_clip_val=config.grad_clip,
            default_root_dir=root_dir,
            log_every_n_steps=1,
        )
        started = time.perf_counter()
        trainer.fit(module, train_loader, val_loader)
        seconds = time.perf_counter() - started
    if best.state is None:
        raise RuntimeError(f"training produced no {config.monitor!r} value")
    return _Fit(best, initial, seconds)


def _train_result(
    head: nn.Module, module: SimilarityModule, split: _TrainingPairs, fit: _Fit, in_dim: int, config: TrainConfig
) -> TrainResult:
    history = module.history
    counts = {
        "train_pos": len(split.train_pos), "train_neg": len(split.train_neg),
        "val_pos": len(split.val_pos), "val_neg": len(split.val_neg),
        "dropped_train": split.dropped_train, "dropped_val": split.dropped_val,
        "val_candidates": len(split.val_task.index),
        **{f"aux_classes_{name}": layer.out_features for name, layer in module.aux_heads.items()},
    }
    return TrainResult(
        head=head,
        config=config,
        history=history,
        best_epoch=fit.best.epoch,
        best_score=fit.best.score,
        monitor=config.monitor,
        seconds_per_epoch=float(np.mean([r["epoch_seconds"] for r in history])) if history else math.nan,
        fit_seconds=fit.seconds,
        epochs_run=len(history),
        input_dim=in_dim,
        counts=counts,
        initial_metrics=fit.initial,
    )


def _aux_targets(aux_labels: dict[str, Sequence[Any]] | None, train_items: np.ndarray, n: int, min_count: int) -> dict[str, np.ndarray]:
    """Class codes per position (-1: unknown, not a train item, or a class too rare)."""
    out: dict[str, np.ndarray] = {}
    for name, values in (aux_labels or {}).items():
        if len(values) != n:
            raise ValueError(f"aux_labels[{name!r}] has {len(values)} values for {n} items")
        train_values = [values[int(i)] for i in train_items]
        counts: dict[Any, int] = {}
        for v in train_values:
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        classes = sorted(v for v, c in counts.items() if c >= min_count)
        if len(classes) < 2:
            continue
        code = {v: i for i, v in enumerate(classes)}
        codes = np.full(n, -1, dtype=np.int64)
        for i, v in zip(train_items, train_values):
            codes[int(i)] = code.get(v, -1)
        out[name] = codes
    return out


class _BestWeights(L.Callback):
    """Keeps a copy of the head's weights at the best monitored value (no checkpoint files)."""

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        self.score = -math.inf if mode == "max" else math.inf
        self.epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def offer(self, value: Any, epoch: int, head: nn.Module) -> None:
        if value is None:
            raise RuntimeError(f"monitored metric {self.monitor!r} was not logged")
        value = float(value)
        if not math.isfinite(value):
            raise FloatingPointError(f"{self.monitor} is {value} at epoch {epoch}")
        better = value > self.score if self.mode == "max" else value < self.score
        if better or self.state is None:
            self.score, self.epoch = value, int(epoch)
            self.state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self.offer(trainer.callback_metrics.get(self.monitor), trainer.current_epoch, pl_module.head)


class _quiet:
    """Silence Lightning's info logging and its 'few workers' hints while fitting."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        if not self.enabled:
            return self
        self._loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
        self._levels = [lg.level for lg in self._loggers]
        for lg in self._loggers:
            lg.setLevel(logging.WARNING)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*number of training batches.*")
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._warnings.__exit__(*exc)
            for lg, level in zip(self._loggers, self._levels):
                lg.setLevel(level)
        return False


# ----------------------------------------------------------------------------------------------
# Inference


def apply_head(head: nn.Module, X: np.ndarray, batch_size: int = 2048, device: str | torch.device | None = None) -> np.ndarray:
    """`head` on the rows of `X` -> L2-normalised float32 [n, out_dim] (inference mode, chunked)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or inf")
    if device is None:
        try:
            device = next(head.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    # Modules from torch.export (MLflow's "pt2" format) keep the mode they were exported in and
    # refuse .eval()/.train() with NotImplementedError; they are used as they are.
    was_training = bool(getattr(head, "training", False))
    if was_training:
        try:
            head.eval()
        except NotImplementedError:
            was_training = False
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(X), batch_size):
                chunk = torch.from_numpy(X[start : start + batch_size]).to(device)
                out.append(F.normalize(head(chunk).float(), dim=-1).cpu().numpy())
    finally:
        if was_training:
            head.train(True)
    if not out:
        out_dim = getattr(head, "out_dim", 0)
        return np.zeros((0, out_dim), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(out).astype(np.float32, copy=False))


__all__ = [
    "FUSIONS",
    "HEAD_INITS",
    "ProjectionHead",
    "ResidualHead",
    "SimilarityModule",
    "TrainConfig",
    "TrainResult",
    "apply_head",
    "build_head",
    "fuse_features",
    "train_similarity",
]
