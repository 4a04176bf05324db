"""Run config merges into the resources `definitions.build_resources` made from the environment:
setting one field never resets the others (a live `museum_api` never falls back to the sample)."""


import pytest
from dagster import AssetExecutionContext, asset, materialize

from artsim_pipeline.resources.museum_api import MuseumApiResource
from artsim_pipeline.resources.storage import ArtsimStorage

SEEN: dict[str, dict] = {}
RESOURCE_KEYS = ("museum_api", "tables", "storage", "encoder", "mlflow_tracking", "io_manager")


@asset(required_resource_keys=set(RESOURCE_KEYS))
def probe(context: AssetExecutionContext) -> None:
    for key in RESOURCE_KEYS:
        resource = getattr(context.resources, key)
        SEEN[key] = {k: v for k, v in resource.__dict__.items() if not k.startswith("_")}
        if key == "io_manager":
            SEEN[key] = {"store": resource.store.base_dir}


# one field of each resource, set in run config
OVERRIDES = {
    "museum_api": {"requests_per_second": 3.0},
    "tables": {"s3_region": "eu-west-1"},
    "storage": {"s3_region": "eu-west-1"},
    "encoder": {"batch_size": 7},
    "mlflow_tracking": {"ui_url": "http://127.0.0.1:5999"},
}


@pytest.fixture
def live_env(artsim_home, monkeypatch):
    monkeypatch.setenv("ARTSIM_ENV", "local")
    monkeypatch.setenv("ARTSIM_MET_BASE_URL", "http://127.0.0.1:9/met")
    monkeypatch.setenv("ARTSIM_SMK_BASE_URL", "http://127.0.0.1:9/smk")
    monkeypatch.setenv("ARTSIM_IMAGE_BACKBONE", "efficientnet_lite0")
    return artsim_home


def run_probe(resources: dict, config: dict) -> dict:
    SEEN.clear()
    run_config = {"resources": {key: {"config": value} for key, value in config.items()}}
    assert materialize([probe], resources=resources, run_config=run_config).success
    return dict(SEEN)


@pytest.mark.parametrize("key", sorted(OVERRIDES))
def test_one_field_in_run_config_keeps_what_the_environment_set(live_env, key):
    from artsim_pipeline.definitions import build_resources

    resources = build_resources("local")
    seen = run_probe(resources, {key: OVERRIDES[key]})
    for name in RESOURCE_KEYS:
        expected = {"store": resources["tables"].base_dir} if name == "io_manager" else {
            k: v for k, v in resources[name].__dict__.items() if not k.startswith("_")}
        if name == key:
            expected = {**expected, **OVERRIDES[key]}
        assert seen[name] == expected, name
    api = seen["museum_api"]
    assert api["mode"] == "live" and api["met_base_url"] == "http://127.0.0.1:9/met"  # never the sample
    assert seen["encoder"]["backbone"] == "efficientnet_lite0"


def test_every_field_of_every_resource_at_once(live_env):
    from artsim_pipeline.definitions import build_resources

    resources = build_resources("local")
    seen = run_probe(resources, OVERRIDES)
    assert seen["museum_api"]["mode"] == "live" and seen["museum_api"]["requests_per_second"] == 3.0
    assert seen["tables"]["base_dir"] == resources["tables"].base_dir and seen["tables"]["s3_region"] == "eu-west-1"
    assert seen["mlflow_tracking"]["tracking_uri"] == resources["mlflow_tracking"].tracking_uri


def test_a_remote_storage_keeps_its_url_and_the_sample_env_stays_a_snapshot(live_env):
    storage = ArtsimStorage(home=str(live_env), remote_url="s3://bucket/prefix", s3_endpoint_url="http://127.0.0.1:9")
    seen = run_probe({**_sample_resources(), "storage": storage}, {"storage": {"s3_region": "us-east-1"}})
    assert seen["storage"]["remote_url"] == "s3://bucket/prefix" and seen["storage"]["s3_endpoint_url"] == "http://127.0.0.1:9"
    assert seen["museum_api"]["mode"] == "snapshot"
    # and a field set in run config still wins over the built value
    seen = run_probe(_sample_resources(), {"museum_api": {"mode": "live", "met_base_url": "http://x/met"}})
    assert (seen["museum_api"]["mode"], seen["museum_api"]["met_base_url"]) == ("live", "http://x/met")


def _sample_resources() -> dict:
    from artsim_pipeline.definitions import build_resources

    return build_resources("sample")


def test_resources_built_without_values_still_take_run_config():
    seen = run_probe({**_sample_resources(), "museum_api": MuseumApiResource()}, {"museum_api": {"burst": 2}})
    assert seen["museum_api"]["burst"] == 2 and seen["museum_api"]["mode"] == "snapshot"


def test_a_live_environment_never_reads_the_bundled_sample(live_env):
    with pytest.raises(ValueError, match="ARTSIM_ENV=local"):
        MuseumApiResource(mode="snapshot").client("met")
