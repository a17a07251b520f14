"""Local-runtime test helpers: the base manifests' workload spec, and the containers a workload runs in."""

from __future__ import annotations

from dataclasses import replace

import httpx
import yaml

from control_api.adapters.local_runtime.base import WorkloadSpec
from control_api.adapters.local_runtime.docker_runtime import L_NAME, L_NAMESPACE, L_ROLE, ROLE_NETWORK, ROLE_REPLICA
from control_api.adapters.local_runtime.manifests import pair_workloads
from tests.support.paths import REPO_ROOT

TEST_NAMESPACE_PREFIX = "rt-test-"
# Far from the service's default first address (10) and the in-memory runtime's (100), so these tests
# do not take the addresses other test folders expect.
TEST_LOOPBACK_FIRST = 200
BASE_MANIFESTS = REPO_ROOT / "renderer" / "templates" / "base" / "model-server"


def base_manifest_spec(namespace: str) -> WorkloadSpec:
    """What the runtime is given for the renderer's base model-server Deployment and Service."""
    objects = [
        yaml.safe_load(path.read_text())
        for path in (BASE_MANIFESTS / "deployment.yaml", BASE_MANIFESTS / "service.yaml")
    ]
    [workload] = pair_workloads(objects, namespace)
    return workload.spec


def all_containers(docker_client, namespace: str, name: str) -> list:
    return docker_client.containers.list(
        all=True, filters={"label": [f"{L_NAMESPACE}={namespace}", f"{L_NAME}={name}"]}
    )


def workload_containers(docker_client, namespace: str, name: str) -> list:
    """The replicas (not the container holding their network namespace)."""
    return [c for c in all_containers(docker_client, namespace, name) if c.labels[L_ROLE] == ROLE_REPLICA]


def network_holder(docker_client, namespace: str, name: str):
    [holder] = [c for c in all_containers(docker_client, namespace, name) if c.labels[L_ROLE] == ROLE_NETWORK]
    return holder


def answer(url: str) -> dict:
    response = httpx.get(url + "/health", timeout=5)
    assert response.status_code == 200
    return response.json()


def spec_for(image: str, namespace: str, name: str = "iris", **overrides) -> WorkloadSpec:
    """The spec the shared base manifest gives (its security context, ports, probe and volumes)."""
    base = base_manifest_spec(namespace)
    return replace(base, name=name, image=image, env={"VERSION": "v1", **overrides.pop("env", {})}, **overrides)
