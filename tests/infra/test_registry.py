"""The local OCI registry started by scripts/services.sh accepts pushes from the engine and deletes.

Docker treats 127.0.0.0/8 registries as insecure (plain HTTP) by default, so no daemon configuration is
needed; deleting manifests must be enabled in the registry's config (image clean-up relies on it).
"""

from __future__ import annotations

import io
import tarfile
import uuid

import httpx
import pytest

pytestmark = [pytest.mark.docker, pytest.mark.registry]

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def one_file_layer(content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        member = tarfile.TarInfo("probe")
        member.size = len(content)
        archive.addfile(member, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def pushed_probe(docker_client, registry_url):
    """A one-file image with unique content, pushed to the registry; yields (repository, tag)."""
    repository = f"{registry_url}/mlops-infra-test/probe"
    tag = uuid.uuid4().hex[:12]
    docker_client.api.import_image_from_data(one_file_layer(tag.encode()), repository=repository, tag=tag)
    try:
        events = list(docker_client.images.push(repository, tag=tag, stream=True, decode=True))
        errors = [event["error"] for event in events if "error" in event]
        assert not errors, errors
        yield "mlops-infra-test/probe", tag
    finally:
        docker_client.images.remove(f"{repository}:{tag}", force=True)


def test_pushed_tag_is_listed(registry_url, pushed_probe):
    repository, tag = pushed_probe
    response = httpx.get(f"http://{registry_url}/v2/{repository}/tags/list", timeout=10)
    assert response.status_code == 200
    assert tag in response.json()["tags"]


def test_manifests_can_be_deleted(registry_url, pushed_probe):
    repository, tag = pushed_probe
    manifest_url = f"http://{registry_url}/v2/{repository}/manifests"
    head = httpx.head(f"{manifest_url}/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=10)
    assert head.status_code == 200
    digest = head.headers["Docker-Content-Digest"]

    deleted = httpx.delete(f"{manifest_url}/{digest}", timeout=10)
    assert deleted.status_code == 202, deleted.text
    assert httpx.head(f"{manifest_url}/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=10).status_code == 404
