"""``LocalRuntime`` on the local Docker Engine.

Each (namespace, name) gets its own loopback address 127.0.0.N and serves on its Service port there.
Containers run with host networking and bind that address directly (env HOST, PORT) with
SO_REUSEPORT (env REUSE_PORT=1), so several replicas share the address and the kernel spreads
connections across them, and during an update the new containers start listening beside the old ones:
the old ones are removed only once every new one is ready. Readiness is per container: the server
writes READY_FILE once its model is loaded and a Docker healthcheck looks for it, because a request to
the shared address could be answered by an old replica.

Everything the runtime knows lives in container labels, so a restarted control service finds the
running workloads again with no state file.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from control_api.adapters.local_runtime.base import WorkloadSpec, WorkloadStatus
from control_api.errors import DeploymentTimedOut, ServiceUnavailable, SyncFailed
from control_api.settings import TargetSettings

LABEL_PREFIX = "io.mlops.workload"
L_NAMESPACE = f"{LABEL_PREFIX}.namespace"
L_NAME = f"{LABEL_PREFIX}.name"
L_ADDRESS = f"{LABEL_PREFIX}.address"
L_PORT = f"{LABEL_PREFIX}.port"
L_HASH = f"{LABEL_PREFIX}.spec-hash"
L_REPLICAS = f"{LABEL_PREFIX}.replicas"
L_IMAGE = f"{LABEL_PREFIX}.image"
READY_FILE = "/tmp/.model-ready"

# Shared by every runtime in the process (the control service and, in tests, a simulator each hold
# one): two instances allocating at once would otherwise hand out the same loopback address.
class _MachineLock:
    """Loopback addresses are a machine-wide resource (every process talks to the same Docker
    Engine), so allocation is serialised across processes with a file lock, and within a process
    with a re-entrant thread lock (flock is per open file, not per thread)."""

    PATH = "/tmp/mlops-local-runtime.lock"

    def __init__(self) -> None:
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._handle = None

    def __enter__(self):
        import fcntl

        self._thread_lock.acquire()
        if self._depth == 0:
            self._handle = open(self.PATH, "a")
            fcntl.flock(self._handle, fcntl.LOCK_EX)
        self._depth += 1
        return self

    def __exit__(self, *exc):
        import fcntl

        self._depth -= 1
        if self._depth == 0 and self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        self._thread_lock.release()
        return False


_ALLOCATION_LOCK = _MachineLock()

_CPU_SUFFIX_MILLI = "m"
_MEMORY_FACTORS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def nano_cpus(quantity: str | None) -> int | None:
    if not quantity:
        return None
    if quantity.endswith(_CPU_SUFFIX_MILLI):
        return int(quantity[:-1]) * 10**6
    return int(float(quantity) * 10**9)


def memory_bytes(quantity: str | None) -> int | None:
    if not quantity:
        return None
    digits = quantity.rstrip("kKMGTi")
    suffix = quantity[len(digits):]
    return int(float(digits) * _MEMORY_FACTORS[suffix])


def spec_hash(spec: WorkloadSpec) -> str:
    payload = json.dumps(
        {
            "image": spec.image,
            "env": dict(sorted(spec.env.items())),
            "container_port": spec.container_port,
            "service_port": spec.service_port,
            "replicas": spec.replicas,
            "cpu": spec.cpu_limit,
            "memory": spec.memory_limit,
            "readiness": spec.readiness_path,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


class DockerLocalRuntime:
    def __init__(self, settings: TargetSettings, client_factory=None) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self._client = None
        self._lock = _ALLOCATION_LOCK

    # ---- docker plumbing -----------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            try:
                import docker

                self._client = self._client_factory() if self._client_factory else docker.from_env(timeout=120)
                self._client.ping()
            except Exception as exc:
                self._client = None
                raise ServiceUnavailable(f"Docker Engine is not reachable: {exc}", code="docker_unavailable") from exc
        return self._client

    def _containers(self, namespace: str | None = None, name: str | None = None) -> list:
        filters = [f"{L_NAMESPACE}"]
        if namespace:
            filters = [f"{L_NAMESPACE}={namespace}"]
        if name:
            filters.append(f"{L_NAME}={name}")
        try:
            return self.client.containers.list(all=True, filters={"label": filters})
        except Exception as exc:
            raise ServiceUnavailable(f"Docker Engine error: {exc}", code="docker_unavailable") from exc

    # ---- addresses -----------------------------------------------------------------------------

    def _address_for(self, namespace: str, name: str) -> str:
        existing = self._containers(namespace, name)
        if existing:
            return existing[0].labels[L_ADDRESS]
        taken = {c.labels.get(L_ADDRESS) for c in self._containers()}
        for n in range(self.settings.loopback_first, 255):
            address = f"{self.settings.loopback_prefix}{n}"
            if address not in taken:
                return address
        raise SyncFailed("no free loopback address left for another workload", code="no_address")

    # ---- the port ------------------------------------------------------------------------------

    def apply(self, spec: WorkloadSpec, ready_timeout: float) -> WorkloadStatus:
        with self._lock:
            digest = spec_hash(spec)
            current = self._containers(spec.namespace, spec.name)
            same = [c for c in current if c.labels.get(L_HASH) == digest and c.status == "running"]
            if len(same) == spec.replicas and all(self._healthy(c) for c in same) and len(current) == len(same):
                return self._status(spec.namespace, spec.name)
            address = self._address_for(spec.namespace, spec.name)
            started = [self._start(spec, digest, address, i) for i in range(spec.replicas)]
        try:
            self._wait_ready(started, ready_timeout, spec)
        except Exception:
            for container in started:
                _remove(container)
            raise
        with self._lock:
            for container in current:
                if container.id not in {c.id for c in started}:
                    _remove(container)
            return self._status(spec.namespace, spec.name)

    def get(self, namespace: str, name: str) -> WorkloadStatus | None:
        return self._status(namespace, name)

    def list(self) -> list[WorkloadStatus]:
        keys = sorted({(c.labels[L_NAMESPACE], c.labels[L_NAME]) for c in self._containers()})
        return [s for s in (self._status(ns, n) for ns, n in keys) if s is not None]

    def delete(self, namespace: str, name: str) -> None:
        with self._lock:
            for container in self._containers(namespace, name):
                _remove(container)

    def ping(self) -> None:
        _ = self.client

    # ---- helpers -------------------------------------------------------------------------------

    def _start(self, spec: WorkloadSpec, digest: str, address: str, index: int):
        labels = {
            **{k: v for k, v in spec.labels.items() if len(k) < 200},
            L_NAMESPACE: spec.namespace,
            L_NAME: spec.name,
            L_ADDRESS: address,
            L_PORT: str(spec.service_port),
            L_HASH: digest,
            L_REPLICAS: str(spec.replicas),
            L_IMAGE: spec.image,
        }
        env = {
            **spec.env,
            # The Service port on the workload's own address; the container port is what the
            # server would listen on behind a real Service, kept for the server's information.
            "HOST": address,
            "PORT": str(spec.service_port),
            "CONTAINER_PORT": str(spec.container_port),
            "REUSE_PORT": "1",
            "READY_FILE": READY_FILE,
        }
        name = f"mlops-{spec.namespace}-{spec.name}-{digest[:8]}-{index}-{int(time.time() * 1000) % 100000}"
        try:
            return self.client.containers.run(
                spec.image,
                name=name[:120],
                detach=True,
                labels=labels,
                environment=env,
                network_mode="host",
                restart_policy={"Name": "unless-stopped"},
                nano_cpus=nano_cpus(spec.cpu_limit),
                mem_limit=memory_bytes(spec.memory_limit),
                healthcheck={
                    "test": ["CMD-SHELL", f"test -f {READY_FILE}"],
                    "interval": 500_000_000,
                    "timeout": 2_000_000_000,
                    "retries": 3,
                    "start_period": 0,
                },
                tmpfs={"/tmp": "rw,size=256m"},
                # With host networking the server binds the Service port (80) itself, which needs
                # CAP_NET_BIND_SERVICE; Docker 20.10 cannot give that to a non-root user, so the
                # process runs as uid 0 with every other capability dropped.
                user="0",
                cap_drop=["ALL"],
                cap_add=["NET_BIND_SERVICE"],
                security_opt=["no-new-privileges"],
            )
        except Exception as exc:
            message = str(exc)
            if "No such image" in message or "not found" in message or "pull access denied" in message:
                raise SyncFailed(f"image {spec.image} cannot be pulled: {message[:300]}", code="image_pull_failed") from exc
            raise ServiceUnavailable(f"Docker could not start {spec.name}: {message[:300]}", code="docker_unavailable") from exc

    def _wait_ready(self, containers: list, timeout: float, spec: WorkloadSpec) -> None:
        deadline = time.monotonic() + timeout
        pending = list(containers)
        while pending:
            for container in list(pending):
                container.reload()
                # restart_policy brings a crashed container back, so a restart counts as a crash too.
                crashed = container.attrs["State"].get("Restarting") or container.attrs.get("RestartCount", 0) > 0
                if container.status in ("exited", "dead") or crashed:
                    logs = container.logs(tail=20).decode("utf-8", "replace").strip()
                    raise SyncFailed(
                        f"container for {spec.namespace}/{spec.name} exited (code {container.attrs['State'].get('ExitCode')}); last log lines:\n{logs}",
                        code="sync_failed",
                        details={"resource": {"kind": "Deployment", "namespace": spec.namespace, "name": spec.name}},
                    )
                if self._healthy(container):
                    pending.remove(container)
            if not pending:
                return
            if time.monotonic() >= deadline:
                logs = pending[0].logs(tail=10).decode("utf-8", "replace").strip()
                raise DeploymentTimedOut(
                    f"{spec.namespace}/{spec.name}: {len(pending)} of {len(containers)} new containers not ready after {timeout:.0f} s; the previous version keeps serving. Last log lines:\n{logs}"
                )
            time.sleep(0.3)

    @staticmethod
    def _healthy(container) -> bool:
        health = (container.attrs.get("State") or {}).get("Health") or {}
        return container.status == "running" and health.get("Status") == "healthy"

    def _status(self, namespace: str, name: str) -> WorkloadStatus | None:
        containers = [c for c in self._containers(namespace, name) if c.status != "removing"]
        if not containers:
            return None
        newest = max(containers, key=lambda c: c.attrs.get("Created", ""))
        digest = newest.labels[L_HASH]
        current = [c for c in containers if c.labels[L_HASH] == digest]
        return WorkloadStatus(
            namespace=namespace,
            name=name,
            image=newest.labels.get(L_IMAGE, ""),
            address=newest.labels[L_ADDRESS],
            port=int(newest.labels.get(L_PORT, "80")),
            replicas=int(newest.labels.get(L_REPLICAS, "1")),
            ready_replicas=sum(1 for c in current if self._healthy(c)),
            container_ids=tuple(sorted(c.id for c in current)),
        )


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except Exception as exc:  # already gone
        if "No such container" not in str(exc) and "removal of container" not in str(exc):
            raise
