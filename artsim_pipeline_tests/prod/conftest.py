"""Session-scoped real servers for the prod-profile tests (see artsim_pipeline_tests/servers.py).

`postgres` (PostgresServer: `.url()`, `.connect()`, `.create_database(name)`, `.env(db)` gives the
DAGSTER_PG_* variables), `redis` (RedisServer: `.url()`, `.client()`), `moto` (MotoServer: one
server for S3, ECS and the other AWS APIs), `s3` (S3Bucket: the moto endpoint plus a created
bucket: `.endpoint_url`, `.bucket`, `.client()`, `.keys(prefix)`, `.env()`), `mlflow_server`
(MlflowServer: `.url` of a real `mlflow server` with its store in the Postgres server and its
artifacts in the S3 bucket), and `aws_env` (function scope: the fake AWS credentials, region and
AWS_ENDPOINT_URL of the moto server in os.environ for one test).

The servers are never skipped: `scripts/install-services.sh` (run by `make test`) installs
PostgreSQL and Redis, and moto and MLflow come with the venv. Every server process is stopped at
the end of the session, also when tests fail.
"""

from __future__ import annotations

import pytest

from artsim_pipeline_tests import servers


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    with servers.postgres_server(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="session")
def redis(tmp_path_factory):
    with servers.redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    with servers.moto_s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def s3(moto):
    """A bucket (`artsim-test`) on the session's moto server. Tests use their own key prefixes."""
    return servers.S3Bucket(server=moto, bucket=moto.create_bucket("artsim-test"))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, postgres, s3):
    database = postgres.create_database("mlflow")
    with servers.mlflow_server(
        tmp_path_factory.mktemp("mlflow"),
        backend_store_uri=postgres.url(database),
        artifacts_destination=f"s3://{s3.bucket}/mlflow-artifacts",
        s3_endpoint=s3.endpoint_url,
    ) as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch, moto):
    """The moto server's fake credentials, region and AWS_ENDPOINT_URL, for this test only."""
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    return moto.env()
