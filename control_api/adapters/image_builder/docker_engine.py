"""``ImageBuilder`` on a Docker Engine, through the docker SDK.

Two images per model version:
  runtime  base image + the model's requirements + the model server, tagged by a hash of
           (base image id, its Python version, normalised requirements, server fingerprint) and
           reused whenever that hash is already present, so a warm deploy builds one thin layer;
  model    FROM runtime + the model files and an identity file, with OCI and io.mlops.* labels.
"""

from __future__ import annotations

import collections
import hashlib
import json
import platform
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

import yaml

from control_api.adapters.image_builder import context
from control_api.adapters.image_builder.base import BuiltImage, LogSink, ModelBundle
from control_api.adapters.image_builder.requirements import runtime_requirements
from control_api.errors import ImageBuildFailed, ServiceUnavailable
from control_api.settings import BuildSettings
from serving_template import MODEL_SERVER_DIR
from serving_template.model_server import __version__ as SERVER_VERSION

if TYPE_CHECKING:
    from docker import DockerClient

RUNTIME_REPOSITORY = "mlops/runtime"
MODEL_REPOSITORY_PREFIX = "mlops"
SERVER_UID = 10001
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
IDENTITY_FILE = "mlops-model.json"  # read by model_server.model.read_model_info
LOG_TAIL_LINES = 20
_DOCKER_NAME = re.compile(r"[^a-z0-9._-]+")


class DockerImageBuilder:
    # Shared by every builder in the process: two deploys needing the same runtime build it once.
    _runtime_locks: ClassVar[dict[str, threading.Lock]] = collections.defaultdict(threading.Lock)
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
        log: list[str] = []

        def emit(line: str) -> None:
            log.append(line)
            on_log(line)

        base_id = self._image_id(self.settings.base_image)
        if base_id is None:
            raise ImageBuildFailed(
                f"base image {self.settings.base_image} is not on the Docker Engine; pull or build it first "
                "(scripts/services.sh makes one), or set MLOPS_BUILD__BASE_IMAGE",
                code="base_image_missing",
            )
        mlmodel = yaml.safe_load((bundle.model_dir / "MLmodel").read_text())
        requirements_file = bundle.model_dir / "requirements.txt"
        requirements = runtime_requirements(
            requirements_file.read_text() if requirements_file.exists() else "",
            (MODEL_SERVER_DIR / "requirements.txt").read_text(),
            mlmodel.get("mlflow_version"),
            bundle.training_packages,
        )
        for skipped in requirements.skipped:
            emit(f"requirements.txt: ignoring option line {skipped!r} (not reproducible inside an image build)")
        python_version = self._python_version(base_id)
        self._warn_on_python_mismatch(mlmodel, python_version, emit)
        key = runtime_key(
            base_id, python_version, requirements.lines, context.server_fingerprint(), requirements.constraints
        )
        runtime_reference = f"{RUNTIME_REPOSITORY}:{key[:24]}"

        with self._runtime_locks[key]:
            cache_hit = self._image_id(runtime_reference) is not None
            if cache_hit:
                emit(f"runtime image {runtime_reference} reused")
            else:
                emit(
                    f"runtime image {runtime_reference} not found; building (python {python_version}, "
                    f"{len(requirements.lines)} requirements)"
                )
                self._build_runtime(runtime_reference, key, requirements.lines, requirements.constraints, emit)

        reference = model_reference(bundle, key)
        image_id = self._image_id(reference)
        if image_id is not None:
            # The tag is a hash of the model files, the runtime and the deployment's identity: an
            # image under it is this build's own result (a step re-run after a crash), so keep it.
            emit(f"model image {reference} reused ({image_id[:19]})")
        else:
            emit(f"building model image {reference} on {runtime_reference}")
            image_id = self._build_model(bundle, reference, runtime_reference, key, emit)
            emit(f"model image {reference} built ({image_id[:19]})")
        return BuiltImage(
            reference=reference,
            image_id=image_id,
            runtime_reference=runtime_reference,
            runtime_cache_hit=cache_hit,
            log=log,
        )

    # ---- the two builds ---------------------------------------------------------------------

    def _build_runtime(
        self, reference: str, key: str, requirements: list[str], constraints: list[str], emit: LogSink
    ) -> None:
        uv_binary = self._uv_binary()
        installer = "uv" if uv_binary else "pip"
        dockerfile = context.render_dockerfile(
            context.RUNTIME_TEMPLATE,
            base_image=self.settings.base_image,
            ca_bundle=CA_BUNDLE,
            index_url=self.settings.pip_index_url,
            installer=installer,
            uid=SERVER_UID,
            runtime_key=key,
            server_version=SERVER_VERSION,
        )
        entries: dict[str, context.ContextEntry] = {
            "Dockerfile": dockerfile,
            "requirements.txt": ("\n".join(requirements) + "\n").encode(),
            "constraints.txt": "".join(f"{line}\n" for line in constraints).encode(),
            **context.server_files(),
        }
        if uv_binary:
            entries["uv"] = uv_binary
        emit(f"installing requirements with {installer}")
        self._run_build(context.pack(entries, executables=frozenset({"uv"})), reference, emit)

    def _build_model(self, bundle: ModelBundle, reference: str, runtime_reference: str, key: str, emit: LogSink) -> str:
        identity = {
            "model_name": bundle.model_name,
            "model_version": str(bundle.model_version),
            "run_id": bundle.run_id,
            "model_uri": bundle.model_uri,
            "mlflow_uri": bundle.mlflow_tracking_uri,
            "deployment_id": bundle.deployment_id,
        }
        entries: dict[str, context.ContextEntry] = {
            "Dockerfile": context.render_dockerfile(
                context.MODEL_TEMPLATE,
                runtime_image=runtime_reference,
                labels=model_labels(bundle, runtime_reference, key),
            ),
            **context.directory_entries(bundle.model_dir, "model"),
            f"model/{IDENTITY_FILE}": json.dumps(identity, indent=2, sort_keys=True).encode(),
        }
        return self._run_build(context.pack(entries), reference, emit)

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
            for chunk in stream:
                for line in _lines(chunk):
                    tail.append(line)
                    emit(line)
                if "error" in chunk:
                    error = str(chunk.get("error")).strip()
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = aux["ID"]
        except Exception as exc:
            raise _translate(exc, tag, list(tail)) from exc
        finally:
            fileobj.close()
        if error is not None:
            raise ImageBuildFailed(
                f"image build of {tag} failed: {error}\n" + "\n".join(tail),
                details={"image": tag, "error": error, "log_tail": list(tail)},
            )
        return image_id or self._image_id(tag) or _failed_without_image(tag, tail)

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

    def _image_id(self, reference: str) -> str | None:
        import docker

        try:
            return self.client.images.get(reference).id
        except docker.errors.ImageNotFound:
            return None
        except Exception as exc:
            raise _translate(exc, reference, []) from exc

    def _python_version(self, base_id: str) -> str:
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

    def _uv_binary(self) -> Path | None:
        """The uv executable installed with the control service, when the engine can run it (uv installs
        a runtime in a fraction of pip's time); pip otherwise."""
        try:
            from uv import find_uv_bin

            binary = Path(find_uv_bin())
            with binary.open("rb") as handle:
                is_elf = handle.read(4) == b"\x7fELF"
            engine_arch = self.client.info().get("Architecture", "")
        except Exception:
            return None
        return binary if is_elf and _same_arch(platform.machine(), engine_arch) else None

    @staticmethod
    def _warn_on_python_mismatch(mlmodel: dict, python_version: str, emit: LogSink) -> None:
        saved_with = (mlmodel.get("flavors", {}).get("python_function", {}) or {}).get("python_version", "")
        if saved_with and saved_with.split(".")[:2] != python_version.split(".")[:2]:
            emit(f"warning: the model was saved with Python {saved_with}; the runtime image has {python_version}")


def runtime_key(
    base_image_id: str,
    python_version: str,
    requirements: Iterable[str],
    server_fingerprint: str,
    constraints: Iterable[str] = (),
) -> str:
    inputs = {
        "base": base_image_id,
        "python": python_version,
        "requirements": sorted(requirements),
        "server": server_fingerprint,
    }
    if constraints:  # absent rather than empty, so images built without constraints keep their keys
        inputs["constraints"] = sorted(constraints)
    payload = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def docker_name(text: str, fallback: str) -> str:
    name = _DOCKER_NAME.sub("-", text.lower()).strip("-._")
    return name[:100] or fallback


def model_reference(bundle: ModelBundle, key: str) -> str:
    """Same model files, identity and runtime give the same tag, so a retried build step is a no-op rebuild."""
    digest = hashlib.sha256(key.encode())
    for name, path in sorted(context.directory_entries(bundle.model_dir, "model").items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    digest.update(
        json.dumps(
            [
                bundle.model_name,
                str(bundle.model_version),
                bundle.run_id,
                bundle.model_uri,
                bundle.mlflow_tracking_uri,
                bundle.deployment_id,
            ]
        ).encode()
    )
    repository = f"{MODEL_REPOSITORY_PREFIX}/{docker_name(bundle.model_name, 'model')}"
    return f"{repository}:{docker_name(str(bundle.model_version), 'v')}-{digest.hexdigest()[:12]}"


def model_labels(bundle: ModelBundle, runtime_reference: str, key: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": bundle.model_name,
        "org.opencontainers.image.version": str(bundle.model_version),
        "org.opencontainers.image.revision": bundle.run_id,
        "org.opencontainers.image.created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.description": f"MLflow model {bundle.model_name} version {bundle.model_version}",
        "org.opencontainers.image.base.name": runtime_reference,
        "io.mlops.model.name": bundle.model_name,
        "io.mlops.model.version": str(bundle.model_version),
        "io.mlops.model.run-id": bundle.run_id,
        "io.mlops.model.source": bundle.model_uri,
        "io.mlops.model.deployment-id": bundle.deployment_id,
        "io.mlops.runtime.key": key,
        "io.mlops.server.version": SERVER_VERSION,
    }


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
