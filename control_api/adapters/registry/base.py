"""Port: push a local image to an OCI registry and report its digest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

LogSink = Callable[[str], None]


@dataclass(frozen=True)
class PushedImage:
    repository: str  # e.g. 127.0.0.1:5000/mlops/demo or 123.dkr.ecr.us-east-1.amazonaws.com/mlops/demo
    tag: str
    digest: str  # sha256:...

    @property
    def uri(self) -> str:
        """Immutable reference used in manifests: repository@digest."""
        return f"{self.repository}@{self.digest}"


class ImageRegistry(Protocol):
    def push(self, local_reference: str, repository_name: str, tag: str, on_log: LogSink) -> PushedImage:
        """Tag ``local_reference`` into the registry as ``repository_name:tag`` and push it.

        Pushing the same content again is a success that returns the same digest.
        """

    def ping(self) -> None:
        """Raise RegistryUnavailable / RegistryAuthFailed when the registry cannot be used."""

    def delete_tag(self, repository_name: str, tag: str) -> bool:
        """Delete the image under ``repository_name:tag`` (a cancelled deploy's push); False when the
        tag is not there. Raise TerminalError when the registry does not allow deletes."""


class ImagePusher(Protocol):
    """Moves a locally built image to a registry: the image builder's counterpart for pushes (the
    Docker Engine's is built into the registries; others, such as buildah, plug in here)."""

    def image_id(self, local_reference: str) -> str | None:
        """``sha256:`` digest of the local image's config (its image ID); None when there is none."""

    def push(
        self,
        local_reference: str,
        destination: str,
        credentials: tuple[str, str] | None,
        tls_verify: bool,
        on_log: LogSink,
    ) -> str | None:
        """Push ``local_reference`` as ``destination`` (host/repository:tag); return the manifest digest
        the push wrote, when the tool reports one. Raise TerminalError when the local image is missing,
        any other exception with the tool's message when the push fails."""
