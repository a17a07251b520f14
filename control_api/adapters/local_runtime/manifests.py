"""Turn rendered Deployments and Services into the ``WorkloadSpec``s a ``LocalRuntime`` runs.

Only what the local runtime models is read (image, env values, ports, replicas, limits, readiness
path); a Service belongs to the Deployment whose pod labels its selector matches.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_api.adapters.local_runtime.base import WorkloadSpec


@dataclass(frozen=True)
class Workload:
    deployment: dict
    service: dict | None
    spec: WorkloadSpec


def object_namespace(obj: dict, default_namespace: str) -> str:
    return (obj.get("metadata") or {}).get("namespace") or default_namespace


def pair_workloads(objects: list[dict], default_namespace: str) -> list[Workload]:
    deployments = [o for o in objects if o.get("kind") == "Deployment"]
    services = [o for o in objects if o.get("kind") == "Service"]
    workloads = []
    for deployment in deployments:
        namespace = object_namespace(deployment, default_namespace)
        pod_labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
        service = next(
            (
                s
                for s in services
                if object_namespace(s, default_namespace) == namespace
                and (s.get("spec") or {}).get("selector")
                and all(pod_labels.get(k) == v for k, v in s["spec"]["selector"].items())
            ),
            None,
        )
        workloads.append(Workload(deployment, service, _spec(deployment, service, namespace)))
    return workloads


def _spec(deployment: dict, service: dict | None, namespace: str) -> WorkloadSpec:
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    container_ports = container.get("ports") or []
    container_port = container_ports[0]["containerPort"] if container_ports else 8080
    service_port = container_port
    if service is not None:
        first = service["spec"]["ports"][0]
        service_port = first["port"]
        target = first.get("targetPort")
        if isinstance(target, int):
            container_port = target
        elif isinstance(target, str):
            container_port = next((p["containerPort"] for p in container_ports if p.get("name") == target), container_port)
    limits = (container.get("resources") or {}).get("limits") or {}
    probe = ((container.get("readinessProbe") or {}).get("httpGet") or {}).get("path")
    return WorkloadSpec(
        namespace=namespace,
        name=deployment["metadata"]["name"],
        image=container["image"],
        container_port=container_port,
        service_port=service_port,
        replicas=deployment["spec"].get("replicas", 1),
        env={e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "valueFrom" not in e},
        cpu_limit=_quantity(limits.get("cpu")),
        memory_limit=_quantity(limits.get("memory")),
        labels=dict(pod["metadata"].get("labels") or {}),
        readiness_path=probe or "/ready",
    )


def _quantity(value: object) -> str | None:
    return None if value is None else str(value)
