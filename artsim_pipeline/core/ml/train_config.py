"""The hyper-parameters of the similarity head (`TrainConfig`), torch-free so that the Dagster
config of `similarity_model` takes its defaults from here without importing torch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

FUSIONS = ("image", "text", "concat")
#: "identity": `ResidualHead` (starts as the raw backbone, out_dim = in_dim); "pca" / "random":
#: `ProjectionHead` started from the centred principal directions or a random projection.
HEAD_INITS = ("identity", "pca", "random")


@dataclass
class TrainConfig:
    """Hyper-parameters of `train_similarity` (all logged to MLflow as params)."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256  # positive pairs per step (in-batch negatives: 2 * batch_size - 2)
    neg_batch_size: int = 128  # mined negative pairs per step
    max_epochs: int = 30
    min_epochs: int = 1
    patience: int = 5
    min_delta: float = 0.0
    # mAP@10 rather than recall@10: the hit rate saturates at 1.0 early on small val splits and
    # then stops training too soon. Any logged val_* key works; the mode is inferred.
    monitor: str = "val_map_at_10"
    temperature: float = 0.07
    neg_margin: float = 0.2
    neg_weight: float = 1.0
    hidden_dim: int = 512
    out_dim: int = 256
    dropout: float = 0.1
    fusion: str = "image"  # "image" | "text" | "concat" (see `fuse_features`)
    seed: int = 0
    accelerator: str = "cpu"  # "auto" to use a GPU when present
    devices: int | str = 1
    num_threads: int | None = None  # torch CPU threads while training; None leaves it alone
    progress_bar: bool = False
    quiet: bool = True  # silence Lightning's info banners and dataloader hints
    eval_batch_size: int = 2048
    backbone_lr_scale: float = 0.1  # lr multiplier for an injected backbone
    grad_clip: float | None = 1.0
    # Head initialisation (see `ProjectionHead.fit_init`): "pca" starts from the centred backbone
    # features (train-split mean and principal directions), "random" from a random projection.
    init: str = "pca"
    whiten: float = 1.0  # 0: PCA rotation (keeps centred cosines); 1: shrunk whitening
    residual_scale: float = 1.0  # weight of the MLP branch next to the linear path
    # Multipliers of pair weights by `rule`; rules not named keep their weight (0 drops a rule
    # from the loss, its pairs still count as known positives). shared_tags pairs (weights
    # <= 0.5) are the ones whose relation carries over to unseen makers; see the module notes.
    rule_weights: dict[str, float] | None = field(default_factory=lambda: {"shared_tags": 3.0})
    # Auxiliary metadata targets (see `train_similarity`'s `aux_labels`): a linear classifier per
    # attribute on the head's output, trained on train-split works only; 0 switches them off.
    aux_weight: float = 0.0
    aux_batch_size: int = 256
    aux_min_class_count: int = 5
    # Neighbourhood preservation: KL between the in-batch similarity distributions of the raw
    # inputs and of the head's outputs, so the head pulls weak positives together without
    # scrambling the backbone's neighbourhoods; 0 switches it off.
    preserve_weight: float = 0.0
    preserve_temperature: float = 0.05
    # `val_selection` = val mAP@10 + agreement_penalty * (the largest drop, if any, of val
    # metadata agreement below the untrained head's, over the `aux_labels` attributes): a
    # monitor that picks the epoch which wins weak pairs without costing curators neighbours.
    agreement_penalty: float = 2.0

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (in-batch negatives)")
        if self.init not in HEAD_INITS:
            raise ValueError(f"init must be one of {HEAD_INITS}, got {self.init!r}")
        if not 0.0 <= self.whiten <= 1.0:
            raise ValueError("whiten must be in [0, 1]")
        if self.rule_weights and any(not (math.isfinite(w) and w >= 0) for w in self.rule_weights.values()):
            raise ValueError("rule_weights must be finite and >= 0")
        for name in ("aux_weight", "preserve_weight", "agreement_penalty"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0")
        if self.preserve_temperature <= 0:
            raise ValueError("preserve_temperature must be > 0")

    @property
    def monitor_mode(self) -> str:
        return "min" if self.monitor.endswith("loss") else "max"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The pipeline's choices where they differ from the defaults above (the Dagster config of
#: `similarity_model` starts from these), measured on the real photographs (README, "Measured"):
#: a residual head that starts as the raw backbone, metadata as auxiliary targets, a term that
#: keeps the backbone's neighbourhoods, an epoch picked so that val metadata agreement does not
#: drop, and a GPU when there is one. The core defaults stay the plain baseline the unit tests pin.
PIPELINE_CHOICES: dict[str, Any] = {
    "init": "identity",
    "residual_scale": 0.3,
    "aux_weight": 1.0,
    "preserve_weight": 3.0,
    "monitor": "val_selection",
    "accelerator": "auto",
}


def pipeline_train_config(**overrides: Any) -> TrainConfig:
    """`TrainConfig` with `PIPELINE_CHOICES`, then `overrides`."""
    return TrainConfig(**{**PIPELINE_CHOICES, **overrides})
