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

        # changed vectors: compare against what is stored, in chunks (a two-stage index stores
        # float16 rows: the new vector is rounded the same way before comparing)
        changed_rows: list[np.ndarray] = []
        for start in range(0, len(old_rows), 50_000):
            rows = old_rows[start : start + 50_000]
            labs = np.asarray([s.live[ids[i]] for i in rows], dtype=np.int64)
            if s.full is None:
                stored, new = np.asarray(index.get_items(labs), dtype=np.float32), x[rows]
            else:
                stored, new = s.full[labs].astype(np.float32), half_rows(x[rows]).astype(np.float32)
            diff = np.abs(stored - new).max(axis=1) if len(rows) else np.zeros(0, np.float32)
            changed_rows.append(rows[diff > atol])
        changed = np.concatenate(changed_rows) if changed_rows else np.empty(0, np.int64)

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
