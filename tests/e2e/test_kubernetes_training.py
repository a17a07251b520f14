"""Training as Kubernetes Jobs end to end: the ``argocd`` target on the simulator (Argo CD and a cluster
whose kubelet runs pods as Docker containers, memory limits included, and whose API server grants the
service only the shipped install's roles), the ``kubernetes`` training
backend, the ``buildah`` build backend and a real ``mlflow server`` process the training pods log to.

One simulator, one MLflow server and one training image (every test trains with the same
requirements) are shared by the module. The server listens on the pod network's gateway, the
host's address as the pods see it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from control_api.app import create_app
from tests.e2e.review_helpers import git, review_service
from tests.simulator import DockerKubelet, Simulator
from tests.support.control import EXAMPLE, b64, example_request, make_settings, merged
from tests.support.iris import COLUMNS
from tests.support.iris import SAMPLE_ROWS as ROWS
from tests.support.mlflow_server import MlflowServer
from tests.support.pausing_builder import PausingBuilder
from tests.support.processes import is_alive
from tests.support.service_process import ServiceProcess
from tests.support.shipped_rbac import shipped_control_rbac

FINAL = ("deployed", "registered", "failed", "timed_out")
REPOSITORY_PREFIX = "mlops-e2e-ktrain"


@dataclass
class World:
    simulator: Simulator
    mlflow: MlflowServer
    namespace: str
    data_root: Path
    overrides: dict[str, Any]
    venv_cache: Path
    review_data_root: Path

    def jobs(self, deployment_id: str) -> list[dict]:
        return self.simulator.cluster.list("Job", self.namespace, f"mlops.io/deployment-id={deployment_id}")

    def training_pod_running(self, deployment_id: str) -> bool:
        jobs = self.jobs(deployment_id)
        if not jobs:
            return False
        selector = f"batch.kubernetes.io/job-name={jobs[0]['metadata']['name']}"
        pods = self.simulator.cluster.list("Pod", self.namespace, selector)
        return any(pod.get("status", {}).get("phase") == "Running" for pod in pods)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory, contracts_dir, kustomize_cmd, registry_url, base_image, buildah_base_image, venv_cache
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("ktrain")
    namespace = f"e2e-ktrain-{uuid.uuid4().hex[:6]}"
    bare = root / "data" / "gitops.git"
    review_bare = root / "review-data" / "gitops.git"  # the review-mode service's own data folder
    client = docker.from_env(timeout=120)
    kubelet = DockerKubelet(client)
    mlflow = MlflowServer(root / "mlflow", host=kubelet.host_ip).start()
    simulator = Simulator(
        kubelet,
        work_dir=root / "simulator",
        kustomize_cmd=kustomize_cmd,
        contracts_dir=contracts_dir,
        namespaces=[namespace],
        source_repos=[bare.as_uri(), str(bare), review_bare.as_uri(), str(review_bare)],
        tls=True,
        # The service's Kubernetes token may do only what the shipped install grants it.
        kubernetes_rbac=shipped_control_rbac(kustomize_cmd, training_namespace=namespace),
    )
    overrides = {
        "target": {"kind": "argocd", "ready_timeout_seconds": 180},
        "argocd": {
            "server_url": simulator.argocd_url,
            "token": simulator.argocd_token,
            "ca_bundle": str(simulator.ca_path),
            "failure_grace_seconds": 5,
        },
        "kubernetes": {"api_url": simulator.kubernetes_url, "token": simulator.kubernetes_token},
        "registry": {"url": registry_url, "repository_prefix": REPOSITORY_PREFIX},
        "build": {"backend": "buildah", "base_image": buildah_base_image, "base_image_tls_verify": False},
        "api": {"allowed_namespaces": [namespace], "default_namespace": namespace},
        "mlflow": {"tracking_uri": mlflow.url},
        "training": {
            "backend": "kubernetes",
            "kubernetes": {
                "namespace": namespace,
                "default_cpu": "1",
                "default_memory": "1Gi",
                "max_cpu": "2",
                "max_memory": "2Gi",
                "max_timeout_seconds": 900,
                "unschedulable_grace_seconds": 30,
            },
        },
    }
    try:
        with simulator:
            yield World(simulator, mlflow, namespace, root / "data", overrides, venv_cache, root / "review-data")
        assert simulator.checker.violations == []
        assert simulator.kube_server is not None and simulator.kube_server.app.state.refused == []
    finally:
        mlflow.stop()
        client.close()


@pytest.fixture(scope="module")
def service(world: World) -> Iterator[TestClient]:
    client = TestClient(create_app(make_settings(world.data_root, world.venv_cache, **world.overrides)))
    with client:
        yield client


def finished(client: TestClient, body: dict, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while body["status"] not in FINAL and time.monotonic() < deadline:
        time.sleep(1)
        body = client.get(f"/mlops/deployments/{body['deployment_id']}").json()
    return body


def mlflow_client(world: World) -> MlflowClient:
    """Bound to the server for both tracking and the registry: a client given only a tracking URI takes
    its registry from process-wide MLflow state, which other code in this process may have set."""
    return MlflowClient(tracking_uri=world.mlflow.url, registry_uri=world.mlflow.url)


def runs_of(world: World, deployment_id: str) -> list[Any]:
    mlflow = mlflow_client(world)
    experiments = [experiment.experiment_id for experiment in mlflow.search_experiments()]
    return mlflow.search_runs(experiments, filter_string=f"tags.`mlops.deployment_id` = '{deployment_id}'")


def test_a_deploy_trains_in_a_job_and_serves_a_real_prediction(world: World, service: TestClient) -> None:
    body = finished(service, service.post("/mlops/deploy", json=example_request("iris-ktrain")).json())
    assert body["status"] == "deployed", body.get("error")
    answer = httpx.post(
        body["endpoints"]["predict"], json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == len(ROWS)

    [job] = world.jobs(body["deployment_id"])  # kept until its ttlSecondsAfterFinished
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith(f"{world.overrides['registry']['url']}/{REPOSITORY_PREFIX}/training@sha256:")
    # The tracking URI (which may hold a password) reached the pod through the Job's Secret.
    [tracking] = [item for item in container["env"] if item["name"] == "MLFLOW_TRACKING_URI"]
    assert world.mlflow.url not in str(job) and "secretKeyRef" in tracking["valueFrom"]
    [run] = runs_of(world, body["deployment_id"])
    assert run.info.status == "FINISHED" and run.info.run_id == body["run_id"]
    artifacts = [item.path for item in mlflow_client(world).list_artifacts(run.info.run_id, "logs")]
    assert artifacts == [f"logs/{run.info.run_id}.pod.log"]
    events = service.get(f"/mlops/deployments/{body['deployment_id']}/events").text
    assert "accuracy" in events.lower(), events[-2000:]  # the script's own output, streamed from the pod


def test_a_training_over_its_memory_fails_naming_oomkilled(world: World, service: TestClient) -> None:
    hog = "x = []\nwhile True:\n    x.append(b'x' * (8 << 20))\n"
    request = example_request("iris-oom", script_content=b64(hog), training={"memory": "96Mi"})
    body = finished(service, service.post("/mlops/deploy", json=request).json())
    assert body["status"] == "failed", body
    assert body["error"]["code"] == "training_failed" and body["error"]["step"] == "train"
    assert "OOMKilled" in body["error"]["message"] and "96Mi" in body["error"]["message"]
    assert world.jobs(body["deployment_id"]) == []  # the Job ends with its deploy
    [run] = runs_of(world, body["deployment_id"])
    assert run.info.status == "FAILED"


def test_a_training_over_its_timeout_fails_naming_the_deadline(world: World, service: TestClient) -> None:
    slow = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"
    request = example_request("iris-slow", script_content=b64(slow), training={"timeout_seconds": 5})
    body = finished(service, service.post("/mlops/deploy", json=request).json())
    assert body["status"] == "failed", body
    assert "DeadlineExceeded" in body["error"]["message"] and "5s" in body["error"]["message"]
    assert world.jobs(body["deployment_id"]) == []


def test_cancel_during_training_deletes_the_job_and_closes_the_run(world: World, service: TestClient) -> None:
    slow = "import time\nprint('training starts', flush=True)\ntime.sleep(600)\n"
    request = example_request("iris-kcancel", script_content=b64(slow))
    accepted = service.post("/mlops/deploy", json=request, headers={"Prefer": "respond-async"}).json()
    deployment_id = accepted["deployment_id"]
    deadline = time.monotonic() + 600
    while not world.training_pod_running(deployment_id):
        assert time.monotonic() < deadline, "the training pod never ran"
        time.sleep(0.5)

    body = cancelled(service, deployment_id, while_in=("training",))
    assert body["error"]["step"] == "train"

    # Nothing half-made: no Job, the run closed as killed, no registered version.
    assert world.jobs(deployment_id) == []
    [run] = runs_of(world, deployment_id)
    assert run.info.status == "KILLED" and run.data.tags["mlops.cancelled"] == "true"
    assert mlflow_client(world).search_model_versions("name='iris-kcancel'") == []


def cancelled(client: TestClient, deployment_id: str, while_in: tuple[str, ...]) -> dict:
    """Cancel the deploy and wait until it is ``cancelled``; it may only pass through ``while_in``."""
    response = client.post(f"/mlops/deployments/{deployment_id}/cancel")
    assert response.status_code in (200, 202), response.text
    deadline = time.monotonic() + 300
    body = client.get(f"/mlops/deployments/{deployment_id}").json()
    while body["status"] != "cancelled":
        assert time.monotonic() < deadline and body["status"] in (*while_in, "cancelling"), body
        time.sleep(0.5)
        body = client.get(f"/mlops/deployments/{deployment_id}").json()
    assert body["error"]["code"] == "cancelled", body
    return body


def test_cancel_during_the_buildah_build_stops_it_and_deletes_the_version(world: World, service: TestClient) -> None:
    services = service.app.state.services
    real = services.image_builder
    builder = PausingBuilder(real, freeze="buildah")
    services.image_builder = builder  # the build step asks the services for its builder on each run
    try:
        accepted = service.post(
            "/mlops/deploy", json=example_request("iris-kbuild"), headers={"Prefer": "respond-async"}
        ).json()
        deployment_id = accepted["deployment_id"]
        assert builder.building.wait(900), "the model image build never started"
        assert builder.frozen, "no buildah process was building the model image"
        version = services.journal.get(deployment_id).step("register").outputs["model_version"]
        assert mlflow_client(world).get_model_version("iris-kbuild", version).run_id
        response = service.post(f"/mlops/deployments/{deployment_id}/cancel")
        assert response.status_code == 202, response.text
        builder.release.set()
        body = cancelled(service, deployment_id, while_in=("building",))
    finally:
        builder.release.set()
        services.image_builder = real
    assert body["error"]["step"] == "build", body
    # buildah was terminated mid-build: the process is gone and the model image was never written.
    deadline = time.monotonic() + 30
    while any(is_alive(pid) for pid in builder.frozen):
        assert time.monotonic() < deadline, f"buildah {builder.frozen} still runs after the cancel"
        time.sleep(0.2)
    assert builder.model_reference and real.image_id(builder.model_reference) is None
    assert mlflow_client(world).search_model_versions("name='iris-kbuild'") == []
    assert world.jobs(deployment_id) == []


def test_cancel_while_awaiting_review_closes_the_pull_request(world: World) -> None:
    with ExitStack() as stack:

        def review_client(**overrides: Any) -> TestClient:
            settings = make_settings(world.review_data_root, world.venv_cache, **merged(world.overrides, overrides))
            return stack.enter_context(TestClient(create_app(settings)))

        client, emulator = stack.enter_context(review_service(review_client, "github"))
        answer = client.post("/mlops/deploy", json=example_request("iris-kreview")).json()
        assert answer["status"] == "awaiting_review", answer
        deployment_id = answer["deployment_id"]
        [pull] = emulator.pulls.values()
        bare = world.review_data_root / "gitops.git"
        assert git("--git-dir", str(bare), "branch", "--list", pull["head"]).strip()
        image = client.app.state.services.journal.get(deployment_id).outputs["image_tag"]
        repository, tag = image.rsplit(":", 1)
        host, path = repository.split("/", 1)
        manifest = f"http://{host}/v2/{path}/manifests/{tag}"
        accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        assert httpx.head(manifest, headers=accept, timeout=10).status_code == 200

        body = cancelled(client, deployment_id, while_in=("awaiting_review",))
        assert body["error"]["step"] == "review"
        assert pull["state"] == "closed" and not pull["merged"]
        assert git("--git-dir", str(bare), "branch", "--list", pull["head"]).strip() == ""
        assert httpx.head(manifest, headers=accept, timeout=10).status_code == 404
        assert mlflow_client(world).search_model_versions("name='iris-kreview'") == []
        assert world.jobs(deployment_id) == []
        on_main = git("--git-dir", str(bare), "log", "main", "--format=%H", f"--grep=Deployment-Id: {deployment_id}")
        assert on_main.split() == []


def test_a_service_killed_during_training_reattaches_with_one_run_and_one_version(
    world: World, service: TestClient, tmp_path: Path
) -> None:
    """The service runs as a process (target ``none``: train and register), is SIGKILLed while the Job
    trains, and a new process re-attaches to the same Job."""
    slow_start = "import time\nprint('training starts', flush=True)\ntime.sleep(15)\n" + EXAMPLE.read_text()
    env = _environment(world, tmp_path / "data")
    first = ServiceProcess(env, tmp_path / "service.log").start(timeout=120)
    try:
        request = example_request("iris-crash", script_content=b64(slow_start))
        accepted = first.post("/mlops/deploy", json=request, headers={"Prefer": "respond-async"}).json()
        deployment_id = accepted["deployment_id"]
        first.wait_for(deployment_id, lambda body: world.training_pod_running(deployment_id), timeout=600)
        [job] = world.jobs(deployment_id)
    finally:
        first.kill()
    second = ServiceProcess(env, tmp_path / "service.log").start(timeout=120)
    try:
        body = second.wait_for(deployment_id, lambda body: body["status"] in FINAL, timeout=600)
        assert body["status"] == "registered", body.get("error")
        assert [found["metadata"]["uid"] for found in world.jobs(deployment_id)] == [job["metadata"]["uid"]]
        [run] = runs_of(world, deployment_id)
        assert run.info.run_id == body["run_id"]
        versions = mlflow_client(world).search_model_versions("name='iris-crash'")
        log = (tmp_path / "service.log").read_text(errors="replace")
        assert [version.run_id for version in versions] == [run.info.run_id], (body, log[-6000:])
    finally:
        second.stop()


def _environment(world: World, data_dir: Path) -> dict[str, str]:
    settings = merged(world.overrides, {"target": {"kind": "none"}})
    flat: dict[str, str] = {"MLOPS_DATA_DIR": str(data_dir), "MLOPS_TRAINING__VENV_CACHE_DIR": str(world.venv_cache)}

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}__{key.upper()}", inner)
        elif isinstance(value, list):
            flat[prefix] = json.dumps(value)
        else:
            flat[prefix] = str(value).lower() if isinstance(value, bool) else str(value)

    for section in ("target", "kubernetes", "registry", "build", "api", "mlflow", "training"):
        flatten(f"MLOPS_{section.upper()}", settings[section])
    return flat
