"""Cluster: the API server's rules over the store, the controllers, the kubelet, kube-proxy and the
load-balancer controller, each loop in its own thread as on a real cluster (an apply returns before
any pod exists).

API server rules modelled: schema validation (kubernetes-validate, 422 Invalid), a namespaced object
needs its Namespace (404 ``namespaces "x" not found``; ``default`` always exists), no new content in
a terminating Namespace (403 Forbidden), a Deployment's selector must match its template labels and
is immutable, deletion cascades to dependents (ownerReferences), Pods are deleted gracefully (the
kubelet stops their containers first), a Namespace's deletion deletes what is in it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import ipaddress
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Self

import kubernetes_validate

from tests.simulator.contracts import ContractChecker, ContractViolation, _kubernetes_validator
from tests.simulator.kube.controllers import Controllers, is_pod_ready
from tests.simulator.kube.dns import HostsFile
from tests.simulator.kube.events import NODE_NAME, EventRecorder
from tests.simulator.kube.faults import KubeFaults
from tests.simulator.kube.jobs import JobController, default_job, validate_job
from tests.simulator.kube.kubelet import Kubelet, resolve_port
from tests.simulator.kube.proxy import KubeProxy, LoadBalancerPool
from tests.simulator.kube.store import (
    KubeError,
    Store,
    is_namespaced,
    plural_resource,
    random_suffix,
    selector_matches,
)

log = logging.getLogger(__name__)

LB_HOSTNAME_DOMAIN = "elb.sim.test"
CONTROLLER_ANNOTATION_PREFIXES = ("deployment.kubernetes.io/", "autoscaling.alpha.kubernetes.io/")


def _validate(obj: dict) -> None:
    """The API server's schema check: unknown kinds (custom resources) pass, known kinds must match."""
    import jsonschema

    kind, api_version = obj.get("kind", ""), obj.get("apiVersion", "")
    if not kind or not api_version:
        raise KubeError(400, "BadRequest", "Object 'Kind' is missing" if not kind else "Object 'apiVersion' is missing")
    try:
        validator = _kubernetes_validator(kind, api_version)
    except kubernetes_validate.SchemaNotFoundError:
        return
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "<root>"
        name = (obj.get("metadata") or {}).get("name", "")
        raise KubeError(
            422,
            "Invalid",
            f'{kind}.{api_version.split("/")[0] if "/" in api_version else ""} "{name}" '
            f"is invalid: {where}: {error.message}".replace('. "', ' "'),
        )


def node_object(host_ip: str) -> dict:
    """The one node every pod is scheduled to."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"}},
        "spec": {},
    }


def node_status(host_ip: str) -> dict:
    capacity = {"cpu": "2", "memory": "8Gi", "pods": "110"}
    return {
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": host_ip}, {"type": "Hostname", "address": NODE_NAME}],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
        ],
        "nodeInfo": {
            "kubeletVersion": "v1.32.0",
            "containerRuntimeVersion": "docker://20.10",
            "architecture": "amd64",
            "operatingSystem": "linux",
            "osImage": "sim",
            "kernelVersion": "",
            "kubeProxyVersion": "v1.32.0",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


class _LoadBalancer:
    def __init__(self, address: str, ports: list[int], hostname: str | None) -> None:
        self.address = address
        self.ports = ports
        self.hostname = hostname
        self.host_line_added = False
        self.created_at = time.time()


class Cluster:
    def __init__(
        self,
        kubelet: Kubelet,
        *,
        checker: ContractChecker | None = None,
        controller_period: float = 0.2,
        progress_deadline_scale: float = 1.0,
    ) -> None:
        """``progress_deadline_scale`` multiplies every Deployment's progressDeadlineSeconds (tests use
        e.g. 0.01 so that 600 s pass in 6 s); 1.0 is Kubernetes' timing."""
        self.id = str(uuid.uuid4())
        self.checker = checker
        self.controller_period = controller_period
        self.store = Store()
        self.events_recorder = EventRecorder(self.store)
        self._faults = KubeFaults()
        self._faults_lock = threading.Lock()
        self.kubelet = kubelet
        kubelet.bind(self.store, self.events_recorder, lambda: self._faults, self.id)
        self.controllers = Controllers(
            self.store,
            self.events_recorder,
            lambda: self._faults,
            progress_deadline_scale=progress_deadline_scale,
            delete=self.delete,
        )
        self.jobs = JobController(self.store, self.events_recorder, delete=self.delete)
        self.proxy = KubeProxy()
        self.pool = LoadBalancerPool(self.id)
        self.hosts = HostsFile(self.id)
        self._load_balancers: dict[str, _LoadBalancer] = {}
        self._service_first_seen: dict[str, float] = {}
        self.errors: list[str] = []  # exceptions raised inside the loops: a test asserts there are none
        self._stop = threading.Event()
        self._passes = {"controllers": 0, "kubelet": 0}
        self._pass_condition = threading.Condition()
        self.store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
        self.store.put(node_object(kubelet.host_ip))
        self.store.write_status("Node", None, NODE_NAME, node_status(kubelet.host_ip))
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=("controllers", self._controllers_pass),
                daemon=True,
                name="sim-kube-controllers",
            ),
            threading.Thread(
                target=self._loop, args=("kubelet", self.kubelet.sync_once), daemon=True, name="sim-kube-kubelet"
            ),
        ]
        for thread in self._threads:
            thread.start()

    # ---- faults ----

    @property
    def faults(self) -> KubeFaults:
        return self._faults

    def set_faults(self, **switches: object) -> KubeFaults:
        with self._faults_lock:
            self._faults = self._faults.updated(**switches)
            return self._faults

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults = KubeFaults()

    # ---- loops ----

    def _loop(self, name: str, step) -> None:
        while not self._stop.is_set():
            try:
                step()
            except Exception:  # a loop must survive a bug in one pass; the test sees it in .errors
                self.errors.append(f"{name}: {traceback.format_exc()}")
                log.exception("simulated %s pass failed", name)
            with self._pass_condition:
                self._passes[name] += 1
                self._pass_condition.notify_all()
            self._stop.wait(self.controller_period if name == "controllers" else self.controller_period / 2)

    def _controllers_pass(self) -> None:
        self.controllers.run_once()
        self.jobs.run_once()
        self._sync_load_balancers()

    def wait_idle(self, timeout: float) -> None:
        """Return once a full pass of the controllers and of the kubelet changed nothing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            version = self.store.resource_version
            with self._pass_condition:
                start = dict(self._passes)
                while any(self._passes[name] < start[name] + 2 for name in start):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"cluster not idle after {timeout}s")
                    self._pass_condition.wait(remaining)
            if self.store.resource_version == version:
                return
        raise TimeoutError(f"cluster not idle after {timeout}s")

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self.proxy.close()
        for balancer in list(self._load_balancers.values()):
            self.pool.release(balancer.address)
        self._load_balancers.clear()
        self.hosts.remove_all()
        self.kubelet.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- API ----

    def check_out(self, where: str, obj: dict) -> dict:
        if self.checker is not None:
            self.checker.kubernetes(where, obj)
        return obj

    def apply(self, obj: dict, *, manager: str = "argocd-controller") -> dict:
        obj = copy.deepcopy(obj)
        _validate(obj)
        kind = obj["kind"]
        metadata = obj.setdefault("metadata", {})
        name = metadata.get("name")
        if not name:
            raise KubeError(422, "Invalid", f'{kind} "" is invalid: metadata.name: Required value: name is required')
        if is_namespaced(kind):
            namespace = metadata.setdefault("namespace", "default")
            namespace_obj = self.store.get("Namespace", None, namespace)
            if namespace_obj is None:
                raise KubeError(404, "NotFound", f'namespaces "{namespace}" not found')
            if "deletionTimestamp" in namespace_obj["metadata"] and self.store.get(kind, namespace, name) is None:
                raise KubeError(
                    403,
                    "Forbidden",
                    f'{plural_resource(kind)} "{name}" is forbidden: unable to create new '
                    f"content in namespace {namespace} because it is being terminated",
                )
        else:
            metadata.pop("namespace", None)
        if kind == "Deployment":
            self._validate_deployment(obj)
        if kind == "Job":
            validate_job(obj)
        obj.pop("status", None)
        managed = metadata.setdefault("managedFields", [])
        if not any(entry.get("manager") == manager for entry in managed):
            managed.append({"manager": manager, "operation": "Apply", "apiVersion": obj["apiVersion"]})
        with self.store.lock:
            previous = self.store.get_ref(kind, metadata.get("namespace"), name)
            if previous is not None:
                merged_managers = copy.deepcopy(previous["metadata"].get("managedFields") or [])
                for entry in managed:
                    if not any(existing.get("manager") == entry["manager"] for existing in merged_managers):
                        merged_managers.append(entry)
                metadata["managedFields"] = merged_managers
                # An apply that leaves out spec.replicas leaves it to its owner (an HPA): kept as is.
                if (
                    kind in ("Deployment", "ReplicaSet", "StatefulSet")
                    and "replicas" not in (obj.get("spec") or {})
                    and "replicas" in (previous.get("spec") or {})
                ):
                    obj.setdefault("spec", {})["replicas"] = previous["spec"]["replicas"]
                # Server-side apply keeps fields other managers own; here: the controllers' annotations.
                for key, value in (previous["metadata"].get("annotations") or {}).items():
                    if key.startswith(CONTROLLER_ANNOTATION_PREFIXES):
                        metadata.setdefault("annotations", {}).setdefault(key, value)
            if kind == "Job" and previous is not None:
                default_job(obj, previous["metadata"]["uid"])  # the generated selector and labels stay
            stored = self.store.put(obj)
            if kind == "Job" and previous is None:
                # The job strategy generates the selector from the uid the store has just assigned.
                default_job(stored, stored["metadata"]["uid"])
            if kind == "Service" and "status" not in stored:
                self.store.write_status(kind, stored["metadata"]["namespace"], name, {"loadBalancer": {}})
                stored = self.store.get_ref(kind, stored["metadata"]["namespace"], name)
            return self.check_out(f"apply {kind}", copy.deepcopy(stored))

    def create(self, obj: dict, *, manager: str = "kubectl-client") -> dict:
        """POST: a new object (409 AlreadyExists when the name is taken). The request body is recorded
        in the checker first, so a schema violation shows there as well as in the 422 answer."""
        if self.checker is not None:
            # Recorded; the client gets the API server's 422 from _validate below.
            with contextlib.suppress(ContractViolation):
                self.checker.kubernetes(f"create {obj.get('kind', '?')}", obj)
        obj = copy.deepcopy(obj)
        metadata = obj.get("metadata") or {}
        for server_field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
            metadata.pop(server_field, None)
        kind = obj.get("kind", "")
        _validate(obj)  # validation comes before the name conflict, as in the API server's create
        if kind == "Job":
            validate_job(obj)
        with self.store.lock:
            name = metadata.get("name", "")
            namespace = metadata.get("namespace", "default") if is_namespaced(kind) else None
            if name and self.store.get_ref(kind, namespace, name) is not None:
                raise KubeError(409, "AlreadyExists", f'{plural_resource(kind)} "{name}" already exists')
            return self.apply(obj, manager=manager)

    def _validate_deployment(self, obj: dict) -> None:
        spec = obj.get("spec") or {}
        name = obj["metadata"]["name"]
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        selector = spec.get("selector") or {}
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            raise KubeError(
                422,
                "Invalid",
                f'Deployment.apps "{name}" is invalid: spec.selector: Invalid value: '
                f"{{}}: empty selector is invalid for deployment",
            )
        if not selector_matches(selector, template_labels):
            raise KubeError(
                422,
                "Invalid",
                f'Deployment.apps "{name}" is invalid: spec.template.metadata.labels: '
                f"Invalid value: {template_labels}: `selector` does not match template `labels`",
            )
        previous = self.store.get("Deployment", obj["metadata"].get("namespace"), name)
        if previous is not None and previous["spec"]["selector"] != selector:
            raise KubeError(
                422,
                "Invalid",
                f'Deployment.apps "{name}" is invalid: spec.selector: Invalid value: {selector}: field is immutable',
            )
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        if rolling.get("maxSurge") in (0, "0%") and rolling.get("maxUnavailable") in (0, "0%"):
            raise KubeError(
                422,
                "Invalid",
                f'Deployment.apps "{name}" is invalid: spec.strategy.rollingUpdate.maxUnavailable: '
                f"Invalid value: 0: may not be 0 when `maxSurge` is 0",
            )

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        obj = self.store.get(kind, namespace, name)
        return self.check_out(f"get {kind}", obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
        try:
            found = self.store.list(kind, namespace, label_selector)
        except KeyError as error:
            raise KubeError(400, "BadRequest", f"unable to parse requirement: {error}") from error
        return [self.check_out(f"list {kind}", obj) for obj in found]

    def delete(self, kind: str, namespace: str | None, name: str, *, propagation_policy: str | None = None) -> bool:
        """Delete with the garbage collector's propagation: ``Background`` (the object goes at once,
        its dependents after), ``Foreground`` (dependents first, the object carries the
        ``foregroundDeletion`` finalizer until they are gone), ``Orphan`` (dependents lose their
        ownerReference and stay). Without a policy the kind's default applies: ``Orphan`` for
        batch/v1 Jobs (the job strategy's DefaultGarbageCollectionPolicy keeps it for compatibility),
        ``Background`` for the other kinds."""
        if propagation_policy not in (None, "Background", "Foreground", "Orphan"):
            raise KubeError(
                400,
                "BadRequest",
                f'Unsupported value: "{propagation_policy}": supported values: "Foreground", "Background", "Orphan"',
            )
        if propagation_policy is None:
            propagation_policy = "Orphan" if kind == "Job" else "Background"
        with self.store.lock:
            obj = self.store.get_ref(kind, namespace, name)
            if obj is None:
                return False
            uid = obj["metadata"]["uid"]
            if propagation_policy == "Orphan" and kind not in ("Pod", "Namespace"):
                for dependent in self.store.owned_by(uid):

                    def orphan(item: dict, owner_uid: str = uid) -> None:
                        item["metadata"]["ownerReferences"] = [
                            ref for ref in item["metadata"].get("ownerReferences") or [] if ref.get("uid") != owner_uid
                        ]
                        if not item["metadata"]["ownerReferences"]:
                            del item["metadata"]["ownerReferences"]

                    self.store.update(
                        dependent["kind"], dependent["metadata"].get("namespace"), dependent["metadata"]["name"], orphan
                    )
                self.store.remove(kind, namespace, name)
                return True
            if propagation_policy == "Foreground" and kind == "Job":
                dependents = self.store.owned_by(uid)
                if dependents:
                    self.store.mark_deleting(kind, namespace, name)
                    finalizers = obj["metadata"].setdefault("finalizers", [])
                    if "foregroundDeletion" not in finalizers:
                        finalizers.append("foregroundDeletion")
                    for dependent in dependents:
                        self.delete(
                            dependent["kind"], dependent["metadata"].get("namespace"), dependent["metadata"]["name"]
                        )
                    return True
            if kind == "Pod":
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
                self.store.mark_deleting(kind, namespace, name, grace)
                if not obj["spec"].get("nodeName"):
                    self.store.remove(kind, namespace, name)  # never ran: nothing for a kubelet to stop
                return True
            if kind == "Namespace":
                self.store.mark_deleting(kind, None, name)
                return True
            self.store.remove(kind, namespace, name)
            for dependent in self.store.owned_by(uid):
                self.delete(dependent["kind"], dependent["metadata"].get("namespace"), dependent["metadata"]["name"])
            return True

    def events(self, namespace: str, involved_kind: str | None = None, involved_name: str | None = None) -> list[dict]:
        found = []
        for event in self.store.list("Event", namespace):
            involved = event["involvedObject"]
            if involved_kind is not None and involved.get("kind") != involved_kind:
                continue
            if involved_name is not None and involved.get("name") != involved_name:
                continue
            found.append(self.check_out("list Event", event))
        return sorted(found, key=lambda event: (event["firstTimestamp"], event["metadata"]["name"]))

    def pod_log(
        self,
        namespace: str,
        name: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        previous: bool = False,
    ) -> str:
        pod = self.store.get("Pod", namespace, name)
        if pod is None:
            raise KubeError(404, "NotFound", f'pods "{name}" not found')
        return self.kubelet.pod_log(pod, container, tail_lines, previous)

    def follow_pod_log(self, namespace: str, name: str, *, container: str | None = None) -> Iterator[str]:
        pod = self.store.get("Pod", namespace, name)
        if pod is None:
            raise KubeError(404, "NotFound", f'pods "{name}" not found')
        return self.kubelet.follow_pod_log(pod, container)

    # ---- the pods/proxy subresource ----

    # Hop-by-hop headers (RFC 7230 6.1), which net/http/httputil's ReverseProxy drops both ways.
    HOP_BY_HOP = frozenset(
        {
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        }
    )

    def proxy_pod(
        self,
        namespace: str,
        pod_id: str,
        path: str,
        *,
        method: str = "GET",
        query: str = "",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """``{GET,POST,...} /api/v1/namespaces/{ns}/pods/{id}/proxy/{path}``, as the API server serves it.

        pkg/registry/core/pod/rest/subresources.go ``ProxyREST.Connect`` -> pkg/registry/core/pod/
        strategy.go ``ResourceLocation``:
        - ``id`` is ``name``, ``name:port`` or ``scheme:name:port`` (apimachinery util/net
          ``SplitSchemeNamePort``: at most three parts, a non-empty name, scheme ``http``, ``https`` or
          empty); anything else is 400 ``invalid pod request "<id>"``;
        - a missing pod is 404 ``pods "<name>" not found``;
        - without a port, the first ``containerPort`` of the first container declaring ports;
        - the pod's first ``podIPs`` entry must parse as a global unicast address, else 400 ``address not
          allowed`` (a pod without an IP yet: Pending, or the ``no_ip`` fault);
        - the port is put into the URL as written: ResourceLocation does not resolve a container port
          *name*. Go's ``url.URL.Port()`` accepts digits only, so for ``name:http`` net/http dials
          ``[<ip>:http]:80`` and the lookup fails; modelled as 503 ``error trying to reach service:
          dial tcp: lookup <ip>:<port>: no such host``. Use the port number.
        apimachinery util/proxy transport.go ``Transport.RoundTrip``: any error reaching the pod is 503
        ServiceUnavailable ``error trying to reach service: <Go error>`` (nothing listening: ``dial tcp
        IP:PORT: connect: connection refused``). The phase is not checked: a pod with an IP whose
        container does not listen is that 503. The pod's answer is passed through (status, headers
        but hop-by-hop ones, body); the query string is forwarded; the apiserver's authentication
        filter has already removed ``Authorization``; X-Forwarded-* headers are added. Not modelled:
        the rewriting of links in ``text/html`` answers, upgrades (websockets)."""
        parts = pod_id.split(":")
        if len(parts) == 1:
            scheme, name, port = "", parts[0], ""
        elif len(parts) == 2:
            scheme, (name, port) = "", parts
        elif len(parts) == 3:
            scheme, name, port = parts
        else:
            scheme, name, port = "", "", ""
        if not name or scheme not in ("", "http", "https"):
            raise KubeError(400, "BadRequest", f'invalid pod request "{pod_id}"')
        pod = self.store.get("Pod", namespace, name)
        if pod is None:
            raise KubeError(404, "NotFound", f'pods "{name}" not found')
        if port == "":
            port = next(
                (str(c["ports"][0]["containerPort"]) for c in pod["spec"].get("containers") or [] if c.get("ports")),
                "",
            )
        status = pod.get("status") or {}
        pod_ip = ((status.get("podIPs") or [{}])[0]).get("ip", "")
        try:  # Go's net.IP.IsGlobalUnicast (private ranges count as global unicast there)
            address = ipaddress.ip_address(pod_ip)
            allowed = not (
                address.is_loopback
                or address.is_multicast
                or address.is_unspecified
                or address.is_link_local
                or pod_ip == "255.255.255.255"
            )
        except ValueError:
            allowed = False
        if not allowed:
            raise KubeError(400, "BadRequest", "address not allowed")
        scheme = scheme or "http"
        if port and not port.isdigit():
            raise KubeError(
                503,
                "ServiceUnavailable",
                f"error trying to reach service: dial tcp: lookup {pod_ip}:{port}: no such host",
            )
        number = int(port) if port else (443 if scheme == "https" else 80)
        target = (path if path.startswith("/") else "/" + path) + (f"?{query}" if query else "")
        forwarded = {
            key: value
            for key, value in (headers or {}).items()
            if key.lower() not in self.HOP_BY_HOP and key.lower() not in ("host", "authorization", "content-length")
        }
        forwarded["X-Forwarded-Uri"] = f"/api/v1/namespaces/{namespace}/pods/{pod_id}/proxy{target.split('?')[0]}"
        forwarded["X-Forwarded-Proto"] = "http"
        try:
            answer_status, answer_headers, answer_body = self.kubelet.pod_network_request(
                pod_ip, number, scheme=scheme, method=method, target=target, headers=forwarded, body=body
            )
        except ConnectionError as error:
            raise KubeError(503, "ServiceUnavailable", f"error trying to reach service: {error}") from error
        kept = [
            (key, value)
            for key, value in answer_headers
            if key.lower() not in self.HOP_BY_HOP and key.lower() != "content-length"
        ]
        return answer_status, kept, answer_body

    # ---- Service load balancers (the cloud controller) and kube-proxy ----

    def _endpoints(self, namespace: str, name: str, service_port: int) -> Callable[[], list[tuple[str, int]]]:
        """The ready pods' IP:targetPort behind one Service port, read afresh for every connection."""

        def ready_endpoints() -> list[tuple[str, int]]:
            service = self.store.get("Service", namespace, name)
            if service is None:
                return []
            target_port = next(
                (
                    port.get("targetPort", port["port"])
                    for port in service["spec"].get("ports") or []
                    if port["port"] == service_port
                ),
                None,
            )
            selector = service["spec"].get("selector") or {}
            if target_port is None or not selector:
                return []
            endpoints = []
            for pod in self.store.list("Pod", namespace):
                labels = pod["metadata"].get("labels") or {}
                if any(labels.get(key) != value for key, value in selector.items()):
                    continue
                if "deletionTimestamp" in pod["metadata"] or not is_pod_ready(pod) or not pod["status"].get("podIP"):
                    continue
                for container in pod["spec"]["containers"]:
                    try:
                        port = resolve_port(target_port, container)
                    except ValueError:
                        continue
                    endpoints.append((pod["status"]["podIP"], port))
                    break
            return sorted(endpoints)

        return ready_endpoints

    def _sync_load_balancers(self) -> None:
        faults = self._faults
        seen = set()
        for service in self.store.list("Service"):
            namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
            uid = service["metadata"]["uid"]
            if service["spec"].get("type") != "LoadBalancer" or "deletionTimestamp" in service["metadata"]:
                continue
            seen.add(uid)
            ports = [port["port"] for port in service["spec"].get("ports") or []]
            balancer = self._load_balancers.get(uid)
            if balancer is None:
                if faults.no_ip:
                    continue
                # creationTimestamp has whole seconds; the controller's own first sight is finer.
                first_seen = self._service_first_seen.setdefault(uid, time.time())
                if time.time() - first_seen < faults.lb_late_seconds:
                    continue
                address, sockets = self.pool.allocate(ports)
                hostname = f"{name}-{namespace}-{random_suffix(8)}.{LB_HOSTNAME_DOMAIN}" if faults.lb_hostname else None
                balancer = _LoadBalancer(address, ports, hostname)
                self._load_balancers[uid] = balancer
                self.proxy.serve(uid, sockets, functools.partial(self._endpoints, namespace, name))
                ingress = {"hostname": hostname} if hostname else {"ip": address, "ipMode": "VIP"}
                status = copy.deepcopy(service.get("status") or {})
                status["loadBalancer"] = {"ingress": [ingress]}
                self.store.write_status("Service", namespace, name, status)
                self.events_recorder.record(
                    service, "Normal", "EnsuringLoadBalancer", "Ensuring load balancer", component="service-controller"
                )
                self.events_recorder.record(
                    service, "Normal", "EnsuredLoadBalancer", "Ensured load balancer", component="service-controller"
                )
            elif balancer.ports != ports:
                self.proxy.stop(uid)
                sockets = self.pool.rebind(balancer.address, ports)
                if sockets is not None:
                    balancer.ports = ports
                    self.proxy.serve(uid, sockets, functools.partial(self._endpoints, namespace, name))
            published_for = time.time() - balancer.created_at
            if (
                balancer.hostname
                and not balancer.host_line_added
                and published_for >= faults.hostname_unresolvable_seconds
            ):
                self.hosts.add(balancer.address, balancer.hostname)
                balancer.host_line_added = True
        for uid in [uid for uid in self._service_first_seen if uid not in seen]:
            del self._service_first_seen[uid]
        for uid in [uid for uid in self._load_balancers if uid not in seen]:
            balancer = self._load_balancers.pop(uid)
            self.proxy.stop(uid)
            self.pool.release(balancer.address)
            if balancer.hostname:
                self.hosts.remove(balancer.hostname)
        for service in self.store.list("Service"):
            if service["spec"].get("type") != "LoadBalancer" and (service.get("status") or {}).get(
                "loadBalancer", {}
            ).get("ingress"):
                self.store.write_status(
                    "Service", service["metadata"]["namespace"], service["metadata"]["name"], {"loadBalancer": {}}
                )
