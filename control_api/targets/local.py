"""The ``local`` target: sync = kustomize build of the committed revision, run on the local Docker Engine.

Each Service gets its own loopback address, so the URL behaves like a LoadBalancer's external IP; each
Deployment runs under its own securityContext in its own network namespace (see
``adapters.local_runtime.docker_runtime``), and one it cannot run under fails the sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from control_api.adapters.gitops.access import RemoteAccess
from control_api.adapters.local_runtime.gitsource import GitSource, SourceError
from control_api.adapters.local_runtime.manifests import pair_workloads
from control_api.errors import DeploymentTimedOut, SyncFailed
from control_api.provider import Provider
from control_api.settings import Settings
from control_api.targets.base import AppRef, NotReady, Ready, ServedState, health_answer, url_for

if TYPE_CHECKING:
    from control_api.adapters.image_builder.base import ImageBuilder
    from control_api.adapters.local_runtime.base import LocalRuntime


class LocalTarget:
    kind = "local"

    def __init__(
        self, settings: Settings, runtime: Provider[LocalRuntime], image_builder: Provider[ImageBuilder]
    ) -> None:
        self.settings = settings
        self._runtime = runtime
        self._image_builder = image_builder
        # Fetched like the service's own clone: a credential-free URL, the token through git's
        # credential helper (never in the cache's .git/config or in an error).
        access = RemoteAccess.from_settings(self.settings.git_remote_url(), self.settings.git)
        self.repo_url = access.url
        git_env = access.environment(self.settings.git.author_name, self.settings.git.author_email)
        self.source = GitSource(self.settings.data_path / "local-target" / "git-cache", git_env=git_env)

    def _objects(self, app: AppRef, revision: str) -> list[dict[str, Any]]:
        try:
            return self.source.render(self.repo_url, revision, app.path)
        except SourceError as exc:
            raise SyncFailed(f"cannot render {app.path} at {revision[:12]}: {exc}", code="sync_failed") from exc

    def sync(self, app: AppRef, revision: str, log: Callable[[str], None]) -> dict[str, Any]:
        objects = self._objects(app, revision)
        workloads = pair_workloads(objects, app.namespace)
        if not workloads:
            raise SyncFailed(f"{app.path} at {revision[:12]} describes no Deployment", code="sync_failed")
        runtime = self._runtime()
        timeout = self.settings.target.ready_timeout_seconds
        statuses = []
        for workload in workloads:
            log(f"applying Deployment {workload.spec.namespace}/{workload.spec.name} image {workload.spec.image}")
            statuses.append(runtime.apply(workload.spec, ready_timeout=timeout))
        wanted = {(w.spec.namespace, w.spec.name) for w in workloads}
        self._prune(app, wanted, log)
        status = statuses[0]
        return {
            "external_ip": status.address,
            "deployment_url": url_for(status.address, status.port),
            "synced_revision": revision,
        }

    def look_ready(self, app: AppRef, revision: str, state: dict[str, Any]) -> Ready | NotReady:
        runtime = self._runtime()
        status = runtime.get(app.namespace, app.endpoint)
        if status is None:
            raise DeploymentTimedOut(f"no running workload for {app.namespace}/{app.endpoint}; retry to sync again")
        url = url_for(status.address, status.port)
        answer = health_answer(url)
        if answer is not None:
            return NotReady(f"{url}/health did not answer 200 (last: {answer})")
        return Ready({"external_ip": status.address, "deployment_url": url}, f"{url}/health answered 200")

    def remove(self, app: AppRef, revision: str, log: Callable[[str], None]) -> None:
        self._prune(app, set(), log)

    def _prune(self, app: AppRef, wanted: set[tuple[str, str]], log: Callable[[str], None]) -> None:
        runtime = self._runtime()
        for status in runtime.list():
            key = (status.namespace, status.name)
            if status.namespace == app.namespace and status.name == app.endpoint and key not in wanted:
                log(f"pruning {status.namespace}/{status.name}")
                runtime.delete(status.namespace, status.name)

    def served(self, app: AppRef, *, with_url: bool = True) -> ServedState | None:
        # The runtime's status carries the address, so the URL costs nothing here.
        status = self._runtime().get(app.namespace, app.endpoint)
        if status is None:
            return None
        return ServedState(
            revision=None,
            image=status.image,
            healthy=status.ready_replicas >= status.replicas,
            url=url_for(status.address, status.port),
        )

    def ping(self) -> None:
        self._image_builder().ping()
