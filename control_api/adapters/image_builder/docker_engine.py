"""``ImageBuilder`` on a Docker Engine (docker SDK against DOCKER_HOST or the local socket).

Two layers: a runtime image keyed by a hash of (base image, Python version, the model's own
requirements, server version), built once and reused, and a thin model image on top of it with the
model's files and OCI labels. A warm deploy (same requirements) only builds the model layer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
from collections import deque
from importlib import metadata
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from control_api.adapters.image_builder.base import BuiltImage, LogSink, ModelBundle
from control_api.errors import ImageBuildFailed, ServiceUnavailable
from control_api.settings import BuildSettings
from serving_template import SERVER_DIR, TEMPLATE_DIR

# Packages the server itself needs, pinned to what this service runs with so the runtime key (and
# the image) is reproducible.
SERVER_PACKAGES = ("fastapi", "starlette", "uvicorn", "httptools", "uvloop", "prometheus-client", "pyyaml")
RUNTIME_REPOSITORY = "mlops-runtime"
MODEL_REPOSITORY = "mlops-model"
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def server_requirements() -> list[str]:
    pins = []
    for name in SERVER_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def runtime_requirements(model_requirements: str) -> list[str]:
    """The model's MLflow requirements, with full MLflow swapped for mlflow-skinny (same version):
    the server needs pyfunc loading, not the tracking server and UI, and the image stays small."""
    lines = []
    for raw in model_requirements.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        if line.lower().startswith("mlflow==") or line.lower() == "mlflow":
            line = "mlflow-skinny" + line[len("mlflow"):]
        lines.append(line)
    return sorted(set(lines) | set(server_requirements()), key=str.lower)


def server_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(SERVER_DIR.rglob("*.py")):
        digest.update(path.relative_to(SERVER_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class DockerImageBuilder:
    def __init__(self, settings: BuildSettings, client_factory=None) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self._client = None
        self._templates = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), undefined=StrictUndefined, keep_trailing_newline=True)

    @property
    def client(self):
        if self._client is None:
            try:
                import docker

                kwargs = {"base_url": self.settings.docker_host} if self.settings.docker_host else {}
                self._client = self._client_factory() if self._client_factory else (
                    docker.DockerClient(timeout=1800, **kwargs) if kwargs else docker.from_env(timeout=1800)
                )
                self._client.ping()
            except Exception as exc:
                self._client = None
                raise ServiceUnavailable(f"Docker Engine is not reachable: {exc}", code="docker_unavailable") from exc
        return self._client

    def ping(self) -> None:
        try:
            self.client.ping()
        except ServiceUnavailable:
            raise
        except Exception as exc:
            self._client = None
            raise ServiceUnavailable(f"Docker Engine is not reachable: {exc}", code="docker_unavailable") from exc

    # ---- runtime layer -------------------------------------------------------------------------

    def runtime_key(self, requirements: list[str]) -> str:
        payload = json.dumps(
            {"base": self.settings.base_image, "base_id": self._base_id(), "python": self._python_version_hint(),
             "requirements": requirements, "server": server_digest(), "index": self.settings.pip_index_url},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:20]

    def _base_id(self) -> str:
        try:
            return self.client.images.get(self.settings.base_image).id
        except Exception:
            return "unresolved"

    def _python_version_hint(self) -> str:
        return "3.11"

    def ensure_runtime(self, model_requirements: str, on_log: LogSink) -> tuple[str, bool]:
        requirements = runtime_requirements(model_requirements)
        key = self.runtime_key(requirements)
        reference = f"{RUNTIME_REPOSITORY}:{key}"
        with _lock_for(reference):
            if self._exists(reference):
                on_log(f"runtime image {reference} reused (requirements unchanged)")
                return reference, True
            on_log(f"building runtime image {reference}: {', '.join(requirements)}")
            with tempfile.TemporaryDirectory(prefix="mlops-runtime-") as tmp:
                context = Path(tmp)
                (context / "requirements.txt").write_text("\n".join(requirements) + "\n")
                shutil.copytree(SERVER_DIR, context / "model_server", ignore=shutil.ignore_patterns("__pycache__"))
                shutil.copy2(_uv_binary(), context / "uv")
                dockerfile = self._templates.get_template("runtime.Dockerfile.j2").render(
                    base_image=self.settings.base_image, index_url=self.settings.pip_index_url
                )
                (context / "Dockerfile").write_text(dockerfile)
                self._build(context, reference, {"io.mlops.runtime.key": key}, on_log)
            return reference, False

    # ---- model layer ---------------------------------------------------------------------------

    def build(self, bundle: ModelBundle, on_log: LogSink) -> BuiltImage:
        requirements_file = bundle.model_dir / "requirements.txt"
        if not requirements_file.exists():
            raise ImageBuildFailed(f"the model has no requirements.txt in {bundle.model_dir}", code="image_build_failed")
        log: deque[str] = deque(maxlen=200)

        def sink(line: str) -> None:
            log.append(line)
            on_log(line)

        runtime, cache_hit = self.ensure_runtime(requirements_file.read_text(), sink)
        reference = f"{MODEL_REPOSITORY}/{bundle.model_name}:{bundle.model_version}-{(bundle.deployment_id or bundle.run_id)[:12]}"
        labels = {
            "org.opencontainers.image.title": bundle.model_name,
            "org.opencontainers.image.version": str(bundle.model_version),
            "org.opencontainers.image.source": bundle.model_uri,
            "org.opencontainers.image.description": f"MLflow model {bundle.model_uri} (run {bundle.run_id})",
            "org.opencontainers.image.base.name": runtime,
            "io.mlops.model.name": bundle.model_name,
            "io.mlops.model.version": str(bundle.model_version),
            "io.mlops.model.run-id": bundle.run_id,
            "io.mlops.model.source": bundle.model_uri,
            "io.mlops.model.deployment-id": bundle.deployment_id,
        }
        with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
            context = Path(tmp)
            shutil.copytree(bundle.model_dir, context / "model")
            identity = {
                "model_name": bundle.model_name,
                "model_version": str(bundle.model_version),
                "run_id": bundle.run_id,
                "model_uri": bundle.model_uri,
                "mlflow_uri": bundle.mlflow_tracking_uri,
                "deployment_id": bundle.deployment_id,
            }
            (context / "model" / "mlops-model.json").write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
            dockerfile = self._templates.get_template("model.Dockerfile.j2").render(runtime_reference=runtime)
            (context / "Dockerfile").write_text(dockerfile)
            image_id = self._build(context, reference, labels, sink)
        return BuiltImage(reference, image_id, runtime, cache_hit, list(log))

    # ---- docker --------------------------------------------------------------------------------

    def _exists(self, reference: str) -> bool:
        try:
            self.client.images.get(reference)
            return True
        except Exception as exc:
            if type(exc).__name__ == "ImageNotFound":
                return False
            raise ServiceUnavailable(f"Docker Engine error: {exc}", code="docker_unavailable") from exc

    def _build(self, context: Path, tag: str, labels: dict[str, str], on_log: LogSink) -> str:
        tail: deque[str] = deque(maxlen=25)
        image_id = None
        try:
            stream = self.client.api.build(
                path=str(context), tag=tag, labels=labels, rm=True, forcerm=True, decode=True,
                network_mode=self.settings.network_mode, pull=False,
            )
            for entry in stream:
                if "stream" in entry:
                    for line in entry["stream"].splitlines():
                        if line.strip():
                            tail.append(line)
                            on_log(line)
                if "error" in entry or "errorDetail" in entry:
                    message = entry.get("error") or entry["errorDetail"].get("message", "")
                    tail.append(message)
                    raise ImageBuildFailed(
                        f"building {tag} failed: {message.strip()[:500]}\nlast build lines:\n" + "\n".join(list(tail)[-20:]),
                        details={"log_tail": list(tail)},
                    )
                if "aux" in entry and "ID" in entry["aux"]:
                    image_id = entry["aux"]["ID"]
        except ImageBuildFailed:
            raise
        except Exception as exc:
            raise ServiceUnavailable(f"Docker Engine error while building {tag}: {exc}", code="docker_unavailable") from exc
        if image_id is None:
            image_id = self.client.images.get(tag).id
        return image_id


def _uv_binary() -> Path:
    from control_api.training.environments import find_uv

    return Path(find_uv())
