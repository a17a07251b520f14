"""Port: run what a Deployment + Service describe on the local Docker Engine.

Used by the ``local`` target and by the Argo CD/Kubernetes simulator in tests. Each Service gets its
own loopback address (127.0.0.N) and listens on its Service port there, so the URL behaves like a
LoadBalancer's external IP. Nothing else of Kubernetes is emulated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class WorkloadSpec:
    namespace: str
    name: str  # Deployment/Service name; (namespace, name) identifies the workload
    image: str  # by digest
    container_port: int = 8080
    service_port: int = 80
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    cpu_limit: str | None = None  # Kubernetes quantity, e.g. "500m"
    memory_limit: str | None = None  # Kubernetes quantity, e.g. "1Gi"
    labels: dict[str, str] = field(default_factory=dict)
    readiness_path: str = "/ready"


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

    @property
    def url(self) -> str:
        return f"http://{self.address}" if self.port == 80 else f"http://{self.address}:{self.port}"


class LocalRuntime(Protocol):
    def apply(self, spec: WorkloadSpec, ready_timeout: float) -> WorkloadStatus:
        """Start the spec; replace the previous containers only once the new ones are ready.

        Applying an identical spec again leaves the running containers alone.
        """

    def get(self, namespace: str, name: str) -> WorkloadStatus | None: ...

    def list(self) -> list[WorkloadStatus]: ...

    def delete(self, namespace: str, name: str) -> None: ...
