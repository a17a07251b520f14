"""Helpers on Kubernetes objects the way Argo CD sees them: group/version, namespacing, sync order,
annotation tracking (docs/user-guide/resource_tracking.md) and the live-versus-target comparison."""

from __future__ import annotations

from datetime import UTC, datetime

TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "IngressClass",
    "APIService",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
# gitops-engine pkg/sync/sync_tasks.go kindOrder: within one wave, kinds apply in this order.
KIND_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
]


def now_rfc3339() -> str:
    """metav1.Time marshals to RFC 3339 with whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def group_of(obj: dict) -> str:
    api_version = obj.get("apiVersion", "")
    return api_version.split("/")[0] if "/" in api_version else ""


def version_of(obj: dict) -> str:
    return obj.get("apiVersion", "v1").split("/")[-1]


def is_namespaced(kind: str) -> bool:
    return kind not in CLUSTER_SCOPED_KINDS


def sync_order(obj: dict) -> tuple[int, str, str]:
    kind = obj.get("kind", "")
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return rank, kind, obj["metadata"]["name"]


def tracking_id(app_name: str, obj: dict, namespace: str) -> str:
    """``<app>:<group>/<kind>:<namespace>/<name>`` (resource_tracking.md; the group is empty for core kinds)."""
    return f"{app_name}:{group_of(obj)}/{obj['kind']}:{namespace}/{obj['metadata']['name']}"


def tracked_by(obj: dict) -> str | None:
    """The app that tracks ``obj``, when its tracking annotation is consistent with the object itself
    (Argo CD ignores a copied annotation whose kind, namespace or name do not match)."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(TRACKING_ANNOTATION)
    if not value:
        return None
    app, _, rest = value.partition(":")
    namespace = obj["metadata"].get("namespace", "")
    if rest != f"{group_of(obj)}/{obj['kind']}:{namespace}/{obj['metadata']['name']}":
        return None
    return app


def with_namespace(obj: dict, default_namespace: str) -> dict:
    if is_namespaced(obj["kind"]):
        obj.setdefault("metadata", {}).setdefault("namespace", default_namespace)
    else:
        obj.setdefault("metadata", {}).pop("namespace", None)
    return obj


def _covers(live: object, target: object) -> bool:
    """``live`` holds everything ``target`` says (fields the API server defaulted are ignored)."""
    if isinstance(target, dict):
        return isinstance(live, dict) and all(k in live and _covers(live[k], v) for k, v in target.items())
    if isinstance(target, list):
        return (
            isinstance(live, list)
            and len(live) == len(target)
            and all(_covers(a, b) for a, b in zip(live, target, strict=True))
        )
    if isinstance(target, (int, float)) and isinstance(live, (int, float)) and not isinstance(target, bool):
        return live == target
    return live == target


def in_sync(target: dict, live: dict | None) -> bool:
    """The comparison the controller's diff makes, reduced to what matters here: every field git
    sets is set the same way on the live object; status and server-managed metadata are ignored."""
    if live is None:
        return False
    for key, value in target.items():
        if key in ("status",):
            continue
        if key == "metadata":
            for part in ("labels", "annotations"):
                if not _covers((live.get("metadata") or {}).get(part) or {}, (value or {}).get(part) or {}):
                    return False
            continue
        if not _covers(live.get(key), value):
            return False
    return True
