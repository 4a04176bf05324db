"""The heads that turn backbone features into the served vectors (no Dagster, no I/O).

* `ResidualHead` (the pipeline's choice, ``init="identity"``): ``normalize(x + s * MLP(x - mean))``,
  starting as the raw backbone.
* `ProjectionHead` (``init="pca"`` / ``"random"``): ``normalize(P (x - shift) + s * MLP(x - shift))``,
  starting from the centred principal directions or a random projection.
* `build_head`: an untrained head of a kind, as `train_similarity` and the stored-head loader build it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from artsim_pipeline.core.ml.train_config import HEAD_INITS

class ProjectionHead(nn.Module):
    """``normalize(P (x - shift) + residual_scale * MLP(x - shift))``, MLP = Linear-GELU-Dropout-Linear.

    Built to start from the backbone's own geometry rather than from a random projection:
    `fit_init` (called by `train_similarity` on the train split's features) sets ``shift`` to the
    feature mean and ``skip`` (P) to the top principal directions of the centred features, and
    the MLP's last layer starts at zero, so the untrained head ranks like *centred* raw features
    (exactly so with ``whiten=0`` when ``out_dim`` covers the rank of the centred train rows;
    within their top-``out_dim`` principal subspace otherwise). Training then learns a correction of that metric instead of a metric from scratch.
    ``shift`` and ``residual_scale`` are persistent buffers: a state dict restores the whole head.
    Without `fit_init` (e.g. ``ProjectionHead(...)`` before `load_state_dict`) ``skip`` is a random
    semi-orthogonal matrix and ``shift`` is zero.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.register_buffer("shift", torch.zeros(in_dim))
        self.register_buffer("residual_scale", torch.tensor(1.0))
        self.skip = nn.Linear(in_dim, out_dim, bias=False)
        nn.init.orthogonal_(self.skip.weight)
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    @torch.no_grad()
    def fit_init(self, X: np.ndarray | torch.Tensor, whiten: float = 0.0, residual_scale: float = 1.0) -> "ProjectionHead":
        """Data-dependent init from feature rows `X` [n, in_dim] (train items only).

        ``shift`` = mean of `X`; ``skip`` rows = the top ``out_dim`` principal directions of the
        centred rows, scaled by ``(s_i^2 + s_mean^2)^(-whiten/2)`` (0: a plain rotation that keeps
        cosines; 1: shrunk whitening); rows beyond the rank of `X` stay zero.
        """
        X = torch.as_tensor(np.asarray(X, dtype=np.float32)).double()
        if X.ndim != 2 or X.shape[1] != self.in_dim or X.shape[0] < 2:
            raise ValueError(f"fit_init needs [n >= 2, {self.in_dim}] features, got {tuple(X.shape)}")
        mean = X.mean(0)
        centred = X - mean
        _, S, Vh = torch.linalg.svd(centred, full_matrices=False)
        # Deterministic signs: the largest-magnitude coordinate of each direction is positive.
        Vh = Vh * torch.where(Vh.gather(1, Vh.abs().argmax(1, keepdim=True)) < 0, -1.0, 1.0)
        k = min(self.out_dim, Vh.shape[0])
        scale = S / math.sqrt(X.shape[0] - 1)
        rows = Vh[:k]
        if whiten:
            var = scale[:k] ** 2
            factor = (var + var.mean()).pow(-whiten / 2)
            rows = rows * (factor / factor[0])[:, None]
        weight = torch.zeros(self.out_dim, self.in_dim, dtype=torch.float64)
        weight[:k] = rows
        self.skip.weight.copy_(weight.float())
        self.shift.copy_(mean.float())
        self.residual_scale.fill_(float(residual_scale))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x - self.shift
        return F.normalize(self.skip(h) + self.residual_scale * self.mlp(h), dim=-1)


class ResidualHead(nn.Module):
    """``normalize(x + residual_scale * MLP(x - shift))``: starts as the identity.

    The MLP's last layer starts at zero, so the untrained head ranks exactly like the raw
    backbone and training can only move away from it as far as the losses justify (the
    neighbourhood-preserving term pulls it back). The output keeps the input's dimension.
    """

    kind = "identity"

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int | None = None, dropout: float = 0.1):
        super().__init__()
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, in_dim
        self.register_buffer("shift", torch.zeros(in_dim))
        self.register_buffer("residual_scale", torch.tensor(1.0))
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, in_dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    @torch.no_grad()
    def fit_init(self, X: np.ndarray | torch.Tensor, whiten: float = 0.0, residual_scale: float = 1.0) -> "ResidualHead":
        """``shift`` = the mean of the train rows `X` (`whiten` is ignored: the skip path is the identity)."""
        X = torch.as_tensor(np.asarray(X, dtype=np.float32))
        if X.ndim != 2 or X.shape[1] != self.in_dim or X.shape[0] < 1:
            raise ValueError(f"fit_init needs [n >= 1, {self.in_dim}] features, got {tuple(X.shape)}")
        self.shift.copy_(X.mean(0))
        self.residual_scale.fill_(float(residual_scale))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x + self.residual_scale * self.mlp(x - self.shift), dim=-1)


def build_head(kind: str, in_dim: int, hidden_dim: int, out_dim: int, dropout: float) -> nn.Module:
    """An untrained head of `kind` (a `HEAD_INITS` value; "pca" and "random" share `ProjectionHead`)."""
    if kind == "identity":
        return ResidualHead(in_dim, hidden_dim, dropout=dropout)
    if kind in ("pca", "random"):
        return ProjectionHead(in_dim, hidden_dim, out_dim, dropout)
    raise ValueError(f"unknown head kind {kind!r}; expected one of {HEAD_INITS}")


__all__ = ["HEAD_INITS", "ProjectionHead", "ResidualHead", "build_head"]
