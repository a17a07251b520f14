"""Resource health and application health, as Argo CD computes them.

Per-kind rules follow gitops-engine pkg/health (health_deployment.go, health_service.go, health_pod.go,
health_job.go, health_hpa.go) and the PodDisruptionBudget Lua customisation
(resource_customizations/policy/PodDisruptionBudget/health.lua). Aggregation follows
controller/health.go setApplicationHealth. Inputs are objects exactly as the Kubernetes API returns them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

HEALTHY, SUSPENDED, PROGRESSING, MISSING, DEGRADED, UNKNOWN = (
    "Healthy",
    "Suspended",
    "Progressing",
    "Missing",
    "Degraded",
    "Unknown",
)
# health.go: healthOrder, from best to worst.
HEALTH_ORDER = [HEALTHY, SUSPENDED, PROGRESSING, MISSING, DEGRADED, UNKNOWN]


@dataclass(frozen=True)
class Health:
    status: str
    message: str = ""

    def as_json(self) -> dict:
        body = {"status": self.status}
        if self.message:
            body["message"] = self.message
        return body


def is_worse(current: str, new: str) -> bool:
    """health.go: IsWorse."""
    return HEALTH_ORDER.index(new) > HEALTH_ORDER.index(current)


def _group(obj: dict) -> str:
    api_version = obj.get("apiVersion", "")
    return api_version.split("/")[0] if "/" in api_version else ""


def resource_health(obj: dict) -> Health | None:
    """health.go: GetResourceHealth. None when Argo CD has no health check for the kind."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return Health(PROGRESSING, "Pending deletion")
    group, kind = _group(obj), obj.get("kind")
    check = _CHECKS.get((group, kind))
    return check(obj) if check else None


def deployment_health(obj: dict) -> Health:
    """health_deployment.go: getAppsv1DeploymentHealth."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    name = obj["metadata"]["name"]
    if spec.get("paused"):
        return Health(SUSPENDED, "Deployment is paused")
    generation = obj["metadata"].get("generation", 0)
    if generation > status.get("observedGeneration", 0):
        return Health(
            PROGRESSING, "Waiting for rollout to finish: observed deployment generation less than desired generation"
        )
    progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
    # The typed Go struct defaults spec.replicas to nil when absent; the API server always fills it (1).
    replicas = spec.get("replicas")
    updated = status.get("updatedReplicas", 0)
    current = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Health(DEGRADED, f'Deployment "{name}" exceeded its progress deadline')
    if replicas is not None and updated < replicas:
        return Health(
            PROGRESSING, f"Waiting for rollout to finish: {updated} out of {replicas} new replicas have been updated..."
        )
    if current > updated:
        return Health(
            PROGRESSING, f"Waiting for rollout to finish: {current - updated} old replicas are pending termination..."
        )
    if available < updated:
        return Health(
            PROGRESSING, f"Waiting for rollout to finish: {available} of {updated} updated replicas are available..."
        )
    return Health(HEALTHY)


def service_health(obj: dict) -> Health:
    """health_service.go: getCorev1ServiceHealth."""
    if (obj.get("spec") or {}).get("type") == "LoadBalancer":
        ingress = (((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress")) or []
        return Health(HEALTHY if ingress else PROGRESSING)
    return Health(HEALTHY)


def _pod_ready(pod: dict) -> bool:
    """podutils.IsPodReady: the Ready condition is True."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def pod_health(obj: dict) -> Health:
    """health_pod.go: getCorev1PodHealth (a Pod here is never a hook)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    policy = spec.get("restartPolicy", "Always")
    ignore_restart_policy = annotations.get("argocd.argoproj.io/ignore-restart-policy") == "true"
    message = status.get("message", "")
    container_statuses = status.get("containerStatuses") or []
    if policy == "Always" or ignore_restart_policy:
        messages = []
        for container in container_statuses:
            waiting = (container.get("state") or {}).get("waiting")
            reason = (waiting or {}).get("reason", "")
            if waiting is not None and (
                reason.startswith("Err") or reason.endswith("Error") or reason.endswith("BackOff")
            ):
                messages.append(waiting.get("message", ""))
        if messages:
            return Health(DEGRADED, ", ".join(messages))
    phase = status.get("phase")
    if phase == "Pending":
        return Health(PROGRESSING, message)
    if phase == "Succeeded":
        return Health(HEALTHY, message)
    if phase == "Failed":
        if message:
            return Health(DEGRADED, message)
        for container in (status.get("initContainerStatuses") or []) + container_statuses:
            terminated = (container.get("state") or {}).get("terminated")
            if terminated:
                if terminated.get("message"):
                    return Health(DEGRADED, terminated["message"])
                if terminated.get("reason") == "OOMKilled":
                    return Health(DEGRADED, "OOMKilled")
                if terminated.get("exitCode", 0) != 0:
                    return Health(
                        DEGRADED, f'container "{container.get("name")}" failed with exit code {terminated["exitCode"]}'
                    )
        return Health(DEGRADED, "")
    if phase == "Running":
        if policy == "Always" or ignore_restart_policy:
            if _pod_ready(obj):
                return Health(HEALTHY, message)
            if any((c.get("lastState") or {}).get("terminated") for c in container_statuses):
                return Health(DEGRADED, message)
            return Health(PROGRESSING, message)
        return Health(PROGRESSING, message)
    return Health(UNKNOWN, message)


def job_health(obj: dict) -> Health:
    """health_job.go: getBatchv1JobHealth."""
    failed = complete = suspended = False
    fail_message = message = ""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        kind = condition.get("type")
        if kind == "Failed":
            failed = complete = True
            fail_message = condition.get("message", "")
        elif kind == "Complete":
            complete = True
            message = condition.get("message", "")
        elif kind == "Suspended":
            complete = True
            message = condition.get("message", "")
            suspended = condition.get("status") == "True"
    if not complete:
        return Health(PROGRESSING, message)
    if failed:
        return Health(DEGRADED, fail_message)
    if suspended:
        return Health(SUSPENDED, message)
    return Health(HEALTHY, message)


_HPA_DEGRADED = {
    ("AbleToScale", "FailedGetScale"),
    ("AbleToScale", "FailedUpdateScale"),
    ("ScalingActive", "FailedGetResourceMetric"),
    ("ScalingActive", "FailedGetObjectMetric"),
    ("ScalingActive", "FailedGetPodsMetric"),
    ("ScalingActive", "FailedGetExternalMetric"),
    ("ScalingActive", "FailedComputeMetricsReplicas"),
    ("ScalingActive", "InvalidSelector"),
}
_HPA_WAITING = Health(PROGRESSING, "Waiting to Autoscale")


def hpa_health(obj: dict) -> Health:
    """health_hpa.go: getAutoScalingV2HPAHealth / getAutoScalingV1HPAHealth and checkConditions."""
    if obj.get("apiVersion") == "autoscaling/v1":
        annotation = ((obj.get("metadata") or {}).get("annotations") or {}).get(
            "autoscaling.alpha.kubernetes.io/conditions"
        )
        if annotation is None:
            return _HPA_WAITING
        try:
            conditions = json.loads(annotation)
        except ValueError as exc:
            return Health(UNKNOWN, f"failed to convert conditions annotation to typed: {exc}")
        conditions = [{k[0].lower() + k[1:]: v for k, v in c.items()} for c in conditions or []]
    else:
        conditions = (obj.get("status") or {}).get("conditions") or []
    for condition in conditions:
        if (condition.get("type"), condition.get("reason")) in _HPA_DEGRADED:
            return Health(DEGRADED, condition.get("message", ""))
    for condition in conditions:
        if condition.get("type") in ("AbleToScale", "ScalingLimited") and condition.get("status") == "True":
            return Health(HEALTHY, condition.get("message", ""))
    return _HPA_WAITING


def pdb_health(obj: dict) -> Health:
    """resource_customizations/policy/PodDisruptionBudget/health.lua."""
    health = Health(PROGRESSING, "Waiting for status")
    for condition in (obj.get("status") or {}).get("conditions") or []:
        reason = condition.get("reason", "")
        if condition.get("status") == "False" and reason != "InsufficientPods":
            return Health(DEGRADED, f"PodDisruptionBudget has {reason}")
        health = Health(HEALTHY, f"PodDisruptionBudget has {reason}")
    return health


_CHECKS = {
    ("apps", "Deployment"): deployment_health,
    ("", "Service"): service_health,
    ("", "Pod"): pod_health,
    ("batch", "Job"): job_health,
    ("autoscaling", "HorizontalPodAutoscaler"): hpa_health,
    ("policy", "PodDisruptionBudget"): pdb_health,
}


@dataclass(frozen=True)
class ManagedResource:
    """One entry of the comparison: what git wants (target) and what the cluster has (live)."""

    group: str
    kind: str
    namespace: str
    name: str
    target: dict | None
    live: dict | None


def application_health(resources: list[ManagedResource]) -> tuple[Health, list[Health | None]]:
    """controller/health.go: setApplicationHealth. Returns the app's health and each resource's."""
    app_status = HEALTHY
    causes: list[ManagedResource] = []
    per_resource: list[Health | None] = []
    contains_resources = contains_live = False
    for resource in resources:
        contains_resources = True
        if resource.live is not None:
            contains_live = True
        annotations = ((resource.live or {}).get("metadata") or {}).get("annotations") or {}
        if annotations.get("argocd.argoproj.io/ignore-healthcheck") == "true":
            per_resource.append(None)
            continue
        health = Health(MISSING) if resource.live is None else resource_health(resource.live)
        per_resource.append(health)
        if health is None:
            continue
        # Missing resources do not affect the app's health: OutOfSync already says they are missing.
        if resource.live is None and health.status == MISSING:
            continue
        if is_worse(app_status, health.status):
            app_status, causes = health.status, [resource]
        elif app_status == health.status and app_status != HEALTHY:
            causes.append(resource)
    if contains_resources and not contains_live and is_worse(app_status, MISSING):
        app_status, causes = MISSING, []
    return Health(app_status, _format_causes(causes)), per_resource


def _format_causes(causes: list[ManagedResource]) -> str:
    """controller/health.go: formatHealthCauses (at most three, then "and N more")."""
    if not causes:
        return ""
    parts = []
    for cause in causes[:3]:
        group_kind = f"{cause.group}/{cause.kind}" if cause.group else cause.kind
        name = f"{cause.namespace}/{cause.name}" if cause.namespace else cause.name
        parts.append(f"{group_kind}:{name}")
    summary = ", ".join(parts)
    if len(causes) > 3:
        summary += f" and {len(causes) - 3} more"
    return "Caused by " + summary
