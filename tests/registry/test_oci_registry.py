"""OciRegistry against real registries: the local one, one with htpasswd auth, and one that is down."""

from __future__ import annotations

import uuid

import httpx
import pytest

from control_api.adapters.registry import make_registry
from control_api.adapters.registry.oci import MANIFEST_TYPES, OciRegistry
from control_api.errors import RegistryAuthFailed, RegistryUnavailable, TerminalError
from control_api.settings import RegistrySettings
from tests.support.ports import free_port


def served_digest(url: str, repository: str, tag: str, auth=None) -> str:
    response = httpx.head(
        f"http://{url}/v2/{repository}/manifests/{tag}",
        headers={"Accept": MANIFEST_TYPES},
        auth=auth,
        timeout=10,
    )
    assert response.status_code == 200, response.status_code
    return response.headers["Docker-Content-Digest"]


def test_push_returns_the_digest_the_registry_serves(registry_url, make_tiny_image):
    image = make_tiny_image(f"model bytes {uuid.uuid4()}")
    repository = f"mlops-test/push-{uuid.uuid4().hex[:8]}"
    lines: list[str] = []

    pushed = make_registry(RegistrySettings(url=registry_url)).push(image, repository, "v1", lines.append)

    assert pushed.repository == f"{registry_url}/{repository}"
    assert pushed.tag == "v1"
    assert pushed.digest == served_digest(registry_url, repository, "v1")
    assert pushed.uri == f"{registry_url}/{repository}@{pushed.digest}"
    assert any("pushed" in line for line in lines)


def test_pushing_the_same_image_again_gives_the_same_digest(registry_url, make_tiny_image):
    content = f"same bytes {uuid.uuid4()}"
    repository = f"mlops-test/repush-{uuid.uuid4().hex[:8]}"
    registry = OciRegistry(RegistrySettings(url=registry_url))

    image = make_tiny_image(content)
    first = registry.push(image, repository, "v1", lambda line: None)
    again = registry.push(image, repository, "v1", lambda line: None)
    other = registry.push(make_tiny_image(content + " changed"), repository, "v2", lambda line: None)

    assert again.digest == first.digest
    assert other.digest != first.digest
    assert served_digest(registry_url, repository, "v1") == first.digest


def test_wrong_credentials_are_a_terminal_auth_failure(auth_registry, make_tiny_image):
    image = make_tiny_image(f"secret model {uuid.uuid4()}")
    wrong = OciRegistry(RegistrySettings(url=auth_registry, username="mlops", password="wrong"))

    with pytest.raises(RegistryAuthFailed):
        wrong.push(image, "mlops-test/auth", "v1", lambda line: None)
    with pytest.raises(RegistryAuthFailed):
        wrong.ping()
    with pytest.raises(RegistryAuthFailed):
        OciRegistry(RegistrySettings(url=auth_registry)).push(image, "mlops-test/auth", "v1", lambda line: None)


def test_right_credentials_push_to_an_authenticated_registry(auth_registry, make_tiny_image):
    image = make_tiny_image(f"secret model {uuid.uuid4()}")
    registry = OciRegistry(RegistrySettings(url=auth_registry, username="mlops", password="s3cret"))

    registry.ping()
    pushed = registry.push(image, "mlops-test/auth", "v1", lambda line: None)

    assert pushed.digest == served_digest(auth_registry, "mlops-test/auth", "v1", auth=("mlops", "s3cret"))


def test_registry_down_is_transient(make_tiny_image):
    down = f"127.0.0.1:{free_port()}"
    registry = OciRegistry(RegistrySettings(url=down))

    with pytest.raises(RegistryUnavailable) as raised:
        registry.push(make_tiny_image("nobody listens"), "mlops-test/down", "v1", lambda line: None)
    assert raised.value.code == "registry_unavailable"
    with pytest.raises(RegistryUnavailable):
        registry.ping()


def test_missing_local_image_is_terminal(registry_url, docker_client):
    registry = OciRegistry(RegistrySettings(url=registry_url))

    with pytest.raises(TerminalError) as raised:
        registry.push(f"mlops-test/absent:{uuid.uuid4().hex}", "mlops-test/absent", "v1", lambda line: None)
    assert raised.value.code == "image_missing"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("unauthorized: authentication required", RegistryAuthFailed),
        ("denied: requested access to the resource is denied", RegistryAuthFailed),
        ("received unexpected HTTP status: 403 Forbidden", RegistryAuthFailed),
        ("blob upload unknown for sha256:4013f0a9c2", RegistryUnavailable),
        ("received unexpected HTTP status: 502 Bad Gateway", RegistryUnavailable),
    ],
)
def test_push_stream_errors_are_classified(message, expected):
    assert type(OciRegistry(RegistrySettings())._classify(message)) is expected
