"""DockerKubelet: the kubelet's container runtime on the local Docker Engine.

Each pod gets a sandbox container (``sleep infinity`` from ``sandbox_image``, non-root, read-only, no
capabilities) on the Docker bridge network ``mlops-sim-pods``; its IP there is the pod IP, reachable
from the host. Each pod container runs in the sandbox's network namespace (``network_mode=container:``),
so containers of a pod share localhost and the pod IP survives container restarts, as with a pod's
pause container.

The container is run the way the manifest says (pod securityContext overridden field by field by
the container's): runAsUser/runAsGroup as the Docker user, fsGroup and supplementalGroups as extra
groups, readOnlyRootFilesystem as a read-only rootfs, capabilities drop/add, allowPrivilegeEscalation
false as ``no-new-privileges``, privileged, seccompProfile Unconfined; emptyDir volumes as tmpfs mounts
(mode 1777 like emptyDir's 0777 directory, ``sizeLimit`` as the tmpfs size), except the one that is the
container's workingDir: a 0777 host directory, bind-mounted (Docker would give a tmpfs there the mode of
the working directory it creates); env as resolved by the
kubelet; resources.limits cpu/memory as nano_cpus / mem_limit (no swap), requests.cpu as CPU shares;
command/args as entrypoint/cmd (a command replaces the image's CMD too); workingDir. configMap volumes are
files in a host directory, bind-mounted read-only. Volume types other than emptyDir and configMap are
not modelled: a pod that mounts one gets CreateContainerConfigError saying so.

Every container is labelled ``io.mlops.sim.cluster=<cluster uuid>`` plus the pod's namespace and name and
the owning process id: ``close()`` removes exactly this cluster's containers, and a new DockerKubelet
removes those of simulator processes that no longer exist (a crashed test run).
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import math
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

from tests.simulator.kube.dns import pid_alive
from tests.simulator.kube.kubelet import (
    CRASH_LOOP_MESSAGE,
    ContainerConfigError,
    Kubelet,
    PodRecord,
    PullError,
    RuntimeState,
    StartError,
)
from tests.simulator.kube.store import parse_quantity

NETWORK_NAME = "mlops-sim-pods"
LABEL_CLUSTER = "io.mlops.sim.cluster"
LABEL_PID = "io.mlops.sim.pid"
LABEL_NAMESPACE = "io.mlops.sim.pod-namespace"
LABEL_POD = "io.mlops.sim.pod-name"
LABEL_CONTAINER = "io.mlops.sim.container"
OOM_FAULT_DEFAULT_LIMIT = 64 * 1024 * 1024
KUBE_PROBE_USER_AGENT = "kube-probe/1.32"

_network_lock = threading.Lock()


def _parse_docker_time(value: str) -> float:
    """Docker's RFC 3339 with nanoseconds as a Unix time (whole seconds are enough here)."""
    return datetime.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC).timestamp()


def _docker_time(value: str) -> str:
    """Docker's RFC 3339 with nanoseconds -> Kubernetes' RFC 3339 in whole seconds."""
    if not value or value.startswith("0001-"):
        return ""
    return value[:19] + "Z"


class DockerKubelet(Kubelet):
    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        probe_period_scale: float = 0.1,
        network: str = NETWORK_NAME,
        sandbox_image: str = "python:3.11-slim",
    ) -> None:
        """``probe_period_scale`` multiplies probe periods, initial delays, restart back-offs and
        termination grace periods (0.1: a 10 s period probes every second); probe timeouts stay as
        written."""
        super().__init__(probe_period_scale=probe_period_scale)
        self._owns_client = client is None
        self.client = client or docker.from_env(timeout=120)
        self.network_name = network
        self.sandbox_image = sandbox_image
        self.network = self._ensure_network()
        gateway = (self.network.attrs.get("IPAM", {}).get("Config") or [{}])[0].get("Gateway")
        self.host_ip = gateway or "127.0.0.1"
        self.sweep_dead_owners()
        self._volume_root = Path(tempfile.mkdtemp(prefix="mlops-sim-volumes-"))
        self._volume_root.chmod(0o755)

    def _ensure_network(self):
        with _network_lock:
            found = self.client.networks.list(names=[self.network_name])
            exact = [network for network in found if network.name == self.network_name]
            if exact:
                return exact[0]
            try:
                return self.client.networks.create(
                    self.network_name, driver="bridge", labels={"io.mlops.sim.network": "pods"}
                )
            except docker.errors.APIError:  # another process created it meanwhile
                return next(
                    n for n in self.client.networks.list(names=[self.network_name]) if n.name == self.network_name
                )

    def sweep_dead_owners(self) -> None:
        """Remove simulator containers whose owning process is gone (a crashed run)."""
        for container in self.client.containers.list(all=True, filters={"label": LABEL_CLUSTER}):
            pid = container.labels.get(LABEL_PID, "")
            if (
                pid.isdigit()
                and not pid_alive(int(pid))
                and container.labels.get("io.mlops.sim.host") == socket.gethostname()
            ):
                self._force_remove(container)

    def _labels(self, pod: dict, container_name: str) -> dict[str, str]:
        return {
            LABEL_CLUSTER: self.cluster_id,
            LABEL_PID: str(os.getpid()),
            "io.mlops.sim.host": socket.gethostname(),
            LABEL_NAMESPACE: pod["metadata"]["namespace"],
            LABEL_POD: pod["metadata"]["name"],
            LABEL_CONTAINER: container_name,
        }

    def _name(self, pod: dict, suffix: str) -> str:
        return f"sim-{self.cluster_id[:8]}-{pod['metadata']['namespace']}-{pod['metadata']['name']}-{suffix}"

    @staticmethod
    def _force_remove(container: Any) -> None:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            if "already in progress" not in str(error):
                raise

    # ---- images ----

    def _image_id(self, image: Any, reference: str) -> str:
        if "@sha256:" in reference:
            return reference
        repository = reference.rsplit(":", 1)[0] if ":" in reference.rsplit("/", 1)[-1] else reference
        for digest in image.attrs.get("RepoDigests") or []:
            if digest.split("@", 1)[0] == repository:
                return digest
        return image.id

    def _runtime_image_present(self, image: str) -> str | None:
        try:
            return self._image_id(self.client.images.get(image), image)
        except docker.errors.ImageNotFound:
            return None

    def _runtime_pull(self, image: str) -> str:
        try:
            pulled = self.client.images.pull(image)
        except docker.errors.APIError as error:
            raise PullError(f"rpc error: code = Unknown desc = {error.explanation or error}") from error
        return self._image_id(pulled, image)

    def _runtime_image_user(self, image: str) -> str:
        return self.client.images.get(image).attrs.get("Config", {}).get("User") or ""

    # ---- sandbox and containers ----

    def _runtime_start_sandbox(self, pod: dict) -> tuple[Any, str]:
        sandbox = self.client.containers.run(
            self.sandbox_image,
            ["sleep", "infinity"],
            detach=True,
            name=self._name(pod, "pod"),
            hostname=pod["metadata"]["name"][:63],
            network=self.network_name,
            labels=self._labels(pod, "POD"),
            user="65534:65534",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            mem_limit="32m",
            sysctls=self._pod_sysctls(pod),
        )
        sandbox.reload()
        pod_ip = sandbox.attrs["NetworkSettings"]["Networks"][self.network_name]["IPAddress"]
        return sandbox, pod_ip

    @staticmethod
    def _pod_sysctls(pod: dict) -> dict[str, str]:
        """The pod network namespace's sysctls. Docker lets any user bind ports below 1024 in a
        container; containerd 1.x (the CRI runtime of most clusters) keeps the kernel default, so a
        non-root server on port 80 needs NET_BIND_SERVICE there. The kernel default is modelled;
        ``securityContext.sysctls`` of the pod override it."""
        sysctls = {"net.ipv4.ip_unprivileged_port_start": "1024"}
        for sysctl in (pod["spec"].get("securityContext") or {}).get("sysctls") or []:
            sysctls[sysctl["name"]] = str(sysctl["value"])
        return sysctls

    def _runtime_remove_sandbox(self, record: PodRecord) -> None:
        self._force_remove(record.sandbox)
        record.sandbox = None
        shutil.rmtree(self._volume_root / record.uid, ignore_errors=True)

    def _config_map_dir(self, pod: dict, volume: dict) -> str:
        """A configMap volume: its keys (or ``items``) as files in a host directory, bind-mounted
        read-only (the kubelet's atomic writer keeps them read-only too), mode ``defaultMode`` (0644).
        A missing ConfigMap keeps the container from being created, as a failed mount does."""
        assert self.store is not None
        source = volume["configMap"]
        config_map = self.store.get("ConfigMap", pod["metadata"]["namespace"], source["name"])
        if config_map is None:
            if source.get("optional"):
                data: dict[str, str] = {}
            else:
                raise ContainerConfigError(f'configmap "{source["name"]}" not found')
        else:
            data = config_map.get("data") or {}
        items = source.get("items") or [{"key": key, "path": key} for key in data]
        directory = self._volume_root / pod["metadata"]["uid"] / volume["name"]
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        for item in items:
            if item["key"] not in data:
                raise ContainerConfigError(f"configmap references non-existent config key: {item['key']}")
            target = directory / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])
            target.chmod(item.get("mode", source.get("defaultMode", 0o644)))
        return str(directory)

    def _check_config(self, pod: dict, container: dict) -> None:
        self._run_options(pod, container)

    def _run_options(self, pod: dict, container: dict) -> dict[str, Any]:
        context = self.effective_security_context(pod, container)
        pod_context = pod["spec"].get("securityContext") or {}
        options: dict[str, Any] = {}
        user = context.get("runAsUser")
        group = context.get("runAsGroup")
        if user is not None:
            options["user"] = f"{user}:{group}" if group is not None else str(user)
        elif group is not None:
            image_user = self._runtime_image_user(container["image"]).split(":", 1)[0] or "0"
            options["user"] = f"{image_user}:{group}"
        groups = [str(g) for g in pod_context.get("supplementalGroups") or []]
        if pod_context.get("fsGroup") is not None:
            groups.append(str(pod_context["fsGroup"]))
        if groups:
            options["group_add"] = groups
        options["read_only"] = bool(context.get("readOnlyRootFilesystem"))
        capabilities = context.get("capabilities") or {}
        if capabilities.get("drop"):
            options["cap_drop"] = list(capabilities["drop"])
        if capabilities.get("add"):
            options["cap_add"] = list(capabilities["add"])
        security_opt = []
        if context.get("allowPrivilegeEscalation") is False:
            security_opt.append("no-new-privileges:true")
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            security_opt.append("seccomp=unconfined")
        if security_opt:
            options["security_opt"] = security_opt
        if context.get("privileged"):
            options["privileged"] = True
        volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes") or []}
        tmpfs: dict[str, str] = {}
        binds: dict[str, dict[str, str]] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise ContainerConfigError(
                    f'cannot find volume "{mount["name"]}" to mount into container "{container["name"]}"'
                )
            if "configMap" in volume:
                binds[self._config_map_dir(pod, volume)] = {"bind": mount["mountPath"], "mode": "ro"}
                continue
            if "emptyDir" not in volume:
                kind = next((key for key in volume if key != "name"), "unknown")
                raise ContainerConfigError(f"sim: volume type {kind} (volume {mount['name']!r}) is not modelled")
            if mount["mountPath"] == container.get("workingDir") and not mount.get("readOnly"):
                # Docker 20.10 copies the working directory it creates (root, 0755) onto a tmpfs mounted
                # there (tmpcopyup, which it cannot turn off), so a non-root container could not write
                # its own working directory. Kubernetes' emptyDir is a fresh 0777 directory on the
                # node's disk; a host directory of that mode stands in for it (sizeLimit, which
                # Kubernetes enforces by eviction, is not modelled here).
                directory = self._volume_root / pod["metadata"]["uid"] / "empty-dir" / volume["name"]
                directory.mkdir(parents=True, exist_ok=True)
                directory.chmod(0o777)
                binds[str(directory)] = {"bind": mount["mountPath"], "mode": "rw"}
                continue
            settings = ["ro" if mount.get("readOnly") else "rw", "mode=1777"]
            size_limit = (volume["emptyDir"] or {}).get("sizeLimit")
            if size_limit:
                settings.append(f"size={int(parse_quantity(size_limit))}")
            tmpfs[mount["mountPath"]] = ",".join(settings)
        if tmpfs:
            options["tmpfs"] = tmpfs
        if binds:
            options["volumes"] = binds
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        if "cpu" in limits:
            options["nano_cpus"] = int(parse_quantity(limits["cpu"]) * 1e9)
        if "memory" in limits:
            options["mem_limit"] = int(parse_quantity(limits["memory"]))
            options["memswap_limit"] = options["mem_limit"]
        if "cpu" in requests:
            options["cpu_shares"] = max(2, int(parse_quantity(requests["cpu"]) * 1024))
        if container.get("workingDir"):
            options["working_dir"] = container["workingDir"]
        return options

    def _runtime_start(
        self, pod: dict, record: PodRecord, container: dict, env: dict[str, str], command_override: list[str] | None
    ) -> tuple[Any, str]:
        options = self._run_options(pod, container)
        if command_override is not None:
            options["entrypoint"] = command_override
            options["command"] = None
            if self.faults.oom and "mem_limit" not in options:
                options["mem_limit"] = options["memswap_limit"] = OOM_FAULT_DEFAULT_LIMIT
        else:
            if container.get("command"):
                options["entrypoint"] = container["command"]
            if container.get("args"):
                options["command"] = container["args"]
        restarts = record.containers[container["name"]].restart_count
        name = self._name(pod, f"{container['name']}-{restarts}")
        for stale in self.client.containers.list(all=True, filters={"name": f"^/{name}$"}):
            self._force_remove(stale)  # a container whose earlier start attempt failed
        try:
            created = self.client.containers.create(
                container["image"],
                name=name,
                network_mode=f"container:{record.sandbox.id}",
                environment=env,
                labels=self._labels(pod, container["name"]),
                detach=True,
                stop_signal="SIGTERM",
                **options,
            )
        except docker.errors.APIError as error:
            raise StartError(f"failed to create containerd container: {error.explanation or error}") from error
        try:
            created.start()
        except docker.errors.APIError:
            created.reload()  # a start failure shows as an exited container with the runtime's message
        return created, f"docker://{created.id}"

    def _runtime_state(self, handle: Any) -> RuntimeState:
        try:
            handle.reload()
        except docker.errors.NotFound:
            return RuntimeState(running=False, exit_code=137, finished_at="")
        state = handle.attrs["State"]
        running = state.get("Status") in ("running", "paused", "restarting")
        exit_code = int(state.get("ExitCode") or 0)
        oom_killed = bool(state.get("OOMKilled"))
        if not running and exit_code == 137 and not oom_killed:
            oom_killed = self._had_oom_event(handle, state)
        return RuntimeState(
            running=running,
            exit_code=exit_code,
            oom_killed=oom_killed,
            started_at=_docker_time(state.get("StartedAt", "")),
            finished_at=_docker_time(state.get("FinishedAt", "")),
        )

    def _had_oom_event(self, handle: Any, state: dict[str, Any]) -> bool:
        """Docker 20.10 on cgroup v1 sets ``OOMKilled`` only when the cgroup's OOM notification arrives
        before the exit is processed; when the exit wins, the flag stays false although the kernel
        killed the process for its memory limit. The engine's ``oom`` event for the container is the
        authority then (the CRI runtime of a cluster reads the cgroup's OOM counter instead)."""
        if "Memory" not in handle.attrs.get("HostConfig", {}) or not handle.attrs["HostConfig"]["Memory"]:
            return False
        started, finished = state.get("StartedAt", ""), state.get("FinishedAt", "")
        if not started or not finished:
            return False
        since = int(_parse_docker_time(started)) - 1
        until = min(int(_parse_docker_time(finished)) + 2, int(time.time()))  # a future bound would block
        events = self.client.events(
            since=since, until=until, decode=True, filters={"container": handle.id, "event": "oom"}
        )
        try:
            return any(event.get("status") == "oom" or event.get("Action") == "oom" for event in events)
        finally:
            events.close()

    def _runtime_kill(self, handle: Any, grace_seconds: float) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            handle.stop(timeout=max(1, math.ceil(grace_seconds)))

    def _runtime_remove(self, handle: Any) -> None:
        self._force_remove(handle)

    def _runtime_logs(self, handle: Any, tail_lines: int | None) -> str:
        try:
            return handle.logs(stdout=True, stderr=True, tail="all" if tail_lines is None else tail_lines).decode(
                errors="replace"
            )
        except docker.errors.NotFound:
            return ""

    def _runtime_follow_logs(self, handle: Any) -> Iterator[str]:
        """Docker's own follow stream: it ends when the container exits, as the kubelet's does."""
        try:
            for chunk in handle.logs(stdout=True, stderr=True, stream=True, follow=True):
                yield chunk.decode(errors="replace")
        except docker.errors.NotFound:
            return

    def _runtime_http_get(self, record: PodRecord, port: int, path: str, timeout: float) -> str | None:
        url = f"http://{record.pod_ip}:{port}{path}"
        connection = http.client.HTTPConnection(record.pod_ip, port, timeout=timeout)
        try:
            connection.request("GET", path, headers={"User-Agent": KUBE_PROBE_USER_AGENT, "Accept": "*/*"})
            status = connection.getresponse().status
        except ConnectionRefusedError:
            return f'Get "{url}": dial tcp {record.pod_ip}:{port}: connect: connection refused'
        except TimeoutError:
            return f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        except (OSError, http.client.HTTPException) as error:
            return f'Get "{url}": {error}'
        finally:
            connection.close()
        if 200 <= status < 400:
            return None
        return f"HTTP probe failed with statuscode: {status}"

    def _fault_command(self, container: dict) -> list[str] | None:
        if self.faults.oom:
            hog = "x = []\nwhile True:\n    x.append(b'x' * (8 << 20))"
            return ["python3", "-c", hog]
        if self.faults.crash_loop:
            return ["/bin/sh", "-c", f"echo '{CRASH_LOOP_MESSAGE}' >&2; exit 1"]
        return None

    def close(self) -> None:
        super().close()
        if self.cluster_id:
            for container in self.client.containers.list(
                all=True, filters={"label": f"{LABEL_CLUSTER}={self.cluster_id}"}
            ):
                self._force_remove(container)
        shutil.rmtree(self._volume_root, ignore_errors=True)
        if self._owns_client:
            self.client.close()
