"""The service's adapters, built once per application from its settings (no module-level singletons).

Adapters are created lazily: a service that never builds an image never needs a Docker Engine, and a
platform status check reports a missing system instead of failing at start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property, wraps
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from control_api.adapters.mlflow_store.gateway import MlflowGateway
from control_api.checks import CheckRunner
from control_api.journal.store import Journal
from control_api.redaction import register_settings
from control_api.settings import Settings
from control_api.training.environments import EnvironmentCache

if TYPE_CHECKING:
    from control_api.adapters.argocd.client import ArgoCDClient
    from control_api.adapters.forge.types import Forge
    from control_api.adapters.gitops.repo import GitOpsRepo
    from control_api.adapters.image_builder.base import ImageBuilder
    from control_api.adapters.kubernetes.services import KubernetesReader
    from control_api.adapters.local_runtime.base import LocalRuntime
    from control_api.adapters.registry.base import ImageRegistry
    from control_api.stack.targets import Check
    from control_api.targets.base import DeploymentTarget

T = TypeVar("T")


GITOPS_SKELETON = Path(__file__).resolve().parent.parent / "gitops-repo"


def skeleton_files() -> dict[str, bytes]:
    """The repo's README and empty folders, from ``gitops-repo/``, used to seed a new GitOps repo."""
    files: dict[str, bytes] = {}
    if GITOPS_SKELETON.is_dir():
        for path in sorted(GITOPS_SKELETON.rglob("*")):
            if path.is_file():
                files[path.relative_to(GITOPS_SKELETON).as_posix()] = path.read_bytes()
    return files


# Imports are process-wide, so this lock is too. Adapters import their client libraries when first
# built; two threads doing that at once (the status page checks Docker and Kubernetes in parallel) can
# leave a shared dependency half-initialised for good ("cannot import name ... from partially
# initialized module 'requests.utils'", seen in CI), so first builds take turns.
_FIRST_BUILD = threading.RLock()


def adapter(build: Callable[[Services], T]) -> cached_property[T]:
    """A cached_property whose first build runs under the process-wide build lock."""

    @wraps(build)
    def build_in_turn(self: Services) -> T:
        with _FIRST_BUILD:
            return build(self)

    return cached_property(build_in_turn)


class Services:
    """The composition root: every adapter, built once when first used. Only the wiring (the pipeline
    factory and the stack's kinds) and the HTTP routes reach into it; a step or a target is handed the
    few adapters it uses."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # From here on every secret of these settings is masked in logs, the journal and error bodies.
        register_settings(settings)
        settings.data_path.mkdir(parents=True, exist_ok=True)

    @adapter
    def journal(self) -> Journal:
        return Journal(self.settings.journal_url())

    @adapter
    def mlflow(self) -> MlflowGateway:
        return MlflowGateway(
            self.settings.mlflow_tracking_uri(),
            self.settings.mlflow_registry_uri(),
            self.settings.mlflow_artifact_root(),
        )

    @adapter
    def environments(self) -> EnvironmentCache:
        return EnvironmentCache(
            self.settings.venv_cache_dir(),
            self.settings.training.python,
            self.settings.training.install_timeout_seconds,
        )

    @adapter
    def image_builder(self) -> ImageBuilder:
        from control_api.stack.builders import builder_kind

        return builder_kind(self.settings.build.backend).make(self.settings.build)

    @adapter
    def registry(self) -> ImageRegistry:
        from control_api.adapters.registry import make_registry
        from control_api.stack.builders import builder_kind

        pusher = builder_kind(self.settings.build.backend).make_pusher(self.settings.build)
        return make_registry(self.settings.registry, pusher)

    @adapter
    def local_runtime(self) -> LocalRuntime:
        from control_api.adapters.local_runtime.docker_runtime import DockerLocalRuntime

        return DockerLocalRuntime(self.settings.target)

    @adapter
    def gitops(self) -> GitOpsRepo:
        from control_api.adapters.gitops.repo import GitOpsRepo
        from renderer import render_base

        repo = GitOpsRepo(
            self.settings.git,
            self.settings.git_remote_url(),
            self.settings.git_workdir(),
            initial_files={**skeleton_files(), **render_base()},
        )
        if self.settings.git_remote_url().startswith("file://"):
            repo.ensure_remote()
        return repo

    @adapter
    def forge(self) -> Forge | None:
        from control_api.adapters.forge import make_forge

        return make_forge(self.settings.forge)

    @adapter
    def argocd(self) -> ArgoCDClient:
        from control_api.adapters.argocd import ArgoCDClient

        return ArgoCDClient(self.settings.argocd)

    @adapter
    def kubernetes(self) -> KubernetesReader:
        from control_api.adapters.kubernetes import KubernetesReader

        return KubernetesReader(self.settings.kubernetes)

    @adapter
    def target(self) -> DeploymentTarget | None:
        """The target of the configured kind; None when the kind serves nothing (``none``)."""
        from control_api.stack.targets import target_kind

        return target_kind(self.settings.target.kind).make_target(self)

    def extra_checks(self) -> dict[str, Check]:
        """Component checks contributed by the configured target kind (image builder, registry, git, Argo CD ...)."""
        from control_api.stack.targets import target_kind

        return target_kind(self.settings.target.kind).checks(self)

    @cached_property
    def status_checks(self) -> CheckRunner:
        # One thread per component is all the runner ever uses (it never starts a second run of one).
        return CheckRunner(max_workers=12)

    def close(self) -> None:
        if "status_checks" in self.__dict__:
            self.status_checks.close()
        if "journal" in self.__dict__:
            self.journal.close()
