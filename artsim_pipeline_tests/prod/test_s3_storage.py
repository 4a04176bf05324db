"""`ARTSIM_ENV=prod` asset storage on S3 through dagster-aws, against an S3 API (moto) on 127.0.0.1.

The whole graph is materialised with the prod resources as `build_defs("prod")` wires them from
the environment (tables and files under `ARTSIM_STORAGE_URL`, experiments on a real `mlflow
server` at `MLFLOW_TRACKING_URI`, the live museum clients pointed at the replay server, which
serves real records and their images), then every table asset, every partition, is found in the
bucket at the contract's layout and read back with `defs.load_asset_value`. `ARTSIM_HOME` only
gets scratch space, the read-through cache and fetch checkpoints.

`AWS_ENDPOINT_URL` is deliberately *not* set: every S3 call must find moto through
`ARTSIM_S3_ENDPOINT_URL`, as it must find MinIO (or another S3-compatible store) in a deployment.
"""

from __future__ import annotations

import io
import json
import os
import uuid

import polars as pl
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from artsim_pipeline_tests.servers import AWS_TEST_CREDENTIALS
from artsim_pipeline.core.sources import API_SOURCES, SOURCES

# small training, like the end-to-end test's
TRAINING = {"ops": {"similarity_model": {"config": {"max_epochs": 3, "patience": 2, "hidden_dim": 64, "out_dim": 32, "num_threads": 1}},
                    "department_classifier": {"config": {"epochs": 20}}, "period_classifier": {"config": {"epochs": 20}},
                    # PCA instead of UMAP for the map: the same HTML, without ~8 s of numba compilation
                    "collection_map": {"config": {"projection": "pca"}}}}
# the live clients' politeness at test speed (the replay server has no firewall unless asked)
FAST_HTTP = dict(requests_per_second=400.0, burst=20, max_workers=8, timeout_s=5.0, max_retries=4,
                 backoff_base_s=0.01, backoff_max_s=0.05, firewall_cooldown_s=0.3)
EXACT_MET_IDS = {53426, 436535, 437980, 915129}
N_MET_FIRST, N_MET_SPREAD = 196, 100
N_MET = 4 + N_MET_FIRST + N_MET_SPREAD
SCRATCH_ONLY = {"scratch", "cache", "checkpoints"}


def replay_records(shared_met_records) -> list[dict]:
    """300 recorded Met objects: the four recorded exactly, the first 196 others (neighbours by id
    share makers, so every split gets positive pairs) and 100 spread over the rest of the file
    (more departments and periods, so the classifiers have classes to tell apart)."""
    met = [r for r in shared_met_records if r["objectID"] in EXACT_MET_IDS]
    others = [r for r in shared_met_records if r["objectID"] not in EXACT_MET_IDS]
    first, rest = others[: N_MET_FIRST], others[N_MET_FIRST:]
    return met + first + rest[:: max(1, len(rest) // N_MET_SPREAD)][:N_MET_SPREAD]


def prod_env(*, bucket: str, prefix: str, endpoint_url: str, mlflow_url: str, home, base_urls: dict[str, str],
             backbone: str) -> dict[str, str]:
    """The variables a prod process needs (deploy/README.md), for a test's S3 prefix; every API
    source of the registry points at `base_urls` (the replay server's roots)."""
    missing = sorted(set(API_SOURCES) - set(base_urls))
    assert not missing, f"no replay root for {missing}: a prod test must never reach a live API"
    return {
        **{f"ARTSIM_{key.upper()}_BASE_URL": url for key, url in base_urls.items()},
        **AWS_TEST_CREDENTIALS,
        "ARTSIM_ENV": "prod",
        "ARTSIM_HOME": str(home),
        "ARTSIM_STORAGE_URL": f"s3://{bucket}/{prefix}",
        "ARTSIM_S3_ENDPOINT_URL": endpoint_url,
        "MLFLOW_TRACKING_URI": mlflow_url,
        "ARTSIM_IMAGE_BACKBONE": backbone,
        "HF_HUB_OFFLINE": "1",
    }


def expected_tables(defs) -> dict[AssetKey, list[str | None]]:
    """Every materialisable asset key of the graph with its partitions (None: unpartitioned)."""
    graph = defs.resolve_asset_graph()
    out = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable:
            out[key] = list(node.partitions_def.get_partition_keys()) if node.is_partitioned else [None]
    return out


def contract_key(prefix: str, key: AssetKey, partition: str | None) -> str:
    """`<prefix>/storage/<asset key>/<partition>.parquet`, or `<prefix>/storage/<asset key>.parquet`."""
    path = "/".join(key.path)
    return f"{prefix}/storage/{path}/{partition}.parquet" if partition is not None else f"{prefix}/storage/{path}.parquet"


@pytest.fixture(scope="module")
def prod_pipeline(tmp_path_factory, s3, mlflow_server, shared_met_records, shared_smk_records, shared_paged_records, tiny_vit,
                  tiny_text_model):
    """The whole graph materialised once with the prod resources; yields what the tests inspect."""
    from artsim_pipeline import settings
    from artsim_pipeline.cli import materialize_all
    from artsim_pipeline.definitions import build_defs
    from artsim_pipeline.resources.encoders import EncoderResource
    from artsim_pipeline.resources.museum_api import MuseumApiResource
    from artsim_pipeline_tests.replay.server import ReplayServer

    home = tmp_path_factory.mktemp("prod_s3") / "artsim_home"
    prefix = f"s3-storage-{uuid.uuid4().hex[:8]}"
    with ReplayServer(met_records=replay_records(shared_met_records), smk_records=shared_smk_records,
                      records=shared_paged_records) as replay, \
            pytest.MonkeyPatch.context() as mp:
        for name, value in prod_env(bucket=s3.bucket, prefix=prefix, endpoint_url=s3.endpoint_url, mlflow_url=mlflow_server.url,
                                    home=home, base_urls=replay.base_urls,
                                    backbone=f"hf:{tiny_vit}").items():
            mp.setenv(name, value)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)  # S3 must be found through ARTSIM_S3_ENDPOINT_URL
        defs = build_defs("prod")
        museum_api = defs.resources["museum_api"]
        # prod uses the live clients, pointed at the replay server by ARTSIM_*_BASE_URL
        assert museum_api.mode == "live" and museum_api.met_base_url == replay.met_base_url
        overrides = {
            "museum_api": MuseumApiResource(mode="live", met_base_url=settings.met_base_url(), smk_base_url=settings.smk_base_url(),
                                            base_urls=settings.api_base_urls(), **FAST_HTTP),
            # the tiny text model (prod defaults to the bundled all-MiniLM-L6-v2)
            "encoder": EncoderResource(backbone=settings.image_backbone(), text_model_path=str(tiny_text_model), num_workers=0),
        }
        instance = DagsterInstance.ephemeral()
        report = materialize_all(instance=instance, resources=overrides, run_config=TRAINING, force=True)
        image_requests = replay.count(r"/images/|/iiif/")
        # MLflow runs in this process left the tracking server's variable in place
        assert os.environ.get("MLFLOW_TRACKING_URI") == mlflow_server.url
        yield {"defs": build_defs("prod"), "instance": instance, "prefix": prefix, "home": home, "report": report,
               "image_requests": image_requests, "s3": s3, "mlflow_url": mlflow_server.url}


def test_every_table_asset_round_trips_through_s3_at_the_contract_layout(prod_pipeline):
    defs, instance, prefix, s3 = (prod_pipeline[k] for k in ("defs", "instance", "prefix", "s3"))
    tables = expected_tables(defs)
    assert len(tables) >= 15 and AssetKey("image_embeddings") in tables and AssetKey("collection_map") in tables
    assert len(tables[AssetKey("image_embeddings")]) == 8 and tables[AssetKey("artworks")] == list(SOURCES)
    expected = {contract_key(prefix, key, p): (key, p) for key, partitions in tables.items() for p in partitions}
    # `artsim materialize`'s function ran every one of them
    assert sorted(prod_pipeline["report"]["recomputed"]) == sorted(
        f"{k.to_user_string()}[{p}]" if p else k.to_user_string() for k, p in expected.values())
    stored = set(s3.keys(f"{prefix}/storage/"))
    assert stored == set(expected), f"missing {sorted(set(expected) - stored)}; unexpected {sorted(stored - set(expected))}"
    client = s3.client()
    frames: dict[tuple[str, str | None], pl.DataFrame] = {}
    for object_key, (key, partition) in sorted(expected.items()):
        label = f"{key.to_user_string()}[{partition}]" if partition else key.to_user_string()
        written = pl.read_parquet(io.BytesIO(client.get_object(Bucket=s3.bucket, Key=object_key)["Body"].read()))
        loaded = frames[(key.to_user_string(), partition)] = defs.load_asset_value(key, partition_key=partition, instance=instance)
        assert isinstance(loaded, pl.DataFrame), label
        assert loaded.schema == written.schema and loaded.equals(written), label
        # ... and it is what the IO manager reported writing in this run
        [record] = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1).records
        metadata = record.asset_materialization.metadata
        assert metadata["path"].value == f"s3://{s3.bucket}/{object_key}", label
        assert metadata["rows"].value == written.height, label
    # the tables hold the replayed collection, not an empty shell
    artworks = frames[("artworks", "met")]
    assert artworks.height >= N_MET * 0.9 and "met:436535" in artworks["artwork_id"].to_list()
    assert frames[("artworks", "smk")].height >= 20
    embedded = pl.concat([frames[("image_embeddings", p)] for p in tables[AssetKey("image_embeddings")]])
    ok_images = pl.concat([frames[("raw_images", p)] for p in SOURCES]).filter(pl.col("status") == "ok")
    assert embedded["image_sha256"].n_unique() == ok_images["sha256"].n_unique() > 100


def test_images_state_index_models_and_map_live_on_s3_and_artsim_home_holds_only_scratch(prod_pipeline):
    import mlflow

    defs, prefix, s3, home = (prod_pipeline[k] for k in ("defs", "prefix", "s3", "home"))
    keys = set(s3.keys(f"{prefix}/"))

    def under(folder: str) -> set[str]:
        return {k for k in keys if k.startswith(f"{prefix}/{folder}/")}

    # images: content-addressed, one object per ok row's path, downloaded from the replay server
    raw_images = {p: defs.load_asset_value("raw_images", partition_key=p, instance=prod_pipeline["instance"]) for p in SOURCES}
    ok_images = pl.concat(raw_images.values()).filter(pl.col("status") == "ok")
    # API images come from the replay server; a collection export's images from its own folder
    downloaded = pl.concat([raw_images[p] for p in API_SOURCES]).filter(pl.col("status") == "ok")
    assert prod_pipeline["image_requests"] >= downloaded["sha256"].n_unique()
    assert {f"{prefix}/images/{p}" for p in ok_images["path"].unique().to_list()} == under("images")
    # fetch cursors, and the normalisation state of each source (what lets a run re-normalise only changed records)
    cursors = under("state/raw_objects")
    assert cursors and all(k.endswith(".json") for k in cursors)
    assert all(isinstance(json.loads(s3.read_text(k)), dict) for k in cursors)
    assert {k.rsplit("/", 1)[-1] for k in under("state/artworks")} >= {f"{p}.parquet" for p in API_SOURCES}
    assert under("state") == cursors | under("state/artworks")
    # the ANN index, its files published together
    assert len(under("indexes/ann_index")) >= 2
    # the projection head, under the MLflow run that trained it
    model = defs.load_asset_value("similarity_model", instance=prod_pipeline["instance"]).row(0, named=True)
    assert any(k.startswith(f"{prefix}/models/similarity_model/{model['mlflow_run_id']}/") for k in keys)
    run = mlflow.MlflowClient(prod_pipeline["mlflow_url"]).get_run(model["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert s3.keys(f"mlflow-artifacts/"), "the MLflow server stores its artifacts in the bucket"
    # the self-contained map
    page = s3.read_text(f"{prefix}/maps/collection_map.html")
    assert "met:436535" in page and "<script src" not in page
    # nothing durable in ARTSIM_HOME: no tables, images, index, models or maps there
    assert home.is_dir()
    left = {p.name for p in home.iterdir()}
    assert left <= SCRATCH_ONLY, f"ARTSIM_HOME holds {sorted(left - SCRATCH_ONLY)}"
    for name in ("storage", "images", "state", "indexes", "models", "maps", "mlflow"):
        assert not (home / name).exists(), name
    scratch = home / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir()), "staged directories are removed once published"


def test_object_stores_behave_alike_on_disk_and_on_s3(tmp_path, moto, monkeypatch):
    from artsim_pipeline.resources.objects import LocalObjectStore, S3ObjectStore, open_store

    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    bucket = moto.create_bucket(f"artsim-objects-{uuid.uuid4().hex[:8]}")
    stores = {
        "local": LocalObjectStore(tmp_path / "objects"),
        "s3 with prefix": open_store(f"s3://{bucket}/some/prefix/", endpoint_url=moto.endpoint_url),
        "s3 bucket root": S3ObjectStore(f"s3://{bucket}", endpoint_url=moto.endpoint_url),
    }
    assert isinstance(stores["s3 with prefix"], S3ObjectStore) and isinstance(open_store(str(tmp_path)), LocalObjectStore)
    assert stores["local"].is_local and not stores["s3 with prefix"].is_local
    assert stores["s3 with prefix"].uri("a/b.txt") == f"s3://{bucket}/some/prefix/a/b.txt"
    assert stores["local"].uri("a/b.txt") == f"{tmp_path / 'objects'}/a/b.txt"
    for label, store in stores.items():
        assert store.read_bytes("dir/missing.bin") is None, label
        assert not store.exists("dir/missing.bin"), label
        assert list(store.list_keys("dir")) == [], label
        store.write_bytes("dir/a.bin", b"one")
        store.write_bytes("dir/sub/b.bin", b"two")
        store.write_bytes("dirx/c.bin", b"three")  # shares the string prefix "dir", not the folder
        store.write_bytes("top.bin", b"")
        assert store.read_bytes("dir/a.bin") == b"one", label
        assert store.read_bytes("top.bin") == b"", label
        assert store.exists("dir/sub/b.bin") and not store.exists("dir/sub"), label
        store.write_bytes("dir/a.bin", b"replaced")
        assert store.read_bytes("dir/a.bin") == b"replaced", label
        assert sorted(store.list_keys("dir")) == ["dir/a.bin", "dir/sub/b.bin"], label
        assert sorted(store.list_keys("dir/")) == ["dir/a.bin", "dir/sub/b.bin"], label
        assert sorted(store.list_keys("dir/sub")) == ["dir/sub/b.bin"], label
        assert list(store.list_keys("nothing")) == [], label
    # the local store leaves no temporary files behind
    assert sorted(p.relative_to(tmp_path / "objects").as_posix() for p in (tmp_path / "objects").rglob("*") if p.is_file()) == [
        "dir/a.bin", "dir/sub/b.bin", "dirx/c.bin", "top.bin"]
    # both S3 stores wrote where their URLs say
    keys = {obj["Key"] for obj in moto.client("s3").list_objects_v2(Bucket=bucket)["Contents"]}
    assert {"some/prefix/dir/a.bin", "some/prefix/top.bin", "dir/a.bin", "dirx/c.bin"} <= keys
    for bad in ("s3://", "/not/s3"):
        with pytest.raises(ValueError):
            S3ObjectStore(bad, endpoint_url=moto.endpoint_url)


def test_upserted_tables_behave_alike_on_disk_and_on_s3(tmp_path, moto, monkeypatch):
    """The raw tables' deltas, merge-on-read, deletes and compaction (`resources/tables.py`) on S3:
    the footer read by range, deltas listed and removed."""
    from artsim_pipeline.resources.tables import TableStore

    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    bucket = moto.create_bucket(f"artsim-tables-{uuid.uuid4().hex[:8]}")
    stores = {"local": TableStore(base_dir=str(tmp_path / "storage")),
              "s3": TableStore(base_dir=f"s3://{bucket}/p/storage", s3_endpoint_url=moto.endpoint_url)}
    rows = pl.DataFrame({"source_id": [str(i) for i in range(200)], "text": [f"a{i}" for i in range(200)]})
    for label, store in stores.items():
        assert store.upsert_table(rows, ["source_id"], "raw_objects", "met").compacted, label
        report = store.upsert_table(pl.DataFrame({"source_id": ["5", "500"], "text": ["b5", "b500"]}), ["source_id"],
                                    "raw_objects", "met", deleted=pl.DataFrame({"source_id": ["7"]}))
        assert (report.compacted, report.rows_written, report.deltas) == (False, 3, 1), label
        table = store.read_table("raw_objects", "met")
        assert table.height == 200 and "7" not in table["source_id"].to_list(), label
        assert table.filter(pl.col("source_id") == "5")["text"].item() == "b5", label
        assert store.upsert_table(rows.with_columns(text=pl.lit("c")), ["source_id"], "raw_objects", "met").compacted, label
        assert list(store.objects.list_keys(store.deltas_prefix("raw_objects", "met"))) == [], label
    assert stores["local"].read_table("raw_objects", "met").equals(stores["s3"].read_table("raw_objects", "met"))
    keys = {obj["Key"] for obj in moto.client("s3").list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {"p/storage/raw_objects/met.parquet"}


def test_conditional_writes_and_racing_upserts_on_s3(tmp_path, moto, monkeypatch):
    """The writes that keep two writers of one raw table from losing each other's rows
    (`create_bytes`: If-None-Match, `replace_bytes`: If-Match), on S3 as on disk."""
    from artsim_pipeline.resources.objects import LocalObjectStore, S3ObjectStore
    from artsim_pipeline.resources.tables import TableStore

    for name, value in AWS_TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    bucket = moto.create_bucket(f"artsim-race-{uuid.uuid4().hex[:8]}")
    for label, objects in {"local": LocalObjectStore(tmp_path / "objects"),
                           "s3": S3ObjectStore(f"s3://{bucket}/p", endpoint_url=moto.endpoint_url)}.items():
        assert objects.create_bytes("t/a.bin", b"one") and not objects.create_bytes("t/a.bin", b"two"), label
        read = objects.version("t/a.bin")
        assert objects.replace_bytes("t/a.bin", b"three", read), label
        assert not objects.replace_bytes("t/a.bin", b"four", read), label  # replaced since it was read
        assert not objects.replace_bytes("t/a.bin", b"five", None), label
        assert objects.replace_bytes("t/b.bin", b"six", None) and objects.version("t/none.bin") is None, label
        assert (objects.read_bytes("t/a.bin"), objects.read_bytes("t/b.bin")) == (b"three", b"six"), label

    base_dir = f"s3://{bucket}/p/storage"
    store, other = (TableStore(base_dir=base_dir, s3_endpoint_url=moto.endpoint_url) for _ in range(2))
    rows = pl.DataFrame({"source_id": [str(i) for i in range(200)], "text": [f"a{i}" for i in range(200)]})
    store.upsert_table(rows, ["source_id"], "raw_objects", "met")
    real_list = store.objects.list_keys
    listed = []

    def other_writer_after_listing(prefix):
        keys = list(real_list(prefix))
        if not listed:  # `store` has chosen delta 1; another writer stores delta 1 (same size) first
            listed.append(other.upsert_table(pl.DataFrame({"source_id": ["x"], "text": ["x"]}), ["source_id"], "raw_objects", "met"))
        return iter(keys)

    store.objects.list_keys = other_writer_after_listing
    report = store.upsert_table(pl.DataFrame({"source_id": ["w"], "text": ["w"]}), ["source_id"], "raw_objects", "met")
    assert listed and (report.compacted, report.deltas) == (False, 2)
    table = other.read_table("raw_objects", "met")
    assert table.height == 202 and set(table.filter(pl.col("source_id").is_in(["x", "w"]))["text"]) == {"x", "w"}


def test_prod_definitions_refuse_to_build_without_s3_storage_or_an_mlflow_server(monkeypatch, tmp_path):
    from artsim_pipeline.definitions import build_defs

    monkeypatch.setenv("ARTSIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.delenv("ARTSIM_STORAGE_URL", raising=False)
    with pytest.raises(ValueError, match="ARTSIM_STORAGE_URL=s3://"):
        build_defs("prod")
    monkeypatch.setenv("ARTSIM_STORAGE_URL", str(tmp_path / "storage"))  # a local path is not S3
    with pytest.raises(ValueError, match="ARTSIM_STORAGE_URL=s3://"):
        build_defs("prod")
    monkeypatch.setenv("ARTSIM_STORAGE_URL", "s3://artsim-prod/data")
    for uri in ("sqlite:///mlflow.db", "file:///tmp/mlruns", ""):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        with pytest.raises(ValueError, match="MLFLOW_TRACKING_URI=http"):
            build_defs("prod")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_URI=http"):
        build_defs("prod")
    assert not (tmp_path / "home").exists()  # refusing writes nothing
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.internal")
    assert build_defs("prod").resources["tables"].base_dir == "s3://artsim-prod/data/storage"
