"""Wait until an Argo CD Application runs exactly one revision, Synced and Healthy.

An operation turns Succeeded as soon as its resources are applied (gitops-engine does not wait for
health), and ``status.sync``/``status.health`` are written by the controller's next reconcile. Until
``status.reconciledAt`` reaches the operation's ``finishedAt`` they still describe the previous
revision, so nothing is judged before that: the rule ``argocd app wait`` follows.

Argo CD reports a failed rollout in three places: the sync operation (``operationState.phase``
Failed/Error, per-resource results in ``syncResult.resources``), the application health (Degraded,
per-resource health in ``status.resources``) and the resource tree (health of children such as
ReplicaSets and Pods). The first failing resource found there is named in the ``SyncFailed`` error so
the caller sees *which* object broke, not only that something did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from control_api.adapters.argocd.client import ArgoCDClient
from control_api.errors import DeploymentTimedOut, NotFoundError, SyncFailed, TransientError

FAILED_PHASES = frozenset({"Failed", "Error"})
FAILED_RESOURCE_RESULTS = frozenset({"SyncFailed"})


@dataclass(frozen=True)
class AppState:
    name: str
    sync_status: str | None
    revision: str | None  # the revision Argo CD compared the live state with
    health_status: str | None
    health_message: str | None
    operation_phase: str | None
    operation_message: str | None
    operation_revision: str | None
    operation_pending: bool  # a requested sync or rollback the controller has not finished
    operation_finished_at: str | None = None
    reconciled_at: str | None = None
    application: dict = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_application(cls, application: dict) -> AppState:
        status = application.get("status") or {}
        sync = status.get("sync") or {}
        health = status.get("health") or {}
        operation_state = status.get("operationState") or {}
        sync_result = operation_state.get("syncResult") or {}
        requested = ((operation_state.get("operation") or {}).get("sync")) or {}
        return cls(
            name=(application.get("metadata") or {}).get("name", ""),
            sync_status=sync.get("status"),
            revision=sync.get("revision"),
            health_status=health.get("status"),
            health_message=health.get("message"),
            operation_phase=operation_state.get("phase"),
            operation_message=operation_state.get("message"),
            operation_revision=sync_result.get("revision") or requested.get("revision"),
            operation_pending=bool(application.get("operation")),
            operation_finished_at=operation_state.get("finishedAt"),
            reconciled_at=status.get("reconciledAt"),
            application=application,
        )

    @property
    def reconciled_after_operation(self) -> bool:
        """The controller compared the app again after the last operation finished, so sync and
        health describe what that operation applied. Timestamps are RFC 3339 in UTC with the same
        precision on both sides, so they compare as text."""
        if self.operation_pending:
            return False
        if self.operation_phase is None:
            return self.reconciled_at is not None
        if self.operation_finished_at is None:
            return False
        return self.reconciled_at is not None and self.reconciled_at >= self.operation_finished_at

    def at(self, revision: str) -> bool:
        """Argo CD compares the app with the head of its target branch. When other commits landed on
        the branch after ``revision`` (another model's deploy, or while this service was down), the
        app is at ``revision`` if our sync of it succeeded: Synced then says the head's manifests
        for this app are the ones that sync applied."""
        return self.revision == revision or (
            self.operation_revision == revision and self.operation_phase == "Succeeded"
        )

    @property
    def done(self) -> bool:
        return self.sync_status == "Synced" and self.health_status == "Healthy"

    def describe(self) -> str:
        return (
            f"sync={self.sync_status} revision={self.revision} health={self.health_status} "
            f"operation={self.operation_phase}"
        )


def look(client: ArgoCDClient, name: str, revision: str) -> tuple[AppState, bool]:
    """One look at the Application: its state, and whether it is Synced and Healthy at ``revision``
    as judged after the controller reconciled our operation. Raises ``SyncFailed`` when the sync of
    ``revision`` failed or the app turned Degraded after it, ``NotFoundError`` when the app is gone."""
    application = client.get_application(name)
    if application is None:
        raise NotFoundError(f"Argo CD application {name!r} does not exist")
    state = AppState.from_application(application)
    if state.reconciled_after_operation and state.at(revision) and state.done:
        return state, True
    _raise_if_failed(client, state, revision)
    return state, False


def applied(state: AppState, revision: str) -> bool:
    """Our operation applied ``revision``; the rollout it started may still be going on."""
    return _applied(state, revision)


def wait_for_sync(
    client: ArgoCDClient,
    name: str,
    revision: str,
    timeout: float,
    poll: float = 2.0,
    first_poll: float = 0.1,
    diagnose: Callable[[AppState], None] | None = None,
) -> AppState:
    """Poll until the Application is Synced and Healthy at ``revision``.

    Polls start ``first_poll`` apart and double up to ``poll``: a quick rollout is seen within a
    fraction of a second, a long one costs the API server one request per ``poll``.
    Raises ``SyncFailed`` when the sync of ``revision`` fails or the app turns Degraded after it,
    ``DeploymentTimedOut`` after ``timeout`` seconds. Transient errors while polling are ridden
    out until the deadline (the API server restarting must not fail a deploy). While the applied
    revision is still rolling out, ``diagnose`` is called with the state on each poll; it raises
    when the cluster shows the rollout cannot finish (a crash loop, say), long before Argo CD's
    Deployment progress deadline would turn the app Degraded.
    """
    deadline = time.monotonic() + timeout
    last_state: AppState | None = None
    last_error: TransientError | None = None
    delay = min(first_poll, poll)
    while True:
        try:
            last_state, ready = look(client, name, revision)
            last_error = None
        except TransientError as exc:
            last_error = exc
        else:
            if ready:
                return last_state
            if diagnose is not None and _applied(last_state, revision):
                diagnose(last_state)

        if time.monotonic() >= deadline:
            seen = last_state.describe() if last_state else "never read"
            if last_error is not None:
                seen += f"; last error: {last_error}"
            raise DeploymentTimedOut(
                f"application {name!r} not Synced+Healthy at {revision} after {timeout:g} s ({seen})",
                details={"application": name, "revision": revision},
            )
        time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(poll, delay * 2)


def _applied(state: AppState, revision: str) -> bool:
    return not state.operation_pending and state.operation_revision == revision and state.operation_phase == "Succeeded"


def _raise_if_failed(client: ArgoCDClient, state: AppState, revision: str) -> None:
    # Until the controller has finished our operation, operationState and health may still
    # describe the previous rollout; judging them then would blame the new revision for old failures.
    if state.operation_pending or state.operation_revision != revision:
        return
    if state.operation_phase in FAILED_PHASES:
        resource = _failed_sync_resource(state.application) or _degraded_resource(state.application)
        raise SyncFailed(
            _failure_message(f"sync of {revision} {state.operation_phase.lower()}", state.operation_message, resource),
            details={"application": state.name, "revision": revision, "resource": resource},
        )
    if state.operation_phase == "Succeeded" and state.reconciled_after_operation and state.health_status == "Degraded":
        resource = _degraded_resource(state.application) or _degraded_tree_node(client, state.name)
        raise SyncFailed(
            _failure_message(f"application degraded after sync of {revision}", state.health_message, resource),
            details={"application": state.name, "revision": revision, "resource": resource},
        )


def _failure_message(summary: str, argocd_message: str | None, resource: dict | None) -> str:
    message = f"{summary}: {argocd_message}" if argocd_message else summary
    if resource:
        message += f" ({resource.get('kind')}/{resource.get('name')}: {resource.get('message') or 'no message'})"
    return message


def _resource_ref(item: dict[str, Any], message: str | None) -> dict:
    return {
        "kind": item.get("kind"),
        "name": item.get("name"),
        "namespace": item.get("namespace"),
        "message": message,
    }


def _failed_sync_resource(application: dict) -> dict | None:
    results = (((application.get("status") or {}).get("operationState") or {}).get("syncResult") or {}).get(
        "resources"
    ) or []
    for result in results:
        if result.get("status") in FAILED_RESOURCE_RESULTS or result.get("hookPhase") in FAILED_PHASES:
            return _resource_ref(result, result.get("message"))
    return None


def _degraded_resource(application: dict) -> dict | None:
    for resource in (application.get("status") or {}).get("resources") or []:
        health = resource.get("health") or {}
        if health.get("status") == "Degraded":
            return _resource_ref(resource, health.get("message"))
    return None


def _degraded_tree_node(client: ArgoCDClient, name: str) -> dict | None:
    try:
        tree = client.resource_tree(name)
    except TransientError:
        return None
    for node in tree.get("nodes") or []:
        health = node.get("health") or {}
        if health.get("status") == "Degraded":
            return _resource_ref(node, health.get("message"))
    return None
