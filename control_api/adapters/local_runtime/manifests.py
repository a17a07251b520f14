"""Turn rendered Deployments and Services into the ``WorkloadSpec``s a ``LocalRuntime`` runs.

Only what the local runtime models is read (image, env values, ports, replicas, limits, readiness
probe, security context, emptyDir volumes). A Service selects the Deployments whose pod labels its
selector matches, possibly several (a stable and a canary Deployment of one endpoint); each of them
becomes a workload that joins that Service's address (``WorkloadSpec.service_name``). A Deployment
selected by several Services joins the first one in manifest order, since the local runtime puts a
replica behind one address only. A volume the runtime cannot provide is refused here rather than
silently left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from control_api.adapters.local_runtime.base import ScratchVolume, SecurityContext, WorkloadSpec
from control_api.errors import SyncFailed


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
    _check_one_container_port_per_service(workloads)
    return workloads


def _check_one_container_port_per_service(workloads: list[Workload]) -> None:
    """The Service's address forwards to one container port, which every replica behind it listens on."""
    ports: dict[tuple[str, str], tuple[int, str]] = {}
    for workload in workloads:
        spec = workload.spec
        key = (spec.namespace, spec.service)
        port, first = ports.setdefault(key, (spec.container_port, spec.name))
        if port != spec.container_port:
            raise SyncFailed(
                f"{spec.namespace}/{spec.service}: the Service's port leads to container port {port} in Deployment "
                f"{first} but to {spec.container_port} in Deployment {spec.name}; the local target forwards a "
                "Service to one container port",
                code="sync_failed",
            )


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
            container_port = _named_port(container_ports, target, container_port)
    limits = (container.get("resources") or {}).get("limits") or {}
    readiness = container.get("readinessProbe") or {}
    probe_get = readiness.get("httpGet") or {}
    probe_port = probe_get.get("port")
    name = deployment["metadata"]["name"]
    return WorkloadSpec(
        namespace=namespace,
        name=name,
        image=container["image"],
        container_port=container_port,
        service_port=service_port,
        replicas=deployment["spec"].get("replicas", 1),
        env={e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "valueFrom" not in e},
        cpu_limit=_quantity(limits.get("cpu")),
        memory_limit=_quantity(limits.get("memory")),
        labels=dict(pod["metadata"].get("labels") or {}),
        readiness_path=probe_get.get("path") or "/ready",
        readiness_port=_named_port(container_ports, probe_port, container_port)
        if isinstance(probe_port, str)
        else probe_port,
        readiness_period_seconds=int(readiness.get("periodSeconds", 10)),
        readiness_failure_threshold=int(readiness.get("failureThreshold", 3)),
        termination_grace_seconds=int(pod["spec"].get("terminationGracePeriodSeconds", 30)),
        security=_security(pod["spec"].get("securityContext") or {}, container.get("securityContext") or {}),
        scratch_volumes=_scratch_volumes(
            pod["spec"].get("volumes") or [], container.get("volumeMounts") or [], f"{namespace}/{name}"
        ),
        # None when named alike: the spec of the usual Deployment + Service pair is what it was before
        # Services could select several Deployments.
        service_name=_service_name(service, name),
    )


def _service_name(service: dict | None, deployment_name: str) -> str | None:
    name = (service or {}).get("metadata", {}).get("name")
    return name if name and name != deployment_name else None


def _named_port(container_ports: list[dict], port_name: str, default: int) -> int:
    return next((p["containerPort"] for p in container_ports if p.get("name") == port_name), default)


def _security(pod_context: dict, container_context: dict) -> SecurityContext:
    def merged(key: str) -> Any:  # a manifest value, as YAML gave it
        return container_context.get(key, pod_context.get(key))

    capabilities = container_context.get("capabilities") or {}
    groups = [pod_context["fsGroup"]] if pod_context.get("fsGroup") is not None else []
    groups += [g for g in pod_context.get("supplementalGroups") or [] if g not in groups]
    return SecurityContext(
        run_as_user=merged("runAsUser"),
        run_as_group=merged("runAsGroup"),
        run_as_non_root=bool(merged("runAsNonRoot")),
        supplemental_groups=tuple(int(g) for g in groups),
        read_only_root_filesystem=bool(container_context.get("readOnlyRootFilesystem", False)),
        capabilities_drop=tuple(capabilities.get("drop") or ()),
        capabilities_add=tuple(capabilities.get("add") or ()),
        allow_privilege_escalation=bool(container_context.get("allowPrivilegeEscalation", True)),
    )


def _scratch_volumes(volumes: list[dict], mounts: list[dict], workload: str) -> tuple[ScratchVolume, ...]:
    by_name = {v["name"]: v for v in volumes}
    scratch = []
    for mount in mounts:
        volume = by_name.get(mount["name"])
        if volume is None or "emptyDir" not in volume:
            kind = next((k for k in (volume or {}) if k != "name"), "undeclared volume")
            raise SyncFailed(
                f"{workload}: volume {mount['name']!r} ({kind}) mounted at {mount.get('mountPath')} cannot be provided "
                "by the local target, which runs emptyDir volumes only",
                code="sync_failed",
            )
        scratch.append(ScratchVolume(mount["mountPath"], _quantity((volume["emptyDir"] or {}).get("sizeLimit"))))
    return tuple(scratch)


def _quantity(value: object) -> str | None:
    return None if value is None else str(value)
