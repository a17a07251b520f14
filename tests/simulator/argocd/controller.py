"""The application controller: an operation loop and a reconcile loop, kept apart as in Argo CD.

Operation loop (gitops-engine pkg/sync/sync_context.go): render the operation's revision, check every
task against the AppProject, apply in kind order with the tracking annotation, prune when asked, and
mark the operation Succeeded as soon as everything is applied: health is not awaited. History
(status.history, spec.revisionHistoryLimit, default 10) records successful syncs only.

Reconcile loop (controller/state.go CompareAppState, controller/health.go): resolve the target
revision, compare it with the live objects, write status.sync, status.resources, status.health and
status.reconciledAt. It runs ``reconcile_lag`` (+ the ``stale_reconcile_seconds`` fault) after an
operation, every ``reconcile_period`` and on a refresh. Until it runs, status.sync and
status.health still describe the previous comparison.

Automated sync (docs/user-guide/auto_sync.md): after a comparison that is OutOfSync, the controller
starts a sync of the target revision itself, once per revision unless selfHeal is set, and never
against a sync window.

Deletion (docs/user-guide/app_deletion.md): an Application marked for deletion that carries the
resources finalizer has its managed resources deleted; the finalizer is removed once they are gone,
and the Application disappears with it.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.simulator.argocd.faults import ArgoFaults
from tests.simulator.argocd.health import HEALTHY, ManagedResource, application_health
from tests.simulator.argocd.projects import DENY_ALL_WINDOW, Projects
from tests.simulator.argocd.repo import RepoError, RepoServer
from tests.simulator.argocd.resources import (
    TRACKING_ANNOTATION,
    group_of,
    in_sync,
    is_namespaced,
    now_rfc3339,
    sync_order,
    tracked_by,
    tracking_id,
    version_of,
    with_namespace,
)
from tests.simulator.argocd.store import ApplicationStore

RESOURCES_FINALIZERS = (
    "resources-finalizer.argocd.argoproj.io",
    "resources-finalizer.argocd.argoproj.io/foreground",
    "resources-finalizer.argocd.argoproj.io/background",
)
DEFAULT_HISTORY_LIMIT = 10


def _sync_options(options: list[str] | None) -> dict[str, str]:
    return dict(option.split("=", 1) for option in options or [] if "=" in option)


def _automated(app: dict) -> dict | None:
    automated = (app["spec"].get("syncPolicy") or {}).get("automated")
    if automated is None or automated.get("enabled") is False:
        return None
    return automated


# The kinds the controller's cluster cache watches for tracked objects (Argo CD watches every API
# resource; these are the ones an application here can create).
WATCHED_KINDS = {
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Job",
    "StatefulSet",
    "DaemonSet",
    "Ingress",
}


def _known_kinds(app: dict, targets: list[dict] = ()) -> set[str]:
    """Kinds the app may have live objects of: watched ones, and any in git, its last comparison or sync."""
    status = app.get("status") or {}
    results = ((status.get("operationState") or {}).get("syncResult") or {}).get("resources") or []
    return (
        WATCHED_KINDS
        | {t["kind"] for t in targets}
        | {r["kind"] for r in status.get("resources") or []}
        | {r["kind"] for r in results}
    )


def _result_name(obj: dict) -> str:
    group = group_of(obj)
    return f"{obj['kind'].lower()}{'.' + group if group else ''}/{obj['metadata']['name']}"


class ApplicationController:
    def __init__(
        self,
        store: ApplicationStore,
        cluster: Any,
        repo: RepoServer,
        projects: Projects,
        faults: Callable[[], ArgoFaults],
        *,
        reconcile_lag: float,
        reconcile_period: float,
        tick: float = 0.05,
    ) -> None:
        self.store = store
        self.cluster = cluster
        self.repo = repo
        self.projects = projects
        self._faults = faults
        self.reconcile_lag = reconcile_lag
        self.reconcile_period = reconcile_period
        self.tick = tick
        self._due: dict[str, tuple[float, bool]] = {}  # name -> (monotonic time, force-resolve the revision)
        self._workers: dict[str, threading.Thread] = {}
        self._reconcile_locks: dict[str, threading.Lock] = {}
        self._post_operation: set[str] = set()  # apps whose post-operation reconcile has not run yet
        self._seen_versions: dict[str, list[str | None]] = {}  # live resourceVersions at the last compare
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared by pause(): a test holds the controller still
        self._running.set()
        self._pass_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="argocd-application-controller", daemon=True)

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for worker in list(self._workers.values()):
            worker.join(30)

    def wait_idle(self, timeout: float) -> None:
        """Until no operation is requested or running (test helper)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = any(w.is_alive() for w in self._workers.values())
            pending = any((self.store.get(n) or {}).get("operation") for n in self.store.names())
            if not busy and not pending:
                return
            time.sleep(0.05)

    def schedule(self, name: str, delay: float, *, force_resolve: bool = False) -> None:
        with self._lock:
            self._due[name] = (time.monotonic() + delay, force_resolve)

    # ---- loop ----------------------------------------------------------------------------------

    def pause(self) -> None:
        """Test hook: stop picking up operations, reconciles and deletions (an operation already running
        finishes), like a controller that is down; the API server keeps answering."""
        self._running.clear()
        with self._pass_lock:  # the pass under way ends first
            pass
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.join(60)

    def resume(self) -> None:
        self._running.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            with self._pass_lock:
                if not self._running.is_set():
                    continue
                for name in self.store.names():
                    if self._stop.is_set():
                        return
                    try:
                        self._process(name)
                    except Exception as exc:  # one app's simulator bug must not stop the others
                        self._record_condition(name, "UnknownError", f"simulator controller error: {exc!r}")

    def _process(self, name: str) -> None:
        app = self.store.get(name)
        if app is None:
            return
        if app["metadata"].get("deletionTimestamp"):
            self._finalize(app)
            return
        with self._lock:
            worker = self._workers.get(name)
            if app.get("operation") and (worker is None or not worker.is_alive()):
                worker = threading.Thread(
                    target=self._run_operation, args=(name,), daemon=True, name=f"argocd-operation-{name}"
                )
                self._workers[name] = worker
                worker.start()
            due = self._due.get(name)
            if due is None:
                # A new Application is compared at once (the controller's add event).
                self._due[name] = due = (0.0, False)
        if worker is not None and worker.is_alive():
            return  # comparisons wait for the running operation
        if time.monotonic() >= due[0]:
            self.reconcile(name, force_resolve=due[1])
        elif not app.get("operation") and not self._after_operation(name) and self._live_changed(app):
            # A watched resource changed (the controller's informer event): compare again, with the
            # cached revision. Not while an operation runs or its own reconcile is still pending.
            self.reconcile(name, force_resolve=False, keep_schedule=True)

    # ---- reconcile -----------------------------------------------------------------------------

    def _after_operation(self, name: str) -> bool:
        with self._lock:
            worker = self._workers.get(name)
            return (worker is not None and worker.is_alive()) or name in self._post_operation

    def _live_changed(self, app: dict) -> bool:
        versions = self._live_versions(app)
        with self._lock:
            return versions != self._seen_versions.get(app["metadata"]["name"])

    def _live_versions(self, app: dict) -> list[str | None]:
        versions = []
        for resource in (app.get("status") or {}).get("resources") or []:
            live = self.cluster.get(resource["kind"], resource.get("namespace") or None, resource["name"])
            versions.append(None if live is None else str(live["metadata"].get("resourceVersion")))
        return versions

    def reconcile(self, name: str, *, force_resolve: bool, keep_schedule: bool = False) -> dict | None:
        """Compare and write status; then run the automated-sync decision. Returns the stored app."""
        with self._lock:
            lock = self._reconcile_locks.setdefault(name, threading.Lock())
            if not keep_schedule:
                # The next one is periodic, and a periodic reconcile refreshes the ref cache.
                self._due[name] = (time.monotonic() + self.reconcile_period, True)
                self._post_operation.discard(name)
        with lock:
            app = self.store.get(name)
            if app is None or app["metadata"].get("deletionTimestamp"):
                return app
            # Versions read before the comparison: a change during it is seen as a change next tick.
            versions_before = self._live_versions(app)
            status = self._compare(app, force_resolve=force_resolve)

            def write(stored: dict) -> None:
                current = stored.setdefault("status", {})
                previous_health = current.get("health") or {}
                health = status.pop("health", None)
                current.update(status)
                if health is not None:
                    if previous_health.get("status") == health["status"] and previous_health.get("lastTransitionTime"):
                        health["lastTransitionTime"] = previous_health["lastTransitionTime"]
                    else:
                        health["lastTransitionTime"] = now_rfc3339()
                    current["health"] = health
                if not status.get("conditions"):
                    current.pop("conditions", None)

            updated = self.store.update(name, write)
            if updated is not None:
                resources_before = [
                    (r["kind"], r.get("namespace"), r["name"]) for r in (app.get("status") or {}).get("resources") or []
                ]
                resources_now = [
                    (r["kind"], r.get("namespace"), r["name"])
                    for r in (updated.get("status") or {}).get("resources") or []
                ]
                with self._lock:
                    # When the set of resources changed, the next tick compares versions of the new set.
                    self._seen_versions[name] = versions_before if resources_before == resources_now else []
        if updated is not None:
            self._auto_sync(updated)
        return self.store.get(name)

    def _live_objects(self, app: dict, targets: list[dict]) -> tuple[list[dict | None], list[dict]]:
        """Live object of each target, and live objects tracked by the app that git no longer has."""
        name = app["metadata"]["name"]
        live = [self.cluster.get(t["kind"], t["metadata"].get("namespace"), t["metadata"]["name"]) for t in targets]
        target_keys = {(t["kind"], t["metadata"].get("namespace"), t["metadata"]["name"]) for t in targets}
        kinds = _known_kinds(app, targets)
        extras = []
        for kind in sorted(kinds):
            for obj in self.cluster.list(kind):
                key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
                if key not in target_keys and tracked_by(obj) == name:
                    extras.append(obj)
        return live, extras

    def _compare(self, app: dict, *, force_resolve: bool) -> dict:
        spec = app["spec"]
        source = spec.get("source") or {}
        destination = spec.get("destination") or {}
        status: dict[str, Any] = {"reconciledAt": now_rfc3339(), "controllerNamespace": self.store.namespace}
        compared_to = {"source": copy.deepcopy(source), "destination": copy.deepcopy(destination)}
        project = self.projects.get(spec.get("project"), missing_fault=self._faults().missing_project)
        if project is None:
            status["conditions"] = [
                {
                    "type": "InvalidSpecError",
                    "lastTransitionTime": now_rfc3339(),
                    "message": f"Application referencing project {spec.get('project')} which does not exist",
                }
            ]
            status["sync"] = {"status": "Unknown", "comparedTo": compared_to}
            return status
        try:
            if force_resolve:
                self.repo.refresh(source["repoURL"])
            revision = self.repo.resolve(source["repoURL"], source.get("targetRevision") or "HEAD")
            targets = self.repo.manifests(source["repoURL"], revision, source.get("path", ""))
        except RepoError as exc:
            status["conditions"] = [
                {
                    "type": "ComparisonError",
                    "lastTransitionTime": now_rfc3339(),
                    "message": f"Failed to load target state: {exc}",
                }
            ]
            status["sync"] = {"status": "Unknown", "comparedTo": compared_to}
            return status
        targets = sorted(
            (with_namespace(t, destination.get("namespace", "")) for t in targets),
            key=lambda t: (group_of(t), t["kind"], t["metadata"].get("namespace", ""), t["metadata"]["name"]),
        )
        live, extras = self._live_objects(app, targets)
        managed = [
            ManagedResource(group_of(t), t["kind"], t["metadata"].get("namespace", ""), t["metadata"]["name"], t, lv)
            for t, lv in zip(targets, live, strict=True)
        ]
        managed += [
            ManagedResource(group_of(e), e["kind"], e["metadata"].get("namespace", ""), e["metadata"]["name"], None, e)
            for e in extras
        ]
        app_health, healths = application_health(managed)
        resources = []
        for resource, health in zip(managed, healths, strict=True):
            obj = resource.target or resource.live
            entry: dict[str, Any] = {
                "group": resource.group,
                "version": version_of(obj),
                "kind": resource.kind,
                "namespace": resource.namespace,
                "name": resource.name,
                "status": "Synced"
                if resource.target is not None and in_sync(resource.target, resource.live)
                else "OutOfSync",
            }
            if resource.target is None:
                entry["requiresPruning"] = True
            if health is not None:
                entry["health"] = health.as_json()
            resources.append(entry)
        synced = all(r["status"] == "Synced" for r in resources)
        status.update(
            sync={"status": "Synced" if synced else "OutOfSync", "revision": revision, "comparedTo": compared_to},
            resources=resources,
            health=app_health.as_json() if managed else {"status": HEALTHY},
            sourceType=self.repo.source_type(source["repoURL"], revision, source.get("path", "")),
            summary={
                "images": sorted(
                    {
                        c["image"]
                        for t in targets
                        if t["kind"] == "Deployment"
                        for c in t["spec"]["template"]["spec"].get("containers", [])
                    }
                )
            },
        )
        return status

    # ---- automated sync ------------------------------------------------------------------------

    def _auto_sync(self, app: dict) -> None:
        """appcontroller.go autoSync, as docs/user-guide/auto_sync.md describes it."""
        automated = _automated(app)
        status = app.get("status") or {}
        sync = status.get("sync") or {}
        if automated is None or app.get("operation") or sync.get("status") != "OutOfSync":
            return
        revision = sync.get("revision")
        project = self.projects.get(app["spec"].get("project"), missing_fault=self._faults().missing_project)
        if project is None or not revision:
            return
        windows = [DENY_ALL_WINDOW] if self._faults().sync_window == "deny" else []
        if not Projects.can_sync(project, app, manual=False, extra_windows=windows):
            return
        if not status.get("resources") and not automated.get("allowEmpty"):
            return
        last = status.get("operationState") or {}
        last_sync = (last.get("operation") or {}).get("sync") or {}
        # Once per revision: a failed attempt is not retried, a succeeded one only by self-heal.
        if (
            last_sync.get("revision") == revision
            and last_sync.get("source") == app["spec"].get("source")
            and (last.get("phase") != "Succeeded" or not automated.get("selfHeal"))
        ):
            return
        operation = {
            "sync": {
                "revision": revision,
                "prune": bool(automated.get("prune")),
                "source": copy.deepcopy(app["spec"]["source"]),
                **(
                    {"syncOptions": list(app["spec"]["syncPolicy"]["syncOptions"])}
                    if (app["spec"].get("syncPolicy") or {}).get("syncOptions")
                    else {}
                ),
            },
            "initiatedBy": {"automated": True},
        }

        def set_operation(stored: dict) -> None:
            if not stored.get("operation"):
                stored["operation"] = operation
                stored.setdefault("status", {}).pop("operationState", None)

        self.store.update(app["metadata"]["name"], set_operation)

    # ---- operation -----------------------------------------------------------------------------

    def _run_operation(self, name: str) -> None:
        app = self.store.get(name)
        if app is None or not app.get("operation"):
            return
        operation = copy.deepcopy(app["operation"])
        started = now_rfc3339()

        def running(stored: dict) -> None:
            stored.setdefault("status", {})["operationState"] = {
                "operation": copy.deepcopy(operation),
                "phase": "Running",
                "message": "one or more tasks are running",
                "startedAt": started,
            }

        self.store.update(name, running)
        try:
            phase, message, revision, results = self._sync(app, operation)
        except Exception as exc:  # the operation must end, as the controller's recover() does
            phase, message, revision, results = "Error", f"simulator error: {exc!r}", None, []
        # Timestamps have whole seconds. A sync here takes milliseconds, where a real one takes seconds
        # (dry run, then apply): finishing in the second of the last comparison would make that
        # comparison look newer than the operation to a client reading reconciledAt >= finishedAt.
        last_compared = ((self.store.get(name) or {}).get("status") or {}).get("reconciledAt", "")
        while now_rfc3339() <= last_compared:
            time.sleep(0.05)
        finished = now_rfc3339()
        source = (operation.get("sync") or {}).get("source") or app["spec"].get("source")

        def finish(stored: dict) -> None:
            status = stored.setdefault("status", {})
            state = {
                "operation": copy.deepcopy(operation),
                "phase": phase,
                "message": message,
                "startedAt": started,
                "finishedAt": finished,
            }
            sync_result: dict[str, Any] = {"resources": results, "source": copy.deepcopy(source)}
            if revision:
                sync_result["revision"] = revision
            state["syncResult"] = sync_result
            status["operationState"] = state
            stored.pop("operation", None)
            if phase == "Succeeded" and not operation["sync"].get("dryRun"):
                history = status.setdefault("history", [])
                history.append(
                    {
                        "id": (history[-1]["id"] + 1) if history else 0,
                        "revision": revision,
                        "deployStartedAt": started,
                        "deployedAt": finished,
                        "source": copy.deepcopy(source),
                        "initiatedBy": copy.deepcopy(operation.get("initiatedBy") or {}),
                    }
                )
                limit = stored["spec"].get("revisionHistoryLimit")
                limit = DEFAULT_HISTORY_LIMIT if limit is None else int(limit)
                if len(history) > limit:
                    del history[: len(history) - limit]

        # The comparison after an operation re-resolves the target revision (a fresh ls-remote).
        with self._lock:
            self._post_operation.add(name)
        self.schedule(name, self.reconcile_lag + self._faults().stale_reconcile_seconds, force_resolve=True)
        self.store.update(name, finish)

    def _sync(self, app: dict, operation: dict) -> tuple[str, str, str | None, list[dict]]:
        sync = operation["sync"]
        spec = app["spec"]
        source = sync.get("source") or spec["source"]
        destination = spec.get("destination") or {}
        namespace = destination.get("namespace", "")
        project_name = spec.get("project") or "default"
        project = self.projects.get(project_name, missing_fault=self._faults().missing_project)
        if project is None:
            return "Error", f"Application referencing project {project_name} which does not exist", None, []
        try:
            revision = self.repo.resolve(
                source["repoURL"], sync.get("revision") or source.get("targetRevision") or "HEAD", use_cache=False
            )
            targets = self.repo.manifests(source["repoURL"], revision, source.get("path", ""))
        except RepoError as exc:
            return "Error", f"ComparisonError: {exc}", None, []
        options = _sync_options(sync.get("syncOptions") or (spec.get("syncPolicy") or {}).get("syncOptions"))
        name = app["metadata"]["name"]
        targets = sorted((with_namespace(t, namespace) for t in targets), key=sync_order)

        def result(obj: dict, status: str, message: str) -> dict:
            return {
                "group": group_of(obj),
                "version": version_of(obj),
                "kind": obj["kind"],
                "namespace": obj["metadata"].get("namespace", ""),
                "name": obj["metadata"]["name"],
                "status": status,
                "message": message,
                "syncPhase": "Sync",
                **(
                    {"images": [c["image"] for c in obj["spec"]["template"]["spec"].get("containers", [])]}
                    if obj["kind"] == "Deployment"
                    else {}
                ),
            }

        # Every task is checked before anything is applied (sync_context.go getSyncTasks: "not valid").
        invalid = []
        for obj in targets:
            namespaced = is_namespaced(obj["kind"])
            if not Projects.is_kind_permitted(project, group_of(obj), obj["kind"], namespaced):
                invalid.append(
                    result(
                        obj,
                        "SyncFailed",
                        f"resource {group_of(obj)}:{obj['kind']} is not permitted in project {project_name}.",
                    )
                )
            elif namespaced and not Projects.is_destination_permitted(
                project, destination.get("server", ""), obj["metadata"]["namespace"]
            ):
                invalid.append(
                    result(
                        obj,
                        "SyncFailed",
                        f"namespace {obj['metadata']['namespace']} is not permitted in project '{project_name}'",
                    )
                )
        if invalid:
            messages = sorted({r["message"] for r in invalid})
            return (
                "Failed",
                f"one or more synchronization tasks are not valid: {'; '.join(messages)}",
                revision,
                invalid,
            )

        results = []
        if (
            options.get("CreateNamespace") == "true"
            and namespace
            and self.cluster.get("Namespace", None, namespace) is None
        ):
            ns_object = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            self.cluster.apply(ns_object)
            results.append(result(ns_object, "Synced", f"namespace/{namespace} created"))
        faults = self._faults()
        for obj in targets:
            obj_namespace = obj["metadata"].get("namespace")
            annotations = obj["metadata"].setdefault("annotations", {})
            annotations[TRACKING_ANNOTATION] = tracking_id(name, obj, obj_namespace or "")
            if obj["kind"] == "Deployment" and faults.sync_error:
                results.append(result(obj, "SyncFailed", faults.sync_error))
                continue
            previous = self.cluster.get(obj["kind"], obj_namespace, obj["metadata"]["name"])
            annotations["kubectl.kubernetes.io/last-applied-configuration"] = json.dumps(
                {k: v for k, v in obj.items() if k != "status"}, sort_keys=True, separators=(",", ":")
            )
            try:
                self.cluster.apply(obj)
            except Exception as exc:  # any API error fails this resource, as kubectl apply would
                results.append(result(obj, "SyncFailed", getattr(exc, "message", None) or str(exc)))
                continue
            verb = "created" if previous is None else ("unchanged" if in_sync(obj, previous) else "configured")
            results.append(result(obj, "Synced", f"{_result_name(obj)} {verb}"))

        target_keys = {(t["kind"], t["metadata"].get("namespace"), t["metadata"]["name"]) for t in targets}
        for kind in sorted(_known_kinds(app, targets)):
            for live in self.cluster.list(kind):
                key = (live["kind"], live["metadata"].get("namespace"), live["metadata"]["name"])
                if key in target_keys or tracked_by(live) != name:
                    continue
                if sync.get("prune"):
                    self.cluster.delete(live["kind"], live["metadata"].get("namespace"), live["metadata"]["name"])
                    results.append(result(live, "Pruned", "pruned"))
                else:
                    results.append(result(live, "PruneSkipped", "ignored (requires pruning)"))
        failed = [r for r in results if r["status"] == "SyncFailed"]
        if failed:
            return (
                "Failed",
                "one or more objects failed to apply, reason: " + ",".join(r["message"] for r in failed),
                revision,
                results,
            )
        return "Succeeded", "successfully synced (all tasks run)", revision, results

    # ---- deletion ------------------------------------------------------------------------------

    def _finalize(self, app: dict) -> None:
        finalizers = app["metadata"].get("finalizers") or []
        ours = [f for f in finalizers if f in RESOURCES_FINALIZERS]
        if not ours:
            return
        name = app["metadata"]["name"]
        remaining = []
        for kind in sorted(_known_kinds(app)):
            for live in self.cluster.list(kind):
                if tracked_by(live) == name:
                    remaining.append(live)
        for live in remaining:
            self.cluster.delete(live["kind"], live["metadata"].get("namespace"), live["metadata"]["name"])
        background = "resources-finalizer.argocd.argoproj.io/background" in ours
        still_there = [
            o
            for o in remaining
            if self.cluster.get(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) is not None
        ]
        if still_there and not background:
            return  # foreground: the Application stays until its resources are gone

        def remove_finalizers(stored: dict) -> None:
            stored["metadata"]["finalizers"] = [
                f for f in stored["metadata"].get("finalizers") or [] if f not in RESOURCES_FINALIZERS
            ]

        self.store.update(name, remove_finalizers)
        with self._lock:
            self._due.pop(name, None)

    def _record_condition(self, name: str, kind: str, message: str) -> None:
        def add(stored: dict) -> None:
            stored.setdefault("status", {})["conditions"] = [
                {"type": kind, "message": message, "lastTransitionTime": now_rfc3339()}
            ]

        self.store.update(name, add)
