"""``LocalRuntime`` on the local Docker Engine.

Each Service (namespace, Service name) gets its own loopback address 127.0.0.N, and its Service port
there is published by Docker (``-p 127.0.0.N:<service port>:<container port>``) from a small
per-Service *network holder* container, the way a pod's pause container holds its network namespace:
it only sleeps, as nobody, read-only, with no capabilities, on the model network (see
``containment``). The replicas of every Deployment the Service selects (one usually; a stable and a
canary Deployment during a canary release) join the holder's namespace (``network_mode=container:``)
and listen on the container port with SO_REUSEPORT (env REUSE_PORT=1): they form one listening group,
and the kernel spreads connections over its sockets evenly, so traffic splits between Deployments by
replica count, as kube-proxy spreads it over all ready endpoints. During an update the new replicas
join the group beside the old ones, which are removed only once every new one passes the manifest's
readiness probe (see ``readiness``). A change of ``replicas`` alone is a scale, not an update, as for
a Deployment whose pod template is unchanged: each replica carries its template's hash (the spec's
without ``replicas``), the ready replicas of the same template keep running, only the missing ones
are started (and waited for), or the surplus ones leave as old replicas do, newest first as the
ReplicaSet controller picks them. Replicas started before that label are of another template to it:
their first scale replaces them, once. This shape was chosen over a user-space balancer because it needs
no proxy code in the request path and no process that has to survive the control service: the holder
and replicas are plain containers with a restart policy.

Each Deployment stays a workload of its own: ``apply``, ``get``, ``list`` and ``delete`` take its name
and touch only its replicas (unless the Service's ports change, see below). The holder is started by
whichever Deployment of the Service is applied first and removed with the last one; a Deployment
removed while others still use the holder gets SIGTERM and its grace period, as in an update, so the
Service keeps serving. Workloads from before Services could select several Deployments (holder and
replicas labelled with the Deployment's name, which is the Service's) are found and kept as they are.

Replicas run as their manifest's securityContext says (user and group, read-only root filesystem,
capabilities, no-new-privileges, emptyDir volumes as size-limited tmpfs) with no host networking; a
manifest the image cannot run under fails the sync with the container's last log lines and how it
was run. Changing the container or Service port replaces the holder, with a gap in service, and
restarts every Deployment behind the Service (their replicas live in its namespace). Old
replicas get SIGTERM and their termination grace period; the holder's namespace sets
net.ipv4.tcp_migrate_req, so connections queued on a leaving replica move to the others. Not
modelled: the liveness and startup probes (a crashed process is restarted by the restart policy; a
hung one is not), and the holder needs ``sleep`` in the image.

Everything the runtime knows lives in container labels, so a restarted control service finds the
running workloads again with no state file. Labels cannot change, so a replica's ``replicas`` label is
the count it was started for; the Deployment's count is that of its current template's live replicas
(the larger started-for count while new ones start): a replica removed behind the runtime's back is
not missed until the next ``apply``, which starts it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self, TextIO, TypeAlias, cast

from control_api.adapters.local_runtime import containment, readiness
from control_api.adapters.local_runtime.base import WorkloadSpec, WorkloadStatus
from control_api.adapters.local_runtime.quantities import memory_bytes, nano_cpus
from control_api.errors import DeploymentTimedOut, ServiceUnavailable, SyncFailed
from control_api.settings import TargetSettings

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.api.container import _RestartPolicy
    from docker.models.containers import Container

    # Spelled out because ``DockerLocalRuntime.list`` shadows the builtin inside the class.
    Containers: TypeAlias = list[Container]

__all__ = ["DockerLocalRuntime", "memory_bytes", "nano_cpus", "spec_hash", "template_hash"]

LABEL_PREFIX = "io.mlops.workload"
L_NAMESPACE = f"{LABEL_PREFIX}.namespace"
L_NAME = f"{LABEL_PREFIX}.name"
L_ADDRESS = f"{LABEL_PREFIX}.address"
L_PORT = f"{LABEL_PREFIX}.port"
L_CONTAINER_PORT = f"{LABEL_PREFIX}.container-port"
L_HASH = f"{LABEL_PREFIX}.spec-hash"
# What the pod template is: the spec hash without ``replicas`` (see ``template_hash``). Absent on
# replicas started before scaling kept running replicas.
L_TEMPLATE = f"{LABEL_PREFIX}.template-hash"
L_REPLICAS = f"{LABEL_PREFIX}.replicas"
L_IMAGE = f"{LABEL_PREFIX}.image"
L_ROLE = f"{LABEL_PREFIX}.role"
# The Service whose holder the container is or joins. Absent on containers from before Services could
# select several Deployments: there the Service is named like the Deployment (``L_NAME``).
L_SERVICE = f"{LABEL_PREFIX}.service"
L_OWNER = f"{LABEL_PREFIX}.owner"
L_GRACE = f"{LABEL_PREFIX}.termination-grace-seconds"
ROLE_NETWORK = "network"
ROLE_REPLICA = "replica"
# The holder only sleeps; it runs as nobody whatever the manifest says, since nothing of the model runs in it.
HOLDER_USER = "65534:65534"
HOLDER_COMMAND = ["sleep", "infinity"]
# docker's type stubs allow only "always" and "on-failure" as a restart policy's name; the Engine API also
# takes "no" and "unless-stopped", which these are.
RESTART_UNLESS_STOPPED: _RestartPolicy = {"Name": "unless-stopped"}  # type: ignore[typeddict-item]
RESTART_NEVER: _RestartPolicy = {"Name": "no"}  # type: ignore[typeddict-item]


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
        self._handle: TextIO | None = None

    def __enter__(self) -> Self:
        import fcntl

        self._thread_lock.acquire()
        if self._depth == 0:
            self._handle = open(self.PATH, "a")
            fcntl.flock(self._handle, fcntl.LOCK_EX)
        self._depth += 1
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> Literal[False]:
        import fcntl

        self._depth -= 1
        if self._depth == 0 and self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        self._thread_lock.release()
        return False


_ALLOCATION_LOCK = _MachineLock()


def spec_hash(spec: WorkloadSpec) -> str:
    """What the containers run: everything in the spec but its identity, labels and owner.

    The Service joined is left out too, so the hash of a spec is what it was before Services could
    select several Deployments (running replicas are not replaced by an upgrade of the service);
    ``apply`` sees a change of Service from the network namespace its replicas run in."""
    return _hash(spec, ("namespace", "name", "labels", "service_name", "owner"))


def template_hash(spec: WorkloadSpec) -> str:
    """What one replica runs: ``spec_hash`` without ``replicas``, as a Deployment's pod-template-hash
    leaves its replica count out. Replicas of one template are kept when only the count changes."""
    return _hash(spec, ("namespace", "name", "labels", "service_name", "owner", "replicas"))


def _hash(spec: WorkloadSpec, left_out: tuple[str, ...]) -> str:
    payload = dataclasses.asdict(spec)
    for key in left_out:
        payload.pop(key)
    payload["env"] = dict(sorted(spec.env.items()))
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


class DockerLocalRuntime:
    def __init__(
        self,
        settings: TargetSettings,
        client_factory: Callable[[], DockerClient] | None = None,
        network_name: str = containment.MODEL_NETWORK,
    ) -> None:
        self.settings = settings
        self.network_name = network_name
        self._client_factory = client_factory
        self._client: DockerClient | None = None
        self._lock = _ALLOCATION_LOCK
        self._reapers: list[threading.Thread] = []

    # ---- docker plumbing -----------------------------------------------------------------------

    @property
    def client(self) -> DockerClient:
        if self._client is None:
            try:
                import docker

                client = self._client_factory() if self._client_factory else docker.from_env(timeout=120)
                client.ping()
            except Exception as exc:
                raise ServiceUnavailable(f"Docker Engine is not reachable: {exc}", code="docker_unavailable") from exc
            self._client = client
        return self._client

    def _containers(self, namespace: str | None = None, name: str | None = None) -> Containers:
        filters = [f"{L_NAMESPACE}"]
        if namespace:
            filters = [f"{L_NAMESPACE}={namespace}"]
        if name:
            filters.append(f"{L_NAME}={name}")
        try:
            # ignore_removed: a replica being reaped in another thread may go between listing and inspecting.
            return self.client.containers.list(all=True, filters={"label": filters}, ignore_removed=True)
        except Exception as exc:
            raise ServiceUnavailable(f"Docker Engine error: {exc}", code="docker_unavailable") from exc

    def _replicas(self, namespace: str, name: str) -> Containers:
        return [
            c for c in self._containers(namespace, name) if c.labels.get(L_ROLE) != ROLE_NETWORK and not _terminating(c)
        ]

    def _holder(self, namespace: str, service: str) -> Container | None:
        # A holder's L_NAME is its Service's name (which is also the Deployment's for older holders).
        return next((c for c in self._containers(namespace, service) if c.labels.get(L_ROLE) == ROLE_NETWORK), None)

    def _users(self, holder: Container) -> Containers:
        """The replicas in the holder's network namespace, of any Deployment (terminating ones too:
        they still finish their requests there)."""
        return [
            c
            for c in self._containers(holder.labels[L_NAMESPACE])
            if c.labels.get(L_ROLE) != ROLE_NETWORK and _network_parent(c) == holder.id
        ]

    def _remove_holders_if_unused(self, namespace: str, holder_ids: set[str]) -> None:
        for holder in self._containers(namespace):
            if holder.id in holder_ids and holder.labels.get(L_ROLE) == ROLE_NETWORK and not self._users(holder):
                _remove(holder)

    # ---- addresses -----------------------------------------------------------------------------

    def _address_for(self, namespace: str, service: str) -> str:
        existing = [c for c in self._containers(namespace) if _service_of(c) == service]
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
            digest, template = spec_hash(spec), template_hash(spec)
            self._remove_exited_leftovers(spec.namespace, spec.name)
            current = self._replicas(spec.namespace, spec.name)
            holder = self._holder(spec.namespace, spec.service)
            serving = [
                c
                for c in current
                if holder is not None and c.status == "running" and _network_parent(c) == holder.id and self._healthy(c)
            ]
            # Running replicas started before the template label, of exactly this spec: left alone.
            unchanged = [c for c in serving if L_TEMPLATE not in c.labels and c.labels.get(L_HASH) == digest]
            if len(unchanged) == len(current) == spec.replicas and holder is not None:
                return self._applied_status(spec)
            # Ready replicas of this pod template stay, as a Deployment whose template is unchanged is
            # scaled, not rolled out: the oldest are kept, the newest are the surplus (see ``_keep``).
            kept = _keep([c for c in serving if c.labels.get(L_TEMPLATE) == template], spec.replicas)
            if len(kept) == len(current) == spec.replicas and holder is not None:
                return self._applied_status(spec)
            image_user = self._image_user(spec.image)
            workload = f"{spec.namespace}/{spec.name}"
            containment.check_runs_as_non_root(workload, spec.security, image_user)
            if holder is not None and not self._holder_fits(holder, spec):
                # Another port mapping needs another holder, and the old replicas of every Deployment
                # behind the Service live in the old one's network namespace: they restart with a gap
                # (a sync applies the Service's other Deployments right after this one).
                for container in {c.id: c for c in [*self._users(holder), *current]}.values():
                    _remove(container)
                _remove(holder)
                current, holder, kept = [], None, []
            # Holders the Deployment's old replicas live in when it moves to another Service's address.
            left_holders = {p for p in (_network_parent(c) for c in current) if p is not None}
            if holder is None:
                address = self._address_for(spec.namespace, spec.service)
                # Replicas of a runtime that ran them on the host network hold the address themselves.
                for container in current:
                    _remove(container)
                self._remove_holders_if_unused(spec.namespace, left_holders)
                current, left_holders, kept = [], set(), []
                holder = self._start_holder(spec, address)
            left_holders.discard(holder.id or "")
            address = holder.labels[L_ADDRESS]
            started = []
            try:
                # Only the missing replicas; they join the kept ones' listening group.
                for index in range(len(kept), spec.replicas):
                    started.append(self._start(spec, digest, address, index, holder))
            except Exception:
                self._discard(started, holder)
                raise
        try:
            self._wait_ready(started, ready_timeout, spec, image_user)
        except Exception:
            with self._lock:
                self._discard(started, holder)
            raise
        # The other template's replicas (or the surplus of this one's) leave once the new ones are ready.
        staying = {c.id for c in [*kept, *started]}
        self._retire(
            [c for c in current if c.id not in staying],
            spec.termination_grace_seconds,
            spec.namespace,
            left_holders,
        )
        return self._applied_status(spec)

    def _applied_status(self, spec: WorkloadSpec) -> WorkloadStatus:
        status = self._status(spec.namespace, spec.name)
        if status is None:  # another process deleted the workload while it was being applied
            raise SyncFailed(f"{spec.namespace}/{spec.name}: its containers vanished once applied", code="sync_failed")
        return status

    def _retire(
        self, containers: Containers, grace_seconds: float, namespace: str = "", holders: set[str] | None = None
    ) -> None:
        """Terminate the replaced replicas and return: like a Deployment's rollout, the update is
        complete once the new replicas are ready, while the old ones are still terminating. Waiting for
        them to exit and removing them (seconds: the grace period of a server finishing its requests,
        then the engine's cleanup) goes on in a thread, outside the machine-wide lock; then ``holders``
        are removed if no replica uses them any more. Replicas already terminating are not signalled
        again, only reaped."""
        signalled = _terminate([c for c in containers if not _terminating(c)])
        signalled += [c for c in containers if _terminating(c)]
        if not signalled and not holders:
            return

        def reap() -> None:
            _reap(signalled, grace_seconds)
            if holders:
                with self._lock, contextlib.suppress(Exception):
                    self._remove_holders_if_unused(namespace, holders)

        thread = threading.Thread(target=reap, name="retire-replicas", daemon=True)
        self._reapers.append(thread)
        thread.start()

    def _remove_exited_leftovers(self, namespace: str, name: str) -> None:
        """Replicas terminated by a service process that stopped before removing them."""
        for container in self._containers(namespace, name):
            if _terminating(container) and container.status in ("exited", "dead", "created"):
                _remove_quietly(container)

    def wait_retired(self, timeout: float) -> bool:
        """Wait until the replicas replaced so far are removed; False if some are still there."""
        deadline = time.monotonic() + timeout
        for thread in list(self._reapers):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._reapers = [t for t in self._reapers if t.is_alive()]
        return not self._reapers

    def get(self, namespace: str, name: str) -> WorkloadStatus | None:
        return self._status(namespace, name)

    def replica_get(self, namespace: str, name: str, path: str) -> list[str]:
        """``GET path`` from each ready replica of the Deployment, run inside the replica with ``docker
        exec`` so that it reaches that replica's own server (see ``readiness``) and not whichever replica
        of the Service the kernel picks. One body per replica, in the order of ``container_ids``."""
        replicas = sorted((c for c in self._replicas(namespace, name) if self._healthy(c)), key=lambda c: c.id or "")

        def fetch(container: Container) -> str:
            port = int(container.labels.get(L_CONTAINER_PORT, "8080"))
            try:
                result = container.exec_run(readiness.fetch_command(port, path), demux=True)
            except Exception as exc:
                raise ServiceUnavailable(f"Docker Engine error: {exc}", code="docker_unavailable") from exc
            # demux: (stdout, stderr), each None when the command wrote nothing there.
            stdout, stderr = cast("tuple[bytes | None, bytes | None]", result.output)
            if result.exit_code != 0:
                said = (stderr or stdout or b"").decode("utf-8", "replace").strip()[-300:]
                raise ServiceUnavailable(
                    f"{namespace}/{name}: replica {container.name} did not answer GET {path}: {said or 'no output'}"
                )
            return (stdout or b"").decode("utf-8", "replace")

        if not replicas:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(replicas))) as pool:
            return list(pool.map(fetch, replicas))

    def list(self) -> list[WorkloadStatus]:
        """Each Deployment; and a holder no replica uses, under its Service's name (so it can be deleted)."""
        containers = self._containers()
        parents = {_network_parent(c) for c in containers}
        keys = sorted(
            {
                (c.labels[L_NAMESPACE], c.labels[L_NAME])
                for c in containers
                if c.labels.get(L_ROLE) != ROLE_NETWORK or c.id not in parents
            }
        )
        return [s for s in (self._status(ns, n) for ns, n in keys) if s is not None]

    def delete(self, namespace: str, name: str) -> None:
        with self._lock:
            containers = self._containers(namespace, name)
            replicas = [c for c in containers if c.labels.get(L_ROLE) != ROLE_NETWORK]
            # The holder named like the Deployment (its Service's), and those its replicas live in.
            holders = {c.id: c for c in containers if c.labels.get(L_ROLE) == ROLE_NETWORK}
            parents = {_network_parent(c) for c in replicas}
            holders.update({c.id: c for c in self._containers(namespace) if c.id in parents})
            ours = {c.id for c in replicas}
            users = {holder_id: self._users(holder) for holder_id, holder in holders.items()}
            # A holder another Deployment still serves from (not only terminating replicas) stays, and the
            # replicas leave it as in an update (SIGTERM, the grace period, their queued connections
            # migrate to the others), so the Service keeps answering. Otherwise the address goes: its
            # replicas are removed (first: they live in its network namespace), then the holder.
            shared = {h for h, found in users.items() if any(u.id not in ours and not _terminating(u) for u in found)}
            leaving = [c for c in replicas if _network_parent(c) in shared]
            for container in replicas:
                if _network_parent(container) not in shared:
                    _remove(container)
            for holder_id, holder in holders.items():
                if holder_id not in shared:
                    for container in users[holder_id]:
                        _remove(container)
                    _remove(holder)
            grace = max((float(c.labels.get(L_GRACE, "30")) for c in leaving), default=30.0)
        self._retire(leaving, grace, namespace, {h for h in shared if h})

    def ping(self) -> None:
        _ = self.client

    # ---- helpers -------------------------------------------------------------------------------

    def _image_user(self, image: str) -> str:
        import docker

        try:
            return (self.client.images.get(image).attrs.get("Config") or {}).get("User") or ""
        except docker.errors.ImageNotFound:
            try:
                return (self.client.images.pull(image).attrs.get("Config") or {}).get("User") or ""
            except Exception as exc:
                raise SyncFailed(f"image {image} cannot be pulled: {str(exc)[:300]}", code="image_pull_failed") from exc
        except Exception as exc:
            raise ServiceUnavailable(f"Docker Engine error: {exc}", code="docker_unavailable") from exc

    @staticmethod
    def _holder_fits(holder: Container, spec: WorkloadSpec) -> bool:
        return (
            holder.labels.get(L_PORT) == str(spec.service_port)
            and holder.labels.get(L_CONTAINER_PORT) == str(spec.container_port)
            and holder.status == "running"
        )

    def _discard(self, started: Containers, holder: Container) -> None:
        """Remove replicas that did not get ready, and the holder unless other replicas live in it."""
        for container in started:
            _remove(container)
        if not self._users(holder):
            _remove(holder)

    def _identity_labels(self, spec: WorkloadSpec, address: str, role: str) -> dict[str, str]:
        return {
            **{k: v for k, v in spec.labels.items() if len(k) < 200},
            L_NAMESPACE: spec.namespace,
            # The holder belongs to the Service, a replica to its Deployment.
            L_NAME: spec.service if role == ROLE_NETWORK else spec.name,
            L_SERVICE: spec.service,
            L_ADDRESS: address,
            L_PORT: str(spec.service_port),
            L_CONTAINER_PORT: str(spec.container_port),
            L_IMAGE: spec.image,
            L_ROLE: role,
            **({L_OWNER: spec.owner} if spec.owner else {}),
            # What ``delete`` gives a replica leaving a Service that keeps serving.
            **({L_GRACE: str(spec.termination_grace_seconds)} if role == ROLE_REPLICA else {}),
        }

    def _start_holder(self, spec: WorkloadSpec, address: str) -> Container:
        network = containment.ensure_model_network(self.client, self.network_name)
        name = f"mlops-{spec.namespace}-{spec.service}-net-{int(time.time() * 1000) % 100000}"
        try:
            holder = self.client.containers.run(
                spec.image,
                # An entrypoint of its own: the image's CMD is then not appended to it.
                entrypoint=HOLDER_COMMAND,
                name=name[:120],
                detach=True,
                labels=self._identity_labels(spec, address, ROLE_NETWORK),
                network=network.name,
                ports={f"{spec.container_port}/tcp": (address, spec.service_port)},
                restart_policy=RESTART_UNLESS_STOPPED,
                user=HOLDER_USER,
                read_only=True,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mem_limit=32 * 2**20,
                nano_cpus=100_000_000,
                pids_limit=16,
                # A replica leaving the SO_REUSEPORT group hands the connections still waiting in its
                # accept queue to the others instead of resetting them.
                sysctls={"net.ipv4.tcp_migrate_req": "1"},
            )
        except Exception as exc:
            self._remove_named(name[:120])
            if "executable file not found" in str(exc):
                raise SyncFailed(
                    f"{spec.namespace}/{spec.name}: image {spec.image} has no {HOLDER_COMMAND[0]}, which the "
                    f"container holding the network namespace runs: {str(exc)[:300]}",
                    code="sync_failed",
                ) from exc
            raise ServiceUnavailable(
                f"Docker could not publish {address}:{spec.service_port} for {spec.service}: {str(exc)[:300]}",
                code="docker_unavailable",
            ) from exc
        holder.reload()
        if holder.status != "running":
            logs = holder.logs(tail=5).decode("utf-8", "replace").strip()
            _remove(holder)
            raise SyncFailed(
                f"{spec.namespace}/{spec.name}: the container holding the network namespace could not run "
                f"{' '.join(HOLDER_COMMAND)} from image {spec.image}: {logs or 'no output'}",
                code="sync_failed",
            )
        return holder

    def _start(self, spec: WorkloadSpec, digest: str, address: str, index: int, holder: Container) -> Container:
        labels = {
            **self._identity_labels(spec, address, ROLE_REPLICA),
            L_HASH: digest,
            L_TEMPLATE: template_hash(spec),
            # The Deployment's replicas when this one was started (a later scale down cannot relabel it).
            L_REPLICAS: str(spec.replicas),
        }
        env = {
            **spec.env,
            # Every replica listens on the container port of the holder's network namespace; the
            # holder's published port carries the Service port on the workload's address to it.
            "HOST": "0.0.0.0",
            "PORT": str(spec.container_port),
            "REUSE_PORT": "1",
        }
        memory_limit = memory_bytes(spec.memory_limit)
        name = f"mlops-{spec.namespace}-{spec.name}-{digest[:8]}-{index}-{int(time.time() * 1000) % 100000}"
        try:
            return self.client.containers.run(
                spec.image,
                name=name[:120],
                detach=True,
                labels=labels,
                environment=env,
                network_mode=f"container:{holder.id}",
                restart_policy=RESTART_UNLESS_STOPPED,
                nano_cpus=nano_cpus(spec.cpu_limit),
                mem_limit=memory_limit,
                healthcheck=readiness.healthcheck(
                    spec.readiness_port or spec.container_port, spec.readiness_path, spec.readiness_failure_threshold
                ),
                **containment.container_options(spec.security, spec.scratch_volumes, memory_limit),
            )
        except Exception as exc:
            self._remove_named(name[:120])
            message = str(exc)
            if "No such image" in message or "not found" in message or "pull access denied" in message:
                raise SyncFailed(
                    f"image {spec.image} cannot be pulled: {message[:300]}", code="image_pull_failed"
                ) from exc
            raise ServiceUnavailable(
                f"Docker could not start {spec.name}: {message[:300]}", code="docker_unavailable"
            ) from exc

    def _remove_named(self, name: str) -> None:
        """A container Docker created but could not start (docker run creates, then starts)."""
        with contextlib.suppress(Exception):
            _remove(self.client.containers.get(name))

    def _wait_ready(self, containers: Containers, timeout: float, spec: WorkloadSpec, image_user: str) -> None:
        deadline = time.monotonic() + timeout
        pending = list(containers)
        while pending:
            for container in list(pending):
                container.reload()
                # restart_policy brings a crashed container back, so a restart counts as a crash too.
                crashed = container.attrs["State"].get("Restarting") or container.attrs.get("RestartCount", 0) > 0
                if container.status in ("exited", "dead") or crashed:
                    logs = container.logs(tail=20).decode("utf-8", "replace").strip()
                    exit_code = container.attrs["State"].get("ExitCode")
                    raise SyncFailed(
                        f"container for {spec.namespace}/{spec.name} exited (code {exit_code}) "
                        f"running as {containment.describe(spec.security, image_user)}; last log lines:\n{logs}",
                        code="sync_failed",
                        details={"resource": {"kind": "Deployment", "namespace": spec.namespace, "name": spec.name}},
                    )
                if self._healthy(container):
                    pending.remove(container)
            if not pending:
                return
            if time.monotonic() >= deadline:
                logs = pending[0].logs(tail=10).decode("utf-8", "replace").strip()
                probe = _last_probe_output(pending[0])
                raise DeploymentTimedOut(
                    f"{spec.namespace}/{spec.name}: {len(pending)} of {len(containers)} new containers "
                    f"not ready after {timeout:.0f} s "
                    f"(readiness probe: {probe}); the previous version keeps serving. Last log lines:\n{logs}"
                )
            time.sleep(0.1)

    @staticmethod
    def _healthy(container: Container) -> bool:
        health = (container.attrs.get("State") or {}).get("Health") or {}
        return container.status == "running" and health.get("Status") == "healthy"

    def _status(self, namespace: str, name: str) -> WorkloadStatus | None:
        containers = [c for c in self._containers(namespace, name) if c.status != "removing" and not _terminating(c)]
        if not containers:
            return None
        replicas = [c for c in containers if c.labels.get(L_ROLE) != ROLE_NETWORK]
        if not replicas:
            # A holder alone: a Deployment named like its Service between its holder and replicas (or
            # left so by a failure). When another Deployment's replicas use it, ``name`` has none.
            holder = containers[0]
            if any(c.labels.get(L_NAME) != name for c in self._users(holder)):
                return None
            return WorkloadStatus(
                namespace=namespace,
                name=name,
                image=holder.labels.get(L_IMAGE, ""),
                address=holder.labels[L_ADDRESS],
                port=int(holder.labels.get(L_PORT, "80")),
                replicas=0,
                ready_replicas=0,
                service=_service_of(holder),
                owner=holder.labels.get(L_OWNER),
            )
        # The newest replica's pod template is the Deployment's current one (an update starts the new
        # template's replicas before the old ones leave); after a scale its replicas have different
        # spec hashes (they include the count), so they are counted by template.
        newest = max(replicas, key=_created)
        current = [c for c in replicas if _template_of(c) == _template_of(newest)]
        return WorkloadStatus(
            namespace=namespace,
            name=name,
            image=newest.labels.get(L_IMAGE, ""),
            address=newest.labels[L_ADDRESS],
            port=int(newest.labels.get(L_PORT, "80")),
            replicas=_wanted(current),
            ready_replicas=sum(1 for c in current if self._healthy(c)),
            container_ids=tuple(sorted(c.id for c in current if c.id is not None)),
            service=_service_of(newest),
            owner=newest.labels.get(L_OWNER),
        )


def _template_of(container: Container) -> str:
    """The pod template a replica runs; a replica started before the template label has only its spec hash."""
    return container.labels.get(L_TEMPLATE) or f"spec:{container.labels.get(L_HASH, '')}"


def _created(container: Container) -> tuple[str, str]:
    """When the container was created, sortable: Docker trims trailing zeros off the nanoseconds."""
    seconds, _, fraction = (container.attrs.get("Created") or "").rstrip("Z").partition(".")
    return seconds, fraction.ljust(9, "0")


def _keep(containers: Containers, wanted: int) -> Containers:
    """The ready replicas of one template that stay when there are more than ``wanted``: the oldest.
    The ReplicaSet controller deletes the not-ready pods first (here they are not kept at all), then
    those ready for the shortest time, then the newest (``ActivePodsWithRanks``)."""
    return sorted(containers, key=_created)[: max(0, wanted)]


def _wanted(current: Containers) -> int:
    """The Deployment's replicas, from the live replicas of its current template. No label holds it:
    labels cannot change, and a scale down starts nothing to carry the new count, so it is the number
    of those replicas (``apply`` returns only once the surplus is terminating); while a scale up or an
    update is starting the new ones, their ``L_REPLICAS`` (the count they were started for) when larger."""
    starting = [
        int(c.labels.get(L_REPLICAS, "1"))
        for c in current
        if c.status in ("created", "running")
        and ((c.attrs.get("State") or {}).get("Health") or {}).get("Status", "starting") == "starting"
        and not c.attrs.get("RestartCount")
    ]
    return max([len(current), *starting])


def _service_of(container: Container) -> str:
    return container.labels.get(L_SERVICE) or container.labels.get(L_NAME, "")


def _network_parent(container: Container) -> str | None:
    """The id of the container whose network namespace this one joined (a replica's holder)."""
    mode = (container.attrs.get("HostConfig") or {}).get("NetworkMode") or ""
    return mode.removeprefix("container:") if mode.startswith("container:") else None


def _last_probe_output(container: Container) -> str:
    log = ((container.attrs.get("State") or {}).get("Health") or {}).get("Log") or []
    return (log[-1].get("Output") or "").strip()[:300] if log else "not run yet"


def _terminating(container: Container) -> bool:
    """A replica ``_terminate`` signalled: replicas run with a restart policy, and it drops it. Kept
    by Docker, so a restarted service also sees that the replica is no longer part of its workload
    (and ``delete`` removes one that a previous service process left behind)."""
    policy = ((container.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
    return container.labels.get(L_ROLE) == ROLE_REPLICA and policy == "no"


def _terminate(containers: Containers) -> Containers:
    """Send the old replicas SIGTERM now, as the kubelet does when a pod starts terminating: their
    servers close their listeners at once, so new connections go to the new replicas (and those queued
    on a leaving listener migrate to them, see the holder's sysctl). Their restart policy is dropped
    first, or Docker would start a replica again when it exits. Returns those that got the signal."""
    signalled: Containers = []
    for container in containers:
        try:
            container.update(restart_policy=RESTART_NEVER)
            container.kill(signal="SIGTERM")
            signalled.append(container)
        except Exception:  # already exited or gone: nothing left to terminate, only to remove
            _remove_quietly(container)
    return signalled


def _reap(containers: Containers, grace_seconds: float) -> None:
    """Wait for terminating replicas to exit (SIGKILL after the grace period, as the kubelet does),
    all at once, so the requests they are serving finish; then remove them."""

    def reap(container: Container) -> None:
        try:
            container.wait(timeout=max(1, int(grace_seconds)))
        except Exception:  # still running after the grace period, or the engine did not answer
            with contextlib.suppress(Exception):
                container.kill()
        _remove_quietly(container)

    if containers:
        with ThreadPoolExecutor(max_workers=len(containers)) as pool:
            list(pool.map(reap, containers))


def _remove_quietly(container: Container) -> None:
    # On failure the next apply or delete, which see the container again, removes it.
    with contextlib.suppress(Exception):
        _remove(container)


def _remove(container: Container | None) -> None:
    if container is None:
        return
    try:
        container.remove(force=True)
    except Exception as exc:  # already gone
        if "No such container" not in str(exc) and "removal of container" not in str(exc):
            raise
