"""Fixtures for fault tests: the control service (in-process TestClient) on the ``argocd`` target
against the Argo CD/Kubernetes simulator, with real Docker, a real OCI registry, real git and kustomize,
and MLflow (embedded, or a real ``mlflow server`` process the test can kill).

Deploys train the tiny model of tests/support/deploys.py; all tests share one training environment
(``venv_cache``) and one runtime image.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from control_api.app import create_app
from tests.simulator import DockerKubelet, Simulator
from tests.support.control import make_settings, merged


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


@pytest.fixture
def start_service(tmp_path, venv_cache, cluster, namespace, registry_url, base_image):
    """``start_service(**overrides) -> TestClient``; ``start_service.stop(client)`` ends one (a restart
    is stop + start on the same data dir). Images go to a repository prefix no other test uses."""
    clients: list[TestClient] = []
    prefix = f"faults-{uuid.uuid4().hex[:8]}"

    def start(data_dir: Path | None = None, **overrides) -> TestClient:
        values = merged(
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
