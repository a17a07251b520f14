"""End-to-end fixtures: the whole pipeline with real Docker, the real local registry, real git and
kustomize, MLflow; the cluster is either this machine (``local``) or the Argo CD/Kubernetes simulator."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from control_api.app import create_app
from tests.support.control import make_settings, merged


@pytest.fixture
def e2e_namespace() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def e2e_env(docker_client, registry_url, base_image, kustomize_cmd):
    """All real services must be there; in CI their absence fails the test (tests/conftest.py)."""
    return {"registry_url": registry_url, "base_image": base_image}


@pytest.fixture
def make_e2e_client(tmp_path, venv_cache, e2e_env, e2e_namespace):
    made = []

    def factory(**overrides) -> TestClient:
        values = {
            "target": {"kind": "local", "ready_timeout_seconds": 180},
            "registry": {"url": e2e_env["registry_url"], "repository_prefix": "mlops-e2e"},
            "build": {"base_image": e2e_env["base_image"]},
            "api": {"allowed_namespaces": [e2e_namespace], "default_namespace": e2e_namespace},
        }
        settings = make_settings(tmp_path / "data", venv_cache, **merged(values, overrides))
        client = TestClient(create_app(settings))
        client.__enter__()
        made.append(client)
        return client

    yield factory
    for client in made:
        services = client.app.state.services
        try:
            runtime = services.local_runtime
            for workload in runtime.list():
                if workload.namespace == e2e_namespace:
                    runtime.delete(workload.namespace, workload.name)
        finally:
            client.__exit__(None, None, None)
