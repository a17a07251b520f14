"""The training image of the ``kubernetes`` training backend: base image + the script's requirements
+ MLflow + the training hook, built with the configured image engine, tagged by the same key as the
local training environments (``environments.environment_key`` over ``resolve_requirements``) and
pushed to the registry. An image already under that key is reused, locally and in the registry."""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from functools import lru_cache

import jinja2

from control_api.adapters.image_builder import context
from control_api.adapters.image_builder.base import LogSink
from control_api.adapters.image_builder.layers import CA_BUNDLE, UV_ENTRY, LayerEngine
from control_api.adapters.registry.base import ImageRegistry
from control_api.errors import ImageBuildFailed
from control_api.settings import BuildSettings
from control_api.training.environments import HOOK_DIR, environment_key, resolve_requirements

TRAINING_REPOSITORY = "training"
TRAINING_UID = 65534
HOOK_FILES = ("mlops_training_hook.pth", "mlops_training_hook.py")

_build_locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)


@dataclass(frozen=True)
class TrainingImage:
    reference: str  # what the Job pulls: registry/prefix/training@digest
    environment_key: str
    reused: bool


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("control_api.training.backends", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # a Dockerfile, not HTML
    )
    environment.filters["dockerfile_string"] = context.dockerfile_string
    return environment


def training_image_key(python: str, user_requirements: list[str]) -> tuple[str, list[str]]:
    """The environment key and the requirements it covers (the script's plus MLflow). A Job talks to
    a remote MLflow server, never to the embedded store, so any MLflow pin of the script is kept."""
    requirements = resolve_requirements(user_requirements, embedded_store=False)
    return environment_key(python, requirements), requirements


def build_training_image(
    engine: LayerEngine,
    registry: ImageRegistry,
    build: BuildSettings,
    repository_prefix: str,
    *,
    python: str,
    user_requirements: list[str],
    on_log: LogSink,
) -> TrainingImage:
    """Build (or reuse) the image locally, then push it through the service's registry adapter, which
    holds the credentials and the build backend's way of pushing, as for the serving image."""
    key, requirements = training_image_key(python, user_requirements)
    local = f"mlops/{TRAINING_REPOSITORY}:{key}"
    repository = f"{repository_prefix}/{TRAINING_REPOSITORY}" if repository_prefix else TRAINING_REPOSITORY
    if engine.image_id(build.base_image) is None:
        raise ImageBuildFailed(
            f"base image {build.base_image} is not in the image builder's storage; pull it first",
            code="base_image_missing",
        )
    with _build_locks[key]:
        reused = engine.image_id(local) is not None
        if reused:
            on_log(f"training image {local} reused")
        else:
            uv_binary = engine.uv_binary()
            on_log(f"building training image {local} ({len(requirements)} requirements)")
            dockerfile = (
                _environment()
                .get_template("training.Dockerfile.j2")
                .render(
                    base_image=build.base_image,
                    ca_bundle=CA_BUNDLE,
                    index_url=build.pip_index_url,
                    installer="uv" if uv_binary else "pip",
                    environment_key=key,
                    uid=TRAINING_UID,
                )
                .encode()
            )
            entries: dict[str, context.ContextEntry] = {
                "Dockerfile": dockerfile,
                "requirements.txt": ("\n".join(requirements) + "\n").encode(),
                **{f"hook/{name}": HOOK_DIR / name for name in HOOK_FILES},
            }
            if uv_binary:
                entries[UV_ENTRY] = uv_binary
            engine.build_context(entries, frozenset({UV_ENTRY}), local, on_log)
    pushed = registry.push(local, repository, key, on_log)
    on_log(f"training image pushed as {pushed.uri}")
    return TrainingImage(reference=pushed.uri, environment_key=key, reused=reused)
