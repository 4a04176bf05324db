"""Search in prod: `search_index` stores its files on S3 through `ArtsimStorage`, a second worker
(no shared directory) updates it incrementally from there, and `artsim serve` answers from S3."""

from __future__ import annotations

import json

from dagster import AssetKey, materialize
from fastapi.testclient import TestClient

from artsim_pipeline.resources.encoders import EncoderResource
from artsim_pipeline.resources.io_manager import PolarsParquetIOManager
from artsim_pipeline.resources.objects import S3ObjectStore
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore
from artsim_pipeline.web.app import create_app
from artsim_pipeline_tests.search_home import QUIET_PICTURES, build_search_home, save_tiny_clip

PREFIX = "search-test"


def resources(url: str, s3, home, clip) -> dict:
    from artsim_pipeline.definitions import build_defs

    tables = TableStore(base_dir=f"{url}/storage", s3_endpoint_url=s3.endpoint_url)
    return {**build_defs("sample").resources, "tables": tables, "io_manager": PolarsParquetIOManager(store=tables),
            "storage": ArtsimStorage(home=str(home), remote_url=url, s3_endpoint_url=s3.endpoint_url),
            "encoder": EncoderResource(backbone=f"hf:{clip}")}


def test_search_index_lives_on_s3(tmp_path, s3, aws_env, monkeypatch):
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.service import SimilarityService

    clip = save_tiny_clip(tmp_path / "clip")
    built = tmp_path / "built"
    build_search_home(built, clip)
    url = f"s3://{s3.bucket}/{PREFIX}"
    bucket = S3ObjectStore(url, endpoint_url=s3.endpoint_url)
    for path in built.rglob("*"):  # everything upstream of search_index, as the pipeline stored it
        relative = path.relative_to(built).as_posix()
        if path.is_file() and not relative.startswith(("indexes/search_index", "storage/search_index", "dagster")):
            bucket.write_bytes(relative, path.read_bytes())
    monkeypatch.setenv("ARTSIM_HOME", str(tmp_path / "scratch"))
    assets = list(build_defs("sample").assets)
    config = {"ops": {"search_index": {"config": QUIET_PICTURES}}}

    first = materialize(assets, selection=[AssetKey("search_index")], resources=resources(url, s3, tmp_path / "worker1", clip),
                        run_config=config)
    assert first.success
    keys = s3.keys(f"{PREFIX}/indexes/search_index/")
    assert {f"{PREFIX}/indexes/search_index/{name}" for name in ("search_info.json", "text/index.bin", "image/index.bin",
                                                                 "keyword/ids.parquet")} <= set(keys)
    assert f"{PREFIX}/storage/search_index.parquet" in s3.keys(f"{PREFIX}/storage/")
    assert not (tmp_path / "worker1" / "indexes").exists()  # only scratch and cache on the worker

    # another worker, sharing nothing but S3: it finds the stored index and updates it in place
    second = materialize(assets, selection=[AssetKey("search_index")], resources=resources(url, s3, tmp_path / "worker2", clip),
                         run_config=config)
    assert second.success
    info = json.loads(bucket.read_bytes("indexes/search_index/search_info.json"))
    assert info["updates"]["text"]["rebuilt"] is False and info["updates"]["text"]["unchanged"] == 15
    # the kept tokens came back from S3 (nothing tokenised again); the untouched vector parts stay stored
    assert (info["tokens"]["tokenised"], info["tokens"]["reused"]) == (0, 15) and info["text_recall"]["reused"] is True
    assert {f"{PREFIX}/indexes/search_index/{name}" for name in ("text/index.bin", "image/index.bin",
                                                                 "keyword/documents.parquet")} <= set(s3.keys(f"{PREFIX}/indexes/search_index/"))

    web_home = tmp_path / "web"
    storage = ArtsimStorage(home=str(web_home), remote_url=url, s3_endpoint_url=s3.endpoint_url)
    tables = TableStore(base_dir=f"{url}/storage", s3_endpoint_url=s3.endpoint_url)
    assert SimilarityService(web_home, tables=tables, storage=storage).search("KMS20", 1)[0]["artwork_id"] == "smk:KMS20"
    with TestClient(create_app(web_home, storage=storage, tables=tables)) as client:
        found = client.get("/api/search", params={"q": "mother holding her infant", "k": 2})
        assert found.status_code == 200, found.text
        assert {w["artwork_id"] for w in found.json()} == {"met:13", "smk:KMS21"}
    assert not (web_home / "indexes").exists() and not (web_home / "storage").exists()
