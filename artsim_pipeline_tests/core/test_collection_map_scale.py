"""The collection map at scale: the chunked encoding (binary chunks, manifest, details) and
incremental placement of new works into an existing layout (core/collection_map/chunks.py,
placement.py, core/incremental.py)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from artsim_pipeline.core.collection_map import project_2d
from artsim_pipeline.core.collection_map.chunks import build_chunked_map, decode_chunk, point_details
from artsim_pipeline.core.collection_map.placement import nearest_placed, place_by_neighbours, update_layout
from artsim_pipeline.core.incremental import fingerprints, plan_update

SETTINGS = {"projection": "pca", "seed": 0}


def _project(x: np.ndarray):
    return project_2d(x, method="pca")


def _points(n: int, departments: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(2)
    return pl.DataFrame({
        "artwork_id": [f"met:{i}" if i % 3 else f"smk:KMS{i}" for i in range(n)],
        "x": rng.normal(size=n), "y": rng.normal(size=n),
        "source": ["smk" if i % 3 == 0 else "met" for i in range(n)],
        "department": [None if i % 10 == 0 else f"Dept {i % departments}" for i in range(n)],
        "cluster": [i % 4 for i in range(n)],
        "title": ["<script>alert(1)</script>" if i == 0 else f"Work {i}" for i in range(n)],
        "artists": [[f"Maker {i % 5}"] for i in range(n)],
        "date_text": ["1850"] * n,
        "landing_url": ["javascript:alert(1)" if i == 1 else f"https://example.org/{i}" for i in range(n)],
        "image_path": [f"ab/{'a' * 64}.jpg" if i % 2 else None for i in range(n)],
    })


# -- chunks ------------------------------------------------------------------------------------------


def test_chunks_hold_every_point_once_as_typed_arrays():
    points = _points(1000)
    manifest, chunks, details = build_chunked_map(points, chunk_points=256, seed=1, method="pca")
    assert manifest["n"] == 1000 and len(manifest["chunks"]) == 4 and len(chunks) == 4
    assert [c["n"] for c in manifest["chunks"]] == [256, 256, 256, 232]
    rows, xs = [], []
    for entry in manifest["chunks"]:
        blob = chunks[entry["file"]]
        assert len(blob) == entry["bytes"] and all(spec["offset"] % 4 == 0 for spec in entry["arrays"].values())
        arrays = decode_chunk(blob, entry)
        assert arrays["x"].dtype == np.float32 and arrays["row"].dtype == np.uint32
        assert arrays["museum"].dtype == np.uint8 and arrays["thumb"].dtype == np.uint8
        rows.append(arrays["row"])
        np.testing.assert_array_equal(arrays["x"], details["x"].to_numpy()[arrays["row"]])
        np.testing.assert_array_equal(arrays["thumb"], (arrays["row"] % 2 == 1).astype(np.uint8))
        xs.append(arrays["x"])
    assert sorted(np.concatenate(rows).tolist()) == list(range(1000))
    # every chunk is an even sample of the map (the first one drawn shows its whole shape)
    assert np.abs(np.mean(xs[0]) - points["x"].mean()) < 0.2
    assert manifest["bounds"] == pytest.approx([points["x"].min(), points["y"].min(), points["x"].max(), points["y"].max()],
                                               abs=1e-5)
    # legends: museums in registry order, departments by frequency; missing -> the unknown code
    museums = manifest["colourBy"]["museum"]
    assert museums["names"][0].endswith("(met)") and museums["names"][1].endswith("(smk)")
    dept = manifest["colourBy"]["department"]
    codes = decode_chunk(chunks[manifest["chunks"][0]["file"]], manifest["chunks"][0])
    unknown_rows = codes["row"][codes["department"] == dept["unknown"]]
    assert len(unknown_rows) and all(r % 10 == 0 for r in unknown_rows.tolist())
    # the details table is the only place titles live; bad landing pages are dropped
    assert details["title"][0] == "<script>alert(1)</script>" and details["landing_url"][1] is None
    assert b"Work 5" not in b"".join(chunks.values())
    again = build_chunked_map(points, chunk_points=256, seed=1, method="pca")
    assert again[0] == manifest and again[1] == chunks  # deterministic: names are content hashes


def test_many_categories_use_uint16_codes():
    points = _points(600, departments=300)
    manifest, chunks, _ = build_chunked_map(points, chunk_points=600)
    entry = manifest["chunks"][0]
    assert manifest["colourBy"]["department"]["dtype"] == "uint16"
    arrays = decode_chunk(chunks[entry["file"]], entry)
    assert arrays["department"].dtype == np.uint16 and int(arrays["department"].max()) == 65535


def test_chunked_map_refuses_bad_points():
    with pytest.raises(ValueError):
        build_chunked_map(pl.DataFrame({"artwork_id": ["a", "a"], "x": [0.0, 1.0], "y": [0.0, 1.0]}))
    with pytest.raises(ValueError):
        build_chunked_map(pl.DataFrame({"artwork_id": ["a"], "x": [float("nan")], "y": [0.0]}))
    with pytest.raises(ValueError):
        build_chunked_map(pl.DataFrame({"artwork_id": ["a"], "y": [0.0]}))
    manifest, chunks, details = build_chunked_map(pl.DataFrame({"artwork_id": [], "x": [], "y": []},
                                                               schema={"artwork_id": pl.String, "x": pl.Float64, "y": pl.Float64}))
    assert manifest["n"] == 0 and chunks == {} and details.height == 0


def test_point_details_hide_the_image_path():
    _, _, details = build_chunked_map(_points(10))
    shown = point_details(details.row(3, named=True), [{"row": 1}])
    assert "image_path" not in shown and shown["has_thumb"] and shown["neighbours"] == [{"row": 1}]


# -- incremental placement ------------------------------------------------------------------------------


def _groups(n_per: int = 60, dim: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:4] * 4
    x = np.vstack([c + rng.normal(scale=0.4, size=(n_per, dim)) for c in centres]).astype(np.float32)
    return [f"met:{i}" for i in range(len(x))], x


def test_plan_update_reasons():
    ids = ["a", "b", "c", "d", "e"]
    prints = ["1", "2", "3", "4", "5"]
    assert plan_update(ids, prints, None, None, None).reason == "no stored layout"
    assert plan_update(ids, prints, ids, prints, [False] * 5, force_full=True).reason == "forced (config)"
    assert plan_update(ids, prints, ids, prints, [False] * 5, settings_changed=True).mode == "full"
    same = plan_update(ids, prints, ids, prints, [False] * 5)
    assert same.mode == "incremental" and same.fresh == [] and same.kept == {i: i for i in range(5)}
    changed = plan_update(ids, ["1", "2", "x", "4", "5"], ids, prints, [False] * 5, max_incremental_fraction=0.2)
    assert changed.mode == "incremental" and changed.fresh == [2] and changed.incremental_fraction == 0.2
    # works placed incrementally before count towards the drift too
    drift = plan_update(ids, ["1", "2", "x", "4", "5"], ids, prints, [True, False, False, False, False])
    assert drift.mode == "full" and drift.reason.startswith("drift: 40.0%")
    assert plan_update(["a"], ["9"], ["a"], ["1"], [False]).reason == "no stored work is unchanged"
    assert fingerprints(np.ones((2, 3)))[0] == fingerprints(np.ones((1, 3), np.float64))[0]


def test_nearest_placed_and_weighted_mean_position():
    rng = np.random.default_rng(0)
    placed = rng.normal(size=(50, 8)).astype(np.float32)
    placed /= np.linalg.norm(placed, axis=1, keepdims=True)
    idx, sims = nearest_placed(placed[:5], placed, 3)
    assert idx[:, 0].tolist() == [0, 1, 2, 3, 4] and np.allclose(sims[:, 0], 1.0, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()
    xy = np.array([[[0.0, 0.0], [2.0, 0.0], [9.0, 9.0]]])
    assert place_by_neighbours(xy, np.array([[1.0, 1.0, np.nan]])).tolist() == [[1.0, 0.0]]
    assert place_by_neighbours(xy, np.array([[3.0, 1.0, 0.0]])).tolist() == [[0.5, 0.0]]
    assert place_by_neighbours(xy[:, :2], np.array([[-1.0, -1.0]])).tolist() == [[1.0, 0.0]]  # no weight left: plain mean
    assert np.isnan(place_by_neighbours(xy, np.full((1, 3), np.nan))).all()


def test_incremental_placement_keeps_existing_coordinates_and_places_new_works_near_their_neighbours():
    ids, x = _groups()
    first, plan = update_layout(ids[:-4], x[:-4], None, project=_project, settings=SETTINGS)
    assert plan.mode == "full" and first.info == {"method": "pca", "settings": SETTINGS}
    # next run: 4 new works (the last 4 of group 3), met:0 removed
    current_ids, current_x = ids[1:], x[1:]
    calls = []

    def search(queries, k):  # an "ANN index" over every current work (new ones included)
        calls.append(len(queries))
        norm = current_x / np.linalg.norm(current_x, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        idx, sims = nearest_placed(q, norm, k)
        return np.asarray(current_ids, dtype=object)[idx], sims

    second, plan = update_layout(current_ids, current_x, first, project=_project, settings=SETTINGS, search=search, k=5)
    assert plan.mode == "incremental" and plan.removed == 1 and len(plan.fresh) == 4 and calls == [4]
    old = {a: (x_, y_) for a, x_, y_ in first.points.select("artwork_id", "x", "y").iter_rows()}
    new = {a: (x_, y_) for a, x_, y_ in second.points.select("artwork_id", "x", "y").iter_rows()}
    assert "met:0" not in new
    for a in ids[1:-4]:
        assert new[a] == old[a]  # bit for bit
    group3 = np.array([old[a] for a in ids[180:-4]])
    others = np.array([old[a] for a in ids[1:180]])
    for a in ids[-4:]:
        p = np.array(new[a])
        # nearer its own group's centre than any other work of another group is
        assert np.linalg.norm(p - group3.mean(axis=0)) < np.linalg.norm(others - group3.mean(axis=0), axis=1).min()
    flags = dict(second.points.select("artwork_id", "incremental").iter_rows())
    assert [a for a, f in flags.items() if f] == ids[-4:]
    assert second.info == first.info


def test_new_works_whose_neighbours_are_new_too_fall_back_to_exact_search():
    ids, x = _groups(n_per=30)
    first, _ = update_layout(ids[:-2], x[:-2], None, project=_project, settings=SETTINGS)

    def useless(queries, k):  # finds only the new works themselves
        return np.array([[ids[-1], ids[-2]]] * len(queries), dtype=object), np.ones((len(queries), 2), np.float32)

    second, plan = update_layout(ids, x, first, project=_project, settings=SETTINGS, search=useless, k=4)
    assert plan.mode == "incremental"
    assert np.isfinite(second.points["x"].to_numpy()).all() and np.isfinite(second.points["y"].to_numpy()).all()


def test_full_layout_when_forced_over_the_threshold_or_settings_change():
    ids, x = _groups(n_per=40)
    first, _ = update_layout(ids[:100], x[:100], None, project=_project, settings=SETTINGS)
    projected = []

    def counting(v):
        projected.append(len(v))
        return _project(v)

    _, plan = update_layout(ids[:100], x[:100], first, project=counting, settings=SETTINGS, force_full=True)
    assert plan.mode == "full" and plan.reason == "forced (config)" and projected == [100]
    _, plan = update_layout(ids[:100], x[:100], first, project=counting, settings={**SETTINGS, "seed": 1})
    assert plan.mode == "full" and "settings" in plan.reason
    # 20 new of 120 = 16.7%: incremental; 30 new of 130 = 23%: over the 20% limit, full
    second, plan = update_layout(ids[:120], x[:120], first, project=counting, settings=SETTINGS)
    assert plan.mode == "incremental" and projected == [100, 100]
    third, plan = update_layout(ids[:130], x[:130], second, project=counting, settings=SETTINGS)
    assert plan.mode == "full" and plan.reason.startswith("drift") and projected[-1] == 130
    assert not third.points["incremental"].any()
    # the share counts earlier incremental placements: 10 more on top of the 20 crosses it too
    _, plan = update_layout(ids[:130], x[:130], second, project=counting, settings=SETTINGS,
                            max_incremental_fraction=0.25)
    assert plan.mode == "incremental" and plan.incremental_fraction == pytest.approx(30 / 130)
