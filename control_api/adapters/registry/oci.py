"""Push to any OCI v2 registry through the Docker Engine, and confirm the digest with the registry.

docker-py does not raise when a push fails: the failure arrives as an ``error`` entry in the
progress stream, so every entry is inspected and translated into the project's errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from control_api.adapters.registry.base import ImagePusher, LogSink, PushedImage
from control_api.errors import RegistryAuthFailed, RegistryUnavailable, ServiceUnavailable, TerminalError
from control_api.settings import RegistrySettings

if TYPE_CHECKING:
    from docker import DockerClient

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
# Status codes as whole words only: a digest in an error message may well contain "401".
AUTH_PATTERN = re.compile(
    r"unauthorized|authentication required|denied|no basic auth credentials|\b40[13]\b", re.IGNORECASE
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def docker_from_env() -> DockerClient:
    import docker

    return docker.from_env(timeout=600)


class OciRegistry:
    def __init__(
        self,
        settings: RegistrySettings,
        docker_client_factory: Callable[[], DockerClient] = docker_from_env,
        *,
        host: str | None = None,
        auth: tuple[str, str] | None = None,
        pusher: ImagePusher | None = None,
    ) -> None:
        """``pusher`` moves images built outside the Docker Engine (buildah); without one, the engine pushes."""
        self.settings = settings
        self.pusher = pusher
        self.host = host or settings.url
        if auth is None and settings.username:
            auth = (settings.username, settings.password.get_secret_value() if settings.password else "")
        self.auth = auth
        self._docker_factory = docker_client_factory
        self._docker: DockerClient | None = None

    @property
    def docker(self) -> DockerClient:
        if self._docker is None:
            try:
                self._docker = self._docker_factory()
            except Exception as exc:
                raise ServiceUnavailable(f"Docker Engine is not reachable: {exc}", code="docker_unavailable") from exc
        return self._docker

    @property
    def scheme(self) -> str:
        return "http" if self.settings.insecure else "https"

    def ping(self) -> None:
        try:
            response = httpx.get(f"{self.scheme}://{self.host}/v2/", auth=self.auth, timeout=5)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"registry {self.host} is unreachable: {exc}") from exc
        if response.status_code == 401 and self.auth is None:
            return  # reachable; it wants credentials we will log in with at push time
        if response.status_code in (401, 403):
            raise RegistryAuthFailed(
                f"registry {self.host} refused the configured credentials (HTTP {response.status_code})"
            )
        if response.status_code >= 500:
            raise RegistryUnavailable(f"registry {self.host} answered HTTP {response.status_code}")

    def push(self, local_reference: str, repository_name: str, tag: str, on_log: LogSink) -> PushedImage:
        repository = f"{self.host}/{repository_name}"
        if self.pusher is None:
            digest = self._push_with_docker(local_reference, repository, tag, on_log)
        else:
            try:
                digest = self.pusher.push(
                    local_reference, f"{repository}:{tag}", self.auth, not self.settings.insecure, on_log
                )
            except (RegistryAuthFailed, RegistryUnavailable, TerminalError, ServiceUnavailable):
                raise
            except Exception as exc:
                raise self._classify(str(exc)) from exc
        confirmed = self.manifest_digest(repository_name, tag)
        if digest and confirmed and digest != confirmed:
            raise TerminalError(
                f"registry reports digest {confirmed} for {repository}:{tag}, the push said {digest}",
                code="digest_mismatch",
            )
        digest = confirmed or digest
        if not digest:
            raise RegistryUnavailable(f"push of {repository}:{tag} finished without a digest")
        on_log(f"pushed {repository}:{tag} as {digest}")
        return PushedImage(repository, tag, digest)

    def _push_with_docker(self, local_reference: str, repository: str, tag: str, on_log: LogSink) -> str | None:
        try:
            image = self.docker.images.get(local_reference)
        except Exception as exc:
            raise TerminalError(f"local image {local_reference} not found: {exc}", code="image_missing") from exc
        image.tag(repository, tag)
        auth_config = {"username": self.auth[0], "password": self.auth[1]} if self.auth else None
        digest = None
        try:
            stream = self.docker.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth_config)
            for entry in stream:
                digest = self._inspect(entry, on_log) or digest
        except (RegistryAuthFailed, RegistryUnavailable):
            raise
        except Exception as exc:
            raise self._classify(str(exc)) from exc
        return digest

    def delete_tag(self, repository_name: str, tag: str) -> bool:
        """The registry API deletes manifests by digest only (OCI distribution spec): look the tag's
        digest up, then delete that manifest. The tag names a manifest only this deploy pushed."""
        digest = self.manifest_digest(repository_name, tag)
        if digest is None:
            return False
        url = f"{self.scheme}://{self.host}/v2/{repository_name}/manifests/{digest}"
        try:
            response = httpx.delete(url, auth=self.auth, timeout=30)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"registry {self.host} is unreachable: {exc}") from exc
        if response.status_code == 404:
            return False
        if response.status_code == 405:
            raise TerminalError(
                f"registry {self.host} does not allow deleting images (enable storage.delete); "
                f"{repository_name}:{tag} is left behind",
                code="registry_delete_disabled",
            )
        if response.status_code in (401, 403):
            raise RegistryAuthFailed(f"registry {self.host} refused deleting {repository_name}:{tag}")
        if response.status_code >= 400:
            raise RegistryUnavailable(
                f"registry {self.host} answered HTTP {response.status_code} deleting {repository_name}:{tag}"
            )
        return True

    def manifest_digest(self, repository_name: str, tag: str) -> str | None:
        url = f"{self.scheme}://{self.host}/v2/{repository_name}/manifests/{tag}"
        try:
            response = httpx.head(url, headers={"Accept": MANIFEST_TYPES}, auth=self.auth, timeout=30)
            if response.status_code == 401 and response.headers.get("WWW-Authenticate", "").lower().startswith(
                "bearer"
            ):
                response = self._head_with_bearer_token(url, response.headers["WWW-Authenticate"], repository_name)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"registry {self.host} is unreachable: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            if self.auth is None:
                return None  # token-auth registries want a bearer token dance; trust the push stream
            raise RegistryAuthFailed(f"registry {self.host} refused the credentials reading {repository_name}:{tag}")
        if response.status_code >= 400:
            raise RegistryUnavailable(
                f"registry {self.host} answered HTTP {response.status_code} for {repository_name}:{tag}"
            )
        return response.headers.get("Docker-Content-Digest")

    def _head_with_bearer_token(self, url: str, challenge: str, repository_name: str) -> httpx.Response:
        """Token-auth registries (GHCR, Harbor, GitLab, Docker Hub) refuse Basic on the API: fetch a
        pull token from the challenge's realm with the credentials, then ask again with it."""
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", "")
        params.setdefault("scope", f"repository:{repository_name}:pull")
        token_response = httpx.get(realm, params=params, auth=self.auth, timeout=30)
        if token_response.status_code >= 400:
            return token_response
        body = token_response.json()
        token = body.get("token") or body.get("access_token") or ""
        return httpx.head(url, headers={"Accept": MANIFEST_TYPES, "Authorization": f"Bearer {token}"}, timeout=30)

    def _inspect(self, entry: dict[str, Any], on_log: LogSink) -> str | None:
        if "error" in entry or "errorDetail" in entry:
            message = entry.get("error") or (entry.get("errorDetail") or {}).get("message", "push failed")
            raise self._classify(message)
        status = entry.get("status")
        if status and entry.get("progressDetail") in (None, {}):
            on_log(f"{entry.get('id', '')} {status}".strip())
        aux = entry.get("aux") or {}
        return aux.get("Digest")

    def _classify(self, message: str) -> Exception:
        lowered = message.lower()
        if AUTH_PATTERN.search(lowered):
            return RegistryAuthFailed(f"registry {self.host} refused the push: {message[:300]}")
        return RegistryUnavailable(f"push to {self.host} failed: {message[:300]}")
