"""Fixtures for fault tests: the control service (in-process TestClient) on the ``argocd`` target
against the Argo CD/Kubernetes simulator, with real Docker, a real OCI registry, real git and kustomize,
and MLflow (embedded, or a real ``mlflow server`` process the test can kill).

Every deploy trains ``TINY_SCRIPT``: a two-feature LogisticRegression logged as a real MLflow sklearn
model, with its pip requirements given, so MLflow skips requirement inference (a subprocess that
reloads the model). All tests share one training environment (``venv_cache``) and, since the model's
requirements are the same every time, one runtime image.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from control_api.app import create_app
from tests.control.conftest import b64, make_settings
from tests.simulator import DockerKubelet, Simulator

TINY_SCRIPT = """\
import mlflow
import mlflow.sklearn
from sklearn.linear_model import LogisticRegression

X = [[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2], [0.2, 0.8], [0.8, 0.1]]
y = [0, 1, 0, 1, 0, 1]
with mlflow.start_run():
    model = LogisticRegression().fit(X, y)
    mlflow.log_param("features", 2)
    mlflow.log_metric("accuracy", float(model.score(X, y)))
    mlflow.sklearn.log_model(
        model, name="model", serialization_format="cloudpickle",
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_cloudpickle=True),
    )
{after}
"""

# The variant for "MLflow dies during a deploy": after logging its model the script says so in a file
# in its working directory and waits for the test's go-ahead, so the test can kill MLflow exactly
# between the script's last MLflow call and the service's next one.
HOLD_AFTER_LOGGING = """\
import pathlib, time
pathlib.Path("model-logged").write_text("yes")
deadline = time.time() + 240
while not pathlib.Path("go-on").exists() and time.time() < deadline:
    time.sleep(0.05)
"""


def tiny_request(model_name: str, *, hold: bool = False, **extra) -> dict:
    body = {
        "script_content": b64(TINY_SCRIPT.format(after=HOLD_AFTER_LOGGING if hold else "")),
        "script_name": "train_tiny.py",
        "model_name": model_name,
        "requirements": ["scikit-learn"],
    }
    body.update(extra)
    return body


def wait_final(client: TestClient, deployment_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/mlops/deployments/{deployment_id}").json()
        if body["status"] in ("deployed", "registered", "failed", "timed_out"):
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"deployment {deployment_id} still {body['status']} after {timeout:.0f} s: {body}")
        time.sleep(0.3)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def deploy(client: TestClient, request: dict) -> dict:
    """Synchronous deploy: the HTTP answer must be 200 with a final status."""
    response = client.post("/mlops/deploy", json=request)
    assert response.status_code == 200, response.text
    return response.json()


def retry(client: TestClient, deployment_id: str) -> dict:
    response = client.post(f"/mlops/deployments/{deployment_id}/retry")
    assert response.status_code == 202, response.text
    return wait_final(client, deployment_id)


def step_attempts(body: dict) -> dict[str, int]:
    return {s["name"]: s["attempts"] for s in body["steps"]}


@pytest.fixture
def namespace() -> str:
    return f"faults-{uuid.uuid4().hex[:8]}"


@dataclass
class SimulatedCluster:
    simulator: Simulator


@pytest.fixture
def cluster(tmp_path, contracts_dir, kustomize_cmd, docker_client, namespace):
    """Argo CD and a cluster whose kubelet runs real containers (DockerKubelet). Several GitOps remotes
    are used across these tests, so the AppProjects accept any source repository."""
    sim = Simulator(
        DockerKubelet(docker_client),
        work_dir=tmp_path / "simulator",
        kustomize_cmd=kustomize_cmd,
        contracts_dir=contracts_dir,
        namespaces=[namespace],
        source_repos=["*"],
    )
    with sim:
        yield SimulatedCluster(sim)
    assert sim.checker.violations == []


def _merged(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = (
            {**out.get(key, {}), **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


@pytest.fixture
def start_service(tmp_path, venv_cache, cluster, namespace, registry_url, base_image):
    """``start_service(**overrides) -> TestClient``; ``start_service.stop(client)`` ends one (a restart
    is stop + start on the same data dir). Images go to a repository prefix no other test uses."""
    clients: list[TestClient] = []
    prefix = f"faults-{uuid.uuid4().hex[:8]}"

    def start(data_dir: Path | None = None, **overrides) -> TestClient:
        values = _merged(
            {
                "target": {"kind": "argocd", "ready_timeout_seconds": 120},
                "registry": {"url": registry_url, "repository_prefix": prefix},
                "build": {"base_image": base_image},
                "api": {"allowed_namespaces": [namespace], "default_namespace": namespace},
                "argocd": {"server_url": cluster.simulator.argocd_url, "token": cluster.simulator.argocd_token},
                "kubernetes": {
                    "api_url": cluster.simulator.kubernetes_url,
                    "token": cluster.simulator.kubernetes_token,
                },
                # Polling many deploys must not meet the per-client rate limit.
                "auth": {"rate_limit_per_minute": 100_000, "rate_limit_burst": 10_000},
            },
            overrides,
        )
        settings = make_settings(data_dir or tmp_path / "data", venv_cache, **values)
        client = TestClient(create_app(settings))
        client.__enter__()
        # Transient failures are retried after 0.2 s, 0.4 s instead of 1 s, 2 s: same attempts, less waiting.
        client.app.state.orchestrator.retry_base_delay = 0.2
        clients.append(client)
        return client

    def stop(client: TestClient) -> None:
        clients.remove(client)
        client.__exit__(None, None, None)

    start.stop = stop
    start.prefix = prefix
    yield start
    for client in clients:
        client.__exit__(None, None, None)
