"""core.incremental: the plan matches works by one join; the same plan as matching them one by one."""

from __future__ import annotations

import hashlib

import numpy as np

from artsim_pipeline.core.incremental import fingerprints, plan_update


def reference_match(ids, prints, stored_ids, stored_prints, stored_flags):
    """The former loop: a dict of stored positions (the last row of an id wins), one work at a time."""
    position = {a: i for i, a in enumerate(stored_ids)}
    kept, fresh = {}, []
    for row, (artwork_id, digest) in enumerate(zip(ids, prints, strict=True)):
        j = position.get(artwork_id)
        if j is not None and stored_prints[j] == digest:
            kept[row] = j
        else:
            fresh.append(row)
    current = set(ids)
    removed = sum(1 for a in stored_ids if a not in current)
    drifted = len(fresh) + sum(1 for j in kept.values() if stored_flags[j])
    return kept, fresh, removed, drifted


def test_the_plan_keeps_and_refreshes_the_same_works_as_a_loop_over_them():
    rng = np.random.default_rng(0)
    for case in range(40):
        n_stored = int(rng.integers(1, 60))
        stored_ids = [f"met:{i}" for i in rng.integers(0, 80, n_stored)]  # duplicates on purpose
        stored_prints = [str(v) for v in rng.integers(0, 3, n_stored)]
        stored_flags = [bool(v) for v in rng.integers(0, 2, n_stored)]
        n = int(rng.integers(1, 60))
        ids = [f"met:{i}" for i in rng.integers(0, 80, n)]
        prints = [str(v) for v in rng.integers(0, 3, n)]
        kept, fresh, removed, drifted = reference_match(ids, prints, stored_ids, stored_prints, stored_flags)
        plan = plan_update(ids, prints, stored_ids, stored_prints, stored_flags, max_incremental_fraction=1.0)
        assert plan.removed == removed, case
        if not kept:
            assert plan.mode == "full" and plan.reason == "no stored work is unchanged"
            continue
        assert (plan.mode, plan.kept, plan.fresh) == ("incremental", kept, fresh), case
        assert plan.incremental_fraction == drifted / n


def test_fingerprints_are_a_blake2b_digest_of_each_float32_row():
    x = np.random.default_rng(1).normal(size=(5, 7))
    expected = [hashlib.blake2b(row.astype(np.float32).tobytes(), digest_size=8).hexdigest() for row in x]
    assert fingerprints(x) == expected  # what layouts and cluster states already stored hold
    assert fingerprints(np.zeros((0, 7))) == [] and fingerprints(np.zeros((2, 0))) == [fingerprints(np.zeros((1, 0)))[0]] * 2
