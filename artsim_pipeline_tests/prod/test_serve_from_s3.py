"""`artsim serve` in prod: the browser reads the index, tables and images from S3."""

from __future__ import annotations

from fastapi.testclient import TestClient

from artsim_pipeline.resources import artefacts as store
from artsim_pipeline.resources.objects import S3ObjectStore
from artsim_pipeline.resources.storage import ArtsimStorage
from artsim_pipeline.resources.tables import TableStore
from artsim_pipeline.web.app import create_app
from artsim_pipeline_tests.web.test_app import JPEG, ORIGIN, SHA, answer, build_home, take_task


def test_the_browser_serves_what_the_pipeline_stored_on_s3(tmp_path, s3, aws_env):
    built = build_home(tmp_path / "built")
    url = f"s3://{s3.bucket}/serve-test"
    bucket = S3ObjectStore(url, endpoint_url=s3.endpoint_url)
    for path in built.rglob("*"):
        if path.is_file():
            bucket.write_bytes(path.relative_to(built).as_posix(), path.read_bytes())
    web_home = tmp_path / "web"  # the web host's own directory: the journal and a cache only
    storage = ArtsimStorage(home=str(web_home), remote_url=url, s3_endpoint_url=s3.endpoint_url)
    tables = TableStore(base_dir=f"{url}/storage", s3_endpoint_url=s3.endpoint_url)

    with TestClient(create_app(web_home, storage=storage, tables=tables), base_url=ORIGIN, headers={"origin": ORIGIN}) as client:
        similar = client.get("/api/similar/met:1", params={"k": 3})
        assert similar.status_code == 200, similar.text
        assert similar.json()[0]["artwork_id"] == "met:2"  # the nearest work, from the index on S3
        assert client.get("/api/similar/met:0").status_code == 404
        image = client.get(f"/images/{SHA}")
        assert image.status_code == 200 and image.content == JPEG
        assert client.get(f"/images/{'0' * 64}").status_code == 404
        task = take_task(client)
        cands = task["candidate_ids"]
        recorded = answer(client, task, cands[0])
        assert recorded.status_code == 201, recorded.text
    # the judgment reached the storage, where the pipeline (another machine) reads it
    worker = ArtsimStorage(home=str(tmp_path / "worker"), remote_url=url, s3_endpoint_url=s3.endpoint_url)
    assert store.load_judgments(store.judgments_home(worker))["chosen_id"].to_list() == [cands[0]]
    assert not (web_home / "storage").exists() and not (web_home / "indexes").exists()
