"""The similarity model: a projection head trained on `weak_pairs` with PyTorch Lightning.

Pieces (no Dagster import; `lightning` namespace only):

* `ProjectionHead`: ``normalize(P (x - mean) + s * MLP(x - mean))``; with the default
  ``init="pca"`` it starts as the backbone's *centred* features in their top principal directions
  (shrunk-whitened by default) and the MLP branch starts at zero, so the untrained head is a
  sound retrieval metric and training learns a correction of it. The output is L2-normalised,
  so cosine = dot product.
* `SimilarityModule`: a `LightningModule` around an injected encoder (the head), optionally with
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

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import lightning as L

from artsim_pipeline.core.ml.heads import ProjectionHead, ResidualHead, build_head  # noqa: F401 - re-exported
from artsim_pipeline.core.ml.metrics import RetrievalTask, retrieval_task, task_metrics
from artsim_pipeline.core.ml.train_config import FUSIONS, HEAD_INITS, TrainConfig  # noqa: F401 - re-exported
from artsim_pipeline.core.vectors import l2_normalise

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Model (the heads live in core/ml/heads.py)


Inputs = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


class SimilarityModule(L.LightningModule):
    """Contrastive training of `head` (optionally `backbone` -> `head`) on index pairs.

    `inputs` maps artwork positions to model inputs: a tensor [n, d] of features (kept as a
    non-persistent buffer, so it follows the module to the device and stays out of checkpoints),
    or a callable ``positions (LongTensor) -> batch tensor`` (e.g. loading and transforming
    images for backbone fine-tuning). Batches are ``(a, b, w)``: positions and pair weights.
    """

    def __init__(
        self,
        head: nn.Module,
        config: TrainConfig,
        inputs: Inputs,
        *,
        backbone: nn.Module | None = None,
        train_negatives: np.ndarray | None = None,
        train_positive_keys: np.ndarray | None = None,
        n_items: int | None = None,
        val_task: RetrievalTask | None = None,
        val_negatives: np.ndarray | None = None,
        val_positives: np.ndarray | None = None,
        aux_targets: dict[str, np.ndarray] | None = None,
        val_labels: dict[str, list] | None = None,
    ):
        super().__init__()
        self.head = head
        self.backbone = backbone
        self.config = config
        if isinstance(inputs, torch.Tensor):
            self.register_buffer("features", inputs, persistent=False)
            self._input_fn = None
            n_items = n_items or inputs.shape[0]
        else:
            self.features = None
            self._input_fn = inputs
        if n_items is None:
            raise ValueError("n_items is required when inputs is a callable")
        self.n_items = int(n_items)
        # (a, b, w) rows of the mined negatives; float64 so positions survive exactly.
        self._train_neg = train_negatives if train_negatives is not None else np.zeros((0, 3))
        keys = train_positive_keys if train_positive_keys is not None else np.zeros(0, np.int64)
        self.register_buffer("pos_keys", torch.as_tensor(np.sort(keys), dtype=torch.long), persistent=False)
        self.val_task = val_task
        self._val_neg = val_negatives if val_negatives is not None else np.zeros((0, 3))
        self._val_pos = val_positives if val_positives is not None else np.zeros((0, 3))
        # Auxiliary targets: class codes per item position (-1: no label), one linear
        # classifier each on the head's output; items with any label are sampled per step.
        aux_targets = {k: v for k, v in (aux_targets or {}).items() if (np.asarray(v) >= 0).any()}
        self.aux_heads = nn.ModuleDict({
            name: nn.Linear(int(getattr(head, "out_dim")), int(np.asarray(codes).max()) + 1)
            for name, codes in aux_targets.items()
        })
        for name, codes in aux_targets.items():
            self.register_buffer(f"aux_{name}", torch.as_tensor(np.asarray(codes), dtype=torch.long), persistent=False)
        labelled = np.zeros(self.n_items, dtype=bool)
        for codes in aux_targets.values():
            labelled |= np.asarray(codes) >= 0
        self._aux_items = np.flatnonzero(labelled)
        # metadata of the val candidates (in val_task order): model selection only, never a target
        self.val_labels = val_labels or {}
        self._initial_agreement: dict[str, float] | None = None
        self.history: list[dict[str, float]] = []
        self._generator: torch.Generator | None = None
        self._epoch: dict[str, float] = {}
        self._epoch_start = 0.0

    # -- encoding ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone is not None:
            x = self.backbone(x)
        return self.head(x)

    def _inputs(self, positions: torch.Tensor) -> torch.Tensor:
        if self.features is not None:
            return self.features[positions.to(self.features.device)]
        return self._input_fn(positions.cpu()).to(self.device)

    def encode(self, positions: torch.Tensor) -> torch.Tensor:
        return self(self._inputs(positions))

    # -- losses --------------------------------------------------------------------------------
    def _false_negative_mask(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[B, B] True where (a_i, b_j), i != j, is the same artwork or a known positive pair."""
        same = a[:, None] == b[None, :]
        if self.pos_keys.numel():
            keys = a[:, None] * self.n_items + b[None, :]
            idx = torch.searchsorted(self.pos_keys, keys).clamp(max=self.pos_keys.numel() - 1)
            same = same | (self.pos_keys[idx] == keys)
        eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
        return same & ~eye

    def info_nce(self, za, zb, w, a, b) -> torch.Tensor:
        logits = za @ zb.T / self.config.temperature
        mask = self._false_negative_mask(a, b)
        logits_ab = logits.masked_fill(mask, float("-inf"))
        logits_ba = logits.T.masked_fill(mask.T, float("-inf"))
        target = torch.arange(len(a), device=logits.device)
        loss = F.cross_entropy(logits_ab, target, reduction="none")
        loss = loss + F.cross_entropy(logits_ba, target, reduction="none")
        return (w * loss).sum() / (2 * w.sum().clamp_min(1e-12))

    def negative_loss(self, za, zb, w) -> torch.Tensor:
        cos = (za * zb).sum(-1)
        return (w * F.relu(cos - self.config.neg_margin)).sum() / w.sum().clamp_min(1e-12)

    def aux_loss(self) -> torch.Tensor | None:
        """Cross-entropy of each attribute's classifier on a sample of labelled train items."""
        if not len(self.aux_heads) or self.config.aux_weight == 0 or not len(self._aux_items):
            return None
        size = min(self.config.aux_batch_size, len(self._aux_items))
        pick = torch.as_tensor(self._aux_items[torch.randperm(len(self._aux_items), generator=self._generator)[:size].numpy()])
        z = self.encode(pick)
        losses = []
        for name, classifier in self.aux_heads.items():
            target = getattr(self, f"aux_{name}")[pick.to(self.device)]
            known = target >= 0
            if known.any():
                losses.append(F.cross_entropy(classifier(z[known]), target[known]))
        return torch.stack(losses).mean() if losses else None

    def preserve_loss(self, positions: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """KL(raw in-batch neighbourhood distribution || the head's), self-similarity masked."""
        with torch.no_grad():
            raw = F.normalize(self._inputs(positions).float(), dim=-1)
            if self.backbone is not None:
                raw = F.normalize(self.backbone(raw).float(), dim=-1)
        t = self.config.preserve_temperature
        eye = torch.eye(len(positions), dtype=torch.bool, device=z.device)
        target = F.softmax((raw @ raw.T / t).masked_fill(eye, float("-inf")), dim=-1)
        log_pred = F.log_softmax((z @ z.T / t).masked_fill(eye, float("-inf")), dim=-1)
        return F.kl_div(log_pred.masked_fill(eye, 0.0), target, reduction="batchmean")

    def _sample_negatives(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        n = len(self._train_neg)
        if n == 0 or self.config.neg_weight == 0:
            return None
        size = min(self.config.neg_batch_size, n)
        pick = torch.randperm(n, generator=self._generator)[:size].numpy()
        rows = self._train_neg[pick]
        return (
            torch.as_tensor(rows[:, 0], dtype=torch.long),
            torch.as_tensor(rows[:, 1], dtype=torch.long),
            torch.as_tensor(rows[:, 2], dtype=torch.float32, device=self.device),
        )

    # -- Lightning hooks -------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._generator = torch.Generator().manual_seed(self.config.seed + 1)

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._epoch = {"loss": 0.0, "nce": 0.0, "neg": 0.0, "steps": 0}

    def training_step(self, batch, batch_idx):
        a, b, w = batch
        za, zb = self.encode(a), self.encode(b)
        nce = self.info_nce(za, zb, w, a, b)
        loss = nce
        neg_value = 0.0
        sampled = self._sample_negatives()
        if sampled is not None:
            na, nb, nw = sampled
            neg = self.negative_loss(self.encode(na), self.encode(nb), nw)
            loss = loss + self.config.neg_weight * neg
            neg_value = float(neg.detach())
        aux = self.aux_loss()
        if aux is not None:
            loss = loss + self.config.aux_weight * aux
            self._epoch["aux"] = self._epoch.get("aux", 0.0) + float(aux.detach())
        if self.config.preserve_weight:
            preserve = self.preserve_loss(a, za)
            loss = loss + self.config.preserve_weight * preserve
            self._epoch["preserve"] = self._epoch.get("preserve", 0.0) + float(preserve.detach())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at epoch {self.current_epoch}")
        self._epoch["loss"] += float(loss.detach())
        self._epoch["nce"] += float(nce.detach())
        self._epoch["neg"] += neg_value
        self._epoch["steps"] += 1
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(a))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sum, self._val_weight = 0.0, 0.0

    def validation_step(self, batch, batch_idx):
        a, b, w = batch
        nce = self.info_nce(self.encode(a), self.encode(b), w, a, b)
        self._val_sum += float(nce) * float(w.sum())
        self._val_weight += float(w.sum())

    @torch.no_grad()
    def _encode_all(self, positions: np.ndarray) -> torch.Tensor:
        out = []
        for start in range(0, len(positions), self.config.eval_batch_size):
            chunk = torch.as_tensor(positions[start : start + self.config.eval_batch_size], dtype=torch.long)
            out.append(self.encode(chunk))
        return torch.cat(out) if out else torch.zeros((0, 1))

    def retrieval_metrics(self) -> dict[str, float]:
        """val_* retrieval metrics (and the val hinge term) of the current weights."""
        metrics: dict[str, float] = {}
        if self.val_task is None:
            return metrics
        z = self._encode_all(self.val_task.index)
        if len(self._val_neg) and self.config.neg_weight:
            local = {int(p): i for i, p in enumerate(self.val_task.index)}
            ia = torch.as_tensor([local[int(p)] for p in self._val_neg[:, 0]], device=z.device)
            ib = torch.as_tensor([local[int(p)] for p in self._val_neg[:, 1]], device=z.device)
            nw = torch.as_tensor(self._val_neg[:, 2], dtype=torch.float32, device=z.device)
            metrics["_val_neg_loss"] = float(self.negative_loss(z[ia], z[ib], nw))
        vectors = z.float().cpu().numpy()
        scores = task_metrics(self.val_task, vectors)
        metrics.update({f"val_{k}": float(v) for k, v in scores.items()})
        agreement = self._val_agreement(vectors)
        metrics.update({f"val_agreement_{k}": v for k, v in agreement.items()})
        if self._initial_agreement is None:
            self._initial_agreement = agreement
        drops = [agreement[k] - self._initial_agreement[k] for k in agreement if k in self._initial_agreement]
        worst = min([0.0, *drops])
        metrics["val_selection"] = metrics["val_map_at_10"] + self.config.agreement_penalty * worst
        return metrics

    def _val_agreement(self, vectors: np.ndarray) -> dict[str, float]:
        from artsim_pipeline.core.ml.agreement import agreement_scores, nearest_neighbours

        if not self.val_labels:
            return {}
        neighbours = nearest_neighbours(vectors, np.arange(len(vectors)))  # one search for every attribute
        out = {}
        for name, values in self.val_labels.items():
            queries, scores = agreement_scores(vectors, values, neighbours=neighbours)
            if len(queries):
                out[name] = float(scores.mean())
        return out

    @torch.no_grad()
    def validation_metrics(self) -> dict[str, float]:
        """Everything a validation epoch logs, computed directly (used on the untrained head)."""
        self._val_sum, self._val_weight = 0.0, 0.0
        rows = self._val_pos
        for start in range(0, len(rows), self.config.batch_size):
            chunk = rows[start : start + self.config.batch_size]
            a = torch.as_tensor(chunk[:, 0], dtype=torch.long)
            b = torch.as_tensor(chunk[:, 1], dtype=torch.long)
            w = torch.as_tensor(chunk[:, 2], dtype=torch.float32, device=self.device)
            self.validation_step((a, b, w), 0)
        return self._finish_validation()

    def _finish_validation(self) -> dict[str, float]:
        val_loss = self._val_sum / max(self._val_weight, 1e-12)
        metrics = self.retrieval_metrics()
        val_loss += self.config.neg_weight * metrics.pop("_val_neg_loss", 0.0)
        metrics["val_loss"] = float(val_loss)
        return metrics

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        metrics = self._finish_validation()
        for key, value in metrics.items():
            self.log(key, value, prog_bar=key == self.config.monitor)
        self._val_metrics = metrics

    def on_train_epoch_end(self) -> None:
        steps = max(self._epoch.get("steps", 0), 1)
        row = {
            "epoch": int(self.current_epoch),
            "train_loss": self._epoch["loss"] / steps,
            "train_info_nce": self._epoch["nce"] / steps,
            "train_neg_loss": self._epoch["neg"] / steps,
            **({"train_aux_loss": self._epoch["aux"] / steps} if "aux" in self._epoch else {}),
            **({"train_preserve_loss": self._epoch["preserve"] / steps} if "preserve" in self._epoch else {}),
            **getattr(self, "_val_metrics", {}),
            "epoch_seconds": time.perf_counter() - self._epoch_start,
        }
        self.history.append(row)

    def configure_optimizers(self):
        head_params = [*self.head.parameters(), *self.aux_heads.parameters()]
        groups = [{"params": [p for p in head_params if p.requires_grad], "lr": self.config.lr}]
        if self.backbone is not None:
            params = [p for p in self.backbone.parameters() if p.requires_grad]
            if params:
                groups.append({"params": params, "lr": self.config.lr * self.config.backbone_lr_scale})
        return torch.optim.AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)


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
    """
    config = config or TrainConfig()
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("ids contain duplicates")
    missing = {"artwork_id_a", "artwork_id_b", "label", "split"} - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs lack columns {sorted(missing)}")

    # Trainer(deterministic=True) switches torch's global deterministic mode on; it is restored
    # afterwards so that later code in the same process (embedding, indexing) is unaffected.
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        L.seed_everything(config.seed, workers=True, verbose=False)

        if inputs is None:
            features = torch.from_numpy(np.ascontiguousarray(fuse_features(X, X_text, config.fusion)))
            if features.shape[0] != len(ids):
                raise ValueError(f"{len(ids)} ids but {features.shape[0]} feature rows")
            module_inputs: Inputs = features
            in_dim = features.shape[1]
        else:
            module_inputs = inputs
            with torch.no_grad():
                probe = inputs(torch.zeros(1, dtype=torch.long))
                in_dim = int((backbone(probe) if backbone is not None else probe).shape[-1])

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

        head = build_head(config.init, in_dim, config.hidden_dim, config.out_dim, config.dropout)
        if config.init in ("pca", "identity"):
            # Train items only: val/test features never shape the head.
            head.fit_init(
                _input_features(module_inputs, backbone, train_items, config.eval_batch_size),
                whiten=config.whiten, residual_scale=config.residual_scale,
            )
        else:
            head.residual_scale.fill_(float(config.residual_scale))
        module = SimilarityModule(
            head,
            config,
            module_inputs,
            backbone=backbone,
            train_negatives=train_neg,
            train_positive_keys=pos_keys,
            n_items=n,
            val_task=val_task,
            val_negatives=val_neg,
            val_positives=val_pos,
            aux_targets=_aux_targets(aux_labels, train_items, n, config.aux_min_class_count) if config.aux_weight else None,
            val_labels={name: [values[int(i)] for i in val_task.index] for name, values in (aux_labels or {}).items()},
        )

        def loader(rows: np.ndarray, shuffle: bool):
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

        # The untrained head (= centred backbone features with init="pca") is a candidate too:
        # when no epoch beats it on val, it is what comes back (best_epoch -1).
        module.eval()
        initial = module.validation_metrics()
        module.train()
        best = _BestWeights(config.monitor, config.monitor_mode)
        best.offer(initial.get(config.monitor), -1, head)
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
            trainer.fit(module, loader(train_pos, True), loader(val_pos, False))
            fit_seconds = time.perf_counter() - started
        if best.state is None:
            raise RuntimeError(f"training produced no {config.monitor!r} value")
        if best.epoch < 0:
            log.info("no training epoch beat the initial head on %s (%.4f): keeping it", config.monitor, best.score)
        head.load_state_dict(best.state)
        head.cpu().eval()
        history = module.history
        counts = {
            "train_pos": len(train_pos), "train_neg": len(train_neg),
            "val_pos": len(val_pos), "val_neg": len(val_neg),
            "dropped_train": drop_train, "dropped_val": drop_val,
            "val_candidates": len(val_task.index),
            **{f"aux_classes_{name}": layer.out_features for name, layer in module.aux_heads.items()},
        }
        return TrainResult(
            head=head,
            config=config,
            history=history,
            best_epoch=best.epoch,
            best_score=best.score,
            monitor=config.monitor,
            seconds_per_epoch=float(np.mean([r["epoch_seconds"] for r in history])) if history else math.nan,
            fit_seconds=fit_seconds,
            epochs_run=len(history),
            input_dim=in_dim,
            counts=counts,
            initial_metrics=initial,
        )
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)


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
