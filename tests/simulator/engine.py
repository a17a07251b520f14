"""The state machine behind the simulated Argo CD and Kubernetes APIs.

A sync runs the way Argo CD's controller runs it: the API call only records the requested
operation; a background worker fetches the revision, renders it with real ``kubectl kustomize``,
applies every Deployment (+ its Service) through a ``LocalRuntime``, prunes what disappeared, and
records the result in ``status.operationState`` and ``status.history``. Health is computed on read
from the runtime, so a workload that dies turns the app Degraded without any sync.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from control_api.adapters.local_runtime.base import LocalRuntime, WorkloadStatus
from control_api.adapters.local_runtime.gitsource import GitSource, SourceError
from control_api.adapters.local_runtime.manifests import object_namespace, pair_workloads

HEALTH_ORDER = ["Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown"]
HISTORY_LIMIT = 10


class SimError(Exception):
    """An API error; ``status`` is the HTTP status Argo CD's gateway would answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Faults:
    sync_error: str | None = None  # every sync operation fails with this message
    degraded: str | None = None  # Deployments report Degraded health with this message
    no_ip: bool = False  # LoadBalancer Services never get an ingress entry
    hostname: bool = False  # ingress carries a hostname instead of an IP (like AWS ELBs)
    unauthorized: bool = False  # every API request answers 401
    flaky_5xx: bool = False  # every other API request answers 503

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_key(obj: dict, default_namespace: str) -> tuple[str, str, str]:
    return (obj["kind"], object_namespace(obj, default_namespace), obj["metadata"]["name"])


@dataclass
class LiveObject:
    manifest: dict  # as rendered, namespace filled in
    app: str
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=now)
    generation: int = 1


@dataclass
class AppRecord:
    metadata: dict
    spec: dict
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=now)
    resource_version: int = 1
    operation: dict | None = None  # requested and not finished, like Application.operation
    operation_state: dict | None = None
    history: list[dict] = field(default_factory=list)
    sync: dict = field(default_factory=lambda: {"status": "Unknown"})
    conditions: list[dict] = field(default_factory=list)
    managed: list[tuple[str, str, str]] = field(default_factory=list)  # keys of live objects
    applying: set[str] = field(default_factory=set)  # Deployments whose rollout is under way
    worker: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def default_namespace(self) -> str:
        return (self.spec.get("destination") or {}).get("namespace") or "default"


class ArgoCDSimulator:
    def __init__(
        self,
        runtime: LocalRuntime,
        work_dir: Path,
        *,
        kustomize_cmd: list[str] | None = None,
        argocd_token: str = "sim-argocd-token",
        username: str = "admin",
        password: str = "sim-password",
        kubernetes_token: str = "sim-kubernetes-token",
        argocd_namespace: str = "argocd",
        ready_timeout: float = 180.0,
    ) -> None:
        self.runtime = runtime
        self.source = GitSource(Path(work_dir) / "repo-cache", kustomize_cmd)
        self.argocd_tokens = {argocd_token}
        self.username, self.password = username, password
        self.kubernetes_token = kubernetes_token
        self.argocd_namespace = argocd_namespace
        self.ready_timeout = ready_timeout
        self.faults = Faults()
        self.apps: dict[str, AppRecord] = {}
        self.objects: dict[tuple[str, str, str], LiveObject] = {}
        self.events: list[dict] = []
        self._lock = threading.RLock()
        self._resource_counter = 100

    # ---- faults ------------------------------------------------------------------------------

    def set_faults(self, **switches: Any) -> None:
        unknown = set(switches) - set(Faults.names())
        if unknown:
            raise ValueError(f"unknown fault switches: {sorted(unknown)}")
        with self._lock:
            for name, value in switches.items():
                setattr(self.faults, name, value)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults = Faults()

    # ---- sessions ----------------------------------------------------------------------------

    def login(self, body: dict) -> str:
        if body.get("username") != self.username or body.get("password") != self.password:
            raise SimError(401, "Invalid username or password")
        token = f"session-{uuid.uuid4().hex}"
        with self._lock:
            self.argocd_tokens.add(token)
        return token

    def expire_sessions(self) -> None:
        """Forget every session token (the first configured token stays), like a restarted server."""
        with self._lock:
            self.argocd_tokens = {t for t in self.argocd_tokens if not t.startswith("session-")}

    # ---- applications ------------------------------------------------------------------------

    def get_application(self, name: str, refresh: bool = False) -> dict:
        app = self._app(name)
        if refresh:
            self._refresh(app)
        return self._application_json(app)

    def create_application(self, manifest: dict, upsert: bool) -> dict:
        name = manifest["metadata"]["name"]
        with self._lock:
            existing = self.apps.get(name)
            if existing is not None:
                if existing.spec == manifest["spec"]:
                    return self._application_json(existing)
                if not upsert:
                    raise SimError(
                        400, "existing application spec is different, use upsert flag to force update"
                    )
                return self._update(existing, manifest)
            app = AppRecord(metadata=self._stored_metadata(manifest), spec=copy.deepcopy(manifest["spec"]))
            self.apps[name] = app
        self._refresh(app)
        return self._application_json(app)

    def update_application(self, name: str, manifest: dict) -> dict:
        if manifest["metadata"]["name"] != name:
            raise SimError(400, "application name in the path and the body differ")
        return self._update(self._app(name), manifest)

    def delete_application(self, name: str, cascade: bool) -> None:
        with self._lock:
            app = self._app(name)
            del self.apps[name]
            keys = list(app.managed)
        if cascade:
            for key in keys:
                self._delete_object(key)

    def sync(self, name: str, body: dict) -> dict:
        app = self._app(name)
        source = copy.deepcopy(app.spec["source"])
        revision = body.get("revision") or source.get("targetRevision") or "HEAD"
        operation = {
            "sync": {"revision": revision, "prune": bool(body.get("prune", False)), "source": source},
            "initiatedBy": {"username": self.username},
        }
        self._start_operation(app, operation)
        return self._application_json(app)

    def rollback(self, name: str, body: dict) -> dict:
        app = self._app(name)
        if (app.spec.get("syncPolicy") or {}).get("automated") is not None:
            raise SimError(400, "rollback cannot be initiated when auto-sync is enabled")
        history_id = int(body.get("id", 0))
        entry = next((h for h in app.history if h["id"] == history_id), None)
        if entry is None:
            raise SimError(400, f"application {name} does not have deployment with id {history_id}")
        operation = {
            "sync": {
                "revision": entry["revision"],
                "prune": bool(body.get("prune", False)),
                "source": copy.deepcopy(entry["source"]),
            },
            "initiatedBy": {"username": self.username},
        }
        self._start_operation(app, operation)
        return self._application_json(app)

    def resource_tree(self, name: str) -> dict:
        app = self._app(name)
        nodes = []
        with self._lock:
            keys = list(app.managed)
        for key in keys:
            live = self.objects.get(key)
            if live is None:
                continue
            kind, namespace, obj_name = key
            health = self._resource_health(app, live)
            node: dict[str, Any] = {
                "group": _group(live.manifest),
                "version": _version(live.manifest),
                "kind": kind,
                "namespace": namespace,
                "name": obj_name,
                "uid": live.uid,
                "resourceVersion": str(self._resource_counter),
                "createdAt": live.created,
            }
            if health:
                node["health"] = health
            if kind == "Service":
                ingress = self._service_ingress(live)
                if ingress:
                    node["networkingInfo"] = {"ingress": ingress}
            nodes.append(node)
            if kind == "Deployment":
                nodes.extend(self._pod_nodes(live, health))
        return {"nodes": nodes, "hosts": []}

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Test helper: block until no sync operation is running."""
        with self._lock:
            workers = [a.worker for a in self.apps.values() if a.worker is not None]
        for worker in workers:
            worker.join(timeout)

    # ---- Kubernetes objects ------------------------------------------------------------------

    def kube_service(self, namespace: str, name: str) -> dict:
        live = self._live("Service", namespace, name)
        service = self._object_json(live)
        ingress = self._service_ingress(live)
        service["status"] = {"loadBalancer": {"ingress": ingress} if ingress else {}}
        return service

    def kube_deployment(self, namespace: str, name: str) -> dict:
        live = self._live("Deployment", namespace, name)
        deployment = self._object_json(live)
        deployment["status"] = self._deployment_status(live)
        return deployment

    def kube_pods(self, namespace: str, label_selector: str | None) -> list[dict]:
        wanted = _parse_selector(label_selector)
        pods = []
        for key, live in list(self.objects.items()):
            if key[0] != "Deployment" or key[1] != namespace:
                continue
            for pod in self._pods(live):
                labels = pod["metadata"].get("labels") or {}
                if all(labels.get(k) == v for k, v in wanted.items()):
                    pods.append(pod)
        return pods

    def kube_events(self, namespace: str, field_selector: str | None) -> list[dict]:
        wanted = _parse_selector(field_selector)
        with self._lock:
            events = [e for e in self.events if e["metadata"]["namespace"] == namespace]
        if self.faults.degraded:
            for key, live in list(self.objects.items()):
                if key[0] == "Deployment" and key[1] == namespace:
                    events.append(self._event(live, "Warning", "BackOff", self.faults.degraded, record=False))
        return [e for e in events if all(_dotted(e, path) == value for path, value in wanted.items())]

    # ---- operations --------------------------------------------------------------------------

    def _start_operation(self, app: AppRecord, operation: dict) -> None:
        with self._lock:
            if app.operation is not None:
                raise SimError(400, "another operation is already in progress")
            app.operation = operation
            app.operation_state = {
                "operation": copy.deepcopy(operation),
                "phase": "Running",
                "message": "one or more tasks are running",
                "startedAt": now(),
            }
            app.resource_version += 1
            app.worker = threading.Thread(target=self._run_operation, args=(app,), daemon=True)
            app.worker.start()

    def _run_operation(self, app: AppRecord) -> None:
        try:
            self._sync_operation(app)
        except Exception as exc:  # noqa: BLE001 - a simulator bug must end the operation, not hang it
            self._finish(app, "Error", f"simulator error: {exc!r}", None, [])

    def _sync_operation(self, app: AppRecord) -> None:
        operation = app.operation or {}
        sync = operation["sync"]
        started = app.operation_state["startedAt"]
        source = sync["source"]
        try:
            sha = self.source.resolve(source["repoURL"], sync["revision"])
            objects = self.source.render(source["repoURL"], sha, source.get("path", ""))
        except SourceError as exc:
            self._finish(app, "Error", f"ComparisonError: {exc}", None, [])
            return
        namespace = app.default_namespace
        results = [_resource_result(obj, namespace, "Synced", f"{obj['kind'].lower()} configured") for obj in objects]
        if self.faults.sync_error:
            failed = next((r for r in results if r["kind"] == "Deployment"), results[0] if results else None)
            if failed:
                failed.update(status="SyncFailed", message=self.faults.sync_error)
            self._finish(app, "Failed", f"one or more objects failed to apply, reason: {self.faults.sync_error}", sha, results)
            return

        wanted_keys = [object_key(obj, namespace) for obj in objects]
        with self._lock:
            for obj, key in zip(objects, wanted_keys):
                manifest = copy.deepcopy(obj)
                manifest.setdefault("metadata", {})["namespace"] = key[1]
                manifest.pop("status", None)
                previous = self.objects.get(key)
                if previous is None:
                    self.objects[key] = LiveObject(manifest=manifest, app=app.name)
                elif previous.manifest != manifest:
                    previous.manifest, previous.generation = manifest, previous.generation + 1
            stale = [key for key in app.managed if key not in wanted_keys]
            app.managed = list(dict.fromkeys(wanted_keys + ([] if sync["prune"] else stale)))

        for workload in pair_workloads(objects, namespace):
            spec = workload.spec
            app.applying.add(spec.name)
            try:
                self.runtime.apply(spec, self.ready_timeout)
                live = self.objects[("Deployment", spec.namespace, spec.name)]
                self._event(live, "Normal", "ScalingReplicaSet", f"Scaled up replica set {spec.name} to {spec.replicas}")
            except Exception as exc:  # noqa: BLE001 - any runtime failure is a failed sync of this resource
                live = self.objects.get(("Deployment", spec.namespace, spec.name))
                if live is not None:
                    self._event(live, "Warning", "Failed", str(exc))
                for result in results:
                    if result["kind"] == "Deployment" and result["name"] == spec.name:
                        result.update(status="SyncFailed", message=str(exc))
                self._finish(app, "Failed", f"one or more objects failed to apply, reason: {exc}", sha, results)
                return
            finally:
                app.applying.discard(spec.name)

        if sync["prune"]:
            for key in stale:
                self._delete_object(key)
                results.append(
                    {"kind": key[0], "namespace": key[1], "name": key[2], "status": "Pruned", "message": "pruned",
                     "group": "apps" if key[0] == "Deployment" else "", "version": "v1", "syncPhase": "Sync"}
                )
        with self._lock:
            next_id = max((h["id"] for h in app.history), default=-1) + 1
            app.history.append(
                {"id": next_id, "revision": sha, "deployedAt": now(), "deployStartedAt": started,
                 "source": copy.deepcopy(source), "initiatedBy": copy.deepcopy(operation.get("initiatedBy", {}))}
            )
            app.history = app.history[-HISTORY_LIMIT:]
        self._finish(app, "Succeeded", "successfully synced (all tasks run)", sha, results)

    def _finish(self, app: AppRecord, phase: str, message: str, sha: str | None, results: list[dict]) -> None:
        # The comparison is made before the operation is marked done, and both are published together:
        # a reader must never see a finished operation next to the pre-sync comparison.
        comparison = self._compare(app)
        with self._lock:
            state = app.operation_state or {}
            state.update(phase=phase, message=message, finishedAt=now())
            state["syncResult"] = {"resources": results, "source": copy.deepcopy(state["operation"]["sync"]["source"])}
            if sha:
                state["syncResult"]["revision"] = sha
            app.operation_state = state
            app.operation = None
            app.sync, app.conditions = comparison
            app.resource_version += 1

    def _refresh(self, app: AppRecord) -> None:
        comparison = self._compare(app)
        with self._lock:
            app.sync, app.conditions = comparison

    def _compare(self, app: AppRecord) -> tuple[dict, list[dict]]:
        """Compare the live objects with the target revision, as the controller's reconciliation does."""
        source = app.spec["source"]
        compared_to = {"source": copy.deepcopy(source), "destination": copy.deepcopy(app.spec["destination"])}
        try:
            sha = self.source.resolve(source["repoURL"], source.get("targetRevision") or "HEAD")
            desired = self.source.render(source["repoURL"], sha, source.get("path", ""))
        except SourceError as exc:
            condition = {"type": "ComparisonError", "message": str(exc), "lastTransitionTime": now()}
            return {"status": "Unknown", "comparedTo": compared_to}, [condition]
        namespace = app.default_namespace
        with self._lock:
            desired_keys = {object_key(obj, namespace) for obj in desired}
            in_sync = desired_keys == set(app.managed) and all(
                (live := self.objects.get(object_key(obj, namespace))) is not None
                and _without_status(obj, object_key(obj, namespace)[1]) == live.manifest
                for obj in desired
            )
        return {"status": "Synced" if in_sync else "OutOfSync", "revision": sha, "comparedTo": compared_to}, []

    # ---- health ------------------------------------------------------------------------------

    def _resource_health(self, app: AppRecord | None, live: LiveObject) -> dict | None:
        kind = live.manifest["kind"]
        name = live.manifest["metadata"]["name"]
        namespace = live.manifest["metadata"]["namespace"]
        if kind == "Deployment":
            if app is not None and name in app.applying:
                return {"status": "Progressing", "message": f'Waiting for rollout to finish: deployment "{name}"'}
            if self.faults.degraded:
                return {"status": "Degraded", "message": self.faults.degraded}
            status = self.runtime.get(namespace, name)
            if status is None:
                return {"status": "Missing"}
            if status.ready_replicas < status.replicas:
                return {
                    "status": "Progressing",
                    "message": f"Waiting for rollout to finish: {status.ready_replicas} of {status.replicas} updated replicas are available...",
                }
            return {"status": "Healthy"}
        if kind == "Service":
            if (live.manifest.get("spec") or {}).get("type") == "LoadBalancer" and not self._service_ingress(live):
                return {"status": "Progressing"}
            return {"status": "Healthy"}
        return None  # Argo CD has no health check for plain config objects

    def _app_health(self, app: AppRecord) -> dict:
        with self._lock:
            lives = [self.objects[key] for key in app.managed if key in self.objects]
        if not app.managed:
            return {"status": "Missing"}
        if len(lives) < len(app.managed):
            return {"status": "Missing"}
        statuses = [h["status"] for live in lives if (h := self._resource_health(app, live))]
        worst = max(statuses, key=HEALTH_ORDER.index, default="Healthy")
        return {"status": worst}

    def _workload_for_service(self, live: LiveObject) -> WorkloadStatus | None:
        selector = (live.manifest.get("spec") or {}).get("selector") or {}
        namespace = live.manifest["metadata"]["namespace"]
        for key, candidate in list(self.objects.items()):
            if key[0] != "Deployment" or key[1] != namespace:
                continue
            labels = candidate.manifest["spec"]["template"]["metadata"].get("labels") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                return self.runtime.get(namespace, key[2])
        return None

    def _service_ingress(self, live: LiveObject) -> list[dict]:
        if (live.manifest.get("spec") or {}).get("type") != "LoadBalancer" or self.faults.no_ip:
            return []
        workload = self._workload_for_service(live)
        if workload is None:
            return []
        if self.faults.hostname:
            # Real AWS load balancers publish only a hostname. No DNS name resolves to 127.0.0.N here
            # (and editing /etc/hosts from a test is not ours to do), so the address is written in
            # the hostname field: clients must take the hostname branch and the URL still answers.
            return [{"hostname": workload.address}]
        return [{"ip": workload.address, "ipMode": "VIP"}]

    # ---- JSON views --------------------------------------------------------------------------

    def _application_json(self, app: AppRecord) -> dict:
        with self._lock:
            metadata = copy.deepcopy(app.metadata)
            metadata.update(
                uid=app.uid,
                resourceVersion=str(app.resource_version),
                creationTimestamp=app.created,
                generation=app.resource_version,
            )
            keys = list(app.managed)
            status: dict[str, Any] = {
                "sync": copy.deepcopy(app.sync),
                "health": self._app_health(app),
                "history": copy.deepcopy(app.history),
                "reconciledAt": now(),
                "sourceType": "Kustomize",
                "controllerNamespace": self.argocd_namespace,
                "resources": [],
            }
            if app.operation_state:
                status["operationState"] = copy.deepcopy(app.operation_state)
            if app.conditions:
                status["conditions"] = copy.deepcopy(app.conditions)
            for key in keys:
                live = self.objects.get(key)
                entry = {"kind": key[0], "namespace": key[1], "name": key[2], "status": app.sync.get("status", "Unknown")}
                if live is not None:
                    entry.update(group=_group(live.manifest), version=_version(live.manifest))
                    health = self._resource_health(app, live)
                    if health:
                        entry["health"] = health
                status["resources"].append(entry)
            application = {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": metadata,
                "spec": copy.deepcopy(app.spec),
                "status": status,
            }
            if app.operation:
                application["operation"] = copy.deepcopy(app.operation)
            return application

    def _object_json(self, live: LiveObject) -> dict:
        obj = copy.deepcopy(live.manifest)
        obj["metadata"].update(
            uid=live.uid, creationTimestamp=live.created, resourceVersion=str(self._resource_counter),
            generation=live.generation,
        )
        obj["metadata"].setdefault("labels", {})["app.kubernetes.io/instance"] = live.app
        return obj

    def _deployment_status(self, live: LiveObject) -> dict:
        spec_replicas = live.manifest["spec"].get("replicas", 1)
        name, namespace = live.manifest["metadata"]["name"], live.manifest["metadata"]["namespace"]
        workload = self.runtime.get(namespace, name)
        ready = 0 if workload is None or self.faults.degraded else workload.ready_replicas
        progressing = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                       "message": f'ReplicaSet "{name}" has successfully progressed.', "lastUpdateTime": now(),
                       "lastTransitionTime": live.created}
        if self.faults.degraded:
            progressing.update(status="False", reason="ProgressDeadlineExceeded", message=self.faults.degraded)
        status = {
            "observedGeneration": live.generation,
            "replicas": spec_replicas,
            "updatedReplicas": spec_replicas if workload else 0,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                {"type": "Available", "status": "True" if ready >= spec_replicas else "False",
                 "reason": "MinimumReplicasAvailable" if ready >= spec_replicas else "MinimumReplicasUnavailable",
                 "message": "Deployment has minimum availability." if ready >= spec_replicas
                 else "Deployment does not have minimum availability.",
                 "lastUpdateTime": now(), "lastTransitionTime": live.created},
                progressing,
            ],
        }
        if ready < spec_replicas:
            status["unavailableReplicas"] = spec_replicas - ready
        return status

    def _pods(self, live: LiveObject) -> list[dict]:
        name, namespace = live.manifest["metadata"]["name"], live.manifest["metadata"]["namespace"]
        workload = self.runtime.get(namespace, name)
        if workload is None:
            return []
        template = live.manifest["spec"]["template"]
        pod_hash = hashlib.sha256(repr(template).encode()).hexdigest()[:10]
        ready = not self.faults.degraded
        pods = []
        for index in range(workload.replicas):
            container = template["spec"]["containers"][0]
            container_status: dict[str, Any] = {
                "name": container["name"], "image": container["image"], "imageID": workload.image,
                "ready": ready, "restartCount": 0 if ready else 5, "started": ready,
                "state": {"running": {"startedAt": live.created}} if ready
                else {"waiting": {"reason": "CrashLoopBackOff", "message": self.faults.degraded}},
            }
            pods.append({
                "metadata": {
                    "name": f"{name}-{pod_hash}-{index}",
                    "namespace": namespace,
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{live.uid}/{index}")),
                    "labels": {**(template["metadata"].get("labels") or {}), "pod-template-hash": pod_hash},
                    "creationTimestamp": live.created,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-{pod_hash}",
                                         "uid": str(uuid.uuid5(uuid.NAMESPACE_OID, live.uid)), "controller": True}],
                },
                "spec": {"containers": [{"name": c["name"], "image": c["image"]} for c in template["spec"]["containers"]]},
                "status": {
                    "phase": "Running",
                    "podIP": workload.address,
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    "containerStatuses": [container_status],
                },
            })
        return pods

    def _pod_nodes(self, live: LiveObject, deployment_health: dict | None) -> list[dict]:
        nodes = []
        for pod in self._pods(live):
            nodes.append({
                "group": "", "version": "v1", "kind": "Pod",
                "namespace": pod["metadata"]["namespace"], "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"],
                "parentRefs": [{"group": "apps", "version": "v1", "kind": "ReplicaSet",
                                "namespace": pod["metadata"]["namespace"],
                                "name": pod["metadata"]["ownerReferences"][0]["name"]}],
                "images": [c["image"] for c in pod["spec"]["containers"]],
                "health": deployment_health or {"status": "Healthy"},
                "createdAt": live.created,
            })
        return nodes

    def _event(self, live: LiveObject, event_type: str, reason: str, message: str, *, record: bool = True) -> dict:
        metadata = live.manifest["metadata"]
        event = {
            "metadata": {"name": f"{metadata['name']}.{uuid.uuid4().hex[:16]}", "namespace": metadata["namespace"]},
            "involvedObject": {"apiVersion": live.manifest.get("apiVersion"), "kind": live.manifest["kind"],
                               "name": metadata["name"], "namespace": metadata["namespace"], "uid": live.uid},
            "type": event_type,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": now(),
            "lastTimestamp": now(),
            "source": {"component": "deployment-controller"},
        }
        if record:
            with self._lock:
                self.events.append(event)
        return event

    # ---- helpers -----------------------------------------------------------------------------

    def _app(self, name: str) -> AppRecord:
        with self._lock:
            app = self.apps.get(name)
        if app is None:
            raise SimError(404, f"applications.argoproj.io \"{name}\" not found")
        return app

    def _live(self, kind: str, namespace: str, name: str) -> LiveObject:
        live = self.objects.get((kind, namespace, name))
        if live is None:
            raise SimError(404, f'{kind.lower()}s "{name}" not found')
        return live

    def _update(self, app: AppRecord, manifest: dict) -> dict:
        with self._lock:
            app.spec = copy.deepcopy(manifest["spec"])
            app.metadata = self._stored_metadata(manifest)
            app.resource_version += 1
        self._refresh(app)
        return self._application_json(app)

    def _stored_metadata(self, manifest: dict) -> dict:
        metadata = manifest.get("metadata") or {}
        stored = {"name": metadata["name"], "namespace": metadata.get("namespace") or self.argocd_namespace}
        for field_name in ("labels", "annotations", "finalizers"):
            if metadata.get(field_name):
                stored[field_name] = copy.deepcopy(metadata[field_name])
        return stored

    def _delete_object(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            live = self.objects.pop(key, None)
        if live is not None and key[0] == "Deployment":
            self.runtime.delete(key[1], key[2])


def _group(manifest: dict) -> str:
    api_version = manifest.get("apiVersion", "v1")
    return api_version.split("/")[0] if "/" in api_version else ""


def _version(manifest: dict) -> str:
    return manifest.get("apiVersion", "v1").split("/")[-1]


def _resource_result(obj: dict, default_namespace: str, status: str, message: str) -> dict:
    return {
        "group": _group(obj), "version": _version(obj), "kind": obj["kind"],
        "namespace": object_namespace(obj, default_namespace), "name": obj["metadata"]["name"],
        "status": status, "message": message, "syncPhase": "Sync", "hookPhase": "Succeeded" if status == "Synced" else "Failed",
    }


def _without_status(obj: dict, namespace: str) -> dict:
    manifest = copy.deepcopy(obj)
    manifest.setdefault("metadata", {})["namespace"] = namespace
    manifest.pop("status", None)
    return manifest


def _parse_selector(selector: str | None) -> dict[str, str]:
    wanted = {}
    for term in (selector or "").split(","):
        if "=" in term:
            key, value = term.split("=", 1)
            wanted[key.strip().rstrip("=")] = value.strip().lstrip("=")
    return wanted


def _dotted(obj: dict, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj
