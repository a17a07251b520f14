"""Registry faults through the control service: nothing listens on the registry's port, and a registry
that wants credentials refuses the configured ones. Both are real ``docker-registry`` processes on
loopback; the images are pushed by the Docker Engine as in production."""

from __future__ import annotations

import os

import pytest

from tests.faults.consistency import check_consistency
from tests.faults.servers import RegistryProcess
from tests.support.availability import require
from tests.support.deploys import deploy, retry, step_attempts, tiny_request
from tests.support.registry import REGISTRY_BINARY


@pytest.fixture
def registries(tmp_path):
    require(os.path.exists(REGISTRY_BINARY), "docker-registry binary", "apt-get install docker-registry")
    made: list[RegistryProcess] = []

    def make(name: str, **kwargs) -> RegistryProcess:
        registry = RegistryProcess(tmp_path / name, **kwargs)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.stop()


def test_registry_unreachable_then_back(start_service, registries, cluster, kustomize_cmd):
    registry = registries("registry")  # its port is chosen but closed: nothing listens yet
    client = start_service(registry={"url": registry.host})

    body = deploy(client, tiny_request("reg-down"))

    assert body["status"] == "failed", body
    error = body["error"]
    assert (error["step"], error["code"]) == ("push", "registry_unavailable"), error
    assert registry.host in error["message"] and "retry the deployment" in error["message"], error
    assert step_attempts(body)["push"] == 3
    registry.start()  # the registry comes up on that address, empty
    state = check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert state.versions == {"reg-down": {"1": body["deployment_id"]}}
    assert state.tags == {"reg-down": {}} and state.commits == []

    final = retry(client, body["deployment_id"])

    assert final["status"] == "deployed", final
    attempts = step_attempts(final)
    assert (attempts["train"], attempts["register"], attempts["build"], attempts["push"]) == (1, 1, 1, 4)
    state = check_consistency(client, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert state.versions == {"reg-down": {"1": body["deployment_id"]}}
    assert len(state.tags["reg-down"]) == 1 and final["image_uri"].startswith(registry.host + "/")


def test_registry_refuses_the_credentials(start_service, registries, cluster, kustomize_cmd, tmp_path):
    from tests.support.registry import bcrypt_line as _bcrypt_line

    registry = registries("auth-registry", htpasswd_line=_bcrypt_line("mlops", "s3cret")).start()
    auth = ("mlops", "s3cret")
    data_dir = tmp_path / "data"
    client = start_service(
        data_dir, registry={"url": registry.host, "username": "mlops", "password": "not-the-password"}
    )

    body = deploy(client, tiny_request("reg-auth"))

    assert body["status"] == "failed", body
    error = body["error"]
    assert (error["step"], error["code"]) == ("push", "registry_auth_failed"), error
    assert registry.host in error["message"] and "not-the-password" not in str(body)
    assert step_attempts(body)["push"] == 1  # credentials do not get better by trying again
    state = check_consistency(client, registry_auth=auth, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert state.versions == {"reg-auth": {"1": body["deployment_id"]}} and state.tags == {"reg-auth": {}}

    # The operator fixes the password and restarts the service on the same data; a retry resumes at push.
    start_service.stop(client)
    client = start_service(data_dir, registry={"url": registry.host, "username": "mlops", "password": "s3cret"})
    final = retry(client, body["deployment_id"])

    assert final["status"] == "deployed", final
    attempts = step_attempts(final)
    assert (attempts["train"], attempts["register"], attempts["build"], attempts["push"]) == (1, 1, 1, 2)
    state = check_consistency(client, registry_auth=auth, kustomize_cmd=kustomize_cmd, simulator=cluster.simulator)
    assert state.versions == {"reg-auth": {"1": body["deployment_id"]}}
    assert len(state.tags["reg-auth"]) == 1
