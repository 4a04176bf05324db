"""The Lightning module that trains a similarity head (`train_similarity` in
:mod:`.similarity` builds and fits it; the heads are in :mod:`.heads`).

Objective per batch of positive pairs (a_i, b_i): weighted symmetric InfoNCE with in-batch
negatives (known positives and the same artwork masked out), plus a weighted hinge on the
cosine of mined negatives, optional auxiliary metadata classifiers and a neighbourhood-
preserving term; validation reports loss, retrieval metrics and metadata agreement on the val
split (see :mod:`.similarity`'s docstring for the why).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import lightning as L

from artsim_pipeline.core.ml.metrics import RetrievalTask, task_metrics
from artsim_pipeline.core.ml.train_config import TrainConfig

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
