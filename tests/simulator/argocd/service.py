"""The Argo CD API server's application rules (server/application/application.go), above the store
and the controller. Every method takes the caller's account (from its token) for RBAC."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.simulator.argocd.controller import ApplicationController
from tests.simulator.argocd.errors import ArgoError, app_not_found, permission_denied
from tests.simulator.argocd.faults import ArgoFaults
from tests.simulator.argocd.health import resource_health
from tests.simulator.argocd.projects import DENY_ALL_WINDOW, IN_CLUSTER, Projects
from tests.simulator.argocd.rbac import Rbac
from tests.simulator.argocd.repo import RepoError, RepoServer, is_commit_sha
from tests.simulator.argocd.resources import group_of, version_of
from tests.simulator.argocd.store import ApplicationStore

RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"
PROPAGATION_FINALIZERS = {  # application.go getPropagationPolicyFinalizer
    "": RESOURCES_FINALIZER,
    "foreground": "resources-finalizer.argocd.argoproj.io/foreground",
    "background": "resources-finalizer.argocd.argoproj.io/background",
}
IN_CLUSTER_NAME = "in-cluster"


def _pruned(value: Any) -> Any:
    """A value as Go sees it after JSON decoding into structs: zero values and absent fields are equal."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", {}, [], False)}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _normalized_spec(spec: dict) -> dict:
    """argo.go NormalizeApplicationSpec: an empty project is "default"."""
    spec = copy.deepcopy(spec)
    if not spec.get("project"):
        spec["project"] = "default"
    return spec


class ApplicationService:
    def __init__(
        self,
        store: ApplicationStore,
        controller: ApplicationController,
        repo: RepoServer,
        projects: Projects,
        rbac: Rbac,
        faults: ArgoFaults,
        cluster: Any,
    ) -> None:
        self.store = store
        self.controller = controller
        self.repo = repo
        self.projects = projects
        self.rbac = rbac
        self.faults = faults
        self.cluster = cluster

    # ---- RBAC ----------------------------------------------------------------------------------

    def _enforce(self, account: str | None, resource: str, action: str, obj: str) -> None:
        """rbac.Enforcer.EnforceErr."""
        if not self.rbac.enforce(account, resource, action, obj):
            raise ArgoError("PermissionDenied", f"permission denied: {resource}, {action}, {obj}, sub: {account}")

    def _allowed(self, account: str | None, action: str, obj: str) -> bool:
        return self.rbac.enforce(account, "applications", action, obj)

    @staticmethod
    def rbac_name(app: dict) -> str:
        """Application.RBACName for an app in the control plane's namespace: ``<project>/<name>``."""
        return f"{app['spec'].get('project') or 'default'}/{app['metadata']['name']}"

    def _project(self, app: dict) -> dict:
        """application.go getAppProject: a vague error for a missing project."""
        project = self.projects.get(app["spec"].get("project"), missing_fault=self.faults.missing_project)
        if project is None:
            raise ArgoError(
                "InvalidArgument",
                f'app is not allowed in project "{app["spec"].get("project")}", or the project does not exist',
            )
        return project

    def get_enforced(self, account: str | None, action: str, project: str, name: str) -> tuple[dict, dict]:
        """application.go getAppEnforceRBAC: without ``project`` a missing app and a forbidden one are
        both 403; with it, a missing app is 404."""
        if project and not self._allowed(account, action, f"{project}/{name}"):
            raise permission_denied()
        app = self.store.get(name)
        if app is None:
            if project:
                raise app_not_found(name)
            raise permission_denied()
        if not self._allowed(account, action, self.rbac_name(app)):
            if project:
                raise app_not_found(name)
            raise permission_denied()
        if project and (app["spec"].get("project") or "default") != project:
            raise app_not_found(name)
        return app, self._project(app)

    # ---- reads ---------------------------------------------------------------------------------

    def get(self, account: str | None, name: str, *, project: str = "", refresh: str | None = None) -> dict:
        app, _ = self.get_enforced(account, "get", project, name)
        if refresh is None:
            return app
        # argo.go RefreshApp, then the Get waits for the controller's refreshed comparison.
        refreshed = self.controller.reconcile(name, force_resolve=True)
        return refreshed if refreshed is not None else app

    def list(self, account: str | None) -> list[dict]:
        apps = [self.store.get(n) for n in self.store.names()]
        return [a for a in apps if a is not None and self._allowed(account, "get", self.rbac_name(a))]

    # ---- create / update -----------------------------------------------------------------------

    def _validate_and_normalize(self, app: dict, project: dict, validate: bool) -> None:
        """application.go validateAndNormalizeApp with argo.go ValidateRepo and ValidatePermissions."""
        name = app["metadata"].get("name")
        if not name:
            raise ArgoError("Unknown", "resource name may not be empty")
        spec = app["spec"]
        destination = spec.get("destination") or {}
        server = destination.get("server") or ""
        if destination.get("name") and not server:
            server = IN_CLUSTER if destination["name"] == IN_CLUSTER_NAME else ""
            if not server:
                raise ArgoError(
                    "InvalidArgument",
                    f"application destination spec for {name} is invalid: "
                    f"there are no clusters with this name: {destination['name']}",
                )
        elif server != IN_CLUSTER:
            raise ArgoError(
                "InvalidArgument",
                f"application destination spec for {name} is invalid: there are no clusters with this URL: {server}",
            )
        source = spec.get("source") or {}
        if validate and source.get("repoURL"):
            condition = None
            try:  # argo.go validateRepo: TestRepository, then verifyGenerateManifests
                self.repo.test_repository(source["repoURL"])
            except RepoError as exc:
                condition = f"repository not accessible: repositories not accessible: {source['repoURL']}: {exc}"
            else:
                try:
                    revision = self.repo.resolve(
                        source["repoURL"], source.get("targetRevision") or "HEAD", use_cache=False
                    )
                    self.repo.manifests(source["repoURL"], revision, source.get("path", ""))
                except RepoError as exc:
                    condition = (
                        f"Unable to generate manifests in {source.get('path', '')}: "
                        f"rpc error: code = Unknown desc = {exc}"
                    )
            if condition:
                raise ArgoError(
                    "InvalidArgument", f"application spec for {name} is invalid: InvalidSpecError: {condition}"
                )
        conditions = []
        if not source.get("repoURL") or not (source.get("path") or source.get("chart")):
            conditions.append("spec.source.repoURL and either spec.source.path or spec.source.chart are required")
        else:
            if not Projects.is_source_permitted(project, source["repoURL"]):
                conditions.append(
                    f"application repo {source['repoURL']} is not permitted in project '{project['metadata']['name']}'"
                )
            if not Projects.is_destination_permitted(project, IN_CLUSTER, destination.get("namespace", "")):
                shown = destination.get("name") or server
                conditions.append(
                    f"application destination server '{shown}' and namespace '{destination.get('namespace', '')}' "
                    f"do not match any of the allowed destinations in project '{project['metadata']['name']}'"
                )
        if conditions:
            formatted = ";".join(f"InvalidSpecError: {c}" for c in conditions)  # argo.go FormatAppConditions
            raise ArgoError("InvalidArgument", f"application spec for {name} is invalid: {formatted}")
        spec.update(_normalized_spec(spec))

    def create(self, account: str | None, body: dict, *, upsert: bool, validate: bool) -> dict:
        app = copy.deepcopy(body)
        app.setdefault("metadata", {})
        app.setdefault("spec", {})
        self._enforce(account, "applications", "create", self.rbac_name(app))
        project = self._project(app)
        try:
            self._validate_and_normalize(app, project, validate)
        except ArgoError as exc:
            raise ArgoError(exc.grpc_code, f"error while validating and normalizing app: {exc.message}") from None
        app.pop("operation", None)  # Create never lets the caller set an operation.
        app.pop("status", None)
        stored = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {
                k: v for k, v in app["metadata"].items() if k in ("name", "labels", "annotations", "finalizers") and v
            },
            "spec": app["spec"],
        }
        try:
            created = self.store.create(stored)
        except ArgoError as exc:
            if exc.grpc_code != "AlreadyExists":
                raise
        else:
            self.controller.schedule(created["metadata"]["name"], 0.0)
            return created
        existing = self.store.get(app["metadata"]["name"])
        if existing is None:
            raise ArgoError("Internal", "unable to check existing application details")
        metadata = app["metadata"]
        equal = (
            _pruned(existing["spec"]) == _pruned(app["spec"])
            and (existing["metadata"].get("labels") or {}) == (metadata.get("labels") or {})
            and (existing["metadata"].get("annotations") or {}) == (metadata.get("annotations") or {})
            and (existing["metadata"].get("finalizers") or []) == (metadata.get("finalizers") or [])
        )
        if equal:
            return existing
        if not upsert:
            raise ArgoError(
                "InvalidArgument", "existing application spec is different, use upsert flag to force update"
            )
        self._enforce(account, "applications", "update", self.rbac_name(app))
        try:
            return self._update_app(app, merge=True)
        except ArgoError as exc:
            raise ArgoError(exc.grpc_code, f"error updating application: {exc.message}") from None

    def _update_app(self, new: dict, *, merge: bool) -> dict:
        """application.go updateApp: spec replaced; labels and annotations merged (upsert) or replaced
        (PUT); finalizers always replaced."""
        metadata = new["metadata"]

        def apply(stored: dict) -> None:
            stored["spec"] = copy.deepcopy(new["spec"])
            for part in ("labels", "annotations"):
                value = (
                    dict(stored["metadata"].get(part) or {}, **(metadata.get(part) or {}))
                    if merge
                    else dict(metadata.get(part) or {})
                )
                if value:
                    stored["metadata"][part] = value
                else:
                    stored["metadata"].pop(part, None)
            if metadata.get("finalizers"):
                stored["metadata"]["finalizers"] = list(metadata["finalizers"])
            else:
                stored["metadata"].pop("finalizers", None)

        updated = self.store.update(metadata["name"], apply)
        if updated is None:
            raise app_not_found(metadata["name"])
        self.controller.schedule(metadata["name"], 0.0)
        return updated

    def update(self, account: str | None, path_name: str, body: dict, *, validate: bool, project: str) -> dict:
        app = copy.deepcopy(body)
        app.setdefault("metadata", {}).setdefault("name", path_name)
        app.setdefault("spec", {})
        self._enforce(account, "applications", "update", self.rbac_name(app))
        _, current_project = self.get_enforced(account, "update", project, app["metadata"]["name"])
        try:
            existing = self.store.get(app["metadata"]["name"]) or {}
            if (existing.get("spec") or {}).get("project") != app["spec"].get("project"):
                self._enforce(account, "applications", "create", self.rbac_name(app))
                self._enforce(account, "applications", "update", self.rbac_name(existing))
                current_project = self._project(app)
            self._validate_and_normalize(app, current_project, validate)
        except ArgoError as exc:
            raise ArgoError(exc.grpc_code, f"error validating and normalizing app: {exc.message}") from None
        try:
            return self._update_app(app, merge=False)
        except ArgoError as exc:
            raise ArgoError(exc.grpc_code, f"error updating application: {exc.message}") from None

    # ---- delete --------------------------------------------------------------------------------

    def delete(
        self, account: str | None, name: str, *, cascade: bool | None, propagation_policy: str, project: str
    ) -> dict:
        """application.go Delete: with cascade (the default) the propagation policy's finalizer is
        added before the delete, so the controller deletes the resources first; without cascade the
        resources finalizer is removed, so the app goes at once and its resources stay."""
        app, _ = self.get_enforced(account, "get", project, name)
        self._enforce(account, "applications", "delete", self.rbac_name(app))
        if cascade is False and propagation_policy:
            raise ArgoError("InvalidArgument", "cannot set propagation policy when cascading is disabled")
        finalizers = list(app["metadata"].get("finalizers") or [])
        if cascade is None or cascade:
            finalizer = PROPAGATION_FINALIZERS.get(propagation_policy.lower())
            if finalizer is None:
                raise ArgoError("InvalidArgument", f"invalid propagation policy: {propagation_policy}")
            if finalizer not in finalizers and not app["metadata"].get("deletionTimestamp"):
                finalizers.append(finalizer)
        else:
            finalizers = [f for f in finalizers if f not in PROPAGATION_FINALIZERS.values()]
        if finalizers != (app["metadata"].get("finalizers") or []):

            def patch(stored: dict) -> None:
                if finalizers:
                    stored["metadata"]["finalizers"] = finalizers
                else:
                    stored["metadata"].pop("finalizers", None)

            self.store.update(name, patch)
        self.store.delete(name)
        return {}

    # ---- sync / rollback -----------------------------------------------------------------------

    def _can_sync(self, project: dict, app: dict) -> bool:
        windows = [DENY_ALL_WINDOW] if self.faults.sync_window == "deny" else []
        return Projects.can_sync(project, app, manual=True, extra_windows=windows)

    def _set_operation(self, name: str, operation: dict) -> dict:
        """argo.go SetAppOperation."""

        def set_operation(stored: dict) -> None:
            if stored.get("operation"):
                raise ArgoError("FailedPrecondition", "another operation is already in progress")
            stored["operation"] = operation
            stored.setdefault("status", {}).pop("operationState", None)

        try:
            updated = self.store.update(name, set_operation)
        except ArgoError as exc:
            raise ArgoError(exc.grpc_code, f"error setting app operation: {exc.message}") from None
        if updated is None:
            raise ArgoError(
                "NotFound",
                f'error setting app operation: error getting application "{name}": '
                f'applications.argoproj.io "{name}" not found',
            )
        return updated

    def sync(self, account: str | None, name: str, body: dict) -> dict:
        """application.go Sync and resolveSourceRevisions (single source)."""
        app, project = self.get_enforced(account, "get", body.get("project", ""), name)
        if not self._can_sync(project, app):
            raise ArgoError("PermissionDenied", "cannot sync: blocked by sync window")
        self._enforce(account, "applications", "sync", self.rbac_name(app))
        if app["metadata"].get("deletionTimestamp"):
            raise ArgoError("FailedPrecondition", "application is deleting")
        source = app["spec"]["source"]
        requested = body.get("revision") or ""
        automated = (app["spec"].get("syncPolicy") or {}).get("automated")
        if (
            requested
            and requested != (source.get("targetRevision") or "HEAD")
            and automated is not None
            and automated.get("enabled") is not False
            and not body.get("dryRun")
        ):
            raise ArgoError(
                "FailedPrecondition",
                f"Cannot sync to {requested}: auto-sync currently set to {source.get('targetRevision', '')}",
            )
        ambiguous = requested or source.get("targetRevision") or "HEAD"
        if is_commit_sha(ambiguous):
            revision = ambiguous
        else:
            try:  # a user-triggered sync resolves without the revision cache
                revision = self.repo.resolve(source["repoURL"], ambiguous, use_cache=False)
            except RepoError as exc:
                raise ArgoError("FailedPrecondition", f"error resolving repo revision: {exc}") from None
        sync_policy = app["spec"].get("syncPolicy") or {}
        sync_options = (
            (body.get("syncOptions") or {}).get("items") if body.get("syncOptions") else sync_policy.get("syncOptions")
        )
        operation: dict[str, Any] = {
            "sync": {
                "source": copy.deepcopy(source),
                "revision": revision,
                "prune": bool(body.get("prune")),
                **({"dryRun": True} if body.get("dryRun") else {}),
                **({"syncOptions": list(sync_options)} if sync_options else {}),
                **({"resources": body["resources"]} if body.get("resources") else {}),
                **({"syncStrategy": body["strategy"]} if body.get("strategy") else {}),
            },
            "initiatedBy": {"username": account or ""},
        }
        if body.get("infos"):
            operation["info"] = body["infos"]
        retry = body.get("retryStrategy") or sync_policy.get("retry")
        if retry:
            operation["retry"] = retry
        return self._set_operation(name, operation)

    def rollback(self, account: str | None, name: str, body: dict) -> dict:
        """application.go Rollback (rollback is checked as ``sync``: server.rbac.rollback.enforce.enable off)."""
        app, _ = self.get_enforced(account, "sync", body.get("project", ""), name)
        if app["metadata"].get("deletionTimestamp"):
            raise ArgoError("FailedPrecondition", "application is deleting")
        automated = (app["spec"].get("syncPolicy") or {}).get("automated")
        if automated is not None and automated.get("enabled") is not False:
            raise ArgoError("FailedPrecondition", "rollback cannot be initiated when auto-sync is enabled")
        wanted = int(body.get("id") or 0)
        entry = next((h for h in (app.get("status") or {}).get("history") or [] if int(h.get("id", 0)) == wanted), None)
        if entry is None:
            raise ArgoError("InvalidArgument", f"application {name} does not have deployment with id {wanted}")
        if not entry.get("source"):
            raise ArgoError(
                "FailedPrecondition",
                "cannot rollback to revision deployed with Argo CD v0.11 or lower. sync to revision instead.",
            )
        sync_options = (app["spec"].get("syncPolicy") or {}).get("syncOptions")
        operation = {
            "sync": {
                "revision": entry["revision"],
                "prune": bool(body.get("prune")),
                **({"dryRun": True} if body.get("dryRun") else {}),
                **({"syncOptions": list(sync_options)} if sync_options else {}),
                "syncStrategy": {"apply": {}},
                "source": copy.deepcopy(entry["source"]),
            },
            "initiatedBy": {"username": account or ""},
        }
        return self._set_operation(name, operation)

    # ---- resource tree / managed resources -----------------------------------------------------

    def _managed_live(self, app: dict) -> list[dict]:
        out = []
        for resource in (app.get("status") or {}).get("resources") or []:
            live = self.cluster.get(resource["kind"], resource.get("namespace") or None, resource["name"])
            if live is not None:
                out.append(live)
        return out

    @staticmethod
    def _node(obj: dict, parents: list[dict] | None = None) -> dict:
        metadata = obj["metadata"]
        node: dict[str, Any] = {
            "group": group_of(obj),
            "version": version_of(obj),
            "kind": obj["kind"],
            "namespace": metadata.get("namespace", ""),
            "name": metadata["name"],
            "uid": metadata.get("uid", ""),
            "resourceVersion": str(metadata.get("resourceVersion", "")),
        }
        if metadata.get("creationTimestamp"):
            node["createdAt"] = metadata["creationTimestamp"]
        if parents:
            node["parentRefs"] = [
                {
                    "group": group_of(p),
                    "version": version_of(p),
                    "kind": p["kind"],
                    "namespace": p["metadata"].get("namespace", ""),
                    "name": p["metadata"]["name"],
                    "uid": p["metadata"].get("uid", ""),
                }
                for p in parents
            ]
        health = resource_health(obj)
        if health is not None:
            node["health"] = health.as_json()
        return node

    @staticmethod
    def _owned_by(obj: dict, owner: dict) -> bool:
        return any(
            ref.get("uid") == owner["metadata"].get("uid") for ref in obj["metadata"].get("ownerReferences") or []
        )

    def resource_tree(self, account: str | None, name: str, *, project: str = "") -> dict:
        """application.go ResourceTree: managed objects and their children (Deployment -> ReplicaSet ->
        Pod), with health, Pod info (controller/cache/info.go populatePodInfo) and Service networking info."""
        app, _ = self.get_enforced(account, "get", project, name)
        nodes = []
        for live in self._managed_live(app):
            node = self._node(live)
            if live["kind"] == "Service":
                ingress = ((live.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                info: dict[str, Any] = {"targetLabels": live["spec"].get("selector") or {}}
                if ingress:
                    info["ingress"] = ingress
                node["networkingInfo"] = info
            nodes.append(node)
            if live["kind"] != "Deployment":
                continue
            namespace = live["metadata"].get("namespace")
            for replica_set in self.cluster.list("ReplicaSet", namespace):
                if not self._owned_by(replica_set, live):
                    continue
                nodes.append(self._node(replica_set, [live]))
                for pod in self.cluster.list("Pod", namespace):
                    if self._owned_by(pod, replica_set):
                        nodes.append(self._pod_node(pod, replica_set))
        return {"nodes": nodes, "hosts": []}

    def _pod_node(self, pod: dict, owner: dict) -> dict:
        node = self._node(pod, [owner])
        status = pod.get("status") or {}
        containers = status.get("containerStatuses") or []
        reason = status.get("reason") or status.get("phase") or ""
        for container in containers:
            state = container.get("state") or {}
            if state.get("waiting", {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated", {}).get("reason"):
                reason = state["terminated"]["reason"]
        ready = sum(1 for c in containers if c.get("ready"))
        total = len((pod.get("spec") or {}).get("containers") or [])
        node["info"] = [
            {"name": "Status Reason", "value": reason},
            {"name": "Node", "value": (pod.get("spec") or {}).get("nodeName", "")},
            {"name": "Containers", "value": f"{ready}/{total}"},
            {"name": "Restart Count", "value": str(sum(int(c.get("restartCount", 0)) for c in containers))},
        ]
        node["images"] = [c["image"] for c in (pod.get("spec") or {}).get("containers") or []]
        return node

    def managed_resources(self, account: str | None, name: str, *, project: str = "") -> dict:
        app, _ = self.get_enforced(account, "get", project, name)
        items = []
        for resource in (app.get("status") or {}).get("resources") or []:
            live = self.cluster.get(resource["kind"], resource.get("namespace") or None, resource["name"])
            item = {
                "group": resource.get("group", ""),
                "kind": resource["kind"],
                "namespace": resource.get("namespace", ""),
                "name": resource["name"],
                "liveState": json.dumps(live) if live is not None else "null",
                "modified": resource.get("status") != "Synced",
            }
            if live is not None:
                item["resourceVersion"] = str(live["metadata"].get("resourceVersion", ""))
            items.append(item)
        return {"items": items}

    def can_i(self, account: str | None, resource: str, action: str, subresource: str) -> dict:
        """account.go CanI: ``yes`` or ``no`` from the policy."""
        return {"value": "yes" if self.rbac.enforce(account, resource, action, subresource) else "no"}
