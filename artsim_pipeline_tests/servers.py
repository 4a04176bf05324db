"""Throwaway servers for the tests and benchmarks: PostgreSQL, Redis, moto (S3 and other AWS
APIs), an MLflow tracking server and `artsim serve`, each on a free port of 127.0.0.1; and how
headless Chromium is launched.

Each helper is a context manager that starts one real server process in its own process group,
waits until it answers (raising `ServerStartError` with the tail of the server's log when it
does not, or when it exits early), yields a small description of it, and stops it on exit (also
when the body raises): a polite signal first, SIGKILL to the whole group after a grace period.

The binaries come from the Debian packages `postgresql` and `redis-server` (installed, if
missing, by `scripts/install-services.sh`, which `make test` runs) and from the venv
(`moto_server`, `mlflow`). Nothing here talks to the network beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
AWS_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # never look for instance-metadata credentials (a slow timeout off EC2) or ~/.aws files
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


class ServerStartError(RuntimeError):
    """A server did not become ready; the message ends with the tail of its log."""


# --------------------------------------------------------------------------------------------
# process plumbing


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the servers retry on a lost race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def log_tail(path: Path | str, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


@dataclass
class ManagedProcess:
    """A server process started in its own session (so its whole group can be signalled)."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    stop_signal: int = signal.SIGTERM
    signal_group: bool = True  # False: only the leader gets `stop_signal` (it stops its children)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def failure(self, message: str) -> ServerStartError:
        status = "still running" if self.alive() else f"exited with code {self.popen.returncode}"
        return ServerStartError(
            f"{self.name}: {message} (pid {self.pid}, {status}); last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self, grace_s: float = 15.0) -> None:
        """`stop_signal` to the server (or its group), then SIGKILL to the group after `grace_s`."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if self.signal_group:
                    os.killpg(self.pid, self.stop_signal)
                else:
                    self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # children (gunicorn/uvicorn workers, postgres backends) go with the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def start_process(
    name: str,
    args: list[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    user: str | None = None,
    stop_signal: int = signal.SIGTERM,
    signal_group: bool = True,
) -> ManagedProcess:
    """Start `args` in a new session, stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    extra: dict = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **extra,
        )
    return ManagedProcess(name=name, popen=popen, log_path=log_path, stop_signal=stop_signal, signal_group=signal_group)


def wait_until(process: ManagedProcess, probe: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `probe` until it returns True; raise with the log tail on exit or timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if not process.alive():
            raise process.failure(f"exited before {what}")
        try:
            if probe():
                return
        except Exception as exc:  # noqa: BLE001 - any failure just means "not yet"
            last_error = exc
        time.sleep(0.2)
    detail = f" (last probe error: {last_error!r})" if last_error else ""
    raise process.failure(f"not {what} after {timeout_s:.0f} s{detail}")


_LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with _LOOPBACK_OPENER.open(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def venv_script(name: str) -> str:
    """A console script of the running venv (`moto_server`, `mlflow`), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise ServerStartError(f"{name} is not installed in {Path(sys.executable).parent} nor on PATH")
    return found


def _start_with_port_retry(start: Callable[[int], tuple[ManagedProcess, Callable[[], bool]]],
                           timeout_s: float, what: str, attempts: int = 3) -> tuple[ManagedProcess, int]:
    """Start on a free port; if the server dies because the port was taken meanwhile, try another."""
    for attempt in range(attempts):
        port = free_port()
        process, probe = start(port)
        try:
            wait_until(process, probe, timeout_s, what)
            return process, port
        except ServerStartError:
            in_use = "in use" in log_tail(process.log_path).lower()
            process.stop(grace_s=5)
            if not in_use or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bin_dir() -> Path:
    """Where `initdb` and `postgres` live: PATH, else Debian's /usr/lib/postgresql/<major>/bin."""
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres and Path(initdb).parent == Path(postgres).parent:
        return Path(initdb).parent
    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in Path(path).parent.name.split(".") if part.isdigit())

    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if os.access(Path(directory) / "initdb", os.X_OK) and os.access(Path(directory) / "postgres", os.X_OK):
            return Path(directory)
    raise ServerStartError("PostgreSQL is not installed (no initdb/postgres): run scripts/install-services.sh")


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    data_dir: Path
    log_path: Path

    def url(self, dbname: str | None = None, driver: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL, e.g. for MLflow's --backend-store-uri. The driver is explicit because
        SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which is not installed."""
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{dbname or self.dbname}"

    def connect(self, dbname: str | None = None):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                dbname=dbname or self.dbname, connect_timeout=5)

    def create_database(self, name: str) -> str:
        """Create database `name` (dropped first if it exists); returns its name."""
        from psycopg2 import sql

        connection = self.connect("postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            connection.close()
        return name

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """The DAGSTER_PG_* variables that deploy/*/dagster.yaml read."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": dbname or self.dbname,
        }


@contextlib.contextmanager
def postgres_server(tmp_dir: Path | str, *, user: str = "artsim", password: str = "artsim-test-pw",
                    dbname: str = "artsim", timeout_s: float = 60.0) -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster (initdb) on a free loopback port, password (scram) auth over TCP.

    PostgreSQL refuses to run as root, so as root the cluster is owned by and run as the
    `postgres` system user (created by the Debian package; added here if missing), in a private
    directory under the system temp dir (pytest's tmp dirs are 0700 root and not reachable by
    that user), removed afterwards. Otherwise it lives in `tmp_dir`.
    """
    bin_dir = postgres_bin_dir()
    run_as: str | None = None
    if os.geteuid() == 0:
        run_as = "postgres"
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", run_as], check=True)
        base = Path(tempfile.mkdtemp(prefix="artsim-pg-"))
        owner = pwd.getpwnam(run_as)
        os.chown(base, owner.pw_uid, owner.pw_gid)
        remove_base = True
    else:
        base = Path(tmp_dir) / "postgres"
        base.mkdir(parents=True, exist_ok=True)
        remove_base = False
    data_dir, log_path, pwfile = base / "data", base / "postgres.log", base / "pwfile"
    pwfile.write_text(password + "\n")
    if run_as:
        owner = pwd.getpwnam(run_as)
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    os.chmod(pwfile, 0o600)
    process: ManagedProcess | None = None
    try:
        init = start_process(
            "initdb",
            [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", user, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            base / "initdb.log", user=run_as, cwd=base,
        )
        try:
            code = init.popen.wait(timeout=120)
        except subprocess.TimeoutExpired:
            init.stop(grace_s=2)
            raise init.failure("initdb did not finish in 120 s") from None
        if code != 0:
            raise init.failure("initdb failed")

        def start(port: int):
            proc = start_process(
                "postgres",
                [str(bin_dir / "postgres"), "-D", str(data_dir), "-h", LOOPBACK, "-p", str(port),
                 "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "log_min_messages=warning"],
                log_path, user=run_as, cwd=base,
                # "fast" shutdown (SIGTERM would wait for clients to leave); the postmaster stops
                # its backends itself
                stop_signal=signal.SIGINT, signal_group=False,
            )

            def ready() -> bool:
                import psycopg2

                psycopg2.connect(host=LOOPBACK, port=port, user=user, password=password, dbname="postgres",
                                 connect_timeout=2).close()
                return True

            return proc, ready

        process, port = _start_with_port_retry(start, timeout_s, "accepting connections")
        server = PostgresServer(LOOPBACK, port, user, password, dbname, data_dir, log_path)
        server.create_database(dbname)
        yield server
    finally:
        if process is not None:
            process.stop()
        if remove_base:
            shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Redis


@dataclass
class RedisServer:
    host: str
    port: int
    log_path: Path

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis(host=self.host, port=self.port, db=db)


@contextlib.contextmanager
def redis_server(tmp_dir: Path | str, *, timeout_s: float = 30.0) -> Iterator[RedisServer]:
    """redis-server on a free loopback port, no persistence, working dir `tmp_dir/redis`."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        raise ServerStartError("redis-server is not installed: run scripts/install-services.sh")
    base = Path(tmp_dir) / "redis"
    base.mkdir(parents=True, exist_ok=True)
    log_path = base / "redis.log"
    process: ManagedProcess | None = None

    def start(port: int):
        proc = start_process(
            "redis-server",
            [binary, "--bind", LOOPBACK, "--port", str(port), "--dir", str(base), "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"],
            log_path, cwd=base,
        )

        def ready() -> bool:
            import redis

            return bool(redis.Redis(host=LOOPBACK, port=port, socket_connect_timeout=1).ping())

        return proc, ready

    try:
        process, port = _start_with_port_retry(start, timeout_s, "answering PING")
        yield RedisServer(LOOPBACK, port, log_path)
    finally:
        if process is not None:
            process.stop()


# --------------------------------------------------------------------------------------------
# moto (S3, ECS, ... one server answers every AWS API)


@dataclass
class MotoServer:
    endpoint_url: str
    region: str = "us-east-1"
    log_path: Path | None = None

    def env(self) -> dict[str, str]:
        """Fake credentials, region and AWS_ENDPOINT_URL (boto3 >= 1.28 sends every client here)."""
        return {**AWS_TEST_CREDENTIALS, "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region,
                "AWS_ENDPOINT_URL": self.endpoint_url}

    def client(self, service: str = "s3"):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def create_bucket(self, name: str) -> str:
        self.client("s3").create_bucket(Bucket=name)
        return name

    def reset(self) -> None:
        """Forget every resource in every service (moto's reset endpoint)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


@dataclass
class S3Bucket:
    """A bucket on the moto server: what the `s3` fixture yields."""

    server: MotoServer
    bucket: str

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    @property
    def region(self) -> str:
        return self.server.region

    def client(self):
        return self.server.client("s3")

    def env(self) -> dict[str, str]:
        return self.server.env()

    def keys(self, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [obj["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix) for obj in page.get("Contents", [])]

    def read_text(self, key: str) -> str:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("utf-8", "replace")


@contextlib.contextmanager
def moto_s3_server(tmp_dir: Path | str | None = None, *, timeout_s: float = 30.0) -> Iterator[MotoServer]:
    """`moto_server` (from the venv) on a free loopback port; it serves S3, ECS and the rest."""
    binary = venv_script("moto_server")
    base = Path(tmp_dir) if tmp_dir is not None else Path(tempfile.mkdtemp(prefix="artsim-moto-"))
    base.mkdir(parents=True, exist_ok=True)
    log_path = base / "moto.log"
    env = {**os.environ, **AWS_TEST_CREDENTIALS}
    env.pop("AWS_ENDPOINT_URL", None)
    process: ManagedProcess | None = None

    def start(port: int):
        proc = start_process("moto_server", [binary, "-H", LOOPBACK, "-p", str(port)], log_path, env=env, cwd=base)
        return proc, lambda: http_ok(f"http://{LOOPBACK}:{port}/moto-api/data.json")

    try:
        process, port = _start_with_port_retry(start, timeout_s, "answering HTTP")
        yield MotoServer(endpoint_url=f"http://{LOOPBACK}:{port}", log_path=log_path)
    finally:
        if process is not None:
            process.stop()
        if tmp_dir is None:
            shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# MLflow tracking server


@dataclass
class MlflowServer:
    url: str
    backend_store_uri: str
    artifacts_destination: str
    log_path: Path


@contextlib.contextmanager
def mlflow_server(tmp_dir: Path | str, backend_store_uri: str, artifacts_destination: str,
                  s3_endpoint: str | None = None, *, timeout_s: float = 120.0) -> Iterator[MlflowServer]:
    """A real `mlflow server` on a free loopback port with `backend_store_uri` (a SQL store) and
    artifacts proxied to `artifacts_destination` (e.g. s3://bucket/prefix on the moto server at
    `s3_endpoint`, with the test credentials). Ready when /health answers."""
    binary = venv_script("mlflow")
    base = Path(tmp_dir) / "mlflow-server"
    base.mkdir(parents=True, exist_ok=True)
    log_path = base / "mlflow-server.log"
    # MLflow 3.x otherwise starts a job runner and ~8 huey consumer processes beside the server
    # (a heavy load on a small machine, and a tmp dir left in /dev/shm): not needed here.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if s3_endpoint:
        env.update(AWS_TEST_CREDENTIALS)
        env["MLFLOW_S3_ENDPOINT_URL"] = s3_endpoint
    process: ManagedProcess | None = None

    def start(port: int):
        proc = start_process(
            "mlflow server",
            [binary, "server", "--host", LOOPBACK, "--port", str(port), "--workers", "1",
             "--backend-store-uri", backend_store_uri, "--serve-artifacts",
             "--artifacts-destination", artifacts_destination],
            log_path, env=env, cwd=base,
        )
        return proc, lambda: http_ok(f"http://{LOOPBACK}:{port}/health")

    try:
        process, port = _start_with_port_retry(start, timeout_s, "answering /health")
        yield MlflowServer(f"http://{LOOPBACK}:{port}", backend_store_uri, artifacts_destination, log_path)
    finally:
        if process is not None:
            process.stop()


__all__ = [
    "AWS_TEST_CREDENTIALS",
    "ManagedProcess",
    "MlflowServer",
    "MotoServer",
    "PostgresServer",
    "RedisServer",
    "S3Bucket",
    "ServerStartError",
    "free_port",
    "mlflow_server",
    "moto_s3_server",
    "postgres_server",
    "redis_server",
]


# --------------------------------------------------------------------------------------------
# artsim serve, and headless Chromium


@contextlib.contextmanager
def artsim_serve(home: Path | str, log_dir: Path | str, *, timeout_s: float = 120.0) -> Iterator[str]:
    """`artsim serve` over `home` in a subprocess; yields its base URL once `/api/feedback` answers."""
    def start(port: int) -> tuple[ManagedProcess, Callable[[], bool]]:
        env = dict(os.environ, ARTSIM_HOME=str(home), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        cmd = [sys.executable, "-c", "import sys; from artsim_pipeline.cli import main; sys.exit(main())",
               "serve", "--host", LOOPBACK, "--port", str(port)]
        process = start_process("artsim serve", cmd, Path(log_dir) / "serve.log", env=env)
        return process, lambda: http_ok(f"http://{LOOPBACK}:{port}/api/feedback")

    process, port = _start_with_port_retry(start, timeout_s, "answering")
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        process.stop(grace_s=10)


CHROMIUM = os.environ.get("ARTSIM_CHROMIUM", "/usr/bin/chromium")  # Debian's package (install-browser.sh)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--no-proxy-server",
]
