"""Why a Deployment's rollout cannot finish, read from its pods and their events.

Argo CD keeps a Deployment Progressing until its progress deadline (600 s by default) before it
reports Degraded, which is longer than a deploy waits. The pods say much sooner: a container in
CrashLoopBackOff, an image that cannot be pulled, an OOM kill, a pod no node can take, a readiness
probe that keeps failing. ``RolloutDiagnosis`` looks at the pods that run the Deployment's current
template and raises ``SyncFailed`` naming the pod, the reason and the container's last log lines.

Some evidence is final at once (the kubelet only reports CrashLoopBackOff after a restart, and an
image pull back-off after a failed pull); the rest (unschedulable, readiness failing) can clear on
its own, for example when a cluster autoscaler adds a node, so it must persist for a grace period.
A readiness probe answered 503 is the model server saying it is still loading, so it is no evidence.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from control_api.adapters.kubernetes.services import KubernetesReader
from control_api.errors import SyncFailed, TransientError

# Waiting reasons that end a rollout as soon as they are seen.
FINAL_WAITING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class PodProblem:
    pod: str
    container: str | None
    reason: str
    message: str
    final: bool  # fail at once, or only once it lasted the grace period
    previous_logs: bool  # the crashed container's logs are the previous instance's


class RolloutDiagnosis:
    def __init__(
        self,
        reader: KubernetesReader,
        namespace: str,
        deployment: str,
        grace_seconds: float,
        first_seen: dict[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reader = reader
        self._namespace = namespace
        self._deployment = deployment
        self._grace = grace_seconds
        self._clock = clock
        # "pod/reason" -> when it was first seen (wall clock, so it can be saved and carried over
        # a restart of the service).
        self.first_seen: dict[str, float] = dict(first_seen or {})

    def check(self) -> None:
        """Raise ``SyncFailed`` when a pod of the current template shows the rollout cannot finish."""
        try:
            problems = self._problems()
        except TransientError:
            return  # an API blip is no evidence; the next poll looks again
        now = self._clock()
        seen = set()
        for problem in problems:
            key = f"{problem.pod}/{problem.reason}"
            seen.add(key)
            first = self.first_seen.setdefault(key, now)
            if problem.final or now - first >= self._grace:
                raise self._failure(problem)
        self.first_seen = {key: value for key, value in self.first_seen.items() if key in seen}

    # ---- reading the cluster -------------------------------------------------------------------

    def _problems(self) -> list[PodProblem]:
        deployment = self._reader.get_deployment(self._namespace, self._deployment)
        if deployment is None:
            return []
        spec = deployment.get("spec") or {}
        template = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        images = sorted(c.get("image") for c in template)
        labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items())) or None
        problems: list[PodProblem] = []
        for pod in self._reader.list_pods(self._namespace, selector):
            metadata = pod.get("metadata") or {}
            pod_images = sorted(c.get("image") for c in ((pod.get("spec") or {}).get("containers") or []))
            # Only pods of the template being rolled out: old pods may fail for reasons of their own.
            if metadata.get("deletionTimestamp") or pod_images != images:
                continue
            problems.extend(self._pod_problems(pod))
        return problems

    def _pod_problems(self, pod: dict) -> list[PodProblem]:
        name = (pod.get("metadata") or {}).get("name", "")
        status = pod.get("status") or {}
        found: list[PodProblem] = []
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                reason = condition.get("reason") or "Unschedulable"
                found.append(PodProblem(name, None, reason, condition.get("message") or "", False, False))
        for container in status.get("containerStatuses") or []:
            found.extend(self._container_problems(name, container))
        return found

    def _container_problems(self, pod: str, container: dict) -> list[PodProblem]:
        name = container.get("name")
        state = container.get("state") or {}
        last = (container.get("lastState") or {}).get("terminated") or {}
        terminated = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        for ended in (terminated, last):
            if ended.get("reason") == "OOMKilled":
                message = f"container {name} was OOM-killed (exit code {ended.get('exitCode')}); raise its memory limit"
                return [PodProblem(pod, name, "OOMKilled", message, True, ended is last)]
        if waiting.get("reason") in FINAL_WAITING_REASONS:
            message = waiting.get("message") or ""
            if waiting.get("reason") == "CrashLoopBackOff" and last:
                message = (
                    f"container {name} exited with code {last.get('exitCode')} ({last.get('reason') or 'Error'}), "
                    f"restarted {container.get('restartCount', 0)} times; {message}"
                ).rstrip("; ")
            return [PodProblem(pod, name, waiting["reason"], message, True, bool(last))]
        if state.get("running") is not None and not container.get("ready"):
            probe = self._readiness_failure(pod)
            if probe:
                return [PodProblem(pod, name, "ReadinessProbeFailed", probe, False, False)]
        return []

    def _readiness_failure(self, pod: str) -> str | None:
        events = self._reader.list_events(
            self._namespace, field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod}"
        )
        failures = [
            e for e in events if e.get("reason") == "Unhealthy" and "Readiness probe" in (e.get("message") or "")
        ]
        if not failures:
            return None
        latest = max(failures, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        message = latest.get("message") or ""
        # The model server answers /ready with 503 while it loads the model, which can take minutes
        # for a large one: that is the rollout still going, not evidence that it cannot finish.
        if "statuscode: 503" in message:
            return None
        return message

    def _failure(self, problem: PodProblem) -> SyncFailed:
        logs = ""
        if problem.container:
            try:
                logs = self._reader.pod_log(
                    self._namespace,
                    problem.pod,
                    container=problem.container,
                    tail_lines=LOG_TAIL_LINES,
                    previous=problem.previous_logs,
                )
            except TransientError:
                logs = ""
        message = f"pod {self._namespace}/{problem.pod} {problem.reason}"
        if problem.message:
            message += f": {problem.message}"
        if logs.strip():
            message += f"\nlast log lines of {problem.container}:\n{logs.strip()}"
        return SyncFailed(
            message,
            code="rollout_failed",
            details={
                "resource": {"kind": "Pod", "namespace": self._namespace, "name": problem.pod},
                "reason": problem.reason,
                "container": problem.container,
            },
        )
