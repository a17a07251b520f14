"""Kubernetes RBAC authorization for the simulated API server, as the real one decides it.

A request is turned into attributes the way the API server's request-info resolver does
(apiserver/pkg/endpoints/request/requestinfo.go): ``/api/v1/namespaces/{ns}/{resource}[/{name}[/{sub}]]``
and ``/apis/{group}/{version}/...``; the verb comes from the method (GET of one object ``get``, of a
collection ``list``, or ``watch`` with ``?watch=true``; POST ``create``; PUT ``update``; PATCH
``patch``; DELETE of one ``delete``, of a collection ``deletecollection``).

A rule allows a request when its verbs, apiGroups and resources match (``*`` matches any, a
subresource is written ``pods/log``, ``*/log`` matches any resource's ``log``) and its resourceNames,
if any, name the object (rbac/v1 evaluation helpers). A ClusterRoleBinding grants its role
everywhere; a RoleBinding grants its Role, or a ClusterRole, in its own namespace only. Discovery and
``/version`` are open to every authenticated user (the ``system:discovery`` and
``system:public-info-viewer`` roles). A refusal is a 403 ``Status`` with the API server's wording.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.simulator.kube.store import KubeError

OPEN_PATHS = ("/version", "/version/", "/api", "/api/", "/apis", "/apis/", "/healthz", "/livez", "/readyz")


@dataclass(frozen=True)
class Attributes:
    verb: str
    api_group: str
    resource: str
    subresource: str
    namespace: str
    name: str

    @property
    def qualified_resource(self) -> str:
        return f"{self.resource}.{self.api_group}" if self.api_group else self.resource


def request_attributes(method: str, path: str, query: dict[str, str]) -> Attributes | None:
    """The attributes of a resource request; None for a non-resource path."""
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    elif rest[0] == "namespaces" and len(rest) == 2:
        # /api/v1/namespaces/{name}: the namespace object itself.
        rest = ["namespaces", rest[1]]
        namespace = rest[1]
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    subresource = rest[2] if len(rest) >= 3 else ""
    method = method.upper()
    if method in ("GET", "HEAD"):
        verb = "watch" if query.get("watch") in ("true", "1") else "get" if name else "list"
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = method.lower()
    return Attributes(verb, group, resource, subresource, namespace, name)


def _rule_allows(rule: dict[str, Any], attributes: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attributes.verb not in verbs:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attributes.api_group not in groups:
        return False
    wanted = attributes.resource + (f"/{attributes.subresource}" if attributes.subresource else "")
    resources = rule.get("resources") or []
    if not any(
        item in ("*", wanted) or (attributes.subresource and item == f"*/{attributes.subresource}")
        for item in resources
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or attributes.name in names


class RbacPolicy:
    """The roles bound to one service account, read from Role, ClusterRole and their bindings."""

    def __init__(self, objects: Iterable[dict[str, Any]], *, namespace: str, service_account: str) -> None:
        self.user = f"system:serviceaccount:{namespace}:{service_account}"
        subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
        objects = list(objects)
        cluster_roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
        roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "Role"}
        # (namespace or None for every namespace, rules)
        self.grants: list[tuple[str | None, list[dict[str, Any]]]] = []
        for binding in objects:
            if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
                continue
            if not any(_same_subject(item, subject) for item in binding.get("subjects") or []):
                continue
            ref = binding["roleRef"]
            scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
            role = cluster_roles.get(ref["name"]) if ref["kind"] == "ClusterRole" else roles.get((scope, ref["name"]))
            if role is not None:  # a binding to a missing role grants nothing, as in Kubernetes
                self.grants.append((scope, role.get("rules") or []))

    def allows(self, attributes: Attributes) -> bool:
        return any(
            (scope is None or scope == attributes.namespace) and any(_rule_allows(rule, attributes) for rule in rules)
            for scope, rules in self.grants
        )

    def authorize(self, method: str, path: str, query: dict[str, str]) -> None:
        """Raise the API server's 403 when the service account may not make this request."""
        if path in OPEN_PATHS:
            return
        attributes = request_attributes(method, path, query)
        if attributes is None:
            raise KubeError(403, "Forbidden", f'forbidden: User "{self.user}" cannot {method.lower()} path "{path}"')
        if self.allows(attributes):
            return
        resource = attributes.resource + (f"/{attributes.subresource}" if attributes.subresource else "")
        where = f'in the namespace "{attributes.namespace}"' if attributes.namespace else "at the cluster scope"
        reason = (
            f'User "{self.user}" cannot {attributes.verb} resource "{resource}" '
            f'in API group "{attributes.api_group}" {where}'
        )
        subject = attributes.qualified_resource + (f' "{attributes.name}"' if attributes.name else "")
        raise KubeError(403, "Forbidden", f"{subject} is forbidden: {reason}")


def _same_subject(item: dict[str, Any], subject: dict[str, str]) -> bool:
    return item.get("kind") == "ServiceAccount" and all(item.get(key) == value for key, value in subject.items())
