"""The service's adapters, built once per application from its settings (no module-level singletons).

Adapters are created lazily: a service that never builds an image never needs a Docker Engine, and a
platform status check reports a missing system instead of failing at start.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from control_api.adapters.mlflow_store.gateway import MlflowGateway
from control_api.journal.store import Journal
from control_api.settings import Settings
from control_api.training.environments import EnvironmentCache

if TYPE_CHECKING:
    from control_api.adapters.image_builder.base import ImageBuilder
    from control_api.adapters.local_runtime.base import LocalRuntime
    from control_api.adapters.registry.base import ImageRegistry


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_path.mkdir(parents=True, exist_ok=True)

    @cached_property
    def journal(self) -> Journal:
        return Journal(self.settings.journal_url())

    @cached_property
    def mlflow(self) -> MlflowGateway:
        return MlflowGateway(
            self.settings.mlflow_tracking_uri(),
            self.settings.mlflow_registry_uri(),
            self.settings.mlflow_artifact_root(),
        )

    @cached_property
    def environments(self) -> EnvironmentCache:
        return EnvironmentCache(
            self.settings.venv_cache_dir(), self.settings.training.python, self.settings.training.install_timeout_seconds
        )

    @cached_property
    def image_builder(self) -> "ImageBuilder":
        from control_api.adapters.image_builder.docker_engine import DockerImageBuilder

        return DockerImageBuilder(self.settings.build)

    @cached_property
    def registry(self) -> "ImageRegistry":
        from control_api.adapters.registry import make_registry

        return make_registry(self.settings.registry)

    @cached_property
    def local_runtime(self) -> "LocalRuntime":
        from control_api.adapters.local_runtime.docker_runtime import DockerLocalRuntime

        return DockerLocalRuntime(self.settings.target)

    def extra_checks(self) -> dict:
        """Component checks contributed by the configured target (git, Argo CD ...)."""
        return {}

    def close(self) -> None:
        if "journal" in self.__dict__:
            self.journal.close()
