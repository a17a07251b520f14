"""The ``argocd`` target: upsert the Application, sync it to the commit, wait for Synced+Healthy and an address.

The control service is the only writer of model Applications (see argocd/control-service/README.md):
it upserts exactly the Application committed under ``argocd-apps/``, with Argo CD's resources
finalizer so that deleting it deletes the model's Deployment and load balancer too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from control_api.errors import SyncFailed, TransientError
from control_api.provider import Provider
from control_api.settings import Settings
from control_api.targets.application import application_manifest
from control_api.targets.base import AppRef, NotReady, Ready, ServedState, SyncRecord, health_answer, url_for

if TYPE_CHECKING:
    from control_api.adapters.argocd.client import ArgoCDClient
    from control_api.adapters.argocd.wait import AppState
    from control_api.adapters.gitops.repo import GitOpsRepo
    from control_api.adapters.kubernetes.services import KubernetesReader


class ArgoCDTarget:
    kind = "argocd"

    def __init__(
        self,
        settings: Settings,
        argocd: Provider[ArgoCDClient],
        kubernetes: Provider[KubernetesReader],
        gitops: Provider[GitOpsRepo],
    ) -> None:
        self.settings = settings
        self._argocd = argocd
        self._kubernetes = kubernetes
        self._gitops = gitops

    # ---- sync --------------------------------------------------------------------------------

    def sync(self, app: AppRef, revision: str, log: Callable[[str], None]) -> dict[str, Any]:
        from control_api.adapters.argocd.wait import AppState

        current = AppState.from_application(self._upsert(app, log))
        requested = current.operation_revision
        if requested is not None and self._already_requested(current, app, revision):
            # A re-run after a crash: the sync was already requested (and may still be running);
            # asking again would be refused as "another operation is already in progress" or add a
            # second sync to the app's history.
            log(
                f"Application {app.application}: the sync to {requested[:12]} was already requested "
                f"(operation {current.operation_phase or 'pending'}); not syncing again"
            )
            return {"synced_revision": requested, "application": app.application}
        if self.settings.argocd.automated_sync:
            return self._sync_branch_head(app, revision, log)
        log(f"Application {app.application} upserted; syncing to {revision[:12]}")
        self._argocd().sync(app.application, revision)
        return {"synced_revision": revision, "application": app.application}

    def _upsert(self, app: AppRef, log: Callable[[str], None]) -> dict:
        from control_api.adapters.argocd.client import ArgoCDApplicationDeleting

        client = self._argocd()
        manifest = application_manifest(self.settings, app)
        try:
            return client.upsert_application(manifest) or {}
        except ArgoCDApplicationDeleting:
            # An undeploy moments ago: Argo CD refuses to sync an app that is being deleted, and its
            # resources are still being pruned. Wait for it to go, then create it again.
            log(f"Application {app.application} is still being deleted; waiting for Argo CD to finish")
            client.wait_deleted(app.application, self.settings.argocd.deletion_timeout_seconds)
            return client.upsert_application(manifest) or {}

    def _already_requested(self, current: AppState, app: AppRef, revision: str) -> bool:
        if current.operation_revision is None:
            return False
        same = current.operation_revision == revision or (
            self.settings.argocd.automated_sync and self._same_manifests(app, current.operation_revision, revision)
        )
        return same and (
            current.operation_pending
            or current.operation_phase == "Running"
            or (current.operation_phase == "Succeeded" and current.sync_status == "Synced")
        )

    def _sync_branch_head(self, app: AppRef, revision: str, log: Callable[[str], None]) -> dict[str, Any]:
        """Under automated sync Argo CD refuses a sync to any revision but ``targetRevision``
        (application.go: resolveSourceRevisions), so sync the branch once the head is confirmed to
        hold this deploy's manifests for the app; Argo CD resolves the head itself."""
        from control_api.adapters.argocd.errors import ArgoCDOperationInProgress
        from control_api.adapters.argocd.wait import AppState

        head = self._gitops().head()
        if not self._same_manifests(app, head, revision):
            raise SyncFailed(
                f"the head of {self.settings.git.branch} ({head[:12]}) no longer holds the manifests of "
                f"{revision[:12]} for {app.path}; with automated sync only the branch head can be synced",
                details={"application": app.application, "revision": revision, "head": head},
            )
        log(f"Application {app.application} (automated sync): syncing {self.settings.git.branch} at {head[:12]}")
        client = self._argocd()
        try:
            answer = client.sync(app.application, None)
        except ArgoCDOperationInProgress:
            # Argo CD's own automated sync may have started first; take it when it applies our manifests.
            state = AppState.from_application(client.get_application(app.application) or {})
            if state.operation_revision and self._same_manifests(app, state.operation_revision, revision):
                log(f"Argo CD is already syncing {state.operation_revision[:12]}, which holds this deploy's manifests")
                return {"synced_revision": state.operation_revision, "application": app.application}
            raise
        resolved = (((answer.get("operation") or {}).get("sync")) or {}).get("revision") or head
        return {"synced_revision": resolved, "application": app.application}

    def _same_manifests(self, app: AppRef, one: str, other: str) -> bool:
        if one == other:
            return True
        gitops = self._gitops()
        return gitops.read_files(one, app.path) == gitops.read_files(other, app.path)

    # ---- wait --------------------------------------------------------------------------------

    def look_ready(self, app: AppRef, revision: str, state: dict[str, Any]) -> Ready | NotReady:
        from control_api.adapters.argocd.wait import applied, look
        from control_api.adapters.kubernetes.rollout import RolloutDiagnosis

        kubernetes = self._kubernetes()
        try:
            app_state, synced = look(self._argocd(), app.application, revision)
        except TransientError as exc:  # an API server restarting must not fail the deploy
            return NotReady(f"Argo CD did not answer ({exc.message})", state)
        if not synced:
            evidence = state.get("evidence") or {}
            if applied(app_state, revision):
                diagnosis = RolloutDiagnosis(
                    kubernetes, app.namespace, app.endpoint, self.settings.argocd.failure_grace_seconds, evidence
                )
                diagnosis.check()
                evidence = diagnosis.first_seen
            reason = f"application {app.application} not Synced+Healthy at {revision} ({app_state.describe()})"
            if app_state.health_status == "Progressing" and self._address(app) is None:
                # A LoadBalancer Service without an address keeps the app Progressing: say so plainly.
                return NotReady(
                    f"Service {app.namespace}/{app.endpoint} has no external IP or hostname "
                    f"(the cloud load balancer was not provisioned); {reason}",
                    {"evidence": evidence},
                    details={"resource": {"kind": "Service", "namespace": app.namespace, "name": app.endpoint}},
                )
            return NotReady(
                reason, {"evidence": evidence}, details={"application": app.application, "revision": revision}
            )
        address = self._address(app)
        if address is None:
            return NotReady(
                f"Service {app.namespace}/{app.endpoint} has no external IP or hostname",
                details={"resource": {"kind": "Service", "namespace": app.namespace, "name": app.endpoint}},
            )
        url = url_for(address)
        answer = health_answer(url)  # a load balancer's hostname may take a while to resolve
        if answer is not None:
            return NotReady(f"{url}/health did not answer 200 (last: {answer})", state)
        return Ready(
            {"external_ip": address, "deployment_url": url},
            f"Application {app.application}: {app_state.describe()}; {url}/health answered 200",
        )

    def _address(self, app: AppRef) -> str | None:
        try:
            return self._kubernetes().service_external_address(app.namespace, app.endpoint)
        except TransientError:
            return None

    # ---- remove ------------------------------------------------------------------------------

    def remove(self, app: AppRef, revision: str, log: Callable[[str], None]) -> None:
        """Delete the Application with cascade: Argo CD deletes its resources, then the Application."""
        client = self._argocd()
        if not client.delete_application(app.application, cascade=True):
            return
        log(f"Application {app.application} deletion requested (cascade); waiting for Argo CD to remove it")
        client.wait_deleted(app.application, self.settings.argocd.deletion_timeout_seconds)
        log(f"Application {app.application} and its resources are gone")

    def served(self, app: AppRef, *, with_url: bool = True) -> ServedState | None:
        """The revision Argo CD last applied (``status.history``, which rollbacks from the UI add
        to as well), not the branch head: after a rollback in Argo CD the two differ."""
        application = self._argocd().get_application(app.application)
        if application is None:
            return None
        status = application.get("status") or {}
        syncs = tuple(
            SyncRecord(
                id=int(entry.get("id", 0)),
                revision=entry.get("revision") or "",
                deployed_at=entry.get("deployedAt"),
                initiated_by=(entry.get("initiatedBy") or {}).get("username"),
                automated=bool((entry.get("initiatedBy") or {}).get("automated")),
            )
            for entry in sorted(status.get("history") or [], key=lambda e: int(e.get("id", 0)))
            if entry.get("revision")
        )
        revision = syncs[-1].revision if syncs else None
        health = (status.get("health") or {}).get("status")
        address = self._address(app) if with_url else None
        return ServedState(
            revision=revision,
            image=None,
            syncs=syncs,
            healthy=None if health is None else health == "Healthy",
            url=url_for(address) if address else None,
        )

    def replica_metrics(self, app: AppRef, deployment_name: str) -> list[str]:
        """Each ready pod of the Deployment, through the API server's pod proxy on the pod's ``http``
        port: the control service may run outside the cluster and cannot reach pod IPs itself."""
        kubernetes = self._kubernetes()
        deployment = kubernetes.get_deployment(app.namespace, deployment_name)
        if deployment is None:
            return []
        match = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        texts = []
        for pod in kubernetes.list_pods(app.namespace, selector):
            if not _ready(pod):
                continue
            port = _http_port(pod)
            texts.append(kubernetes.pod_proxy_get(app.namespace, pod["metadata"]["name"], port, "/metrics"))
        return texts

    def ping(self) -> None:
        self._argocd().ping()


def _http_port(pod: dict) -> str:
    """The number of the model server's ``http`` port: the pod proxy takes a port number only (the
    API server copies a name into the URL it dials, where it is no port)."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http":
                return str(port["containerPort"])
    return "8080"


def _ready(pod: dict) -> bool:
    """Running, not terminating, and its Ready condition true: a pod the Service sends traffic to."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
