"""`clusters` and `collection_map` materialised three times over a small made-up collection:
first in full, then with works added and removed (placed and assigned incrementally, everything
else unchanged), then with a full run forced by config. Each run's metadata says which it was
and why; the chunked map is always stored, the single-file page only under its size limit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
from dagster import AssetKey, materialize

from artsim_pipeline.core.ann import build_index
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.storage import ArtsimStorage

SAMPLE_IMAGE = sorted((Path(__file__).resolve().parents[2] / "artsim_pipeline" / "sample" / "images").glob("*.jpg"))[0]
DIM, PER_GROUP = 16, 40


def _vectors(rng, group: np.ndarray) -> np.ndarray:
    return (np.eye(DIM)[group] * 4 + rng.normal(scale=0.3, size=(len(group), DIM))).astype(np.float32)


def _store(home: Path, tables, ids: list[str], vectors: np.ndarray, sha: str) -> None:
    n = len(ids)
    tables.write_table(pl.DataFrame({"artwork_id": ids, "vector": vectors.tolist()},
                                    schema={"artwork_id": pl.String, "vector": pl.List(pl.Float32)}), "artwork_vectors")
    tables.write_table(pl.DataFrame({
        "artwork_id": ids, "source": ["met"] * n, "source_id": [a.split(":")[1] for a in ids],
        "title": [f"Work {a}" for a in ids], "artists": [["Maker"]] * n, "department": ["Paintings"] * n,
        "date_text": ["1900"] * n, "image_sha256": [sha if i % 10 == 0 else None for i in range(n)],
        "landing_url": [f"https://example.org/{a}" for a in ids],
    }), "artworks", "met")
    artefacts.save_ann_index(ArtsimStorage(home=str(home)), build_index(ids, vectors))


def _run(defs, config: dict) -> dict:
    result = materialize(list(defs.assets), selection=[AssetKey("clusters"), AssetKey("collection_map")],
                         resources=defs.resources, run_config={"ops": config})
    assert result.success
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out


def test_curation_assets_update_incrementally_and_in_full_when_forced(artsim_home):
    from artsim_pipeline.definitions import build_defs

    rng = np.random.default_rng(0)
    defs = build_defs("sample")
    tables = defs.resources["tables"]
    storage = ArtsimStorage(home=str(artsim_home))
    data = SAMPLE_IMAGE.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    artefacts.write_image(storage, f"{sha[:2]}/{sha}.jpg", data)
    tables.write_table(pl.DataFrame({"source_id": ["1"], "url": ["https://example.org/1.jpg"], "sha256": [sha],
                                     "width": [128], "height": [128], "status": ["ok"], "error": [None],
                                     "path": [f"{sha[:2]}/{sha}.jpg"]}), "raw_images", "met")
    group = np.repeat(np.arange(3), PER_GROUP)
    ids = [f"met:{i}" for i in range(len(group))]
    vectors = _vectors(rng, group)
    _store(artsim_home, tables, ids, vectors, sha)
    map_config = {"projection": "pca", "single_file_max_points": 200}

    first = _run(defs, {"collection_map": {"config": map_config}})
    assert first["collection_map"]["layout"] == "full" and first["collection_map"]["layout_reason"] == "no stored layout"
    assert first["clusters"]["run"] == "full" and first["collection_map"]["single_file_page"] is True
    assert first["collection_map"]["with_thumbnail"] == 12
    page = (artsim_home / "maps" / "collection_map.html").read_text()
    assert "Work met:5" in page
    coords = tables.read_table("collection_map")
    labels = tables.read_table("clusters")

    # 6 new works like group 1, met:0 removed: placed among group 1, the rest untouched
    new_ids = [f"met:{1000 + i}" for i in range(6)]
    ids2 = ids[1:] + new_ids
    vectors2 = np.vstack([vectors[1:], _vectors(rng, np.ones(6, int))])
    _store(artsim_home, tables, ids2, vectors2, sha)
    second = _run(defs, {"collection_map": {"config": {**map_config, "single_file_max_points": 100}}})
    meta = second["collection_map"]
    assert meta["layout"] == "incremental" and meta["placed_incrementally"] == 6 and meta["removed"] == 1
    assert meta["layout_reason"] == "6 new or changed, 1 removed, 119 kept" and meta["projection"] == "pca"
    assert second["clusters"]["run"] == "incremental" and second["clusters"]["assigned_incrementally"] == 6
    coords2 = tables.read_table("collection_map")
    kept = coords.filter(pl.col("artwork_id") != "met:0").select("artwork_id", "x", "y")
    assert kept.join(coords2.select("artwork_id", "x", "y"), on="artwork_id").filter(
        (pl.col("x") != pl.col("x_right")) | (pl.col("y") != pl.col("y_right"))).height == 0
    centre = coords.filter(pl.col("artwork_id").is_in(ids[PER_GROUP:2 * PER_GROUP])).select(pl.col("x").mean(), pl.col("y").mean()).row(0)
    spread = coords.select(pl.col("x").std(), pl.col("y").std()).row(0)
    for x, y in coords2.filter(pl.col("artwork_id").is_in(new_ids)).select("x", "y").iter_rows():
        assert abs(x - centre[0]) < spread[0] and abs(y - centre[1]) < spread[1]
    group1_clusters = set(labels.filter(pl.col("artwork_id").is_in(ids[PER_GROUP:2 * PER_GROUP]))["cluster"].to_list())
    labels2 = tables.read_table("clusters")
    assert set(labels2.filter(pl.col("artwork_id").is_in(new_ids))["cluster"].to_list()) <= group1_clusters
    assert labels.filter(pl.col("artwork_id") != "met:0").equals(labels2.filter(~pl.col("artwork_id").is_in(new_ids)))
    assert "met:0" not in labels2["artwork_id"].to_list()
    # over the single-file limit: the page says where the map is; the chunked map has every work
    assert meta["single_file_page"] is False and "/map" in (artsim_home / "maps" / "collection_map.html").read_text()
    manifest = json.loads((artsim_home / "maps" / "collection_map" / "manifest.json").read_text())
    assert manifest["n"] == 125 and manifest["layout"] == "incremental"
    assert len(list((artsim_home / "maps" / "collection_map" / "chunks").iterdir())) == len(manifest["chunks"])

    third = _run(defs, {"collection_map": {"config": {**map_config, "full_layout": True}},
                        "clusters": {"config": {"full_recluster": True}}})
    assert third["collection_map"]["layout"] == "full" and third["collection_map"]["layout_reason"] == "forced (config)"
    assert third["clusters"]["run"] == "full" and third["clusters"]["run_reason"] == "forced (config)"
