"""EcrRegistry against moto in server mode (the ECR control plane over real HTTP).

moto has no registry, so the image bytes go to the real local registry (``push_host``); repositories,
login tokens and the immutable-tag lookups go to moto.
"""

from __future__ import annotations

import base64
import json
import uuid

import boto3
import pytest

from control_api.adapters.registry.ecr import EcrRegistry, ImmutableTagRejected
from control_api.errors import RegistryAuthFailed, RegistryUnavailable
from control_api.settings import RegistrySettings
from tests.support.ports import free_port


def ecr_settings(endpoint: str, **overrides) -> RegistrySettings:
    return RegistrySettings(kind="ecr", ecr_region="us-east-1", ecr_endpoint_url=endpoint, **overrides)


def ecr_client(endpoint: str):
    return boto3.client("ecr", region_name="us-east-1", endpoint_url=endpoint)


def put_manifest(endpoint: str, repository: str, tag: str, config_digest: str) -> str:
    """Record an image under ``tag`` in moto's ECR; returns the digest ECR gives it."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 100, "digest": config_digest},
        "layers": [],
    }
    answer = ecr_client(endpoint).put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
    return answer["image"]["imageId"]["imageDigest"]


def test_login_decodes_the_authorization_token(moto_ecr):
    login = EcrRegistry(ecr_settings(moto_ecr)).login()

    data = ecr_client(moto_ecr).get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert (login.username, login.password) == (user, password)
    assert login.username == "AWS" and login.password
    assert login.registry_host == data["proxyEndpoint"].removeprefix("https://")
    assert "://" not in login.registry_host


def test_missing_repository_is_created_with_immutable_tags(moto_ecr, registry_url, make_tiny_image):
    repository = f"mlops-test/ecr-{uuid.uuid4().hex[:8]}"
    registry = EcrRegistry(ecr_settings(moto_ecr), push_host=registry_url)
    lines: list[str] = []

    pushed = registry.push(make_tiny_image(f"ecr {uuid.uuid4()}"), repository, "v1", lines.append)

    described = ecr_client(moto_ecr).describe_repositories(repositoryNames=[repository])["repositories"][0]
    assert described["imageTagMutability"] == "IMMUTABLE"
    assert pushed.repository == f"{registry_url}/{repository}"
    assert pushed.digest.startswith("sha256:")
    assert any("creating ECR repository" in line for line in lines)


def test_mutable_tags_when_configured(moto_ecr):
    repository = f"mlops-test/ecr-{uuid.uuid4().hex[:8]}"
    registry = EcrRegistry(ecr_settings(moto_ecr, ecr_immutable_tags=False))

    registry.ensure_repository(repository, lambda line: None)
    registry.ensure_repository(repository, lambda line: None)  # existing: no error

    described = ecr_client(moto_ecr).describe_repositories(repositoryNames=[repository])["repositories"][0]
    assert described["imageTagMutability"] == "MUTABLE"


def test_existing_immutable_tag_with_the_same_image_is_a_success(
    moto_ecr, registry_url, make_tiny_image, docker_client
):
    repository = f"mlops-test/ecr-{uuid.uuid4().hex[:8]}"
    image = make_tiny_image(f"same {uuid.uuid4()}")
    registry = EcrRegistry(ecr_settings(moto_ecr), push_host=registry_url)
    registry.ensure_repository(repository, lambda line: None)
    recorded = put_manifest(moto_ecr, repository, "v1", docker_client.images.get(image).id)
    lines: list[str] = []

    pushed = registry.push(image, repository, "v1", lines.append)

    assert pushed.digest == recorded
    assert any("nothing to push" in line for line in lines)


def test_existing_immutable_tag_with_another_image_is_terminal(moto_ecr, registry_url, make_tiny_image):
    repository = f"mlops-test/ecr-{uuid.uuid4().hex[:8]}"
    registry = EcrRegistry(ecr_settings(moto_ecr), push_host=registry_url)
    registry.ensure_repository(repository, lambda line: None)
    put_manifest(moto_ecr, repository, "v1", "sha256:" + "0" * 64)

    with pytest.raises(ImmutableTagRejected) as raised:
        registry.push(make_tiny_image(f"other {uuid.uuid4()}"), repository, "v1", lambda line: None)
    assert raised.value.code == "image_tag_immutable"


def test_existing_mutable_tag_is_overwritten_by_the_push(moto_ecr, registry_url, make_tiny_image):
    repository = f"mlops-test/ecr-{uuid.uuid4().hex[:8]}"
    registry = EcrRegistry(ecr_settings(moto_ecr, ecr_immutable_tags=False), push_host=registry_url)
    registry.ensure_repository(repository, lambda line: None)
    old = put_manifest(moto_ecr, repository, "v1", "sha256:" + "0" * 64)

    pushed = registry.push(make_tiny_image(f"new {uuid.uuid4()}"), repository, "v1", lambda line: None)

    assert pushed.digest != old and pushed.digest.startswith("sha256:")


def test_unreachable_ecr_api_is_transient():
    registry = EcrRegistry(ecr_settings(f"http://127.0.0.1:{free_port()}"))

    with pytest.raises(RegistryUnavailable):
        registry.login()


def test_refused_credentials_are_terminal(moto_refusing_credentials):
    registry = EcrRegistry(ecr_settings(moto_refusing_credentials))

    with pytest.raises(RegistryAuthFailed) as raised:
        registry.ping()
    # moto's IAM check refused the unknown access key (moto answers in XML, so boto3 reports the
    # HTTP status as the code and the refusal is classified by its 403).
    assert "get_authorization_token" in raised.value.message and "InvalidClientTokenId" in raised.value.message
    assert raised.value.code == RegistryAuthFailed.code


def test_login_names_the_host_of_the_stand_in_registry(ecr_naming_tls_registry):
    endpoint, tls_registry = ecr_naming_tls_registry

    login = EcrRegistry(ecr_settings(endpoint)).login()

    assert (login.registry_host, login.username, login.password) == (
        tls_registry.host,
        tls_registry.username,
        tls_registry.password,
    )
