"""Bringing an index to the current set of vectors: in place (new items added, gone ones marked
deleted, moved vectors updated under their labels) while the model run and the dimension are
unchanged; otherwise a rebuild that keeps the labels of surviving artworks."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from artsim_pipeline.core.ann.exact import normalize
from artsim_pipeline.core.ann.reduction import half_rows, with_rows, writable
from artsim_pipeline.core.ann.structure import GROWTH, AnnConfig, UpdateResult, base_info, check_ids, create_state, now


class IndexUpdates:
    """`AnnIndex.update` and its two paths (mixed into `AnnIndex`, whose state it changes)."""

    def update(
        self,
        ids: Sequence[str],
        vectors: Any,
        model_run_id: str | None,
        model_version: str | None = None,
        *,
        atol: float = 1e-5,
        progress: Callable[[int, int], None] | None = None,
        config: AnnConfig | None = None,
    ) -> UpdateResult:
        """Bring the index to exactly ``(ids, vectors)`` (the full current set).

        Incremental when the model run id, the dimension and the build parameters (of
        ``config``, when given: `AnnConfig.build_parameters`) are unchanged: new artworks are
        added (resizing as needed, recycling deleted slots), disappeared ones are
        ``mark_deleted``, and artworks whose unit vector moved by more than ``atol`` (max abs
        difference; in a two-stage index, against the float16 row stored) are updated in place
        under their label (a two-stage index keeps its projection). Otherwise the whole index is
        rebuilt (labels of surviving artworks are kept), with ``config`` when given.
        """
        t0 = time.perf_counter()
        x = normalize(vectors)
        if x.shape[0] == 0:
            x = np.empty((0, self._s.dim), dtype=np.float32)
        ids = check_ids(ids, x.shape[0])
        with self._lock:
            reason = ""
            if model_run_id != self.build_info.get("model_run_id"):
                reason = (
                    f"model run changed ({self.build_info.get('model_run_id')!r} -> "
                    f"{model_run_id!r})"
                )
            elif x.shape[1] != self._s.dim:
                reason = f"dimension changed ({self._s.dim} -> {x.shape[1]})"
            elif config is not None and config.build_parameters() != self.config.build_parameters():
                reason = f"build parameters changed ({self.config.build_parameters()} -> {config.build_parameters()})"
            if config is not None:
                self.config = config
            if reason:
                result = self._rebuild(ids, x, model_run_id, model_version, reason, progress)
            else:
                result = self._incremental(ids, x, atol, model_version)
            self._source_cache.clear()
            result.seconds = time.perf_counter() - t0
            self.build_info["count"] = len(self._s.live)
            self.build_info["element_count"] = int(self._s.index.element_count)
            self.build_info["max_elements"] = int(self._s.index.max_elements)
            self.build_info["next_label"] = len(self._s.label_ids)
            self.build_info["updated_at"] = now()
            self.build_info["last_update"] = result.as_dict()
            return result

    def _rebuild(self, ids, x, model_run_id, model_version, reason, progress) -> UpdateResult:
        s = self._s
        keep = set(ids)
        removed = sum(1 for a in s.live if a not in keep)
        state, seconds = create_state(
            ids, x, self.config, s.label_ids, s.deleted, s.live, progress=progress
        )
        self._s = state
        self.build_info.update(
            base_info(self.config, state, seconds, model_run_id, model_version)
        )
        return UpdateResult(
            added=len(ids), deleted=removed, rebuilt=True, reason=reason
        )

    def _incremental(self, ids, x, atol, model_version) -> UpdateResult:
        s = self._s
        index = s.index
        new_set = set(ids)
        gone = [a for a in s.live if a not in new_set]
        new_rows = [i for i, a in enumerate(ids) if a not in s.live]
        old_rows = np.asarray([i for i, a in enumerate(ids) if a in s.live], dtype=np.int64)

        # changed vectors: compare against what is stored, in chunks small enough to stay in
        # cache (a two-stage index stores float16 rows: the new vector is rounded the same way)
        changed_rows: list[np.ndarray] = []
        stored_rows = hnsw_vector_reader(index) if s.full is None else None
        full = None if s.full is None else np.asarray(s.full)  # a file's rows: one sequential read
        for start in range(0, len(old_rows), _COMPARE_CHUNK):
            rows = old_rows[start : start + _COMPARE_CHUNK]
            labs = np.asarray([s.live[ids[i]] for i in rows], dtype=np.int64)
            if full is None:
                stored, new = stored_rows(labs), x[rows]
            else:
                stored, new = full[labs].astype(np.float32), half_rows(x[rows]).astype(np.float32)
            diff = np.abs(stored - new).max(axis=1) if len(rows) else np.zeros(0, np.float32)
            changed_rows.append(rows[diff > atol])
        changed = np.concatenate(changed_rows) if changed_rows else np.empty(0, np.int64)
        del full, stored_rows

        for a in gone:
            lab = s.live.pop(a)
            index.mark_deleted(lab)
            s.deleted[lab] = True

        if len(changed):
            labs = np.asarray([s.live[ids[i]] for i in changed], dtype=np.int64)
            if s.full is not None:
                s.full = writable(s.full)
                s.full[labs] = half_rows(x[changed])
            index.add_items(s.searched(x[changed]), labs, num_threads=self.config.threads)

        if new_rows:
            # slots of deleted items still in hnswlib get recycled by replace_deleted=True
            recyclable = int(index.element_count) - len(s.live)
            needed = int(index.element_count) + max(0, len(new_rows) - recyclable)
            if needed > index.max_elements:
                index.resize_index(max(needed, int(index.max_elements * GROWTH)))
            first = len(s.label_ids)
            labs = np.arange(first, first + len(new_rows), dtype=np.int64)
            new_ids = np.empty(len(new_rows), dtype=object)
            new_ids[:] = [ids[i] for i in new_rows]
            s.label_ids = np.concatenate([s.label_ids, new_ids])
            s.deleted = np.concatenate([s.deleted, np.zeros(len(new_rows), dtype=bool)])
            if s.full is not None:
                s.full = with_rows(s.full, len(s.label_ids))
                s.full[labs] = half_rows(x[np.asarray(new_rows)])
            index.add_items(
                s.searched(x[np.asarray(new_rows)]), labs, num_threads=self.config.threads,
                replace_deleted=True,
            )
            for a, lab in zip(new_ids, labs, strict=True):
                s.live[a] = int(lab)
        if model_version is not None:
            self.build_info["model_version"] = model_version
        return UpdateResult(
            added=len(new_rows),
            deleted=len(gone),
            updated=int(len(changed)),
            unchanged=int(len(old_rows) - len(changed)),
            rebuilt=False,
            reason="incremental",
        )

    # -- parts (what is stored; writing and reading them: resources/artefacts/) -----------------


_COMPARE_CHUNK = 4096  # rows of stored and new vectors compared at once (6 MB at 384-d)


def hnsw_vectors(index: Any, labels: np.ndarray) -> np.ndarray:
    """The float32 vectors hnswlib holds under ``labels`` (all present): `hnsw_vector_reader`."""
    return hnsw_vector_reader(index)(labels)


def hnsw_vector_reader(index: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``labels -> float32 vectors`` as ``get_items`` gives them, but read from hnswlib's
    serialised state (one copy of its memory, made here) instead of a lookup and copy per label:
    at 50,000 x 384, 0.1-0.3 s against 1.3-2.5 s (`benchmarks/bench_ann_update.py`). Falls back to
    ``get_items`` when the state is not the layout read here (another hnswlib version)."""
    state = _level0_state(index)

    def get_items(labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        return np.asarray(index.get_items(labels), dtype=np.float32).reshape(len(labels), -1)

    if state is None:
        return get_items
    external = np.asarray(state["label_lookup_external"], dtype=np.int64)
    internal = np.asarray(state["label_lookup_internal"], dtype=np.int64)
    order = np.argsort(external, kind="stable")
    external, internal = external[order], internal[order]
    size, dim = int(state["size_data_per_element"]), int(state["dim"])
    memory = np.asarray(state["data_level0"]).view(np.uint8).reshape(-1, size)
    data_at, label_at = int(state["offset_data"]), int(state["label_offset"])

    def read(labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) == 0:
            return get_items(labels)
        found = np.searchsorted(external, labels).clip(0, max(len(external) - 1, 0))
        if len(external) == 0 or not np.array_equal(external[found], labels):
            raise KeyError("some labels are not in the hnswlib index")
        slots = internal[found]
        stored_labels = np.ascontiguousarray(memory[slots, label_at : label_at + 8]).view(np.uint64).ravel()
        if not np.array_equal(stored_labels.astype(np.int64), labels):  # not the layout read here
            return get_items(labels)
        return np.ascontiguousarray(memory[slots, data_at : data_at + 4 * dim]).view(np.float32)

    return read


_LEVEL0_KEYS = ("ser_version", "dim", "size_data_per_element", "offset_data", "label_offset", "data_level0",
                "label_lookup_external", "label_lookup_internal", "cur_element_count")


def _level0_state(index: Any) -> dict[str, Any] | None:
    """hnswlib's pickled state (version 1: hnswlib 0.7-0.8) when it has what `hnsw_vectors` reads."""
    try:
        state = index.__getstate__()[0]
    except (AttributeError, IndexError, TypeError, RuntimeError):
        return None
    if not isinstance(state, dict) or any(k not in state for k in _LEVEL0_KEYS) or state["ser_version"] != 1:
        return None
    if np.asarray(state["data_level0"]).size != int(state["cur_element_count"]) * int(state["size_data_per_element"]):
        return None
    return state

