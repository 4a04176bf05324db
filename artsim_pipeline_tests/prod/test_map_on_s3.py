"""The chunked collection map and the incremental state on S3 (moto): stored under the prefix,
old chunks removed when the map is stored again, the layout state read back by another worker
(no shared directory), and `artsim serve` answering /map from S3."""

from __future__ import annotations

import numpy as np
import polars as pl
from fastapi.testclient import TestClient

from artsim_pipeline.core.collection_map import project_2d
from artsim_pipeline.core.collection_map.chunks import build_chunked_map
from artsim_pipeline.core.collection_map.placement import update_layout
from artsim_pipeline.resources import artefacts
from artsim_pipeline.resources.objects import S3ObjectStore
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.web.app import create_app

PREFIX = "map-test"


def test_chunked_map_and_layout_live_on_s3(tmp_path, s3, aws_env):
    url = f"s3://{s3.bucket}/{PREFIX}"
    bucket = S3ObjectStore(url, endpoint_url=s3.endpoint_url)
    worker_a = ArtsimStorage(home=str(tmp_path / "a"), remote_url=url, s3_endpoint_url=s3.endpoint_url)
    worker_b = ArtsimStorage(home=str(tmp_path / "b"), remote_url=url, s3_endpoint_url=s3.endpoint_url)
    rng = np.random.default_rng(0)
    ids = [f"met:{i}" for i in range(300)]
    vectors = rng.normal(size=(300, 8)).astype(np.float32)

    def project(v):
        return project_2d(v, method="pca")

    layout, _ = update_layout(ids[:290], vectors[:290], None, project=project, settings={"p": 1})
    artefacts.save_map_layout(worker_a, layout)
    points = layout.points.select("artwork_id", "x", "y").with_columns(pl.lit("Work").alias("title"))
    manifest, chunks, details = build_chunked_map(points, chunk_points=100)
    artefacts.save_chunked_map(worker_a, manifest, chunks, details)
    first = set(chunks)
    assert {k.rsplit("/", 1)[1] for k in bucket.list_keys("maps/collection_map/chunks")} == first

    # another worker places 10 new works into the stored layout and stores the map again
    stored = artefacts.load_map_layout(worker_b)
    assert stored is not None and stored.points.equals(layout.points)
    second, plan = update_layout(ids, vectors, stored, project=project, settings={"p": 1})
    assert plan.mode == "incremental" and len(plan.fresh) == 10
    manifest2, chunks2, details2 = build_chunked_map(second.points.select("artwork_id", "x", "y"), chunk_points=100)
    artefacts.save_chunked_map(worker_b, manifest2, chunks2, details2)
    keys = set(bucket.list_keys("maps/collection_map"))
    assert {k.rsplit("/", 1)[1] for k in keys if "/chunks/" in k} == set(chunks2)
    assert [k for k in keys if "/details-" in k] == [f"maps/collection_map/{artefacts.read_map_manifest(worker_b)['details']}"]

    client = TestClient(create_app(tmp_path / "web", storage=ArtsimStorage(
        home=str(tmp_path / "web"), remote_url=url, s3_endpoint_url=s3.endpoint_url)))
    assert client.get("/map").status_code == 200
    served = client.get("/map/data/manifest.json").json()
    assert served["n"] == 300 and served["chunks"] == manifest2["chunks"]
    entry = served["chunks"][0]
    assert client.get(f"/map/data/chunks/{entry['file']}").content == chunks2[entry["file"]]
    assert client.get("/map/api/point/295").json()["artwork_id"] == "met:295"
