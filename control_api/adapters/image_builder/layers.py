"""The two layers of a serving image, whatever engine builds them.

  runtime  base image + the model's requirements + the model server, tagged by a hash of
           (base image id, its Python version, normalised requirements, server fingerprint) and
           reused whenever that hash is already present, so a warm deploy builds one thin layer;
  model    FROM runtime + the model files and an identity file, with OCI and io.mlops.* labels.

An engine (Docker Engine, buildah) supplies five primitives (``LayerEngine``); ``build_two_layers``
decides what to build, from which context, under which tag.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from control_api.adapters.image_builder import context
from control_api.adapters.image_builder.base import BuiltImage, LogSink, ModelBundle
from control_api.adapters.image_builder.requirements import runtime_requirements
from control_api.errors import ImageBuildFailed
from serving_template import MODEL_SERVER_DIR
from serving_template.model_server import __version__ as SERVER_VERSION

RUNTIME_REPOSITORY = "mlops/runtime"
MODEL_REPOSITORY_PREFIX = "mlops"
SERVER_UID = 10001
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
IDENTITY_FILE = "mlops-model.json"  # read by model_server.model.read_model_info
LOG_TAIL_LINES = 20
UV_ENTRY = "uv"
_DOCKER_NAME = re.compile(r"[^a-z0-9._-]+")

# Shared by every builder in the process: two deploys needing the same runtime build it once.
_runtime_locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)


class LayerEngine(Protocol):
    """What an image engine must do for ``build_two_layers``."""

    def image_id(self, reference: str) -> str | None:
        """ID of the local image ``reference``; None when there is none."""

    def python_version(self, base_id: str) -> str:
        """``X.Y.Z`` of the base image's python3."""

    def uv_binary(self) -> Path | None:
        """A uv executable that runs inside the engine's builds, or None to install with pip."""

    def build_context(
        self, entries: dict[str, context.ContextEntry], executables: frozenset[str], tag: str, emit: LogSink
    ) -> str:
        """Build the Dockerfile among ``entries`` as ``tag``; return the image ID or raise ImageBuildFailed."""


def build_two_layers(
    engine: LayerEngine, base_image: str, index_url: str | None, bundle: ModelBundle, on_log: LogSink
) -> BuiltImage:
    log: list[str] = []

    def emit(line: str) -> None:
        log.append(line)
        on_log(line)

    base_id = engine.image_id(base_image)
    if base_id is None:
        raise ImageBuildFailed(
            f"base image {base_image} is not available to the image builder; pull or build it first "
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
    python_version = engine.python_version(base_id)
    warn_on_python_mismatch(mlmodel, python_version, emit)
    key = runtime_key(
        base_id, python_version, requirements.lines, context.server_fingerprint(), requirements.constraints
    )
    runtime_reference = f"{RUNTIME_REPOSITORY}:{key[:24]}"

    with _runtime_locks[key]:
        cache_hit = engine.image_id(runtime_reference) is not None
        if cache_hit:
            emit(f"runtime image {runtime_reference} reused")
        else:
            emit(
                f"runtime image {runtime_reference} not found; building (python {python_version}, "
                f"{len(requirements.lines)} requirements)"
            )
            uv_binary = engine.uv_binary()
            installer = "uv" if uv_binary else "pip"
            emit(f"installing requirements with {installer}")
            entries = runtime_entries(
                base_image, index_url, key, requirements.lines, requirements.constraints, uv_binary
            )
            engine.build_context(entries, frozenset({UV_ENTRY}), runtime_reference, emit)

    reference = model_reference(bundle, key)
    image_id = engine.image_id(reference)
    if image_id is not None:
        # The tag is a hash of the model files, the runtime and the deployment's identity: an
        # image under it is this build's own result (a step re-run after a crash), so keep it.
        emit(f"model image {reference} reused ({image_id[:19]})")
    else:
        emit(f"building model image {reference} on {runtime_reference}")
        image_id = engine.build_context(model_entries(bundle, runtime_reference, key), frozenset(), reference, emit)
        emit(f"model image {reference} built ({image_id[:19]})")
    return BuiltImage(
        reference=reference,
        image_id=image_id,
        runtime_reference=runtime_reference,
        runtime_cache_hit=cache_hit,
        log=log,
    )


def runtime_entries(
    base_image: str,
    index_url: str | None,
    key: str,
    requirements: list[str],
    constraints: list[str],
    uv_binary: Path | None,
) -> dict[str, context.ContextEntry]:
    """The runtime layer's build context: its Dockerfile, the requirement files and the model server."""
    dockerfile = context.render_dockerfile(
        context.RUNTIME_TEMPLATE,
        base_image=base_image,
        ca_bundle=CA_BUNDLE,
        index_url=index_url,
        installer="uv" if uv_binary else "pip",
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
        entries[UV_ENTRY] = uv_binary
    return entries


def model_entries(bundle: ModelBundle, runtime_reference: str, key: str) -> dict[str, context.ContextEntry]:
    """The model layer's build context: its Dockerfile, the model files and the identity file."""
    identity = {
        "model_name": bundle.model_name,
        "model_version": str(bundle.model_version),
        "run_id": bundle.run_id,
        "model_uri": bundle.model_uri,
        "mlflow_uri": bundle.mlflow_tracking_uri,
        "deployment_id": bundle.deployment_id,
    }
    return {
        "Dockerfile": context.render_dockerfile(
            context.MODEL_TEMPLATE,
            runtime_image=runtime_reference,
            labels=model_labels(bundle, runtime_reference, key),
        ),
        **context.directory_entries(bundle.model_dir, "model"),
        f"model/{IDENTITY_FILE}": json.dumps(identity, indent=2, sort_keys=True).encode(),
    }


def warn_on_python_mismatch(mlmodel: dict[str, Any], python_version: str, emit: LogSink) -> None:
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
    inputs: dict[str, Any] = {
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


def host_uv_binary() -> Path | None:
    """The uv executable installed with the control service when it is a native Linux binary (uv
    installs a runtime in a fraction of pip's time); None otherwise."""
    try:
        from uv import find_uv_bin

        binary = Path(find_uv_bin())
        with binary.open("rb") as handle:
            is_elf = handle.read(4) == b"\x7fELF"
    except Exception:
        return None
    return binary if is_elf else None
