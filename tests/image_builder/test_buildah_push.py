"""buildah pushes with the registry's credentials: to an HTTPS registry with basic auth standing in for
ECR (login through moto's ECR API, as the Docker path does), and a wrong password is refused as such."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from pydantic import SecretStr

from control_api.adapters.registry.buildah_push import BuildahImagePusher
from control_api.adapters.registry.ecr import EcrRegistry
from control_api.adapters.registry.oci import OciRegistry
from control_api.errors import RegistryAuthFailed
from control_api.settings import BuildSettings, RegistrySettings
from tests.registry.test_ecr_registry import put_manifest

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture
def buildah_settings(buildah_base_image) -> BuildSettings:
    return BuildSettings(backend="buildah", base_image=buildah_base_image, base_image_tls_verify=False)


@pytest.fixture
def tiny_buildah_image(buildah_settings, tmp_path):
    """A one-file image in buildah's storage, new for each test."""
    payload = tmp_path / "payload.txt"
    payload.write_text(f"buildah push test {uuid.uuid4()}\n")
    reference = f"mlops-test/tiny-buildah:{uuid.uuid4().hex[:10]}"

    def buildah(*args: str) -> str:
        return subprocess.run(["buildah", *args], capture_output=True, text=True, check=True).stdout.strip()

    container = buildah("from", "scratch")
    try:
        buildah("copy", container, str(payload), "/payload.txt")
        buildah("commit", "--format", "docker", container, reference)
    finally:
        buildah("rm", container)
    yield reference
    subprocess.run(["buildah", "rmi", "--force", reference], capture_output=True)


def test_ecr_push_through_buildah_uses_the_login_and_recognises_its_own_image(
    ecr_naming_tls_registry,
    buildah_settings,
    tiny_buildah_image,
    monkeypatch,
):
    endpoint, tls_registry = ecr_naming_tls_registry
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_file))
    settings = RegistrySettings(kind="ecr", ecr_region="us-east-1", ecr_endpoint_url=endpoint)
    registry = EcrRegistry(settings, pusher=BuildahImagePusher(buildah_settings))
    repository = f"mlops-test/buildah-{uuid.uuid4().hex[:8]}"

    lines: list[str] = []
    pushed = registry.push(tiny_buildah_image, repository, "v1", lines.append)

    assert pushed.repository == f"{tls_registry.host}/{repository}"
    assert pushed.digest.startswith("sha256:") and len(pushed.digest) == 71
    assert lines[-1] == f"pushed {tls_registry.host}/{repository}:v1 as {pushed.digest}"
    # A retried push finds the same image already under an immutable tag by comparing the tag's config
    # digest with buildah's image ID, and pushes nothing.
    image_id = BuildahImagePusher(buildah_settings).image_id(tiny_buildah_image)
    assert image_id is not None
    recorded = put_manifest(endpoint, repository, "v2", image_id)
    again: list[str] = []
    assert registry.push(tiny_buildah_image, repository, "v2", again.append).digest == recorded
    assert any("nothing to push" in line for line in again)


def test_a_wrong_password_is_refused_as_an_auth_failure(
    tls_auth_registry,
    buildah_settings,
    tiny_buildah_image,
    monkeypatch,
):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_auth_registry.ca_file))
    settings = RegistrySettings(
        url=tls_auth_registry.host,
        insecure=False,
        username=tls_auth_registry.username,
        password=SecretStr("not-the-password"),
    )
    registry = OciRegistry(settings, pusher=BuildahImagePusher(buildah_settings))
    with pytest.raises(RegistryAuthFailed):
        registry.push(tiny_buildah_image, "mlops-test/refused", "v1", lambda line: None)


def test_the_right_password_pushes_over_https(
    tls_auth_registry,
    buildah_settings,
    tiny_buildah_image,
    monkeypatch,
):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_auth_registry.ca_file))
    settings = RegistrySettings(
        url=tls_auth_registry.host,
        insecure=False,
        username=tls_auth_registry.username,
        password=SecretStr(tls_auth_registry.password),
    )
    registry = OciRegistry(settings, pusher=BuildahImagePusher(buildah_settings))
    pushed = registry.push(tiny_buildah_image, "mlops-test/accepted", "v1", lambda line: None)
    # OciRegistry confirmed the digest with an authenticated HTTPS HEAD of the manifest.
    assert pushed.digest == registry.manifest_digest("mlops-test/accepted", "v1")
