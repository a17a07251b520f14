"""An in-memory ``LocalRuntime`` for tests that exercise the simulator without Docker.

It hands out loopback addresses the way the real runtime does (one 127.0.0.N per workload), and can
be told to fail ``apply`` for a workload, so sync-failure paths are testable without a broken image.
"""

from __future__ import annotations

import threading

from control_api.adapters.local_runtime.base import WorkloadSpec, WorkloadStatus


class InMemoryRuntime:
    def __init__(self, address_prefix: str = "127.0.0.", first_address: int = 100) -> None:
        self._prefix = address_prefix
        self._next = first_address
        self._lock = threading.Lock()
        self.specs: dict[tuple[str, str], WorkloadSpec] = {}
        self.statuses: dict[tuple[str, str], WorkloadStatus] = {}
        self.apply_calls: list[WorkloadSpec] = []
        self.deleted: list[tuple[str, str]] = []
        self.fail_apply: dict[tuple[str, str], str] = {}  # (namespace, name) -> error message

    def apply(self, spec: WorkloadSpec, ready_timeout: float) -> WorkloadStatus:
        key = (spec.namespace, spec.name)
        with self._lock:
            self.apply_calls.append(spec)
            if key in self.fail_apply:
                raise RuntimeError(self.fail_apply[key])
            previous = self.statuses.get(key)
            address = previous.address if previous else self._allocate()
            status = WorkloadStatus(
                namespace=spec.namespace,
                name=spec.name,
                image=spec.image,
                address=address,
                port=spec.service_port,
                replicas=spec.replicas,
                ready_replicas=spec.replicas,
                container_ids=tuple(f"{spec.name}-{i}" for i in range(spec.replicas)),
            )
            self.specs[key] = spec
            self.statuses[key] = status
            return status

    def get(self, namespace: str, name: str) -> WorkloadStatus | None:
        with self._lock:
            return self.statuses.get((namespace, name))

    def list(self) -> list[WorkloadStatus]:
        with self._lock:
            return list(self.statuses.values())

    def delete(self, namespace: str, name: str) -> None:
        with self._lock:
            self.deleted.append((namespace, name))
            self.specs.pop((namespace, name), None)
            self.statuses.pop((namespace, name), None)

    def _allocate(self) -> str:
        address = f"{self._prefix}{self._next}"
        self._next += 1
        return address
