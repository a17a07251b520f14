"""``ImageRegistry`` for Amazon ECR: boto3 for the control plane, the Docker Engine for the push.

ECR needs three things a generic registry does not: a short-lived login from
``get_authorization_token``, repositories created before the first push, and care with immutable
tags. A retried deploy pushes the same content under the same tag; ECR refuses to overwrite an
immutable tag even with identical content, so an existing tag is looked up first and counts as
success when its manifest describes the same image (same config digest = same image ID).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import boto3
import botocore.exceptions
import docker.errors

from control_api.adapters.registry.base import ImagePusher, LogSink, PushedImage
from control_api.adapters.registry.oci import OciRegistry, docker_from_env
from control_api.errors import MlopsError, RegistryAuthFailed, RegistryUnavailable, ServiceUnavailable, TerminalError
from control_api.settings import RegistrySettings

if TYPE_CHECKING:
    from docker import DockerClient
    from mypy_boto3_ecr import ECRClient

T = TypeVar("T")

_AUTH_ERROR_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
}
_TRANSIENT_ERROR_CODES = {"ThrottlingException", "ServiceUnavailable", "ServerException", "RequestTimeout"}


class ImmutableTagRejected(TerminalError):
    """An immutable tag already holds another image: no retry of this push can succeed."""

    code = "image_tag_immutable"


@dataclass(frozen=True)
class EcrLogin:
    username: str
    password: str
    registry_host: str  # e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com


class EcrRegistry:
    def __init__(
        self,
        settings: RegistrySettings,
        docker_client_factory: Callable[[], DockerClient] = docker_from_env,
        *,
        push_host: str | None = None,
        ecr_client_factory: Callable[[], ECRClient] | None = None,
        pusher: ImagePusher | None = None,
    ) -> None:
        """``push_host`` sends the image bytes to another registry than the one ECR names (tests point
        it at a local registry because moto has no registry); repositories and tags still go to ECR."""
        self.settings = settings
        self._docker_client_factory = docker_client_factory
        self._push_host = push_host
        self._pusher = pusher
        self._ecr_client_factory = ecr_client_factory or self._default_ecr_client

    # ---- port --------------------------------------------------------------------------------

    def ping(self) -> None:
        self._oci(self.login()).ping()

    def push(self, local_reference: str, repository_name: str, tag: str, on_log: LogSink) -> PushedImage:
        login = self.login()
        oci = self._oci(login)
        self.ensure_repository(repository_name, on_log)
        existing = self.existing_image(repository_name, tag, local_reference)
        if existing is not None:
            on_log(f"{repository_name}:{tag} already holds this image ({existing}); nothing to push")
            return PushedImage(repository=f"{oci.host}/{repository_name}", tag=tag, digest=existing)
        try:
            return oci.push(local_reference, repository_name, tag, on_log)
        except MlopsError:
            # ECR answers an overwrite of an immutable tag with a push error; when another attempt of
            # this deploy pushed the same image under the tag in the meantime, that is a success.
            existing = self.existing_image(repository_name, tag, local_reference)
            if existing is None:
                raise
            on_log(f"{repository_name}:{tag} was pushed concurrently with this image ({existing})")
            return PushedImage(repository=f"{oci.host}/{repository_name}", tag=tag, digest=existing)

    def delete_tag(self, repository_name: str, tag: str) -> bool:
        try:
            answer = self._call(
                "batch_delete_image",
                lambda ecr: ecr.batch_delete_image(repositoryName=repository_name, imageIds=[{"imageTag": tag}]),
            )
        except _RepositoryMissing:
            return False
        return bool(answer.get("imageIds"))

    # ---- ECR control plane -------------------------------------------------------------------

    def login(self) -> EcrLogin:
        data = self._call("get_authorization_token", lambda ecr: ecr.get_authorization_token())["authorizationData"][0]
        decoded = base64.b64decode(data["authorizationToken"]).decode()
        username, _, password = decoded.partition(":")
        if not password:
            raise RegistryAuthFailed("ECR returned an authorization token without a password")
        host = data["proxyEndpoint"].removeprefix("https://").removeprefix("http://").rstrip("/")
        return EcrLogin(username=username, password=password, registry_host=host)

    def ensure_repository(self, repository_name: str, on_log: LogSink) -> None:
        try:
            self._call(
                "describe_repositories", lambda ecr: ecr.describe_repositories(repositoryNames=[repository_name])
            )
            return
        except _RepositoryMissing:
            pass
        mutability: Literal["IMMUTABLE", "MUTABLE"] = "IMMUTABLE" if self.settings.ecr_immutable_tags else "MUTABLE"
        on_log(f"creating ECR repository {repository_name} ({mutability} tags)")
        with contextlib.suppress(_RepositoryExists):  # created concurrently by another deploy of the same model
            self._call(
                "create_repository",
                lambda ecr: ecr.create_repository(repositoryName=repository_name, imageTagMutability=mutability),
            )

    def existing_image(self, repository_name: str, tag: str, local_reference: str) -> str | None:
        """Digest under ``tag`` when it holds the local image; None when the tag is free.

        A tag holding a different image is a terminal error when tags are immutable (the push could
        never succeed); with mutable tags the push simply moves it.
        """
        try:
            found = self._call(
                "batch_get_image",
                lambda ecr: ecr.batch_get_image(
                    repositoryName=repository_name,
                    imageIds=[{"imageTag": tag}],
                    acceptedMediaTypes=[
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.oci.image.manifest.v1+json",
                    ],
                ),
            )
        except _ImageMissing:
            return None
        images = found.get("images") or []
        if not images:
            return None
        image = images[0]
        remote_config = _config_digest(image.get("imageManifest") or "{}")
        local_id = self._local_image_id(local_reference)
        digest = image["imageId"].get("imageDigest") or self._describe_digest(repository_name, tag)
        if remote_config == local_id:
            return digest
        if not self.settings.ecr_immutable_tags:
            return None
        raise ImmutableTagRejected(
            f"{repository_name}:{tag} already holds another image ({digest}, config {remote_config}, "
            f"local image {local_id}) and the repository's tags are immutable"
        )

    def _describe_digest(self, repository_name: str, tag: str) -> str:
        described = self._call(
            "describe_images",
            lambda ecr: ecr.describe_images(repositoryName=repository_name, imageIds=[{"imageTag": tag}]),
        )
        return described["imageDetails"][0]["imageDigest"]

    # ---- plumbing ----------------------------------------------------------------------------

    def _oci(self, login: EcrLogin) -> OciRegistry:
        if self._push_host:
            host, settings = self._push_host, self.settings
        else:
            # ECR speaks only HTTPS, whatever ``insecure`` says for a local registry.
            host, settings = login.registry_host, self.settings.model_copy(update={"insecure": False})
        return OciRegistry(
            settings, self._docker_client_factory, host=host, auth=(login.username, login.password), pusher=self._pusher
        )

    def _local_image_id(self, local_reference: str) -> str:
        if self._pusher is not None:
            image_id = self._pusher.image_id(local_reference)
            if image_id is None:
                raise TerminalError(f"local image {local_reference} not found", code="image_not_found")
            return image_id
        try:
            client = self._docker_client_factory()
        except docker.errors.DockerException as exc:
            raise ServiceUnavailable(f"Docker Engine unavailable: {exc}", code="docker_unavailable") from exc
        try:
            image_id = client.images.get(local_reference).id
        except docker.errors.ImageNotFound as exc:
            raise TerminalError(f"local image {local_reference} not found", code="image_not_found") from exc
        finally:
            client.close()
        if image_id is None:
            raise TerminalError(f"local image {local_reference} has no id", code="image_not_found")
        return image_id

    def _default_ecr_client(self) -> ECRClient:
        return boto3.client("ecr", region_name=self.settings.ecr_region, endpoint_url=self.settings.ecr_endpoint_url)

    def _call(self, operation: str, request: Callable[[ECRClient], T]) -> T:
        """``request`` run on a fresh ECR client, with botocore's errors translated; ``operation`` names it."""
        try:
            return request(self._ecr_client_factory())
        except botocore.exceptions.ClientError as exc:
            raise _translate(exc, operation) from exc
        except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as exc:
            raise RegistryAuthFailed(f"no AWS credentials for ECR: {exc}") from exc
        except botocore.exceptions.NoRegionError as exc:
            raise TerminalError(
                "ECR needs a region: set MLOPS_REGISTRY__ECR_REGION", code="invalid_configuration"
            ) from exc
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError) as exc:
            raise RegistryUnavailable(f"ECR API unreachable: {exc}") from exc


class _RepositoryMissing(TerminalError):
    code = "ecr_repository_missing"


class _RepositoryExists(TerminalError):
    code = "ecr_repository_exists"


class _ImageMissing(TerminalError):
    code = "ecr_image_missing"


def _translate(exc: botocore.exceptions.ClientError, operation: str) -> Exception:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    message = f"ECR {operation}: {code}: {error.get('Message', exc)}"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if code == "RepositoryNotFoundException":
        return _RepositoryMissing(message)
    if code == "RepositoryAlreadyExistsException":
        return _RepositoryExists(message)
    if code in {"ImageNotFoundException"}:
        return _ImageMissing(message)
    if code in _AUTH_ERROR_CODES or status in (401, 403):
        return RegistryAuthFailed(message)
    if code in _TRANSIENT_ERROR_CODES or status >= 500 or status == 429:
        return RegistryUnavailable(message)
    return TerminalError(message, code="ecr_request_failed")


def _config_digest(manifest_json: str) -> str | None:
    try:
        return (json.loads(manifest_json).get("config") or {}).get("digest")
    except (ValueError, AttributeError):
        return None
