"""L2 normalisation of vector rows: the one helper the package uses for it (the ANN index, the
metrics, the agreement figures, training's feature fusion, clusters and the map)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

#: Rows with a norm at or below this have no direction.
ZERO_NORM = 1e-12


def l2_normalise(vectors: Any, *, zero_rows: Literal["raise", "keep"] = "raise", dtype: Any = np.float32,
                 name: str = "vectors") -> np.ndarray:
    """The rows of a finite 2-D array scaled to unit length, as `dtype`.

    NaN or infinite values are a ValueError. A zero row is a ValueError with ``zero_rows="raise"``
    (a vector without a direction cannot be searched or compared) and stays all-zero with
    ``"keep"`` (a work without a usable vector, which clustering and the map still place).
    `name` says what the vectors are in the messages.
    """
    x = np.asarray(vectors, dtype=dtype)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norms[:, 0] <= ZERO_NORM
    if zero.any():
        if zero_rows == "raise":
            raise ValueError(f"{name}: row {int(np.flatnonzero(zero)[0])} has zero norm and cannot be normalised")
        norms = np.where(norms > ZERO_NORM, norms, 1.0)
    return x / norms
