"""deploy/ecs and deploy/k8s: the instance files validate against the real config schemas of
Dagster and of EcsRunLauncher / K8sRunLauncher, broken variants are rejected, and the real
launchers, loaded from those files, give embedding runs (the tags in embedding-run-tags.yaml) a
GPU and other runs none.

How far each launch goes (nothing reaches AWS or a cluster):
- ECS: boto3 is pointed at the moto server (AWS_ENDPOINT_URL), so the launcher's Secrets Manager
  lookup and its task-definition registration are real API calls answered by moto. moto cannot
  place a task on a GPU capacity provider, so the final RunTask call is captured instead of sent,
  and checked against botocore's model of the ECS RunTask request.
- Kubernetes: the launcher's kubernetes client sends the run's Job manifest over HTTP to a small
  stand-in API server on 127.0.0.1 that records it.
Only what cannot work outside ECS / a cluster is changed in the loaded files: ECS takes the
cluster and network from `run_task_kwargs` instead of the daemon's own task
(`use_current_ecs_task_config`), Kubernetes reads a kubeconfig instead of the in-cluster config.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from dagster import DagsterInstance
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._utils.tags import normalize_tags

from artsim_pipeline.settings import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
IMAGE = "registry.example.com/artsim:0.1.0"


def load_yaml(path) -> dict:
    return yaml.safe_load(path.read_text())


def embedding_tags(form: str) -> dict[str, str]:
    """The run tags of deploy/<form>/embedding-run-tags.yaml as Dagster stores them."""
    return dict(normalize_tags(load_yaml(DEPLOY / form / "embedding-run-tags.yaml")))


def launcher_class(form: str):
    if form == "ecs":
        from dagster_aws.ecs import EcsRunLauncher

        return EcsRunLauncher
    from dagster_k8s import K8sRunLauncher

    return K8sRunLauncher


@pytest.fixture
def cloud_env(monkeypatch, postgres, s3, aws_env):
    """Every variable deploy/ecs and deploy/k8s read, pointing at the local servers."""
    database = postgres.create_database("dagster_cloud")
    values = {
        **postgres.env(database),
        "ARTSIM_S3_BUCKET": s3.bucket,
        "ARTSIM_S3_LOG_PREFIX": "dagster/compute-logs",
        "ARTSIM_S3_ENDPOINT_URL": s3.endpoint_url,
        "ARTSIM_ENV": "prod",
        "ARTSIM_STORAGE_URL": f"s3://{s3.bucket}/pipeline",
        "ARTSIM_IMAGE_BACKBONE": "efficientnet_lite0:s5grid7",
        "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
        "ARTSIM_ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/artsim-ecs-execution",
        "ARTSIM_ECS_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/artsim-run",
        "ARTSIM_ECS_LOG_GROUP": "/ecs/artsim-runs",
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "artsim-dagster-instance",
        "DAGSTER_K8S_JOB_NAMESPACE": "artsim",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


# --------------------------------------------------------------------------------------------
# schemas


@pytest.mark.parametrize("form", ["ecs", "k8s"])
def test_instance_file_and_launcher_config_validate(form, cloud_env):
    config, _ = dagster_instance_config(str(DEPLOY / form))  # the whole file, Dagster's schema
    assert set(config["storage"]) == {"postgres"}
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert any(limit["key"] == "artsim/gpu" for limit in limits)
    assert config["telemetry"] == {"enabled": False}
    assert config["freshness"] == {"enabled": True}  # the raw tables' freshness policies are evaluated

    launcher = config["run_launcher"]
    cls = launcher_class(form)
    assert (launcher["module"], launcher["class"]) == (cls.__module__.rsplit(".", 1)[0], cls.__name__)
    result = process_config(cls.config_type(), launcher["config"])  # the launcher's own schema
    assert result.success, result.errors
    if form == "ecs":
        assert result.value["task_definition"]["requires_compatibilities"] == ["EC2", "FARGATE"]  # GPU runs go to EC2
    else:
        assert result.value["job_namespace"] == "artsim"  # read from DAGSTER_K8S_JOB_NAMESPACE


def test_embedding_run_tags_ask_for_a_gpu():
    ecs = embedding_tags("ecs")
    assert json.loads(ecs["ecs/container_overrides"])["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert json.loads(ecs["ecs/run_task_kwargs"])["capacityProviderStrategy"][0]["capacityProvider"]
    assert ecs["artsim/gpu"] == "1"

    from dagster_k8s.job import get_user_defined_k8s_config

    k8s = get_user_defined_k8s_config(embedding_tags("k8s"))  # parsed and validated as the launcher does
    assert k8s.container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert k8s.pod_spec_config["tolerations"][0]["key"] == "nvidia.com/gpu"


@pytest.mark.parametrize(
    "form, break_it, complaint",
    [
        # a YAML number where ECS wants a string ("1024"): an easy slip
        ("ecs", lambda c: c["run_resources"].update(cpu=1024), "cpu"),
        ("ecs", lambda c: c.update(task_defintion=c.pop("task_definition")), "task_defintion"),
        ("k8s", lambda c: c["run_k8s_config"].update(container_confg=c["run_k8s_config"].pop("container_config")), "container_confg"),
        ("k8s", lambda c: c.pop("instance_config_map"), "instance_config_map"),
    ],
)
def test_broken_launcher_config_is_rejected(form, break_it, complaint, cloud_env):
    config = load_yaml(DEPLOY / form / "dagster.yaml")["run_launcher"]["config"]
    assert process_config(launcher_class(form).config_type(), config).success
    break_it(config)
    result = process_config(launcher_class(form).config_type(), config)
    assert not result.success
    assert complaint in " ".join(str(error.message) for error in result.errors)


def test_broken_instance_file_is_rejected(tmp_path, cloud_env):
    config = load_yaml(DEPLOY / "ecs" / "dagster.yaml")
    del config["storage"]["postgres"]["postgres_db"]["username"]
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(DagsterInvalidConfigError, match="username"):
        dagster_instance_config(str(tmp_path))


def test_broken_gpu_tag_is_rejected():
    from dagster_k8s.job import get_user_defined_k8s_config

    tags = embedding_tags("k8s")
    tags["dagster-k8s/config"] = tags["dagster-k8s/config"].replace("container_config", "container_confg")
    with pytest.raises(Exception, match="container_confg"):
        get_user_defined_k8s_config(tags)


# --------------------------------------------------------------------------------------------
# launches


def instance_from(form: str, home, change) -> DagsterInstance:
    """A real instance from deploy/<form>/dagster.yaml with `change(launcher_config)` applied."""
    config = load_yaml(DEPLOY / form / "dagster.yaml")
    change(config["run_launcher"]["config"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return DagsterInstance.from_config(str(home))


def create_run(instance: DagsterInstance, job_name: str, tags: dict[str, str]):
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.test_utils import create_run_for_test

    code_origin = RepositoryPythonOrigin(
        executable_path="/usr/local/bin/python",
        code_pointer=ModuleCodePointer("artsim_pipeline.definitions", "defs"),
        container_image=IMAGE,
    )
    location = GrpcServerCodeLocationOrigin(host="artsim-code", port=4000, location_name="artsim")
    return create_run_for_test(
        instance,
        job_name=job_name,
        tags=tags,
        job_code_origin=JobPythonOrigin(job_name, code_origin),
        remote_job_origin=RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name),
    )


def test_ecs_launcher_gives_embedding_runs_a_gpu(tmp_path, cloud_env, moto):
    from botocore.validate import validate_parameters
    from dagster._core.launcher import LaunchRunContext
    from dagster_aws.ecs import EcsRunLauncher

    ecs = moto.client("ecs")
    ecs.create_cluster(clusterName="artsim")
    secret_arn = moto.client("secretsmanager").create_secret(
        Name="DAGSTER_PG_PASSWORD", SecretString=cloud_env["DAGSTER_PG_PASSWORD"], Tags=[{"Key": "dagster", "Value": "true"}]
    )["ARN"]
    network = {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"], "securityGroups": ["sg-0a1b2c3d"], "assignPublicIp": "DISABLED"}}

    def outside_ecs(launcher_config):
        launcher_config["use_current_ecs_task_config"] = False
        launcher_config["run_task_kwargs"] = {"cluster": "artsim", "launchType": "FARGATE", "networkConfiguration": network}

    with instance_from("ecs", tmp_path / "home", outside_ecs) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, EcsRunLauncher)
        sent: list[dict] = []

        def capture_run_task(**kwargs):
            sent.append(kwargs)
            return {"taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/artsim/{len(sent)}",
                    "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/artsim"}

        launcher._run_task = capture_run_task
        gpu_run = create_run(instance, "embed_images", embedding_tags("ecs"))
        cpu_run = create_run(instance, "ingest_sources", {"artsim/trigger": "nightly"})
        for run in (gpu_run, cpu_run):
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        gpu, cpu = sent
        run_task_shape = launcher.ecs.meta.service_model.operation_model("RunTask").input_shape
        for request in sent:
            validate_parameters(request, run_task_shape)  # raises if ECS would reject the request's shape

        # the GPU run: a GPU for the container, the EC2 GPU capacity provider, a bigger task
        [override] = gpu["overrides"]["containerOverrides"]
        assert override["name"] == "run" and override["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
        assert "execute_run" in " ".join(override["command"])
        assert (gpu["overrides"]["cpu"], gpu["overrides"]["memory"]) == ("4096", "16384")
        assert gpu["capacityProviderStrategy"] == [{"capacityProvider": "artsim-gpu", "weight": 1}]
        assert "launchType" not in gpu
        assert {"key": "artsim/gpu", "value": "1"} in gpu["tags"] and {"key": "project", "value": "artsim"} in gpu["tags"]
        # any other run: Fargate with run_resources, no GPU
        [cpu_override] = cpu["overrides"]["containerOverrides"]
        assert "resourceRequirements" not in cpu_override
        assert cpu["launchType"] == "FARGATE" and "capacityProviderStrategy" not in cpu
        assert (cpu["overrides"]["cpu"], cpu["overrides"]["memory"]) == ("1024", "4096")
        assert cpu["cluster"] == "artsim" and cpu["networkConfiguration"] == network

        # the task definitions the launcher registered in (moto's) ECS
        definition = ecs.describe_task_definition(taskDefinition=gpu["taskDefinition"])["taskDefinition"]
        [container] = definition["containerDefinitions"]
        assert container["name"] == "run" and container["image"] == IMAGE
        assert {"name": "DAGSTER_PG_PASSWORD", "valueFrom": secret_arn} in container["secrets"]
        environment = {e["name"]: e["value"] for e in container["environment"]}
        assert environment["DAGSTER_PG_HOST"] == cloud_env["DAGSTER_PG_HOST"] and environment["ARTSIM_ENV"] == "prod"
        # a run task builds the prod resources: it needs the storage URL and the same backbone
        assert environment["ARTSIM_STORAGE_URL"] == cloud_env["ARTSIM_STORAGE_URL"]
        assert environment["ARTSIM_IMAGE_BACKBONE"] == cloud_env["ARTSIM_IMAGE_BACKBONE"]
        assert "DAGSTER_PG_PASSWORD" not in environment  # only as a secret
        assert sorted(definition["requiresCompatibilities"]) == ["EC2", "FARGATE"]
        assert definition["executionRoleArn"] == cloud_env["ARTSIM_ECS_EXECUTION_ROLE_ARN"]
        assert definition["taskRoleArn"] == cloud_env["ARTSIM_ECS_TASK_ROLE_ARN"]

        # the launcher recorded the task on the run, in Postgres
        assert instance.get_run_by_id(gpu_run.run_id).tags["ecs/task_arn"].endswith("/1")


class _FakeKubernetesApi(BaseHTTPRequestHandler):
    """Accepts `POST .../namespaces/<ns>/jobs` like the Kubernetes API server and records the body."""

    created: list[tuple[str, dict]] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.created.append((self.path, body))
        reply = json.dumps(body).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_kubernetes(tmp_path):
    _FakeKubernetesApi.created = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKubernetesApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "test", "user": {"token": "test"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }))
    try:
        yield kubeconfig, _FakeKubernetesApi.created
    finally:
        server.shutdown()
        server.server_close()


def test_k8s_launcher_gives_embedding_runs_a_gpu(tmp_path, cloud_env, fake_kubernetes):
    from dagster._core.launcher import LaunchRunContext
    from dagster_k8s import K8sRunLauncher

    kubeconfig, created = fake_kubernetes

    def outside_cluster(launcher_config):
        launcher_config["load_incluster_config"] = False
        launcher_config["kubeconfig_file"] = str(kubeconfig)

    with instance_from("k8s", tmp_path / "home", outside_cluster) as instance:
        assert isinstance(instance.run_launcher, K8sRunLauncher)
        gpu_run = create_run(instance, "embed_images", embedding_tags("k8s"))
        cpu_run = create_run(instance, "ingest_sources", {"artsim/trigger": "nightly"})
        for run in (gpu_run, cpu_run):
            instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))

    (gpu_path, gpu_job), (cpu_path, cpu_job) = created
    assert gpu_path == cpu_path == "/apis/batch/v1/namespaces/artsim/jobs"
    gpu_pod, cpu_pod = gpu_job["spec"]["template"]["spec"], cpu_job["spec"]["template"]["spec"]
    [gpu_container], [cpu_container] = gpu_pod["containers"], cpu_pod["containers"]

    # the GPU run: one NVIDIA GPU, deep-merged over the defaults, on the tainted GPU nodes
    assert gpu_container["resources"]["limits"] == {"memory": "24Gi", "nvidia.com/gpu": "1"}
    assert gpu_container["resources"]["requests"] == {"cpu": "3", "memory": "12Gi"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_pod["tolerations"]
    assert gpu_pod["nodeSelector"] == {"artsim/accelerator": "nvidia"}
    # any other run: the launcher's run_k8s_config only
    assert cpu_container["resources"] == {"limits": {"memory": "8Gi"}, "requests": {"cpu": "1", "memory": "4Gi"}}
    assert "tolerations" not in cpu_pod and "nodeSelector" not in cpu_pod

    for job, pod, container in ((gpu_job, gpu_pod, gpu_container), (cpu_job, cpu_pod, cpu_container)):
        assert container["image"] == IMAGE
        assert pod["serviceAccountName"] == "artsim-run"
        assert job["spec"]["ttlSecondsAfterFinished"] == 86400 and job["spec"]["backoffLimit"] == 0
        env = {e["name"]: e for e in container["env"]}
        assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "dagster-postgresql-secret"
        assert {"configMapRef": {"name": "artsim-env"}} in container["envFrom"]
        assert {"secretRef": {"name": "artsim-secrets"}} in container["envFrom"]
