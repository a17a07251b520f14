"""The kubelet: runs the pods bound to the node and writes their status.

``Kubelet`` holds the pod status model shared by both runtimes, written from the Kubernetes
documentation (concepts/workloads/pods/pod-lifecycle, configure-liveness-readiness-startup-probes,
images, security-context, configure-pod-configmap, resource-management):
- image pull per ``imagePullPolicy``; a failure is ``ErrImagePull``, retried with back-off shown as
  ``ImagePullBackOff``;
- container config (env from secrets and config maps, ``runAsNonRoot``) failing is
  ``CreateContainerConfigError`` with the kubelet's message;
- a container that exits is restarted per ``restartPolicy``: the first restart at once, then with a
  back-off of 10 s doubling to 300 s (``CrashLoopBackOff``), ``lastState.terminated`` and
  ``restartCount`` kept;
- startup, readiness and liveness probes (httpGet) with initialDelaySeconds, periodSeconds,
  timeoutSeconds, successThreshold and failureThreshold; a failed liveness or startup probe kills the
  container, which is then restarted;
- pod phase, conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready,
  PodScheduled), containerStatuses, podIP(s), hostIP(s), startTime, and the events the kubelet
  records (Pulling, Pulled, Failed, BackOff, Created, Started, Killing, Unhealthy).
Every probe period, initial delay, back-off and grace period is multiplied by ``probe_period_scale``
(default 0.1) so tests run in seconds; the ratios between them are Kubernetes'. Probe timeouts are not
scaled: they bound how fast the application answers, which a test does not speed up.

``FakeKubelet`` runs nothing: containers "start" at once and answer probes unless a fault says
otherwise. ``DockerKubelet`` (docker_kubelet.py) runs one Docker container per pod container.
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.simulator.kube.controllers import condition, qos_class
from tests.simulator.kube.events import NODE_NAME, EventRecorder
from tests.simulator.kube.faults import KubeFaults
from tests.simulator.kube.store import KubeError, Store, now_rfc3339

BACKOFF_INITIAL_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 300.0
FAILING_READINESS_PATH = "/__mlops_sim_readiness_fault__"
CRASH_LOOP_MESSAGE = "sim fault crash_loop: the container exits with status 1"


class PullError(Exception):
    pass


class ContainerConfigError(Exception):
    pass


class StartError(Exception):
    pass


@dataclass
class RuntimeState:
    """What the runtime reports about a container it runs."""

    running: bool
    exit_code: int = 0
    oom_killed: bool = False
    started_at: str = ""
    finished_at: str = ""


@dataclass
class ContainerRecord:
    name: str
    handle: Any = None  # the runtime's container (None: not running, waiting to be (re)started)
    previous_handle: Any = None  # the last terminated container, kept for `logs --previous`
    container_id: str = ""
    image_id: str = ""
    restart_count: int = 0
    started_once: bool = False
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    next_start_at: float = 0.0
    crash_backoff: float = 0.0
    running_since: float = 0.0
    pull_backoff: float = 0.0
    pull_failed: bool = False
    last_config_event: float = 0.0
    probes: dict = field(default_factory=dict)  # probe kind -> {"next": t, "ok": n, "fail": n}


@dataclass
class PodRecord:
    uid: str
    namespace: str
    name: str
    sandbox: Any = None
    pod_ip: str = ""
    start_time: str = ""
    containers: dict = field(default_factory=dict)


def format_pod(pod: dict) -> str:
    """The kubelet's format.Pod: name_namespace(uid)."""
    metadata = pod["metadata"]
    return f"{metadata['name']}_{metadata['namespace']}({metadata['uid']})"


def resolve_port(port: int | str, container: dict) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"couldn't find port {port!r} in container {container['name']!r}")


class Kubelet:
    """Pod status model; subclasses provide the container runtime (the ``_runtime_*`` methods)."""

    host_ip = "192.168.49.2"

    def __init__(self, *, probe_period_scale: float = 0.1) -> None:
        self.probe_period_scale = probe_period_scale
        self._pods: dict[str, PodRecord] = {}
        self._failed_pods: list[tuple[str, Exception]] = []
        self.store: Store | None = None
        self.events: EventRecorder | None = None
        self.cluster_id = ""
        self._faults = KubeFaults

    def bind(self, store: Store, events: EventRecorder, faults: Any, cluster_id: str) -> None:
        self.store, self.events, self._faults, self.cluster_id = store, events, faults, cluster_id

    @property
    def faults(self) -> KubeFaults:
        return self._faults()

    def scaled(self, seconds: float) -> float:
        return seconds * self.probe_period_scale

    # ---- runtime interface ----

    def _runtime_image_present(self, image: str) -> str | None:
        """The image's ID when the node has it, else None."""
        raise NotImplementedError

    def _runtime_pull(self, image: str) -> str:
        """Pull the image; its ID, or PullError with the runtime's message."""
        raise NotImplementedError

    def _runtime_image_user(self, image: str) -> str:
        raise NotImplementedError

    def _runtime_start_sandbox(self, pod: dict) -> tuple[Any, str]:
        raise NotImplementedError

    def _runtime_remove_sandbox(self, record: PodRecord) -> None:
        raise NotImplementedError

    def _runtime_start(
        self, pod: dict, record: PodRecord, container: dict, env: dict[str, str], command_override: list[str] | None
    ) -> tuple[Any, str]:
        raise NotImplementedError

    def _runtime_state(self, handle: Any) -> RuntimeState:
        raise NotImplementedError

    def _runtime_kill(self, handle: Any, grace_seconds: float) -> None:
        raise NotImplementedError

    def _runtime_remove(self, handle: Any) -> None:
        raise NotImplementedError

    def _runtime_logs(self, handle: Any, tail_lines: int | None) -> str:
        raise NotImplementedError

    def _runtime_http_get(self, record: PodRecord, port: int, path: str, timeout: float) -> str | None:
        """None when the probe succeeds, else the kubelet's failure message."""
        raise NotImplementedError

    def pod_network_request(
        self, pod_ip: str, port: int, *, scheme: str, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One HTTP exchange with ``pod_ip:port`` over the pod network, as the API server's proxy
        transport makes it: (status, headers, body), or ``ConnectionError`` carrying Go's dial error
        text (``dial tcp IP:PORT: connect: connection refused``, ``... i/o timeout``)."""
        if scheme == "https":  # the API server's proxy transport does not verify pod certificates
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                pod_ip, port, timeout=30, context=context
            )
        else:
            connection = http.client.HTTPConnection(pod_ip, port, timeout=30)
        try:
            try:
                connection.connect()
            except ConnectionRefusedError as error:
                raise ConnectionError(f"dial tcp {pod_ip}:{port}: connect: connection refused") from error
            except TimeoutError as error:
                raise ConnectionError(f"dial tcp {pod_ip}:{port}: i/o timeout") from error
            except OSError as error:
                raise ConnectionError(f"dial tcp {pod_ip}:{port}: connect: {error.strerror or error}") from error
            try:
                connection.request(method, target, body=body or None, headers=headers)
                response = connection.getresponse()
                return response.status, response.getheaders(), response.read()
            except (OSError, http.client.HTTPException) as error:
                raise ConnectionError(f"read tcp {pod_ip}:{port}: {error}") from error
        finally:
            connection.close()

    def _fault_command(self, container: dict) -> list[str] | None:
        raise NotImplementedError

    def _check_config(self, pod: dict, container: dict) -> None:
        """Runtime-specific checks of the container's configuration (ContainerConfigError)."""

    # ---- the sync loop ----

    def sync_once(self) -> None:
        assert self.store is not None
        with self.store.lock:
            pods = [
                copy.deepcopy(pod) for pod in self.store.list_refs("Pod") if pod["spec"].get("nodeName") == NODE_NAME
            ]
        live_uids = {pod["metadata"]["uid"] for pod in pods}
        for uid in [uid for uid in self._pods if uid not in live_uids]:
            self._teardown(self._pods.pop(uid))
        for pod in pods:
            if "deletionTimestamp" in pod["metadata"]:
                record = self._pods.pop(pod["metadata"]["uid"], None)
                if record is not None:
                    for container in record.containers.values():
                        if container.handle is not None:
                            self._event(
                                pod, "Normal", "Killing", f"Stopping container {container.name}", container.name
                            )
                    self._teardown(
                        record,
                        grace=pod["metadata"].get(
                            "deletionGracePeriodSeconds", pod["spec"].get("terminationGracePeriodSeconds", 30)
                        ),
                    )
                self.store.remove("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])
                continue
            try:
                self._sync_pod(pod)
            except Exception as error:  # one pod's runtime failure must not stall the others
                self._failed_pods.append((pod["metadata"]["name"], error))
        if self._failed_pods:
            failures, self._failed_pods = self._failed_pods, []
            raise RuntimeError(f"kubelet sync failed for pods {[name for name, _ in failures]}") from failures[0][1]

    def _teardown(self, record: PodRecord, grace: float = 0) -> None:
        for container in record.containers.values():
            for handle in (container.handle, container.previous_handle):
                if handle is not None:
                    try:
                        self._runtime_kill(handle, self.scaled(grace))
                    finally:
                        self._runtime_remove(handle)
        if record.sandbox is not None:
            self._runtime_remove_sandbox(record)

    def close(self) -> None:
        for uid in list(self._pods):
            self._teardown(self._pods.pop(uid))

    def _event(self, pod: dict, event_type: str, reason: str, message: str, container: str | None = None) -> None:
        assert self.events is not None
        field_path = f"spec.containers{{{container}}}" if container else None
        self.events.record(pod, event_type, reason, message, component="kubelet", field_path=field_path)

    def _sync_pod(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        record = self._pods.get(uid)
        if record is None:
            record = PodRecord(uid=uid, namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"])
            record.start_time = now_rfc3339()
            for container in pod["spec"]["containers"]:
                record.containers[container["name"]] = ContainerRecord(name=container["name"])
            self._pods[uid] = record
            self.write_status(pod, record)
        if record.sandbox is None:
            record.sandbox, record.pod_ip = self._runtime_start_sandbox(pod)
        for container in pod["spec"]["containers"]:
            self._sync_container(pod, record, container, record.containers[container["name"]])
        self.write_status(pod, record)

    def _sync_container(self, pod: dict, record: PodRecord, container: dict, state: ContainerRecord) -> None:
        now = time.time()
        if state.handle is None:
            if now < state.next_start_at:
                self._show_backoff(pod, container, state)
                return
            self._start_container(pod, record, container, state)
            return
        runtime = self._runtime_state(state.handle)
        if not runtime.running:
            self._container_exited(pod, container, state, runtime)
            return
        self._run_probes(pod, record, container, state)

    def _show_backoff(self, pod: dict, container: dict, state: ContainerRecord) -> None:
        waiting = state.state.get("waiting", {})
        if state.pull_failed and waiting.get("reason") == "ErrImagePull":
            image = container["image"]
            state.state = {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{image}": ErrImagePull: {waiting.get("message", "")}',
                }
            }
            self._event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', container["name"])
            self._event(pod, "Warning", "Failed", "Error: ImagePullBackOff", container["name"])
        elif "terminated" in state.state and pod["spec"].get("restartPolicy", "Always") != "Never":
            delay = round(state.crash_backoff / max(self.probe_period_scale, 1e-9))
            state.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay}s restarting failed container={container['name']} "
                    f"pod={format_pod(pod)}",
                }
            }
            self._event(
                pod,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {container['name']} in pod {format_pod(pod)}",
                container["name"],
            )

    def _start_container(self, pod: dict, record: PodRecord, container: dict, state: ContainerRecord) -> None:
        image = container["image"]
        policy = container.get("imagePullPolicy", "IfNotPresent")
        pull_fault = self.faults.image_pull_failure
        present_id = None if policy == "Always" or pull_fault else self._runtime_image_present(image)
        if present_id is not None:
            state.image_id = present_id
            self._event(
                pod, "Normal", "Pulled", f'Container image "{image}" already present on machine', container["name"]
            )
        elif policy == "Never":
            message = f'Container image "{image}" is not present with pull policy of Never'
            state.state = {"waiting": {"reason": "ErrImageNeverPull", "message": message}}
            self._event(pod, "Warning", "ErrImageNeverPull", message, container["name"])
            state.next_start_at = time.time() + self.scaled(BACKOFF_INITIAL_SECONDS)
            return
        else:
            self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"', container["name"])
            pull_started = time.time()
            try:
                if pull_fault:
                    raise PullError(
                        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
                        f'failed to resolve reference "{image}": {image}: not found'
                    )
                state.image_id = self._runtime_pull(image)
            except PullError as error:
                state.pull_failed = True
                state.pull_backoff = min(
                    max(state.pull_backoff * 2, self.scaled(BACKOFF_INITIAL_SECONDS)), self.scaled(BACKOFF_MAX_SECONDS)
                )
                state.next_start_at = time.time() + state.pull_backoff
                message = f'Failed to pull image "{image}": {error}'
                state.state = {"waiting": {"reason": "ErrImagePull", "message": message}}
                self._event(pod, "Warning", "Failed", message, container["name"])
                self._event(pod, "Warning", "Failed", "Error: ErrImagePull", container["name"])
                return
            state.pull_failed = False
            state.pull_backoff = 0.0
            self._event(
                pod,
                "Normal",
                "Pulled",
                f'Successfully pulled image "{image}" in {time.time() - pull_started:.3f}s',
                container["name"],
            )
        try:
            env = self._container_env(pod, container)
            self._check_non_root(pod, container)
            self._check_config(pod, container)
        except ContainerConfigError as error:
            state.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}}
            # The kubelet retries every sync (about 10 s when nothing else happens) and reports each try.
            if time.time() - state.last_config_event >= self.scaled(BACKOFF_INITIAL_SECONDS):
                state.last_config_event = time.time()
                self._event(pod, "Warning", "Failed", f"Error: {error}", container["name"])
            return
        if state.started_once:
            state.restart_count += 1
        try:
            state.handle, state.container_id = self._runtime_start(
                pod, record, container, env, self._fault_command(container)
            )
        except StartError as error:
            # The runtime refused to create the container: CreateContainerError, retried with back-off.
            state.state = {"waiting": {"reason": "CreateContainerError", "message": str(error)}}
            self._event(pod, "Warning", "Failed", f"Error: {error}", container["name"])
            state.crash_backoff = min(
                max(state.crash_backoff * 2, self.scaled(BACKOFF_INITIAL_SECONDS)), self.scaled(BACKOFF_MAX_SECONDS)
            )
            state.next_start_at = time.time() + state.crash_backoff
            return
        state.started_once = True
        state.running_since = time.time()
        state.state = {"running": {"startedAt": now_rfc3339()}}
        state.ready = False
        state.started = "startupProbe" not in container
        state.probes = {}
        self._event(pod, "Normal", "Created", f"Created container {container['name']}", container["name"])
        self._event(pod, "Normal", "Started", f"Started container {container['name']}", container["name"])

    def _container_exited(self, pod: dict, container: dict, state: ContainerRecord, runtime: RuntimeState) -> None:
        if runtime.oom_killed:
            reason = "OOMKilled"
            # The kubelet's OOM watcher reports every kernel OOM kill as a Warning on the Node.
            assert self.events is not None and self.store is not None
            node = self.store.get("Node", None, NODE_NAME)
            if node is not None:
                victim = (container.get("command") or ["container"])[0].rsplit("/", 1)[-1]
                self.events.record(
                    node,
                    "Warning",
                    "SystemOOM",
                    f"System OOM encountered, victim process: {victim}",
                    component="kubelet",
                )
        else:
            reason = "Completed" if runtime.exit_code == 0 else "Error"
        terminated = {
            "exitCode": runtime.exit_code,
            "reason": reason,
            "startedAt": runtime.started_at,
            "finishedAt": runtime.finished_at,
            "containerID": state.container_id,
        }
        state.ready = False
        state.started = False
        if state.previous_handle is not None:
            self._runtime_remove(state.previous_handle)
        state.previous_handle, state.handle = state.handle, None
        policy = pod["spec"].get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and runtime.exit_code == 0):
            state.state = {"terminated": terminated}
            state.next_start_at = float("inf")
            return
        state.last_state = {"terminated": terminated}
        state.state = {"terminated": terminated}
        # First restart at once; then 10 s, doubling to 300 s (the kubelet's container back-off), which
        # starts over once a container ran for twice the maximum back-off.
        if time.time() - state.running_since >= 2 * self.scaled(BACKOFF_MAX_SECONDS):
            state.crash_backoff = 0.0
        if state.crash_backoff == 0:
            state.next_start_at = time.time()
            state.crash_backoff = self.scaled(BACKOFF_INITIAL_SECONDS)
        else:
            state.next_start_at = time.time() + state.crash_backoff
            self._show_backoff(pod, container, state)
            state.crash_backoff = min(state.crash_backoff * 2, self.scaled(BACKOFF_MAX_SECONDS))

    # ---- probes ----

    def _run_probes(self, pod: dict, record: PodRecord, container: dict, state: ContainerRecord) -> None:
        started_at = state.state.get("running", {}).get("startedAt")
        if started_at is None:
            return
        if not state.started:
            self._probe(pod, record, container, state, "startupProbe")
            if not state.started:
                return
        if "readinessProbe" not in container:
            state.ready = True
        else:
            self._probe(pod, record, container, state, "readinessProbe")
        if "livenessProbe" in container:
            self._probe(pod, record, container, state, "livenessProbe")

    def _probe(self, pod: dict, record: PodRecord, container: dict, state: ContainerRecord, kind: str) -> None:
        spec = container.get(kind)
        if spec is None:
            return
        now = time.time()
        tracker = state.probes.setdefault(
            kind, {"next": now + self.scaled(spec.get("initialDelaySeconds", 0)), "ok": 0, "fail": 0}
        )
        if now < tracker["next"]:
            return
        tracker["next"] = now + self.scaled(spec.get("periodSeconds", 10))
        http_get = spec.get("httpGet")
        if http_get is None:
            failure = None  # exec/tcpSocket/grpc probes are not modelled: they pass
        else:
            path = http_get.get("path", "/")
            if kind == "readinessProbe" and self.faults.readiness_failing:
                path = FAILING_READINESS_PATH
            try:
                port = resolve_port(http_get["port"], container)
            except ValueError as error:
                failure = str(error)
            else:
                # A timeout bounds the application's answer time, which tests do not speed up: unscaled.
                timeout = float(spec.get("timeoutSeconds", 1))
                failure = self._runtime_http_get(record, port, path, timeout)
        label = {"startupProbe": "Startup", "readinessProbe": "Readiness", "livenessProbe": "Liveness"}[kind]
        if failure is None:
            tracker["ok"] += 1
            tracker["fail"] = 0
            if tracker["ok"] >= spec.get("successThreshold", 1):
                if kind == "startupProbe":
                    state.started = True
                elif kind == "readinessProbe":
                    state.ready = True
            return
        tracker["ok"] = 0
        tracker["fail"] += 1
        self._event(pod, "Warning", "Unhealthy", f"{label} probe failed: {failure}", container["name"])
        if tracker["fail"] < spec.get("failureThreshold", 3):
            return
        if kind == "readinessProbe":
            state.ready = False
            return
        self._event(
            pod,
            "Normal",
            "Killing",
            f"Container {container['name']} failed {label.lower()} probe, will be restarted",
            container["name"],
        )
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        self._runtime_kill(state.handle, self.scaled(grace))
        state.probes = {}

    # ---- config ----

    def _container_env(self, pod: dict, container: dict) -> dict[str, str]:
        import base64

        assert self.store is not None
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                if key in source:
                    obj = self.store.get(kind, namespace, source[key]["name"])
                    if obj is None:
                        if source[key].get("optional"):
                            continue
                        raise ContainerConfigError(f'{kind.lower()} "{source[key]["name"]}" not found')
                    for name, value in (obj.get("data") or {}).items():
                        env[prefix + name] = base64.b64decode(value).decode() if kind == "Secret" else value
        for variable in container.get("env") or []:
            if "value" in variable or "valueFrom" not in variable:
                env[variable["name"]] = variable.get("value", "")
                continue
            value_from = variable["valueFrom"]
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                if key not in value_from:
                    continue
                ref = value_from[key]
                obj = self.store.get(kind, namespace, ref["name"])
                if obj is None:
                    if ref.get("optional"):
                        break
                    raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found')
                data = obj.get("data") or {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        break
                    raise ContainerConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
                env[variable["name"]] = (
                    base64.b64decode(data[ref["key"]]).decode() if kind == "Secret" else data[ref["key"]]
                )
            if "fieldRef" in value_from:
                field_path = value_from["fieldRef"]["fieldPath"]
                values = {
                    "metadata.name": pod["metadata"]["name"],
                    "metadata.namespace": namespace,
                    "metadata.uid": pod["metadata"]["uid"],
                    "spec.nodeName": NODE_NAME,
                }
                env[variable["name"]] = values.get(field_path, "")
        return env

    def effective_security_context(self, pod: dict, container: dict) -> dict:
        """Pod-level securityContext fields overridden by the container's (container wins)."""
        pod_context = pod["spec"].get("securityContext") or {}
        merged = {
            key: pod_context[key]
            for key in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")
            if key in pod_context
        }
        merged.update(container.get("securityContext") or {})
        return merged

    def _check_non_root(self, pod: dict, container: dict) -> None:
        """verifyRunAsNonRoot in the kubelet (pkg/kubelet/kuberuntime/security_context_others.go)."""
        context = self.effective_security_context(pod, container)
        if not context.get("runAsNonRoot"):
            return
        where = f'(pod: "{format_pod(pod)}", container: {container["name"]})'
        if "runAsUser" in context:
            if context["runAsUser"] == 0:
                raise ContainerConfigError(f"container's runAsUser breaks non-root policy {where}")
            return
        user = self._runtime_image_user(container["image"]).split(":", 1)[0]
        if user == "" or user == "0" or user == "root":
            raise ContainerConfigError(f"container has runAsNonRoot and image will run as root {where}")
        if not user.isdigit():
            raise ContainerConfigError(
                f"container has runAsNonRoot and image has non-numeric user ({user}), "
                f"cannot verify user is non-root {where}"
            )

    # ---- status ----

    def write_status(self, pod: dict, record: PodRecord) -> None:
        assert self.store is not None
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        with self.store.lock:
            current = self.store.get_ref("Pod", namespace, name)
            if current is None or current["metadata"]["uid"] != record.uid:
                return
            old = current.get("status", {})
            statuses = []
            for container in pod["spec"]["containers"]:
                state = record.containers[container["name"]]
                entry = {
                    "name": container["name"],
                    "state": copy.deepcopy(state.state),
                    "lastState": copy.deepcopy(state.last_state),
                    "ready": state.ready,
                    "restartCount": state.restart_count,
                    "image": container["image"],
                    "imageID": state.image_id,
                    "started": state.started and "running" in state.state,
                }
                if state.container_id:
                    entry["containerID"] = state.container_id
                statuses.append(entry)
            now = now_rfc3339()
            conditions = copy.deepcopy(old.get("conditions") or [])

            def put(condition_type: str, ok: bool, reason: str = "", message: str = "") -> None:
                nonlocal conditions
                wanted = {"type": condition_type, "status": "True" if ok else "False"}
                if not ok and reason:
                    wanted["reason"] = reason
                if not ok and message:
                    wanted["message"] = message
                existing = condition(conditions, condition_type)
                if (
                    existing is not None
                    and {k: v for k, v in existing.items() if k not in ("lastTransitionTime", "lastProbeTime")}
                    == wanted
                ):
                    return
                wanted["lastTransitionTime"] = now
                conditions = [item for item in conditions if item["type"] != condition_type] + [wanted]

            unready = [entry["name"] for entry in statuses if not entry["ready"]]
            unready_message = f"containers with unready status: [{' '.join(unready)}]"
            put("PodReadyToStartContainers", record.sandbox is not None)
            put("Initialized", True)
            put("Ready", not unready, "ContainersNotReady", unready_message)
            put("ContainersReady", not unready, "ContainersNotReady", unready_message)
            order = {
                "PodReadyToStartContainers": 0,
                "Initialized": 1,
                "Ready": 2,
                "ContainersReady": 3,
                "PodScheduled": 4,
            }
            conditions.sort(key=lambda item: order.get(item["type"], 9))
            status = {
                "phase": self._phase(pod, statuses),
                "conditions": conditions,
                "hostIP": self.host_ip,
                "hostIPs": [{"ip": self.host_ip}],
                "startTime": record.start_time,
                "containerStatuses": statuses,
                "qosClass": qos_class(pod["spec"]),
            }
            if record.pod_ip:
                status["podIP"] = record.pod_ip
                status["podIPs"] = [{"ip": record.pod_ip}]
            self.store.write_status("Pod", namespace, name, status)

    @staticmethod
    def _phase(pod: dict, statuses: list[dict]) -> str:
        """getPhase in the kubelet: Pending while a container has never run; Running while one runs
        or will be restarted; Succeeded/Failed once all terminated for good."""
        waiting = running = succeeded = failed = 0
        restart_policy = pod["spec"].get("restartPolicy", "Always")
        for entry in statuses:
            state = entry["state"]
            if "running" in state:
                running += 1
            elif "terminated" in state:
                if restart_policy == "Always" or (restart_policy == "OnFailure" and state["terminated"]["exitCode"]):
                    running += 1
                elif state["terminated"]["exitCode"] == 0:
                    succeeded += 1
                else:
                    failed += 1
            elif "waiting" in state:
                if entry["lastState"].get("terminated"):
                    running += 1
                else:
                    waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        if failed:
            return "Failed"
        return "Succeeded" if succeeded else "Pending"

    # ---- logs ----

    def pod_log(self, pod: dict, container: str | None, tail_lines: int | None, previous: bool) -> str:
        name = pod["metadata"]["name"]
        containers = [item["name"] for item in pod["spec"]["containers"]]
        if container is None:
            if len(containers) > 1:
                raise KubeError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]",
                )
            container = containers[0]
        if container not in containers:
            raise KubeError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        record = self._pods.get(pod["metadata"]["uid"])
        state = record.containers[container] if record else None
        if previous:
            if state is None or state.previous_handle is None:
                raise KubeError(
                    400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" not found'
                )
            return self._runtime_logs(state.previous_handle, tail_lines)
        if state is None or state.handle is None:
            # Between restarts (CrashLoopBackOff) the logs are those of the container that last ran.
            if state is not None and state.previous_handle is not None:
                return self._runtime_logs(state.previous_handle, tail_lines)
            reason = (state.state.get("waiting", {}).get("reason") if state else None) or "ContainerCreating"
            detail = "trying and failing to pull image" if reason in ("ErrImagePull", "ImagePullBackOff") else reason
            raise KubeError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: {detail}')
        return self._runtime_logs(state.handle, tail_lines)

    def follow_pod_log(self, pod: dict, container: str | None) -> Iterator[str]:
        """``log?follow=true``: the log so far, then new output as it is written, ending when the
        container terminates. Refused like a plain read while the container waits to start."""
        self.pod_log(pod, container, 0, False)
        name = container or pod["spec"]["containers"][0]["name"]
        record = self._pods.get(pod["metadata"]["uid"])
        state = record.containers[name] if record else None
        handle = None if state is None else state.handle or state.previous_handle
        if handle is None:
            return iter(())
        return self._runtime_follow_logs(handle)

    def _runtime_follow_logs(self, handle: Any) -> Iterator[str]:
        raise NotImplementedError

    def ready_endpoints(self) -> dict[str, str]:
        """pod uid -> pod IP of pods the kubelet runs (used by nothing but diagnostics)."""
        return {uid: record.pod_ip for uid, record in self._pods.items()}


# ---------------------------------------------------------------------------------------------


class _FakeContainer:
    def __init__(self, name: str, exit_code: int | None, oom: bool, lines: list[str]) -> None:
        self.name = name
        self.exit_code = exit_code
        self.oom = oom
        self.lines = lines
        self.started_at = now_rfc3339()
        self.finished_at = self.started_at if exit_code is not None else ""
        self.killed = False


class FakeKubelet(Kubelet):
    """No Docker: containers start at once and run until deleted; faults give them the behaviour a real
    container would show (exit 1 with a line on stderr, exit 137 OOMKilled, a 404 readiness answer).
    Pod IPs come from 10.244.0.0/16, so nothing can connect to them."""

    def __init__(self, *, probe_period_scale: float = 0.1) -> None:
        super().__init__(probe_period_scale=probe_period_scale)
        self._next_ip = 2
        self._counter = 0

    def _runtime_image_present(self, image: str) -> str | None:
        return None  # the fake node starts with no images: every container pulls (and may fail to)

    def _runtime_pull(self, image: str) -> str:
        if "@sha256:" in image:
            return image
        return (
            f"{image.rsplit(':', 1)[0] if ':' in image.rsplit('/', 1)[-1] else image}@sha256:"
            + hashlib.sha256(image.encode()).hexdigest()
        )

    def _runtime_image_user(self, image: str) -> str:
        return ""  # the fake "image" declares no USER, like most images: it runs as root

    def _runtime_start_sandbox(self, pod: dict) -> tuple[Any, str]:
        self._next_ip += 1
        return object(), f"10.244.{(self._next_ip // 254) % 256}.{self._next_ip % 254 + 1}"

    def _runtime_remove_sandbox(self, record: PodRecord) -> None:
        record.sandbox = None

    def _runtime_start(
        self, pod: dict, record: PodRecord, container: dict, env: dict[str, str], command_override: list[str] | None
    ) -> tuple[Any, str]:
        self._counter += 1
        faults = self.faults
        if faults.oom:
            handle = _FakeContainer(container["name"], 137, True, ["sim fault oom: allocating memory until the limit"])
        elif faults.crash_loop:
            handle = _FakeContainer(container["name"], 1, False, [CRASH_LOOP_MESSAGE])
        else:
            handle = _FakeContainer(
                container["name"],
                None,
                False,
                [f"sim: container {container['name']} started from {container['image']}"],
            )
        return handle, f"containerd://{self._counter:064x}"

    def _runtime_state(self, handle: _FakeContainer) -> RuntimeState:
        if handle.exit_code is None:
            return RuntimeState(running=True, started_at=handle.started_at)
        return RuntimeState(
            running=False,
            exit_code=handle.exit_code,
            oom_killed=handle.oom,
            started_at=handle.started_at,
            finished_at=handle.finished_at,
        )

    def _runtime_kill(self, handle: _FakeContainer, grace_seconds: float) -> None:
        if handle.exit_code is None:
            handle.exit_code = 137
            handle.finished_at = now_rfc3339()
            handle.lines.append("sim: container killed")

    def _runtime_remove(self, handle: Any) -> None:
        pass

    def _runtime_logs(self, handle: _FakeContainer, tail_lines: int | None) -> str:
        lines = handle.lines if tail_lines is None else handle.lines[-tail_lines:] if tail_lines else []
        return "".join(line + "\n" for line in lines)

    def _runtime_follow_logs(self, handle: _FakeContainer) -> Iterator[str]:
        sent = 0
        while True:
            finished = handle.exit_code is not None
            lines = list(handle.lines)
            for line in lines[sent:]:
                yield line + "\n"
            sent = len(lines)
            if finished:
                return
            time.sleep(0.05)

    def pod_network_request(
        self, pod_ip: str, port: int, *, scheme: str, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """No container really runs, so nothing listens on the pod IP: the dial is refused (what a
        node answers for a port without a listener), without sending a packet to 10.244.0.0/16."""
        raise ConnectionError(f"dial tcp {pod_ip}:{port}: connect: connection refused")

    def _runtime_http_get(self, record: PodRecord, port: int, path: str, timeout: float) -> str | None:
        if path == FAILING_READINESS_PATH:
            return "HTTP probe failed with statuscode: 404"
        return None

    def _fault_command(self, container: dict) -> list[str] | None:
        return None
