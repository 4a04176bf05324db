"""What `near_duplicates` and `clusters` keep to skip work whose inputs did not change: the
candidate pairs (before titles are joined) and the clusters' summary, each stored with the key
of the inputs it was computed from. A reader passes the key it would compute now and gets the
stored part only when the keys agree.

Part of the storage layout: `resources/artefacts/__init__.py` has the table of keys."""

from __future__ import annotations

from typing import Any

import polars as pl

from artsim_pipeline.resources.artefacts.maps import _load_state, _parquet_bytes, _save_state
from artsim_pipeline.resources.storage import ArtsimStorage

NEAR_DUPLICATES_KEY = "models/near_duplicates"
CLUSTER_SUMMARY_KEY = "models/clusters/summary"


def _save_keyed(storage: ArtsimStorage, key: str, frame: pl.DataFrame, inputs_key: str, info: dict[str, Any]) -> None:
    _save_state(storage, key, {"table.parquet": _parquet_bytes(frame)}, {**info, "inputs_key": inputs_key})


def _load_keyed(storage: ArtsimStorage, key: str, inputs_key: str) -> tuple[pl.DataFrame, dict[str, Any]] | None:
    import io

    state = _load_state(storage, key, ("table.parquet",))
    if state is None or state[1].get("inputs_key") != inputs_key:
        return None
    files, info = state
    return pl.read_parquet(io.BytesIO(files["table.parquet"])), info


def save_near_duplicate_candidates(storage: ArtsimStorage, pairs: pl.DataFrame, inputs_key: str, info: dict[str, Any]) -> None:
    """Store `near_duplicates`' pairs without titles and what the run found (threshold and the
    like, in `info`) under the key of the inputs they came from."""
    _save_keyed(storage, NEAR_DUPLICATES_KEY, pairs, inputs_key, info)


def stored_near_duplicate_candidates(storage: ArtsimStorage, inputs_key: str) -> tuple[pl.DataFrame, dict[str, Any]] | None:
    """The stored pairs and info when they were computed from inputs with this key; else (none
    stored, torn, or other inputs) None."""
    return _load_keyed(storage, NEAR_DUPLICATES_KEY, inputs_key)


def save_cluster_summary(storage: ArtsimStorage, summary: pl.DataFrame, inputs_key: str) -> None:
    """Store the clusters' summary under the key of the labels and metadata it summarises."""
    _save_keyed(storage, CLUSTER_SUMMARY_KEY, summary, inputs_key, {})


def stored_cluster_summary(storage: ArtsimStorage, inputs_key: str) -> pl.DataFrame | None:
    """The stored summary when it was made from inputs with this key; else None."""
    found = _load_keyed(storage, CLUSTER_SUMMARY_KEY, inputs_key)
    return found[0] if found is not None else None
