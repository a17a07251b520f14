"""``ImageBuilder`` on a Docker Engine, through the docker SDK: the two layers of ``layers`` (a cached
runtime image and a thin model image), built with the engine's build API."""

from __future__ import annotations

import collections
import platform
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from control_api.adapters.image_builder import context, layers
from control_api.adapters.image_builder.base import BuiltImage, LogSink, ModelBundle
from control_api.adapters.image_builder.layers import LOG_TAIL_LINES, docker_name, runtime_key
from control_api.errors import ImageBuildFailed, ServiceUnavailable
from control_api.settings import BuildSettings

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = ["DockerImageBuilder", "docker_name", "runtime_key"]


class DockerImageBuilder:
    _python_versions: ClassVar[dict[str, str]] = {}

    def __init__(self, settings: BuildSettings, client_factory: Callable[[], DockerClient] | None = None) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self._client: DockerClient | None = None

    # ---- port -------------------------------------------------------------------------------

    def ping(self) -> None:
        try:
            self.client.ping()
        except ServiceUnavailable:
            raise
        except Exception as exc:
            raise ServiceUnavailable(f"Docker Engine did not answer: {exc}", code="docker_unavailable") from exc

    def build(self, bundle: ModelBundle, on_log: LogSink) -> BuiltImage:
        return layers.build_two_layers(self, self.settings.base_image, self.settings.pip_index_url, bundle, on_log)

    # ---- layers.LayerEngine -------------------------------------------------------------------

    def build_context(
        self, entries: dict[str, context.ContextEntry], executables: frozenset[str], tag: str, emit: LogSink
    ) -> str:
        return self._run_build(context.pack(entries, executables=executables), tag, emit)

    def _run_build(self, fileobj: IO[bytes], tag: str, emit: LogSink) -> str:
        tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        error: str | None = None
        image_id: str | None = None
        try:
            stream = self.client.api.build(
                fileobj=fileobj,
                custom_context=True,
                tag=tag,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                network_mode=self.settings.network_mode,
            )
            try:
                for chunk in stream:
                    for line in _lines(chunk):
                        tail.append(line)
                        emit(line)
                    if "error" in chunk:
                        error = str(chunk.get("error")).strip()
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("ID"):
                        image_id = aux["ID"]
            finally:
                # When ``emit`` stops the loop (a cancel), this drops the API stream and with it the
                # connection: the engine cancels a build whose client has gone.
                stream.close()
        except Exception as exc:
            raise _translate(exc, tag, list(tail)) from exc
        finally:
            fileobj.close()
        if error is not None:
            raise ImageBuildFailed(
                f"image build of {tag} failed: {error}\n" + "\n".join(tail),
                details={"image": tag, "error": error, "log_tail": list(tail)},
            )
        return image_id or self.image_id(tag) or _failed_without_image(tag, tail)

    # ---- engine helpers ---------------------------------------------------------------------

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            try:
                import docker

                if self._client_factory:
                    self._client = self._client_factory()
                elif self.settings.docker_host:
                    self._client = docker.DockerClient(base_url=self.settings.docker_host, timeout=600)
                else:
                    self._client = docker.from_env(timeout=600)
            except Exception as exc:
                raise ServiceUnavailable(f"cannot reach the Docker Engine: {exc}", code="docker_unavailable") from exc
        return self._client

    def image_id(self, reference: str) -> str | None:
        import docker

        try:
            return self.client.images.get(reference).id
        except docker.errors.ImageNotFound:
            return None
        except Exception as exc:
            raise _translate(exc, reference, []) from exc

    def python_version(self, base_id: str) -> str:
        """Python of the base image (keys the runtime; pickles are only safe within one minor version)."""
        if base_id not in self._python_versions:
            try:
                output = self.client.containers.run(
                    base_id,
                    ["python3", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                    remove=True,
                    network_mode="none",
                    stdout=True,
                    stderr=True,
                )
            except Exception as exc:
                raise ImageBuildFailed(
                    f"base image {self.settings.base_image} has no working python3: {str(exc)[:300]}",
                    code="base_image_unusable",
                ) from exc
            self._python_versions[base_id] = output.decode().strip()
        return self._python_versions[base_id]

    def uv_binary(self) -> Path | None:
        """The control service's uv when the engine runs on the same architecture; pip otherwise."""
        binary = layers.host_uv_binary()
        try:
            engine_arch = self.client.info().get("Architecture", "")
        except Exception:
            return None
        return binary if binary and _same_arch(platform.machine(), engine_arch) else None


def _lines(chunk: dict[str, Any]) -> list[str]:
    text = chunk.get("stream") or chunk.get("status") or ""
    if "error" in chunk:
        text = f"{text}\n{chunk['error']}" if text else str(chunk["error"])
    return [line.rstrip() for line in str(text).splitlines() if line.strip()]


def _same_arch(host: str, engine: str) -> bool:
    aliases = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
    return aliases.get(host.lower(), host.lower()) == aliases.get(engine.lower(), engine.lower())


def _translate(exc: Exception, tag: str, tail: list[str]) -> Exception:
    """docker SDK / requests errors -> ImageBuildFailed (the build itself) or ServiceUnavailable (the engine)."""
    import docker
    import requests

    if isinstance(exc, (ImageBuildFailed, ServiceUnavailable)):
        return exc
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return ServiceUnavailable(
            f"Docker Engine did not answer while building {tag}: {exc}", code="docker_unavailable"
        )
    if isinstance(exc, docker.errors.APIError) and not exc.is_server_error():
        message = exc.explanation or str(exc)
        return ImageBuildFailed(f"image build of {tag} refused: {message}", details={"image": tag, "log_tail": tail})
    if isinstance(exc, docker.errors.DockerException):
        return ServiceUnavailable(f"Docker Engine error while building {tag}: {exc}", code="docker_unavailable")
    return ImageBuildFailed(
        f"image build of {tag} failed: {type(exc).__name__}: {exc}", details={"image": tag, "log_tail": tail}
    )


def _failed_without_image(tag: str, tail: collections.deque[str]) -> str:
    raise ImageBuildFailed(
        f"image build of {tag} ended without an image\n" + "\n".join(tail),
        details={"image": tag, "log_tail": list(tail)},
    )
