"""Port: run what a Deployment + Service describe on the local Docker Engine.

Used by the ``local`` target. Each Service gets its own loopback address (127.0.0.N) and listens on
its Service port there, so the URL behaves like a LoadBalancer's external IP. A Service may select
the pods of several Deployments (a stable and a canary one): their replicas all join that address,
and connections spread over all of them, as kube-proxy spreads them over all ready endpoints. Each
Deployment stays a workload of its own (applied, listed, read and deleted by its name).

The pod's security context (user, group, read-only root filesystem, capabilities, privilege
escalation, emptyDir volumes) and the readiness probe are honoured; other parts of Kubernetes are not
emulated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class SecurityContext:
    """The pod and container securityContext merged as the kubelet does (the container's wins).

    Defaults are Kubernetes' own when the manifest says nothing: the image's user, a writable root
    filesystem, the runtime's default capabilities, privilege escalation allowed.
    """

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool = False
    supplemental_groups: tuple[int, ...] = ()  # fsGroup and supplementalGroups
    read_only_root_filesystem: bool = False
    capabilities_drop: tuple[str, ...] = ()
    capabilities_add: tuple[str, ...] = ()
    allow_privilege_escalation: bool = True


@dataclass(frozen=True)
class ScratchVolume:
    """An emptyDir mounted into the container; run as a tmpfs of at most ``size_limit`` (a quantity)."""

    mount_path: str
    size_limit: str | None = None


@dataclass(frozen=True)
class WorkloadSpec:
    namespace: str
    name: str  # the Deployment's name; (namespace, name) identifies the workload
    image: str  # by digest
    container_port: int = 8080
    service_port: int = 80
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    cpu_limit: str | None = None  # Kubernetes quantity, e.g. "500m"
    memory_limit: str | None = None  # Kubernetes quantity, e.g. "1Gi"
    labels: dict[str, str] = field(default_factory=dict)
    readiness_path: str = "/ready"
    readiness_port: int | None = None  # None: the container port
    readiness_period_seconds: int = 10
    readiness_failure_threshold: int = 3
    termination_grace_seconds: int = 30
    security: SecurityContext = field(default_factory=SecurityContext)
    scratch_volumes: tuple[ScratchVolume, ...] = ()
    # The Service whose address the replicas join; None: the one named like the Deployment (the usual
    # case, and a Deployment no Service selects). Deployments joining one Service share its address.
    service_name: str | None = None
    # Who applied the workload (the local target's app), so a sync can prune the Deployments of its
    # app that a revision no longer has, like Argo CD's tracking label. None: nobody said.
    owner: str | None = None

    @property
    def service(self) -> str:
        return self.service_name or self.name


@dataclass(frozen=True)
class WorkloadStatus:
    namespace: str
    name: str
    image: str
    address: str  # the loopback IP, e.g. 127.0.0.12
    port: int  # the Service port on that address
    replicas: int
    ready_replicas: int
    container_ids: tuple[str, ...] = ()
    service: str = ""  # the Service whose address it serves on; "" for workloads older than the label
    owner: str | None = None  # ``WorkloadSpec.owner`` as applied

    @property
    def url(self) -> str:
        return f"http://{self.address}" if self.port == 80 else f"http://{self.address}:{self.port}"


class LocalRuntime(Protocol):
    def apply(self, spec: WorkloadSpec, ready_timeout: float) -> WorkloadStatus:
        """Start the spec; replace the previous containers only once the new ones are ready.

        Applying an identical spec again leaves the running containers alone; a spec that changes
        only ``replicas`` scales them (starts the missing ones, or terminates the surplus) and keeps
        the others running, as a Deployment does when its pod template is unchanged.
        """

    def get(self, namespace: str, name: str) -> WorkloadStatus | None: ...

    def replica_get(self, namespace: str, name: str, path: str) -> list[str]:
        """``GET path`` from each ready replica of the Deployment itself (not whichever replica of
        the Service the kernel picks): one body per replica, e.g. each model server's /metrics."""

    def list(self) -> list[WorkloadStatus]: ...

    def delete(self, namespace: str, name: str) -> None:
        """Remove the Deployment's replicas; the Service's address goes once no Deployment uses it."""
