"""The API server's object store.

Objects are plain JSON dicts as the Kubernetes API returns them. The store fills what the API server
fills on create (uid, resourceVersion, creationTimestamp, generation, namespace "default"), bumps
``metadata.generation`` when ``.spec`` changes (the rule for every built-in kind with a spec), keeps
``.status`` across updates (status is a subresource), converts Secret ``stringData`` into base64
``data`` and applies the defaults the API server's defaulting functions set for the kinds the
simulator runs (Deployment, Pod template, Service). Deletion is the garbage collector's foreground
cascade: objects whose ``ownerReferences`` point at a deleted uid are deleted too.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import ipaddress
import random
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
    }
)

# Kinds whose metadata.generation the API server maintains (every kind with a spec).
GENERATION_KINDS = frozenset(
    {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
)

POD_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


class KubeError(Exception):
    """An API error, carrying what a Kubernetes ``Status`` carries."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def as_status(self) -> dict:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.status,
        }


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> float:
    return _dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC).timestamp()


def random_suffix(length: int = 5) -> str:
    return "".join(random.choice(POD_NAME_ALPHABET) for _ in range(length))


def plural_resource(kind: str) -> str:
    """The lower-case plural the API uses in messages (`deployments.apps "x" not found`)."""
    groups = {
        "Deployment": ".apps",
        "ReplicaSet": ".apps",
        "HorizontalPodAutoscaler": ".autoscaling",
        "PodDisruptionBudget": ".policy",
        "Job": ".batch",
    }
    lower = kind.lower()
    plural = lower + ("es" if lower.endswith("s") else "s")
    return plural + groups.get(kind, "")


def is_namespaced(kind: str) -> bool:
    return kind not in CLUSTER_SCOPED_KINDS


_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def parse_quantity(quantity: str | float) -> float:
    """A Kubernetes resource.Quantity ("500m", "1Gi", "2", "1e3") as a number."""
    text = str(quantity).strip()
    for suffix, factor in _BINARY_SUFFIXES.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    if text and text[-1] in _DECIMAL_SUFFIXES and not text[-1].isdigit():
        return float(text[:-1]) * _DECIMAL_SUFFIXES[text[-1]]
    return float(text)


# ---- label selectors (k8s.io/apimachinery/pkg/labels) ----

_REQUIREMENT = re.compile(r"^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(==|=|!=|\s+in\s+|\s+notin\s+)\s*(.*?))?\s*$")


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def parse_label_selector(selector: str | None) -> Callable[[dict], bool]:
    """A predicate over a labels dict from the string form (`a=b,c!=d,e in (f,g),!h,i`)."""
    if not selector or not selector.strip():
        return lambda labels: True
    requirements: list[Callable[[dict], bool]] = []
    for part in _split_selector(selector):
        match = _REQUIREMENT.match(part)
        if not match:
            raise KeyError(f"unable to parse requirement: {part!r}")
        negated, key, operator, value = match.groups()
        operator = (operator or "").strip()
        if negated:
            requirements.append(lambda labels, k=key: k not in labels)
        elif not operator:
            requirements.append(lambda labels, k=key: k in labels)
        elif operator in ("=", "=="):
            requirements.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif operator == "!=":
            requirements.append(lambda labels, k=key, v=value: labels.get(k) != v)
        else:
            values = {item.strip() for item in value.strip().strip("()").split(",") if item.strip()}
            if operator == "in":
                requirements.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                requirements.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
    return lambda labels: all(requirement(labels) for requirement in requirements)


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """metav1.LabelSelector (matchLabels + matchExpressions) against a labels dict. An empty selector
    matches everything, as LabelSelectorAsSelector makes it."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def field_selector_matches(selector: str | None, obj: dict) -> bool:
    """Equality field selectors (`involvedObject.name=x,involvedObject.kind=Pod`, `metadata.name==x`)."""
    if not selector:
        return True
    for part in selector.split(","):
        if not part.strip():
            continue
        negate = "!=" in part
        path, value = re.split(r"!=|==|=", part, maxsplit=1)
        current: Any = obj
        for segment in path.strip().split("."):
            current = current.get(segment) if isinstance(current, dict) else None
        actual = "" if current is None else str(current)
        if (actual == value.strip()) == negate:
            return False
    return True


# ---- API server defaults ----


def _default_container(container: dict) -> None:
    image = container.get("image", "")
    if "imagePullPolicy" not in container:
        tag = image.rsplit("/", 1)[-1]
        untagged_or_latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
        container["imagePullPolicy"] = "Always" if untagged_or_latest else "IfNotPresent"
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(probe_name)
        if probe is None:
            continue
        probe.setdefault("timeoutSeconds", 1)
        probe.setdefault("periodSeconds", 10)
        probe.setdefault("successThreshold", 1)
        probe.setdefault("failureThreshold", 3)
        if "httpGet" in probe:
            probe["httpGet"].setdefault("scheme", "HTTP")
    limits = (container.get("resources") or {}).get("limits")
    if limits:  # requests default to limits (core/v1 SetDefaults_ResourceList via the pod defaults)
        requests = container["resources"].setdefault("requests", {})
        for resource, quantity in limits.items():
            requests.setdefault(resource, quantity)


def default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in spec.get("initContainers") or []:
        _default_container(container)
    for container in spec.get("containers") or []:
        _default_container(container)


def _default_deployment(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")
    default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


class ServiceAddressAllocator:
    """ClusterIPs from 10.96.0.0/12 and node ports from 30000-32767, as the API server allocates."""

    def __init__(self) -> None:
        self._next_ip = int(ipaddress.IPv4Address("10.96.0.10"))
        self._next_node_port = 30000 + random.randrange(0, 2000)

    def cluster_ip(self) -> str:
        self._next_ip += 1
        return str(ipaddress.IPv4Address(self._next_ip))

    def node_port(self) -> int:
        self._next_node_port += 1
        return self._next_node_port


def _default_service(obj: dict, previous: dict | None, allocator: ServiceAddressAllocator) -> None:
    spec = obj.setdefault("spec", {})
    service_type = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    old_spec = (previous or {}).get("spec", {})
    if service_type != "ExternalName":
        cluster_ip = spec.get("clusterIP") or old_spec.get("clusterIP") or allocator.cluster_ip()
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    old_node_ports = {port.get("port"): port.get("nodePort") for port in old_spec.get("ports") or []}
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
        if service_type in ("NodePort", "LoadBalancer") and "nodePort" not in port:
            port["nodePort"] = old_node_ports.get(port.get("port")) or allocator.node_port()
    if service_type in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if service_type == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


class Store:
    """Thread-safe object store. Every write bumps the global resourceVersion; watchers are told."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._objects: dict[tuple[str, str, str], dict] = {}
        self._resource_version = 1000
        self._allocator = ServiceAddressAllocator()

    @property
    def resource_version(self) -> int:
        return self._resource_version

    def _key(self, kind: str, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (kind, (namespace or "default") if is_namespaced(kind) else "", name)

    def _bump(self, obj: dict) -> None:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)

    def get_ref(self, kind: str, namespace: str | None, name: str) -> dict | None:
        """The stored object itself (callers hold ``lock`` and must not keep it)."""
        return self._objects.get(self._key(kind, namespace, name))

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        with self.lock:
            obj = self.get_ref(kind, namespace, name)
            return copy.deepcopy(obj) if obj is not None else None

    def list_refs(self, kind: str, namespace: str | None = None) -> list[dict]:
        with self.lock:
            return [
                obj
                for (obj_kind, obj_namespace, _), obj in self._objects.items()
                if obj_kind == kind and (namespace is None or obj_namespace == namespace)
            ]

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict]:
        matches = parse_label_selector(label_selector)
        with self.lock:
            found = [
                copy.deepcopy(obj)
                for obj in self.list_refs(kind, namespace)
                if matches(obj["metadata"].get("labels") or {}) and field_selector_matches(field_selector, obj)
            ]
        return sorted(found, key=lambda obj: (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))

    def all_objects(self) -> list[dict]:
        with self.lock:
            return [copy.deepcopy(obj) for obj in self._objects.values()]

    def namespaces_of(self, namespace: str) -> list[dict]:
        with self.lock:
            return [obj for (_, obj_namespace, _), obj in self._objects.items() if obj_namespace == namespace]

    def put(self, obj: dict) -> dict:
        """Create or replace ``obj`` (already complete metadata). Returns the stored object."""
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        kind = obj["kind"]
        if is_namespaced(kind):
            metadata.setdefault("namespace", "default")
        else:
            metadata.pop("namespace", None)
        with self.lock:
            key = self._key(kind, metadata.get("namespace"), metadata["name"])
            previous = self._objects.get(key)
            if kind == "Secret":
                data = obj.setdefault("data", {}) if obj.get("stringData") or "data" in obj else obj.get("data")
                for name, value in (obj.pop("stringData", None) or {}).items():
                    data[name] = base64.b64encode(str(value).encode()).decode()
                obj.setdefault("type", "Opaque")
            elif kind == "Deployment":
                _default_deployment(obj)
            elif kind == "Service":
                _default_service(obj, previous, self._allocator)
            elif kind == "Pod":
                default_pod_spec(obj.setdefault("spec", {}))
            if previous is None:
                metadata["uid"] = str(uuid.uuid4())
                metadata["creationTimestamp"] = now_rfc3339()
                if kind in GENERATION_KINDS:
                    metadata["generation"] = 1
            else:
                old_metadata = previous["metadata"]
                for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                    if field in old_metadata:
                        metadata[field] = old_metadata[field]
                    else:
                        metadata.pop(field, None)
                if "finalizers" not in metadata and old_metadata.get("finalizers"):
                    metadata["finalizers"] = old_metadata["finalizers"]
                if kind in GENERATION_KINDS:
                    generation = old_metadata.get("generation", 1)
                    if previous.get("spec") != obj.get("spec"):
                        generation += 1
                    metadata["generation"] = generation
                if "status" in previous:
                    obj["status"] = previous["status"]
                else:
                    obj.pop("status", None)
                if previous == {
                    **obj,
                    "metadata": {**metadata, "resourceVersion": old_metadata.get("resourceVersion")},
                }:
                    return previous  # a no-op update does not bump resourceVersion
            self._bump(obj)
            self._objects[key] = obj
            return obj

    def create_with_status(self, obj: dict) -> dict:
        """Create ``obj`` keeping its ``status`` (controllers creating objects they own)."""
        status = obj.get("status")
        with self.lock:
            stored = self.put({key: value for key, value in obj.items() if key != "status"})
            if status is not None:
                self.write_status(
                    stored["kind"], stored["metadata"].get("namespace"), stored["metadata"]["name"], status
                )
            return stored

    def write_status(self, kind: str, namespace: str | None, name: str, status: dict) -> bool:
        """Replace ``.status`` (the status subresource); True when it changed."""
        with self.lock:
            obj = self.get_ref(kind, namespace, name)
            if obj is None or obj.get("status") == status:
                return False
            obj["status"] = copy.deepcopy(status)
            self._bump(obj)
            return True

    def update(self, kind: str, namespace: str | None, name: str, mutate: Callable[[dict], None]) -> dict | None:
        """Read-modify-write of the whole object by a controller (generation bumps as for a client)."""
        with self.lock:
            current = self.get_ref(kind, namespace, name)
            if current is None:
                return None
            changed = copy.deepcopy(current)
            mutate(changed)
            if changed == current:
                return current
            status = changed.get("status")
            stored = self.put(changed)
            if status is not None and status != stored.get("status"):
                self.write_status(kind, namespace, name, status)
            return self.get_ref(kind, namespace, name)

    def remove(self, kind: str, namespace: str | None, name: str) -> dict | None:
        """Remove the object outright (after graceful deletion finished)."""
        with self.lock:
            removed = self._objects.pop(self._key(kind, namespace, name), None)
            if removed is not None:
                self._resource_version += 1
            return removed

    def mark_deleting(self, kind: str, namespace: str | None, name: str, grace_seconds: int | None = None) -> bool:
        with self.lock:
            obj = self.get_ref(kind, namespace, name)
            if obj is None:
                return False
            if "deletionTimestamp" not in obj["metadata"]:
                obj["metadata"]["deletionTimestamp"] = now_rfc3339()
                if grace_seconds is not None:
                    obj["metadata"]["deletionGracePeriodSeconds"] = grace_seconds
                self._bump(obj)
            return True

    def owned_by(self, uid: str) -> list[dict]:
        with self.lock:
            return [
                obj
                for obj in self._objects.values()
                if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
            ]
