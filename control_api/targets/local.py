"""The ``local`` target: sync = kustomize build of the committed revision, run on the local Docker Engine.

Each Service gets its own loopback address, so the URL behaves like a LoadBalancer's external IP; the
replicas of every Deployment the Service selects (the endpoint's own, and a canary Deployment beside
it during a canary release) share that address and its connections, split by replica count. Each
Deployment runs under its own securityContext, and one it cannot run under fails the sync (see
``adapters.local_runtime.docker_runtime``). The runtime labels what a sync applied with the app's
name, so the next sync prunes the Deployments of the app that its revision no longer has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
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
        # The endpoint's own Deployment first: it starts the Service's address, which a canary joins.
        workloads.sort(key=lambda w: w.spec.name != app.endpoint)
        statuses = []
        for workload in workloads:
            spec = replace(workload.spec, owner=app.application)
            log(f"applying Deployment {spec.namespace}/{spec.name} image {spec.image}")
            statuses.append(runtime.apply(spec, ready_timeout=timeout))
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
        """Delete the app's Deployments not in ``wanted``: those applied for it, and the endpoint's own
        Deployment as applied before workloads carried their owner. The endpoint's own goes last, so a
        canary leaves while the stable Deployment still serves the address."""
        runtime = self._runtime()
        ours = [
            status
            for status in runtime.list()
            if status.namespace == app.namespace
            and (status.namespace, status.name) not in wanted
            and (status.owner == app.application or (status.owner is None and status.name == app.endpoint))
        ]
        for status in sorted(ours, key=lambda s: s.name == app.endpoint):
            log(f"pruning {status.namespace}/{status.name}")
            runtime.delete(status.namespace, status.name)

    def replica_metrics(self, app: AppRef, deployment_name: str) -> list[str]:
        """The /metrics of each ready replica of one of the app's Deployments (e.g. ``<endpoint>-canary``),
        each read from that replica itself, not from whichever replica of the Service answers."""
        return self._runtime().replica_get(app.namespace, deployment_name, "/metrics")

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
