"""`make dev` smoke test: the Dagster UI and the MLflow UI, started by `scripts/dev.sh` itself.

`scripts/dev.sh` (what `make dev` runs) is started once for the module, in its own process
group, on free loopback ports over a temporary `$ARTSIM_HOME`, with the environment the
Makefile exports (`DAGSTER_HOME` = the repo root, telemetry off, Hugging Face offline) and
`ARTSIM_ENV=sample`. Then:

- Dagster: `/server_info` answers, the asset graph served over GraphQL holds every contract
  asset key, and a run of `raw_objects` for partition `smk` launched over GraphQL (the
  `launchRun` mutation on the implicit asset job, with the `dagster/partition` tag) is dequeued
  by the daemon that `dagster dev` starts, succeeds, and shows as the asset's latest
  materialisation;
- MLflow: `/health`, the UI's HTML at `/` and the REST API (`experiments/search`) answer, over
  the SQLite store under the same `$ARTSIM_HOME`;
- stopping: SIGINT to the script's process group (Ctrl-C) stops both servers and every process
  they started, without the SIGKILL fallback. Leftovers are found by the temporary
  `ARTSIM_HOME` in each process's environment (`/proc/<pid>/environ`), which every descendant
  inherits, so servers in their own sessions and orphans are found too.

Linux only (`setsid`, `/proc`), like `make dev`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from artsim_pipeline_tests.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_SH = REPO_ROOT / "scripts" / "dev.sh"

# Deadlines, not durations: each wait ends as soon as its condition holds. They leave room for a
# CI machine busier than the 2 busy cores the figures in brackets were measured on.
START_TIMEOUT_S = 180  # both UIs answering (Dagster ~25 s, MLflow ~50 s on 2 busy cores)
RUN_TIMEOUT_S = 120  # queued -> dequeued by the daemon -> SUCCESS (~12 s)
STOP_TIMEOUT_S = 90  # SIGINT -> every process gone (dagster dev waits for webserver + daemon)

CONTRACT_ASSET_KEYS = {
    "raw_objects",
    "raw_images",
    "artworks",
    "artworks_quarantine",
    "weak_pairs",
    "image_embeddings",
    "text_embeddings",
    "similarity_model",
    "similarity_evaluation",
    "artwork_vectors",
    "ann_index",
    "near_duplicates",
    "department_classifier",
    "period_classifier",
    "clusters",
    "collection_map",
}
PARTITIONED_BY_SOURCE = {"raw_objects", "raw_images", "artworks", "artworks_quarantine"}

# The environment `make dev` runs scripts/dev.sh with (the Makefile's exports).
MAKEFILE_EXPORTS = {
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HNSWLIB_NO_NATIVE": "1",
}

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
    ... on PresetNotFoundError { message }
  }
}
"""

RUN_STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

RUN_EVENTS = """
query RunEvents($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ExecutionStepFailureEvent { error { message } }
        ... on RunFailureEvent { error { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

LATEST_MATERIALIZATION = """
query Latest($assetKey: AssetKeyInput!, $partition: String!) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset { assetMaterializations(partitions: [$partition], limit: 1) { runId partition timestamp } }
    ... on AssetNotFoundError { message }
  }
}
"""


# -- processes -----------------------------------------------------------------------------------


def _processes_with_home(home: Path) -> dict[int, str]:
    """pid -> command line of every live process whose environment holds `ARTSIM_HOME=<home>`."""
    marker = f"ARTSIM_HOME={home}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie is already gone; only its parent's wait() is missing
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found[int(entry.name)] = cmdline.strip()[:160]
    return found


def _describe(processes: dict[int, str]) -> str:
    return "\n".join(f"  {pid}: {cmd}" for pid, cmd in sorted(processes.items()))


@dataclass
class DevServers:
    """`scripts/dev.sh` running: its process, home, log and the two UIs' URLs."""

    proc: subprocess.Popen
    home: Path
    log_path: Path
    dagster_url: str
    mlflow_url: str
    stop_report: dict | None = field(default=None)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return text[-chars:]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(f"{self.dagster_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        assert response.status_code == 200, f"GraphQL answered {response.status_code}: {response.text[:2000]}"
        body = response.json()
        assert not body.get("errors"), f"GraphQL errors: {body['errors']}"
        return body["data"]

    def stop(self) -> dict:
        """Ctrl-C: SIGINT to the script's process group, then SIGKILL whatever is left.

        Returns what happened: `clean` (everything exited after SIGINT alone), `seconds`, `left`
        (processes still alive after the SIGINT grace period, killed), `survivors` (alive even
        after SIGKILL). Idempotent.
        """
        if self.stop_report is not None:
            return self.stop_report
        started = time.monotonic()
        deadline = started + STOP_TIMEOUT_S
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        # dev.sh waits for the two servers; their children (code server, run workers, uvicorn
        # workers, MLflow's job runner) may take a moment longer.
        while _processes_with_home(self.home) and time.monotonic() < deadline:
            time.sleep(0.25)
        seconds = time.monotonic() - started
        left = _processes_with_home(self.home)
        if self.proc.poll() is None:
            left.setdefault(self.proc.pid, "scripts/dev.sh")
        for pid in left:
            try:
                group = os.getpgid(pid)
                if group != os.getpgrp():  # never our own group
                    os.killpg(group, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.5 if left else 0)
        survivors = _processes_with_home(self.home)
        self.stop_report = {"clean": not left, "seconds": seconds, "left": left, "survivors": survivors, "returncode": self.proc.returncode}
        return self.stop_report


def _wait_until_up(servers: DevServers) -> None:
    endpoints = {"dagster /server_info": f"{servers.dagster_url}/server_info", "mlflow /health": f"{servers.mlflow_url}/health"}
    up: dict[str, float] = {}
    started = time.monotonic()
    last_error: dict[str, str] = {}
    while time.monotonic() - started < START_TIMEOUT_S:
        if servers.proc.poll() is not None:
            pytest.fail(f"scripts/dev.sh exited with {servers.proc.returncode} before both UIs answered; log tail:\n{servers.log_tail()}")
        for name, url in endpoints.items():
            if name in up:
                continue
            try:
                response = requests.get(url, timeout=5)
                if response.status_code == 200:
                    up[name] = round(time.monotonic() - started, 1)
                else:
                    last_error[name] = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                last_error[name] = type(exc).__name__
        if len(up) == len(endpoints):
            return
        time.sleep(0.5)
    missing = {name: last_error.get(name) for name in endpoints if name not in up}
    pytest.fail(f"not answering after {START_TIMEOUT_S} s: {missing} (up: {up}); log tail:\n{servers.log_tail()}")


@pytest.fixture(scope="module")
def dev_servers(tmp_path_factory):
    """`scripts/dev.sh` on free loopback ports over a fresh ARTSIM_HOME; stopped with SIGINT."""
    base = tmp_path_factory.mktemp("dev_servers")
    home = base / "artsim_home"
    home.mkdir()  # `make dev` creates it too
    dagster_port, mlflow_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME", "ARTSIM_HOME")}
    env.update(MAKEFILE_EXPORTS)
    env.update(
        ARTSIM_HOME=str(home),
        ARTSIM_ENV="sample",
        DAGSTER_HOME=str(REPO_ROOT),
        DAGSTER_PORT=str(dagster_port),
        MLFLOW_PORT=str(mlflow_port),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    log_path = base / "dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(DEV_SH)], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    servers = DevServers(proc, home, log_path, f"http://127.0.0.1:{dagster_port}", f"http://127.0.0.1:{mlflow_port}")
    try:
        _wait_until_up(servers)
        yield servers
    finally:
        checked_by_a_test = servers.stop_report is not None
        report = servers.stop()
        if not checked_by_a_test and (report["left"] or report["survivors"]):
            pytest.fail(
                f"processes left after SIGINT + {STOP_TIMEOUT_S} s (SIGKILLed):\n{_describe(report['left'])}\n"
                f"alive even after SIGKILL:\n{_describe(report['survivors'])}\nlog tail:\n{servers.log_tail()}"
            )


# -- Dagster -------------------------------------------------------------------------------------


def _loaded_location(servers: DevServers) -> dict:
    """The code location, once the webserver has loaded it (or a failure with its error)."""
    query = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name
        locationOrLoadError { __typename ... on RepositoryLocation { name repositories { name } }
                              ... on PythonError { message stack } } } }
        ... on PythonError { message } } }"""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        workspace = servers.graphql(query)["workspaceOrError"]
        assert workspace["__typename"] == "Workspace", workspace
        entries = workspace["locationEntries"]
        assert len(entries) == 1, f"expected the one code location of workspace.yaml: {entries}"
        loaded = entries[0]["locationOrLoadError"]
        if loaded is not None:
            assert loaded["__typename"] == "RepositoryLocation", f"the code location failed to load: {loaded}"
            return loaded
        assert time.monotonic() < deadline, f"the code location did not load; log tail:\n{servers.log_tail()}"
        time.sleep(0.5)


def _run_events(servers: DevServers, run_id: str) -> str:
    logs = servers.graphql(RUN_EVENTS, {"runId": run_id})["logsForRun"]
    if logs["__typename"] != "EventConnection":
        return str(logs)
    lines = []
    for event in logs["events"]:
        text = f"{event['__typename']}: {event.get('message') or ''}"
        if event.get("error"):
            text += f" | {event['error']['message'].strip()}"
        lines.append(text)
    return "\n".join(lines[-60:])


def test_dagster_ui_serves_the_asset_graph_and_materialises_raw_objects(dev_servers):
    servers = dev_servers
    info = requests.get(f"{servers.dagster_url}/server_info", timeout=10).json()
    assert "dagster_webserver_version" in info or "dagit_version" in info, info

    location = _loaded_location(servers)
    assert location["name"] == "artsim"
    assert len(location["repositories"]) == 1, location
    repository = location["repositories"][0]["name"]

    nodes = servers.graphql("{ assetNodes { assetKey { path } groupName isPartitioned jobNames } }")["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    missing = CONTRACT_ASSET_KEYS - by_key.keys()
    assert not missing, f"asset keys missing from the UI's graph: {sorted(missing)} (has {sorted(by_key)})"
    for key in PARTITIONED_BY_SOURCE:
        assert by_key[key]["isPartitioned"], f"{key} should be partitioned by source"
    assert all(by_key[k]["groupName"] for k in CONTRACT_ASSET_KEYS), {k: by_key[k]["groupName"] for k in CONTRACT_ASSET_KEYS}

    # The implicit asset job that holds raw_objects ("__ASSET_JOB" in dagster 1.13).
    asset_jobs = [j for j in by_key["raw_objects"]["jobNames"] if j.startswith("__ASSET_JOB")]
    assert asset_jobs, by_key["raw_objects"]["jobNames"]
    params = {
        "selector": {
            "repositoryLocationName": location["name"],
            "repositoryName": repository,
            "jobName": asset_jobs[0],
            "assetSelection": [{"path": ["raw_objects"]}],
        },
        "runConfigData": {},
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "smk"}]},
    }
    launched = servers.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    # dagster.yaml's queued run coordinator: the daemon that `dagster dev` starts dequeues it.
    deadline = time.monotonic() + RUN_TIMEOUT_S
    seen = []
    while True:
        run = servers.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        status = run["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == "SUCCESS":
            break
        if status in ("FAILURE", "CANCELED", "CANCELING"):
            pytest.fail(f"run {run_id} ended {status} (statuses {seen}); events:\n{_run_events(servers, run_id)}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"run {run_id} not finished after {RUN_TIMEOUT_S} s (statuses {seen}); events:\n"
                f"{_run_events(servers, run_id)}\nlog tail:\n{servers.log_tail()}"
            )
        time.sleep(0.5)
    assert {"key": "dagster/partition", "value": "smk"} in run["tags"]

    latest = servers.graphql(LATEST_MATERIALIZATION, {"assetKey": {"path": ["raw_objects"]}, "partition": "smk"})["assetOrError"]
    assert latest["__typename"] == "Asset", latest
    assert latest["assetMaterializations"], "raw_objects/smk has no materialisation after a successful run"
    materialization = latest["assetMaterializations"][0]
    assert materialization["runId"] == run_id and materialization["partition"] == "smk", materialization

    # The webserver's instance and the run both used the test's ARTSIM_HOME.
    assert (servers.home / "storage" / "raw_objects" / "smk.parquet").is_file()
    assert (servers.home / "dagster").is_dir()


# -- MLflow --------------------------------------------------------------------------------------


def test_mlflow_ui_and_rest_api_answer(dev_servers):
    servers = dev_servers
    page = requests.get(f"{servers.mlflow_url}/", timeout=30)
    assert page.status_code == 200, page.text[:500]
    assert "text/html" in page.headers.get("content-type", ""), page.headers
    assert "<html" in page.text.lower()

    searched = requests.post(f"{servers.mlflow_url}/api/2.0/mlflow/experiments/search", json={"max_results": 10}, timeout=30)
    assert searched.status_code == 200, searched.text[:1000]
    names = [e["name"] for e in searched.json().get("experiments", [])]
    assert "Default" in names, searched.json()

    listed = requests.get(f"{servers.mlflow_url}/api/2.0/mlflow/experiments/search", params={"max_results": 10}, timeout=30)
    assert listed.status_code == 200, listed.text[:1000]

    # the tracking store is the SQLite file under the same ARTSIM_HOME as Dagster's
    assert (servers.home / "mlflow" / "mlflow.db").is_file()


# -- stopping ------------------------------------------------------------------------------------


def test_ctrl_c_stops_both_servers_and_everything_they_started(dev_servers):
    """Runs last (file order): SIGINT to dev.sh's group, as Ctrl-C under `make dev` does."""
    servers = dev_servers
    running = _processes_with_home(servers.home)
    assert any("dagster" in cmd for cmd in running.values()) and any("mlflow" in cmd for cmd in running.values()), _describe(running)
    report = servers.stop()
    assert report["clean"], (
        f"still running {STOP_TIMEOUT_S} s after SIGINT (then SIGKILLed):\n{_describe(report['left'])}\nlog tail:\n{servers.log_tail()}"
    )
    assert not report["survivors"], _describe(report["survivors"])
    for url in (servers.dagster_url, servers.mlflow_url):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)
